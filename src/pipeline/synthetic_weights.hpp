// Deterministic synthetic values for every tensor of a DeepSeek V4 checkpoint table, encoded in
// the native formats (FP8 tiles, FP4 blocks) or in BF16. Owns: value distributions and the
// native encoders. Does not own: tensor names (model/tensor_table) or files (make_tiny).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {

// Bytes go to the sink in order; a tensor may arrive in several pieces.
using ByteSink = std::function<void(const void* data, uint64_t n_bytes)>;

// The seed of one tensor: a function of its name and the run seed only, so values do not
// depend on the shard layout, the format or the other tensors.
uint64_t synthetic_tensor_seed(const std::string& name, uint64_t seed);

// Smallest k with amax <= max_code * 2^k (0 for amax <= 0 or NaN): the UE8M0 exponent that
// makes a block's amax fit the element format (448 for E4M3, 6 for E2M1).
int pow2_scale_exponent(float amax, float max_code);

// Generates tensor values and streams them in the table's dtype.
//   - linear weights ~ N(0, 1/in) with ~1/64 of the input columns scaled x6 (outlier
//     channels); norms ~ 1 + N(0, 0.05^2); embed ~ N(0, 1); small attn_sink, ape, gate.bias,
//     hyper-connection fn/base, hc scales ~ 1; tid2eid: top-k distinct experts per token;
//   - FP8 weights per 128x128 tile with the UE8M0 scale 2^k of pow2_scale_exponent(amax, 448)
//     (F32 scale amax/448 when expert_dtype is "fp8"); FP4 experts per 32-block with 2^k of
//     pow2_scale_exponent(amax, 6);
//   - the BF16 format writes, for weights that are FP8/FP4 natively, the exact dequantization
//     of the native encoding, so `dequant` of a native make-tiny checkpoint equals the BF16
//     make-tiny checkpoint of the same seed bit for bit (E8M0 scales).
// Normals are Irwin-Hall(6) sums of 24-bit uniforms (no libm), so values are the same on
// every IEEE machine. Memory: one 128-row strip of one tensor.
class SyntheticWeights {
 public:
  SyntheticWeights(const model::ModelConfig& config, model::WeightFormat format, uint64_t seed);

  // Streams the bytes of `tensor` (from checkpoint_tensors(config, format)). A `.scale`
  // tensor must directly follow its weight: its bytes are produced while encoding the weight.
  void emit(const model::ModelTensor& tensor, const ByteSink& sink);

 private:
  void emit_fp8_weight(const model::ModelTensor& tensor, const ByteSink& sink);
  void emit_fp4_weight(const model::ModelTensor& tensor, const ByteSink& sink);
  void emit_plain(const model::ModelTensor& tensor, const ByteSink& sink);

  const model::ModelConfig& config_;
  model::WeightFormat format_;
  uint64_t seed_;
  std::string pending_scale_name_;  // the `.scale` whose bytes are in pending_scale_
  std::vector<uint8_t> pending_scale_;
};

}  // namespace qf::pipeline
