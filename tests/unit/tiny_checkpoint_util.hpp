// make-tiny "tiny" checkpoints for unit tests that need real tensors.
#pragma once
#include <cstdint>
#include <string>

#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "synthetic/make_tiny.hpp"

namespace qf::test {

inline pipeline::MakeTinyOptions tiny_options(const std::string& out_dir,
                                              model::WeightFormat format, int n_shards,
                                              uint64_t seed) {
  pipeline::MakeTinyOptions options;
  options.config = model::preset_config("tiny");
  options.format = format;
  options.n_shards = n_shards;
  options.seed = seed;
  options.out_dir = out_dir;
  return options;
}

// Native FP8/FP4, written into out_dir; returns out_dir.
inline std::string make_tiny_checkpoint(const std::string& out_dir, uint64_t seed,
                                        int n_shards = 2) {
  pipeline::make_tiny(tiny_options(out_dir, model::WeightFormat::kNative, n_shards, seed));
  return out_dir;
}

}  // namespace qf::test
