// Shared helpers for the rank-store tests: deterministic layer records and file surgery.
// Owns: test scaffolding only. Does not own: any production code path.
#pragma once
#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "formats/layer_record.hpp"
#include "formats_test_util.hpp"

namespace qf::formats::test {

inline std::vector<uint8_t> random_bytes(size_t n_bytes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> bytes(n_bytes);
  for (uint8_t& byte : bytes) byte = static_cast<uint8_t>(rng());
  return bytes;
}

inline StoredTensor make_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                                size_t n_bytes, uint64_t seed) {
  return StoredTensor{name, dtype, std::move(shape), random_bytes(n_bytes, seed)};
}

// A record shaped like a quantized layer: NVFP4 weights of a few experts, their scales, the
// calibration amax and token counts. Every byte depends on (layer, stage, seed) only, so a
// reader can rebuild what a writer committed. `n_weight_bytes` sizes the weight tensors.
inline LayerRecord make_layer_record(int layer, const std::string& stage, uint64_t seed = 0,
                                     size_t n_weight_bytes = 256) {
  LayerRecord record;
  record.layer = layer;
  const uint64_t base = seed * 1000003 + static_cast<uint64_t>(layer) * 97 + stage.size();
  const int64_t cols = 32;
  const int64_t rows = static_cast<int64_t>(std::max<size_t>(1, n_weight_bytes / (cols / 2)));
  for (int expert = 0; expert < 2; ++expert) {
    const std::string prefix =
        "layers." + std::to_string(layer) + ".ffn.experts." + std::to_string(expert) + ".w1";
    const uint64_t s = base + static_cast<uint64_t>(expert) * 13;
    record.tensors.push_back(make_tensor(prefix + ".weight", DType::kU8, {rows, cols / 2},
                                         static_cast<size_t>(rows * cols / 2), s + 1));
    record.tensors.push_back(make_tensor(prefix + ".weight_scale", DType::kF8E4M3,
                                         {rows, cols / 16}, static_cast<size_t>(rows * cols / 16),
                                         s + 2));
    record.tensors.push_back(make_tensor(prefix + ".weight_scale_2", DType::kF32, {}, 4, s + 3));
    record.tensors.push_back(make_tensor(prefix + ".input_scale", DType::kF32, {}, 4, s + 4));
    record.f32[prefix + ".input_amax"] = {static_cast<float>(s % 1000) / 7.0f};
  }
  record.i64["expert_tokens"] = {static_cast<int64_t>(base % 17), static_cast<int64_t>(base % 5)};
  record.attrs["stage_note"] = stage + " of layer " + std::to_string(layer);
  return record;
}

inline nlohmann::json make_provenance(int samples = 128) {
  return {{"tool", {{"name", "quantforge"}, {"version", "0.1.0"}}},
          {"config_hash", "0123456789abcdef"},
          {"options", {{"samples", samples}, {"seq_len", 512}, {"recipe", "experts"}}},
          {"source_files",
           {{{"name", "model-00001-of-00002.safetensors"}, {"n_bytes", 1000}, {"xxh64", "aa"}},
            {{"name", "model-00002-of-00002.safetensors"}, {"n_bytes", 2000}, {"xxh64", "bb"}}}}};
}

// Flips one bit of the byte at `offset` (negative: from the end) in place.
inline void flip_byte(const std::string& path, long offset) {
  std::string bytes = read_bytes(path);
  const size_t at = offset >= 0 ? static_cast<size_t>(offset) : bytes.size() + offset;
  REQUIRE(at < bytes.size());
  bytes[at] = static_cast<char>(bytes[at] ^ 0x10);
  write_bytes(path, bytes);
}

}  // namespace qf::formats::test
