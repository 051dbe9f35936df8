// How the requantized NVFP4 weights get their scales: the `--weight-scale` table. Owns the
// names, values and help of that choice and what each method needs (a Hessian, a block search).
// Does not own the arithmetic (kernels/nvfp4_search*, kernels/nvfp4_gptq*, quantize_weights.cpp)
// or where the Hessians come from (calibrate/hessian_recorder.hpp).
#pragma once
#include "core/enum_table.hpp"
#include "numerics/nvfp4_search.hpp"

namespace qf::pipeline {

// Applies to the NVFP4 targets that are requantized: FP8/BF16 sources (in `--recipe full` the
// attention, the indexer's wq_b and the shared experts) and FP4 experts under
// `--expert-weights requantize`. FP4 experts under the lossless cast keep it whatever this says.
enum class WeightScale {
  kMax,  // ModelOpt: weight_scale_2 = amax/2688, block scale = block amax / (6 weight_scale_2)
  // The others search the E4M3 block scale per 16-block (numerics/nvfp4_search.hpp) and
  // weight_scale_2 among (amax/2688) * {1, 1.125, ..., 1.75, 0.875} for the lowest total error
  // of the tensor (and of its w1/w3 sibling: the pair keeps one weight_scale_2).
  kFourOverSix,  // per block: max-mapped or 4-mapped scale, the lower squared error
  kMse,          // per block: every E4M3 scale, the lowest squared error
  kHessian,      // per block: max-mapped +-8 codes, the lowest d^T H_b d (local Hessian)
  kGptq,         // GPTQ: error feedback through (X^T X + damp)^-1, block scales chosen as kMse
};
const EnumTable<WeightScale>& weight_scale_methods();  // parse, name and --help

// The method needs the calibration inputs' X^T X of each target (recorded by the CPU
// calibration engine into the "hessian" stage of the rank store).
inline bool weight_scale_needs_hessian(WeightScale m) {
  return m == WeightScale::kHessian || m == WeightScale::kGptq;
}

// The per-block rule of a method (kMax for max; the block search GPTQ applies at each block
// start for gptq) and the one a target without a Hessian falls back to (routed experts under
// --expert-weights requantize: their X^T X is not recorded).
numerics::Nvfp4BlockSearch weight_scale_block_search(WeightScale m);
numerics::Nvfp4BlockSearch weight_scale_block_search_without_hessian(WeightScale m);

}  // namespace qf::pipeline
