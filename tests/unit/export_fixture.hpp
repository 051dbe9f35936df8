// Test utility: a correct `experts`-recipe NVFP4 export of a make-tiny source, built from the
// kernels' reference functions (not the production exporter), plus helpers that corrupt a copy.
// Owns: test scaffolding only (header-only: every tests/unit/*.cpp is its own test binary).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/safetensors_reader.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats/shard_index.hpp"
#include "kernels/dequant.cuh"
#include "kernels/nvfp4_quantize.cuh"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "numerics/codecs.hpp"
#include "synthetic/make_tiny.hpp"

namespace qf::test {

// Constant calibration input amax of every expert (FORMATS.md §1: input_scale = amax / 2688).
constexpr float kFixtureInputAmax = 3.0f;

struct FixtureTensor {
  formats::TensorSpec spec;
  std::vector<uint8_t> bytes;
};

// make-tiny "tiny" (native FP8/FP4) into `dir`, plus a tokenizer file (a non-shard file).
inline void make_fixture_source(const std::string& dir, uint64_t seed = 5) {
  pipeline::MakeTinyOptions options;
  options.config = model::preset_config("tiny");
  options.seed = seed;
  options.n_shards = 3;
  options.out_dir = dir;
  pipeline::make_tiny(options);
  formats::write_file_atomic(dir + "/tokenizer.json", "{\"model\": \"fixture\"}\n");
}

// All tensors of one shard, in data-offset order.
inline std::vector<FixtureTensor> read_shard(const std::string& path) {
  formats::SafetensorsReader reader(path);
  std::vector<FixtureTensor> out;
  for (const auto& info : reader.tensors()) out.push_back({info.spec(), reader.read_tensor(info)});
  return out;
}

// Writes the tensors in the given order (replacing the file).
inline void write_shard(const std::string& path, const std::vector<FixtureTensor>& tensors) {
  std::vector<formats::TensorSpec> specs;
  for (const auto& t : tensors) specs.push_back(t.spec);
  formats::SafetensorsWriter writer(path, specs);
  for (const auto& t : tensors) writer.append(t.bytes.data(), t.bytes.size());
  writer.commit();
}

// model.safetensors.index.json from the shards present in `dir`, total_size recomputed.
inline void write_index_from_shards(const std::string& dir) {
  formats::ShardIndex index;
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string file = entry.path().filename().string();
    if (entry.path().extension() != ".safetensors") continue;
    formats::SafetensorsReader reader(entry.path().string());
    for (const auto& info : reader.tensors()) {
      index.weight_map[info.name] = file;
      total += info.n_bytes();
    }
  }
  index.metadata = {{"total_size", total}};
  index.write(dir + "/" + formats::kShardIndexFileName);
}

