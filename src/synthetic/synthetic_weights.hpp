// Deterministic synthetic values for every tensor of a DeepSeek V4 checkpoint table, encoded in
// the native formats (FP8 tiles, FP4 blocks) or in BF16. Owns: value distributions, the
// native encoders (synthetic_weights.cpp) and generating a table on several threads in table
// order (generate_tensors.cpp). Does not own: tensor names (model/tensor_table) or files
// (make_tiny).
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
// every IEEE machine. Memory: one 128-row strip of one tensor. Not thread-safe (it carries a
// weight's scale over to the next emit()): use one per thread.
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

// Receives the bytes of tensors[index] in table order: each tensor in one or more consecutive
// calls (at least one; n_bytes may be 0), always on the thread that called generate_tensors.
using TensorSink = std::function<void(size_t index, const void* data, uint64_t n_bytes)>;

struct GenerateOptions {
  // 1: generate on the calling thread, streaming strips to the sink (today's memory use).
  // n > 1: n workers generate whole placement units (a weight and its `.scale`) into memory.
  int n_threads = 1;
  int max_units_in_flight = 0;  // generated or being generated, not yet sunk; 0: 2 * n_threads
  uint64_t max_bytes_in_flight = uint64_t{2} << 30;  // exceeded only by a unit alone in flight
};

// Generates every tensor of `tensors` (checkpoint_tensors(config, format), or any list in which
// each `.scale` directly follows its weight) into `sink`. The bytes do not depend on n_threads.
// The first error of a worker or of the sink is rethrown here as it was thrown (a qf::Error
// stays one) after every worker has stopped.
void generate_tensors(const model::ModelConfig& config, model::WeightFormat format, uint64_t seed,
                      const std::vector<model::ModelTensor>& tensors,
                      const GenerateOptions& options, const TensorSink& sink);

}  // namespace qf::pipeline
