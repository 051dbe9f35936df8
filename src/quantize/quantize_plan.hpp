// The plan every rank of `quantize` builds alike from the source alone: which weights become
// NVFP4 under the recipe, who owns what, and the exact output layout (docs/EXPORT_FORMAT.md).
// Owns: target selection, w1/w3 pairing, output shard specs. Does not own the arithmetic.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "dist/ownership_plan.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/safetensors_writer.hpp"
#include "model/config.hpp"
#include "quantize/expert_weights.hpp"
#include "quantize/weight_scale.hpp"
#include "recipe/recipe.hpp"
#include "source/native_tensors.hpp"

namespace qf::pipeline {

enum class OutputKind { kCopy, kNvfp4Weight, kNvfp4Scale, kNvfp4Scale2, kInputScale };

struct OutputTensor {
  formats::TensorSpec spec;
  OutputKind kind = OutputKind::kCopy;
  std::string source_name;  // kCopy: the source tensor; else the source weight `<p>.weight`
};

struct OutputShard {
  std::string file;  // same name as the source shard
  std::vector<OutputTensor> tensors;
  formats::SafetensorsLayout layout;
};

struct QuantizePlan {
  model::ModelConfig config;
  Recipe recipe = Recipe::kExperts;
  ExpertWeights expert_weights = ExpertWeights::kCast;  // how FP4 expert targets are quantized
  WeightScale weight_scale =
      WeightScale::kMax;              // scales of the requantized targets (the job sets it)
  std::vector<NativeTensor> tensors;  // source weights/plain tensors (scales folded in)
  std::map<std::string, size_t> tensor_index;  // name -> index into tensors
  std::set<std::string> targets;               // `<p>.weight` names that become NVFP4
  std::map<std::string, std::string> pair_of;  // w1 <-> w3 sibling (shared scales)
  std::vector<OutputShard> shards;
  std::map<std::string, size_t> shard_of_output;  // output tensor name -> shard index
  dist::OwnershipPlan ownership;                  // over `tensors` by name
  std::vector<std::string> other_files;           // non-shard source files to copy

  const NativeTensor& tensor(const std::string& name) const;
  // Targets of one regular layer, sorted by name.
  std::vector<std::string> targets_of_layer(int layer) const;
  // Module name of a weight: `<p>.weight` -> `<p>`.
  static std::string module_of(const std::string& weight_name);
  // Whether target `weight_name` is requantized from exact BF16 values (FP8/BF16 sources; FP4
  // experts under --expert-weights requantize), i.e. --weight-scale applies to it.
  bool requantized(const std::string& weight_name) const;
  // Whether its calibration input's X^T X is recorded for --weight-scale gptq | hessian: the
  // requantized targets except routed experts (one n x n matrix per expert is not cheap).
  bool wants_hessian(const std::string& weight_name) const;
};

// Checks the source against the tensor table of its own config.json (every name, dtype and
// shape; a mismatch is an error naming the tensor), then plans. Deterministic from the source
// and the arguments.
QuantizePlan build_quantize_plan(const formats::CheckpointDir& source, Recipe recipe,
                                 int world_size,
                                 ExpertWeights expert_weights = ExpertWeights::kCast);

}  // namespace qf::pipeline
