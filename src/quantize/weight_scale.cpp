// The --weight-scale table.
#include "quantize/weight_scale.hpp"

namespace qf::pipeline {

const EnumTable<WeightScale>& weight_scale_methods() {
  static const EnumTable<WeightScale> table(
      "--weight-scale",
      {{"max", WeightScale::kMax,
        "ModelOpt's scales: weight_scale_2 = amax/2688, block scale = block amax/(6 * "
        "weight_scale_2)"},
       {"4over6", WeightScale::kFourOverSix,
        "per 16-block the scale mapping its max to 6 or to 4, whichever rounds with less squared "
        "error (Four-over-Six); weight_scale_2 searched"},
       {"mse", WeightScale::kMse,
        "per 16-block the E4M3 scale of least squared error (all 126; ModelOpt's mse sweep); "
        "weight_scale_2 searched"},
       {"hessian", WeightScale::kHessian,
        "per 16-block the scale of least error weighted by the block's X^T X from calibration "
        "(ModelOpt's local_hessian; max-mapped +-8 codes); weight_scale_2 searched"},
       {"gptq", WeightScale::kGptq,
        "GPTQ: columns rounded in order, each error spread over the later columns through the "
        "damped inverse X^T X of calibration; block scales as mse when a block starts"}});
  return table;
}

numerics::Nvfp4BlockSearch weight_scale_block_search(WeightScale m) {
  switch (m) {
    case WeightScale::kMax:
      return numerics::Nvfp4BlockSearch::kMax;
    case WeightScale::kFourOverSix:
      return numerics::Nvfp4BlockSearch::kFourOverSix;
    case WeightScale::kHessian:
      return numerics::Nvfp4BlockSearch::kHessian;
    case WeightScale::kMse:
    case WeightScale::kGptq:
      return numerics::Nvfp4BlockSearch::kMse;
  }
  return numerics::Nvfp4BlockSearch::kMax;
}

numerics::Nvfp4BlockSearch weight_scale_block_search_without_hessian(WeightScale m) {
  return weight_scale_needs_hessian(m) ? numerics::Nvfp4BlockSearch::kMse
                                       : weight_scale_block_search(m);
}

}  // namespace qf::pipeline