// config.json and hf_quant_config.json of the experts recipe (EXPORT_FORMAT.md), written by
// hand from the document so the test does not share code with pipeline/quant_config.
inline void write_experts_configs(const std::string& src, const std::string& out,
                                  const std::vector<int>& layers) {
  nlohmann::json config = formats::read_json_file(src + "/config.json");
  nlohmann::json qc = config["quantization_config"];
  const nlohmann::json scheme = {
      {"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
  const nlohmann::json producer = {{"name", "modelopt"}, {"version", "dsv4-nvfp4-experts"}};
  const nlohmann::json ignore = {"*.attn.*", "*.ffn.shared_experts.*", "head", "mtp.*"};
  nlohmann::json quantized = nlohmann::json::object();
  for (const int l : layers) {
    quantized["layers." + std::to_string(l) + ".ffn.experts"] = {{"quant_algo", "NVFP4"},
                                                                 {"group_size", 16}};
  }
  qc["moe_quant_algo"] = "NVFP4";
  qc["producer"] = producer;
  qc["quant_algo"] = "MIXED_PRECISION";
  qc["kv_cache_quant_algo"] = nullptr;
  qc["group_size"] = 16;
  qc["config_groups"] = {
      {"group_0", {{"input_activations", scheme}, {"weights", scheme}, {"targets", {"Linear"}}}}};
  qc["quantized_layers"] = quantized;
  qc["ignore"] = ignore;
  config["quantization_config"] = qc;
  formats::write_file_atomic(out + "/config.json", config.dump(2) + "\n");
  const nlohmann::json hf = {{"producer", producer},
                             {"quantization",
                              {{"quant_algo", "MIXED_PRECISION"},
                               {"kv_cache_quant_algo", nullptr},
                               {"group_size", 16},
                               {"quantized_layers", quantized},
                               {"exclude_modules", ignore}}}};
  formats::write_file_atomic(out + "/hf_quant_config.json", hf.dump(2) + "\n");
}

// How build_experts_export makes the routed experts: the lossless MXFP4 -> NVFP4 cast, or
// requantized (--expert-weights requantize): the BF16 dequantization quantized to NVFP4 with
// weight_scale_2 = max |x| over the w1/w3 pair / 2688.
enum class FixtureExperts { kCast, kRequantize };

// BF16 dequantization of one FP4 weight and its max |x|.
inline std::vector<uint16_t> fixture_fp4_to_bf16(const std::vector<uint8_t>& packed,
                                                 const std::vector<uint8_t>& e8m0, int64_t n_rows,
                                                 int64_t n_cols, float* amax) {
  std::vector<uint16_t> bf16(size_t(n_rows * n_cols));
  kernels::fp4_block_dequant_ref({packed.data(), e8m0.data(), n_rows, n_cols, bf16.data()});
  for (const uint16_t b : bf16) *amax = std::max(*amax, std::fabs(numerics::bf16_to_float(b)));
  return bf16;
}

// The experts-recipe export of `src` into `out` (created): routed experts of regular layers cast
// losslessly MXFP4 -> NVFP4 with k_max shared by w1/w3 (or requantized, see FixtureExperts),
// input_scale = 3/2688, the rest copied.
inline void build_experts_export(const std::string& src, const std::string& out,
                                 FixtureExperts experts = FixtureExperts::kCast) {
  std::filesystem::create_directories(out);
  formats::CheckpointDir source(src);
  const int n_layers = formats::read_json_file(src + "/config.json")["num_hidden_layers"];
  const std::regex expert(R"(^layers\.(\d+)\.ffn\.experts\.\d+\.w([123])\.weight$)");
  const auto read = [&](const std::string& name) {
    const formats::SafetensorsReader* shard = nullptr;
    const auto& info = source.tensor(name, &shard);
    return shard->read_tensor(info);
  };
  const auto e8m0_max = [](const std::vector<uint8_t>& e8m0) {
    uint32_t m = 0;
    for (const uint8_t b : e8m0) m = std::max<uint32_t>(m, b);
    return m;
  };
  std::vector<int> layers;
  for (const auto& file : source.shard_files()) {
    std::vector<FixtureTensor> tensors;
    for (const auto& info : source.shard(file).tensors()) {
      const std::string& name = info.name;
      std::smatch m;
      const std::string weight = strip_suffix(name, model::kScaleSuffix) + model::kWeightSuffix;
      if (ends_with(name, model::kScaleSuffix) && std::regex_match(weight, m, expert) &&
          std::stoi(m[1]) < n_layers) {
        continue;  // the .scale of a quantized expert is dropped
      }
      if (!std::regex_match(name, m, expert) || std::stoi(m[1]) >= n_layers) {
        tensors.push_back({info.spec(), read(name)});
        continue;
      }
      const int layer = std::stoi(m[1]);
      if (layers.empty() || layers.back() != layer) layers.push_back(layer);
      const std::string p = strip_suffix(name, model::kWeightSuffix);
      const auto packed = read(name);
      const auto e8m0 = read(p + model::kScaleSuffix);
      const int64_t n_rows = info.shape[0], n_cols = info.shape[1] * 2;
      uint32_t self_max = e8m0_max(e8m0), pair_max = 0;
      const char* pair = m[2] == "1" ? ".w3" : m[2] == "3" ? ".w1" : nullptr;
      if (pair)
        pair_max = e8m0_max(read(strip_suffix(p, ".w" + m[2].str()) + pair + model::kScaleSuffix));
      std::vector<uint8_t> out_packed(packed.size()), out_scale(size_t(n_rows * n_cols / 16));
      float scale_2 = 0;
      if (experts == FixtureExperts::kRequantize) {
        float amax = 0;
        const auto bf16 = fixture_fp4_to_bf16(packed, e8m0, n_rows, n_cols, &amax);
        if (pair) {
          const std::string q = p.substr(0, p.size() - 3) + pair;
          fixture_fp4_to_bf16(read(q + ".weight"), read(q + ".scale"), n_rows, n_cols, &amax);
        }
        scale_2 = amax / 2688.0f;
        uint64_t n_nonfinite = 0;
        kernels::Nvfp4QuantizeParams q;
        q.x = bf16.data();
        q.n_rows = n_rows;
        q.n_cols = n_cols;
        q.scale_2 = &scale_2;
        q.packed = out_packed.data();
        q.scale = out_scale.data();
        q.n_nonfinite = &n_nonfinite;
        kernels::nvfp4_quantize_ref(q);
      } else {
        uint64_t counts[kernels::kMxfp4CountSlots] = {};
        kernels::Mxfp4ToNvfp4Params params;
        params.packed = packed.data();
        params.e8m0 = e8m0.data();
        params.n_rows = n_rows;
        params.n_cols = n_cols;
        params.e8m0_max = &self_max;
        params.e8m0_max_pair = pair ? &pair_max : nullptr;
        params.out_packed = out_packed.data();
        params.out_scale = out_scale.data();
        params.out_scale_2 = &scale_2;
        params.counts = counts;
        kernels::mxfp4_to_nvfp4_ref(params);
      }
      const float input_scale = kFixtureInputAmax / 2688.0f;
      std::vector<uint8_t> s2(4), in(4);
      std::memcpy(s2.data(), &scale_2, 4);
      std::memcpy(in.data(), &input_scale, 4);
      tensors.push_back({{p + ".weight", DType::kU8, {n_rows, n_cols / 2}}, out_packed});
      tensors.push_back({{p + ".weight_scale", DType::kF8E4M3, {n_rows, n_cols / 16}}, out_scale});
      tensors.push_back({{p + ".weight_scale_2", DType::kF32, {}}, s2});
      tensors.push_back({{p + ".input_scale", DType::kF32, {}}, in});
    }
    write_shard(out + "/" + file, tensors);
  }
  write_index_from_shards(out);
  std::filesystem::copy_file(src + "/tokenizer.json", out + "/tokenizer.json");
  write_experts_configs(src, out, layers);
}

// ---- corruption helpers ------------------------------------------------------------------------

// Applies `edit` to the tensors of the shard holding `name` and rewrites it (and the index, so
// that only the intended defect remains).
inline void edit_shard_of(const std::string& dir, const std::string& name,
                          const std::function<void(std::vector<FixtureTensor>&)>& edit) {
  const auto index = formats::ShardIndex::read(dir + "/" + formats::kShardIndexFileName);
  const std::string path = dir + "/" + index.weight_map.at(name);
  auto tensors = read_shard(path);
  edit(tensors);
  write_shard(path, tensors);
  write_index_from_shards(dir);
}

// Overwrites bytes of one tensor in place (header untouched).
inline void patch_tensor(const std::string& dir, const std::string& name, uint64_t byte_offset,
                         const std::vector<uint8_t>& bytes) {
  const auto index = formats::ShardIndex::read(dir + "/" + formats::kShardIndexFileName);
  const std::string path = dir + "/" + index.weight_map.at(name);
  uint64_t at = 0;
  {
    formats::SafetensorsReader reader(path);
    at = reader.data_offset() + reader.at(name).begin + byte_offset;
  }
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekp(static_cast<std::streamoff>(at));
  file.write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  QF_CHECK(file.good(), "cannot patch", path);
}

inline std::vector<uint8_t> read_out_tensor(const std::string& dir, const std::string& name) {
  formats::CheckpointDir ckpt(dir);
  const formats::SafetensorsReader* shard = nullptr;
  const auto& info = ckpt.tensor(name, &shard);
  return shard->read_tensor(info);
}

inline std::vector<uint8_t> f32_bytes(float x) {
  std::vector<uint8_t> b(4);
  std::memcpy(b.data(), &x, 4);
  return b;
}

inline void edit_json(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = formats::read_json_file(path);
  edit(j);
  formats::write_file_atomic(path, j.dump(2) + "\n");
}

}  // namespace qf::test
