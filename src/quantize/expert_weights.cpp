// The --expert-weights table.
#include "quantize/expert_weights.hpp"

namespace qf::pipeline {

const EnumTable<ExpertWeights>& expert_weights_modes() {
  static const EnumTable<ExpertWeights> table(
      "--expert-weights",
      {{"cast", ExpertWeights::kCast,
        "lossless MXFP4 -> NVFP4 cast of FP4 experts (ModelOpt --cast_mxfp4_to_nvfp4)"},
       {"requantize", ExpertWeights::kRequantize,
        "dequantize FP4 experts to BF16 and requantize with the weight amax (ModelOpt's "
        "default DS-V4 path; lossy)"}});
  return table;
}

}  // namespace qf::pipeline
