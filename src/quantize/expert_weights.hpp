// How FP4 (MXFP4) routed-expert weights become NVFP4: the `--expert-weights` table. Owns the
// names, values and help of that choice. Does not own the arithmetic (quantize_weights.cpp).
#pragma once
#include "core/enum_table.hpp"

namespace qf::pipeline {

enum class ExpertWeights {
  // Lossless MXFP4 -> NVFP4 cast (ModelOpt's --cast_mxfp4_to_nvfp4): weight_scale_2 =
  // 2^(k_max - 8), every in-window 32-block's codes kept bit for bit. The default.
  kCast,
  // ModelOpt's default DS-V4 path: dequantize to BF16 and requantize with the weight amax
  // (max |W| over the w1/w3 pair), the NVFP4 path of FP8/BF16 weights. Lossy.
  kRequantize,
};
const EnumTable<ExpertWeights>& expert_weights_modes();  // parse, name and --help

}  // namespace qf::pipeline
