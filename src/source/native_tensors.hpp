// Classifies the tensors of a native DeepSeek V4 checkpoint by how they are stored: FP8 block-
// scaled weights, packed FP4 (MXFP4) expert weights, their scale companions, and plain tensors.
// Owns: the pairing rules and their validation. Does not own: the conversion arithmetic.
#pragma once
#include <string>
#include <vector>

#include "formats/checkpoint_dir.hpp"
#include "formats/tensor_spec.hpp"
#include "numerics/block_dequant.hpp"

namespace qf::pipeline {

enum class StorageKind {
  kFp8Block,  // F8_E4M3 [out, in] + `.scale` [ceil(out/128), ceil(in/128)] (F8_E8M0 or F32)
  kFp4Block,  // I8/U8 [out, in/2] (or F4 [out, in]) + `.scale` F8_E8M0 [out, in/32]
  kPlain,     // anything without a scale companion: copied byte for byte
};

// One source weight (with its scale, if any) as it appears in the checkpoint.
struct NativeTensor {
  std::string name;        // e.g. layers.3.ffn.experts.5.w1.weight
  std::string scale_name;  // e.g. layers.3.ffn.experts.5.w1.scale; empty for kPlain
  std::string shard;       // source shard file of `name`
  StorageKind kind = StorageKind::kPlain;
  formats::TensorSpec stored;  // dtype/shape as stored
  formats::TensorSpec scale;   // the companion (kFp8Block/kFp4Block)
  int64_t n_rows = 0;          // logical [n_rows, n_cols]: block kinds and 2-D plain tensors
  int64_t n_cols = 0;
  int layer = -1;   // from the name: layers.N / mtp.M (num_hidden_layers + M if known); -1 global
  int expert = -1;  // routed expert index, -1 otherwise
};

// Pairs every weight with its `.scale` and validates dtypes and shapes. Throws qf::Error naming
// the directory, tensor and reason for: a `.scale` without a weight, a quantized weight without
// its scale, a scale of the wrong shape or dtype, FP4 input dims not a multiple of 32.
// Scale companions are not listed separately. Order: shard file, then data offset.
std::vector<NativeTensor> classify_native_tensors(const formats::CheckpointDir& checkpoint);

// `layers.N.`-style layer index and `experts.E.` expert index parsed from a tensor name.
int layer_of_name(const std::string& name, int num_hidden_layers);
int expert_of_name(const std::string& name);

}  // namespace qf::pipeline
