// make-tiny: writes a synthetic DeepSeek V4 checkpoint (config.json, sharded safetensors,
// model.safetensors.index.json) for a config, in the native format or BF16.
// Owns: shard placement, the temp-dir-then-rename protocol, progress lines. Does not own:
// tensor names (model/tensor_table) or values (pipeline/synthetic_weights).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {

struct MakeTinyOptions {
  model::ModelConfig config;
  model::WeightFormat format = model::WeightFormat::kNative;
  uint64_t seed = 0;
  int n_shards = 4;  // clamped to the number of placement units (weight + scale stay together)
  std::string out_dir;
  bool force = false;  // replace a non-empty out_dir
};

struct MakeTinyResult {
  std::vector<std::string> shard_files;  // in order
  uint64_t n_tensors = 0;
  uint64_t n_bytes = 0;  // sum of tensor bytes (index metadata.total_size)
  double seconds = 0.0;
};

// Shard (0-based) of every tensor of `tensors`: contiguous in table order, balanced by bytes,
// every shard non-empty, a weight and its `.scale` always in the same shard. Returns as many
// entries as tensors; the shard count used is 1 + the last entry (<= n_shards).
std::vector<int> assign_shards(const std::vector<model::ModelTensor>& tensors, int n_shards);

// Writes the checkpoint into `<out_dir>.tmp.<pid>` and renames it to out_dir at the end, so
// nothing half-written ever appears under out_dir. Refuses a non-empty out_dir unless force.
// Values are deterministic for (config, seed) whatever the shard count.
MakeTinyResult make_tiny(const MakeTinyOptions& options);

}  // namespace qf::pipeline
