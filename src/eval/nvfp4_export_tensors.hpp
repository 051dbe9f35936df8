// Reading the NVFP4 linears of an exported checkpoint back: which modules are NVFP4, their
// decoded FP32 weights (E2M1 codes x E4M3 block scale x weight_scale_2) and their input_scale.
// Owns: the export's tensor-group checks on the read side. Does not own: the scalar decode
// (kernels nvfp4_dequantize_ref; fast_decode.hpp holds the table-driven equal) or the full
// export validation (validate).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/checkpoint_dir.hpp"

namespace qf::pipeline {

// Prefixes p (e.g. `layers.3.ffn.experts.5.w1`) of every `<p>.weight_scale_2` in the export,
// sorted: the NVFP4 modules (docs/EXPORT_FORMAT.md).
std::vector<std::string> nvfp4_export_prefixes(const formats::CheckpointDir& out);

// One NVFP4 linear decoded to FP32, row-major [n_rows, n_cols]: what a dequantizing loader sees.
struct Nvfp4DecodedWeight {
  int64_t n_rows = 0, n_cols = 0;
  float weight_scale_2 = 0;
  std::vector<float> values;
};

// Decodes `<prefix>.weight` (U8 [out, in/2]) with `.weight_scale` (F8_E4M3 [out, in/16]) and
// `.weight_scale_2` (one F32): kernels::nvfp4_dequantize_ref's values (decode_nvfp4_to_float).
// Throws naming the tensor for a missing tensor or a wrong dtype/shape.
Nvfp4DecodedWeight decode_nvfp4_export_weight(const formats::CheckpointDir& out,
                                              const std::string& prefix);

// `<prefix>.input_scale` (one F32). Throws naming the tensor if absent or malformed.
float read_nvfp4_input_scale(const formats::CheckpointDir& out, const std::string& prefix);

}  // namespace qf::pipeline
