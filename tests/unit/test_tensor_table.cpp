// checkpoint_tensors(): names, dtypes and shapes per layer type (tiny), scale pairing, the BF16
// form, the real V4-Flash / V4-Pro totals, and agreement with transformers' save_pretrained.
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "catch_compat.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "model/config.hpp"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"

using namespace qf;
using model::ModelTensor;
using model::TensorRole;
using model::WeightFormat;

namespace {

std::map<std::string, const ModelTensor*> by_name(const std::vector<ModelTensor>& tensors) {
  std::map<std::string, const ModelTensor*> map;
  for (const auto& t : tensors) map[t.spec.name] = &t;
  return map;
}

// Checks one tensor's dtype and shape (and that it exists).
void check_tensor(const std::map<std::string, const ModelTensor*>& map, const std::string& name,
                  DType dtype, std::vector<int64_t> shape) {
  INFO("tensor " << name);
  const auto it = map.find(name);
  REQUIRE(it != map.end());
  CHECK(dtype_name(it->second->spec.dtype) == std::string(dtype_name(dtype)));
  CHECK(it->second->spec.shape == shape);
}

// Every FP8/FP4 weight is directly followed by exactly one scale of the right shape and dtype.
void check_scale_pairing(const model::ModelConfig& c, const std::vector<ModelTensor>& tensors) {
  std::set<std::string> names, scales_seen;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const ModelTensor& t = tensors[i];
    INFO("tensor " << t.spec.name);
    REQUIRE(names.insert(t.spec.name).second);  // unique
    if (t.role == TensorRole::kFp8Weight || t.role == TensorRole::kFp4Weight) {
      REQUIRE(i + 1 < tensors.size());
      const ModelTensor& s = tensors[i + 1];
      CHECK(t.scale_name == s.spec.name);
      const std::string base = strip_suffix(t.spec.name, model::kWeightSuffix);
      CHECK(t.spec.name == base + ".weight");
      CHECK(s.spec.name == base + ".scale");
      if (t.role == TensorRole::kFp8Weight) {
        CHECK(t.spec.dtype == DType::kF8E4M3);
        CHECK(t.spec.shape == std::vector<int64_t>{t.n_rows, t.n_cols});
        CHECK(s.role == TensorRole::kFp8Scale);
        CHECK(s.spec.dtype == (c.experts_fp4() ? DType::kF8E8M0 : DType::kF32));
        CHECK(s.spec.shape == std::vector<int64_t>{(t.n_rows + 127) / 128, (t.n_cols + 127) / 128});
      } else {
        CHECK(t.spec.dtype == DType::kI8);
        CHECK(t.spec.shape == std::vector<int64_t>{t.n_rows, t.n_cols / 2});
        CHECK(s.role == TensorRole::kFp4Scale);
        CHECK(s.spec.dtype == DType::kF8E8M0);
        CHECK(s.spec.shape == std::vector<int64_t>{t.n_rows, t.n_cols / 32});
      }
      scales_seen.insert(s.spec.name);
    } else if (t.role == TensorRole::kFp8Scale || t.role == TensorRole::kFp4Scale) {
      CHECK(scales_seen.count(t.spec.name) == 1);  // only as the pair of the previous weight
    } else {
      CHECK(t.scale_name.empty());
    }
  }
}

}  // namespace

TEST_CASE("tiny native table: every layer type", "[tensor_table]") {
  const model::ModelConfig c = model::preset_config("tiny");
  const auto tensors = model::checkpoint_tensors(c, WeightFormat::kNative);
  const auto map = by_name(tensors);
  check_scale_pairing(c, tensors);

  // Globals.
  check_tensor(map, "embed.weight", DType::kBF16, {1024, 256});
  check_tensor(map, "head.weight", DType::kBF16, {1024, 256});
  check_tensor(map, "norm.weight", DType::kBF16, {256});
  check_tensor(map, "hc_head_fn", DType::kF32, {4, 1024});
  check_tensor(map, "hc_head_base", DType::kF32, {4});
  check_tensor(map, "hc_head_scale", DType::kF32, {1});
  // Layer 0: sliding + hash. Attention with partial 128x128 tiles.
  check_tensor(map, "layers.0.attn.wq_a.weight", DType::kF8E4M3, {192, 256});
  check_tensor(map, "layers.0.attn.wq_a.scale", DType::kF8E8M0, {2, 2});
  check_tensor(map, "layers.0.attn.q_norm.weight", DType::kBF16, {192});
  check_tensor(map, "layers.0.attn.wq_b.weight", DType::kF8E4M3, {256, 192});
  check_tensor(map, "layers.0.attn.wkv.weight", DType::kF8E4M3, {64, 256});
  check_tensor(map, "layers.0.attn.wkv.scale", DType::kF8E8M0, {1, 2});
  check_tensor(map, "layers.0.attn.kv_norm.weight", DType::kBF16, {64});
  check_tensor(map, "layers.0.attn.wo_a.weight", DType::kF8E4M3, {192, 128});
  check_tensor(map, "layers.0.attn.wo_a.scale", DType::kF8E8M0, {2, 1});
  check_tensor(map, "layers.0.attn.wo_b.weight", DType::kF8E4M3, {256, 192});
  check_tensor(map, "layers.0.attn.attn_sink", DType::kF32, {4});
  CHECK(map.count("layers.0.attn.compressor.wkv.weight") == 0);
  check_tensor(map, "layers.0.ffn.gate.weight", DType::kBF16, {8, 256});
  check_tensor(map, "layers.0.ffn.gate.tid2eid", DType::kI64, {1024, 2});
  CHECK(map.count("layers.0.ffn.gate.bias") == 0);
  check_tensor(map, "layers.0.ffn.shared_experts.w1.weight", DType::kF8E4M3, {96, 256});
  check_tensor(map, "layers.0.ffn.shared_experts.w2.scale", DType::kF8E8M0, {2, 1});
  check_tensor(map, "layers.0.ffn.experts.7.w1.weight", DType::kI8, {96, 128});
  check_tensor(map, "layers.0.ffn.experts.7.w1.scale", DType::kF8E8M0, {96, 8});
  check_tensor(map, "layers.0.ffn.experts.7.w2.weight", DType::kI8, {256, 48});
  check_tensor(map, "layers.0.ffn.experts.7.w2.scale", DType::kF8E8M0, {256, 3});
  CHECK(map.count("layers.0.ffn.experts.8.w1.weight") == 0);
  check_tensor(map, "layers.0.attn_norm.weight", DType::kBF16, {256});
  check_tensor(map, "layers.0.ffn_norm.weight", DType::kBF16, {256});
  check_tensor(map, "layers.0.hc_attn_fn", DType::kF32, {24, 1024});
  check_tensor(map, "layers.0.hc_ffn_base", DType::kF32, {24});
  check_tensor(map, "layers.0.hc_ffn_scale", DType::kF32, {3});
  // Layer 1: CSA (overlapping compressor, indexer) + hash.
  check_tensor(map, "layers.1.attn.compressor.wkv.weight", DType::kBF16, {128, 256});
  check_tensor(map, "layers.1.attn.compressor.wgate.weight", DType::kBF16, {128, 256});
  check_tensor(map, "layers.1.attn.compressor.ape", DType::kF32, {4, 128});
  check_tensor(map, "layers.1.attn.compressor.norm.weight", DType::kBF16, {64});
  check_tensor(map, "layers.1.attn.indexer.wq_b.weight", DType::kF8E4M3, {256, 192});
  check_tensor(map, "layers.1.attn.indexer.wq_b.scale", DType::kF8E8M0, {2, 2});
  check_tensor(map, "layers.1.attn.indexer.weights_proj.weight", DType::kBF16, {4, 256});
  check_tensor(map, "layers.1.attn.indexer.compressor.wkv.weight", DType::kBF16, {128, 256});
  check_tensor(map, "layers.1.attn.indexer.compressor.ape", DType::kF32, {4, 128});
  check_tensor(map, "layers.1.attn.indexer.compressor.norm.weight", DType::kBF16, {64});
  check_tensor(map, "layers.1.ffn.gate.tid2eid", DType::kI64, {1024, 2});
  // Layer 2: HCA (no overlap, no indexer), score-routed.
  check_tensor(map, "layers.2.attn.compressor.wkv.weight", DType::kBF16, {64, 256});
  check_tensor(map, "layers.2.attn.compressor.ape", DType::kF32, {128, 64});
  CHECK(map.count("layers.2.attn.indexer.wq_b.weight") == 0);
  check_tensor(map, "layers.2.ffn.gate.bias", DType::kF32, {8});
  CHECK(map.count("layers.2.ffn.gate.tid2eid") == 0);
  // MTP: sliding block + e/h projections, own norms and hc head; never hash-routed.
  check_tensor(map, "mtp.0.e_proj.weight", DType::kF8E4M3, {256, 256});
  check_tensor(map, "mtp.0.e_proj.scale", DType::kF8E8M0, {2, 2});
  check_tensor(map, "mtp.0.h_proj.weight", DType::kF8E4M3, {256, 256});
  check_tensor(map, "mtp.0.enorm.weight", DType::kBF16, {256});
  check_tensor(map, "mtp.0.hnorm.weight", DType::kBF16, {256});
  check_tensor(map, "mtp.0.norm.weight", DType::kBF16, {256});
  check_tensor(map, "mtp.0.hc_head_fn", DType::kF32, {4, 1024});
  check_tensor(map, "mtp.0.ffn.gate.bias", DType::kF32, {8});
  check_tensor(map, "mtp.0.ffn.experts.0.w3.weight", DType::kI8, {96, 128});
  CHECK(map.count("mtp.0.attn.compressor.wkv.weight") == 0);
  CHECK(map.count("mtp.0.embed.weight") == 0);

  // Bookkeeping fields.
  const ModelTensor& expert = *map.at("layers.3.ffn.experts.5.w2.weight");
  CHECK(expert.layer == 3);
  CHECK(expert.expert == 5);
  CHECK_FALSE(expert.is_mtp);
  CHECK(expert.n_rows == 256);
  CHECK(expert.n_cols == 96);
  const ModelTensor& mtp = *map.at("mtp.0.attn.wq_a.weight");
  CHECK(mtp.layer == 4);
  CHECK(mtp.is_mtp);
  CHECK(map.at("embed.weight")->layer == -1);
  CHECK(tensors.front().spec.name == "embed.weight");

  // Counts: 6 globals; 29 per sliding layer, +11 CSA, +4 HCA; 6 per routed expert; +10 MTP.
  const size_t expected = 6 + (29 + 48) + (40 + 48) + (33 + 48) + (40 + 48) + (39 + 48);
  CHECK(tensors.size() == expected);
}

TEST_CASE("bf16 table: same names, quantized weights as BF16, no scales", "[tensor_table]") {
  const model::ModelConfig c = model::preset_config("tiny");
  const auto native = model::checkpoint_tensors(c, WeightFormat::kNative);
  const auto bf16 = model::checkpoint_tensors(c, WeightFormat::kBf16);
  const auto map = by_name(bf16);
  size_t n_native_weights = 0;
  for (const auto& t : native) {
    INFO("tensor " << t.spec.name);
    if (t.role == TensorRole::kFp8Scale || t.role == TensorRole::kFp4Scale) {
      CHECK(map.count(t.spec.name) == 0);
      continue;
    }
    ++n_native_weights;
    REQUIRE(map.count(t.spec.name) == 1);
    const ModelTensor& b = *map.at(t.spec.name);
    CHECK(b.role == TensorRole::kPlain);
    CHECK(b.native_role == t.role);
    CHECK(b.scale_name.empty());
    if (t.role == TensorRole::kPlain) {
      CHECK(b.spec.dtype == t.spec.dtype);
      CHECK(b.spec.shape == t.spec.shape);
    } else {
      CHECK(b.spec.dtype == DType::kBF16);
      CHECK(b.spec.shape == std::vector<int64_t>{t.n_rows, t.n_cols});
    }
  }
  CHECK(bf16.size() == n_native_weights);
  CHECK(model::total_params(bf16) == model::total_params(native));
}

TEST_CASE("V4-Flash: tensor counts, expert parameters, shapes of the released files",
          "[tensor_table]") {
  const model::ModelConfig c = model::preset_config("v4-flash");
  const auto tensors = model::checkpoint_tensors(c, WeightFormat::kNative);
  check_scale_pairing(c, tensors);
  // 6 + 43*29 + 21*11 + 20*4 + 43*256*6 + (39 + 256*6) for mtp.0.
  CHECK(tensors.size() == 69187);
  // FORMATS.md §6: 43*256*3*4096*2048 ~ 277 B routed-expert parameters.
  CHECK(model::routed_expert_params(tensors) == 43ull * 256 * 3 * 4096 * 2048);
  // ~284 B parameters without MTP, as announced.
  const uint64_t params = model::total_params(tensors);
  CHECK(params == 290944616402ull);
  const auto map = by_name(tensors);
  // Shapes as listed from the released safetensors headers.
  check_tensor(map, "layers.0.attn.wq_b.weight", DType::kF8E4M3, {32768, 1024});
  check_tensor(map, "layers.0.attn.wq_b.scale", DType::kF8E8M0, {256, 8});
  check_tensor(map, "layers.0.attn.wo_a.weight", DType::kF8E4M3, {8192, 4096});
  check_tensor(map, "layers.0.attn.wo_a.scale", DType::kF8E8M0, {64, 32});
  check_tensor(map, "layers.0.attn.wkv.scale", DType::kF8E8M0, {4, 32});
  check_tensor(map, "layers.2.attn.compressor.ape", DType::kF32, {4, 1024});
  check_tensor(map, "layers.2.attn.indexer.wq_b.weight", DType::kF8E4M3, {8192, 1024});
  check_tensor(map, "layers.2.attn.indexer.wq_b.scale", DType::kF8E8M0, {64, 8});
  check_tensor(map, "layers.3.attn.compressor.ape", DType::kF32, {128, 512});
  check_tensor(map, "layers.3.attn.compressor.wkv.weight", DType::kBF16, {512, 4096});
  check_tensor(map, "layers.42.ffn.experts.255.w1.weight", DType::kI8, {2048, 2048});
  check_tensor(map, "layers.42.ffn.experts.255.w1.scale", DType::kF8E8M0, {2048, 128});
  check_tensor(map, "layers.42.ffn.experts.255.w2.scale", DType::kF8E8M0, {4096, 64});
  check_tensor(map, "layers.2.ffn.gate.tid2eid", DType::kI64, {129280, 6});
  check_tensor(map, "layers.3.ffn.gate.bias", DType::kF32, {256});
  check_tensor(map, "mtp.0.e_proj.scale", DType::kF8E8M0, {32, 32});
  check_tensor(map, "mtp.0.hc_head_fn", DType::kF32, {4, 16384});
  // By dtype: what inspect prints for the real checkpoint.
  const auto totals = model::totals_by_dtype(tensors);
  CHECK(totals.at(DType::kI8).n_tensors == 44ull * 256 * 3);
  CHECK(totals.at(DType::kI64).n_tensors == 3);
  // ~160 GB: the published size of the Flash repository's safetensors.
  CHECK(model::total_bytes(tensors) == 159609485896ull);
}

TEST_CASE("V4-Pro: tensor counts and ~1.55 T routed-expert parameters", "[tensor_table]") {
  const model::ModelConfig c = model::preset_config("v4-pro");
  const auto tensors = model::checkpoint_tensors(c, WeightFormat::kNative);
  check_scale_pairing(c, tensors);
  CHECK(tensors.size() == 145116);
  CHECK(model::routed_expert_params(tensors) == 61ull * 384 * 3 * 7168 * 3072);
  // A public recount of the released Pro headers gives 1598.84 B in total.
  const uint64_t params = model::total_params(tensors);
  CHECK(params > 1598.80e9);
  CHECK(params < 1598.88e9);
  CHECK(model::total_bytes(tensors) == 864704792696ull);  // ~865 GB
  const auto map = by_name(tensors);
  check_tensor(map, "layers.0.attn.compressor.wkv.weight", DType::kBF16, {512, 7168});
  check_tensor(map, "layers.2.attn.compressor.wkv.weight", DType::kBF16, {1024, 7168});
  check_tensor(map, "layers.0.attn.wkv.scale", DType::kF8E8M0, {4, 56});
  check_tensor(map, "layers.0.attn.wo_a.weight", DType::kF8E4M3, {16384, 4096});
  check_tensor(map, "layers.0.attn.wo_a.scale", DType::kF8E8M0, {128, 32});
  check_tensor(map, "layers.0.attn.wo_b.scale", DType::kF8E8M0, {56, 128});
  check_tensor(map, "layers.0.attn.wq_a.scale", DType::kF8E8M0, {12, 56});
  check_tensor(map, "layers.60.attn.indexer.wq_b.scale", DType::kF8E8M0, {64, 12});
  check_tensor(map, "layers.60.ffn.experts.383.w1.weight", DType::kI8, {3072, 3584});
  check_tensor(map, "layers.60.ffn.experts.383.w1.scale", DType::kF8E8M0, {3072, 224});
  check_tensor(map, "layers.60.ffn.experts.383.w2.scale", DType::kF8E8M0, {7168, 96});
  check_tensor(map, "layers.60.ffn.shared_experts.w1.scale", DType::kF8E8M0, {24, 56});
  check_tensor(map, "mtp.0.e_proj.scale", DType::kF8E8M0, {56, 56});
  check_tensor(map, "hc_head_fn", DType::kF32, {4, 28672});
}

TEST_CASE("fp8 experts (Base checkpoints): block-FP8 experts, F32 scales", "[tensor_table]") {
  model::ModelConfig c = model::preset_config("tiny");
  c.expert_dtype = "fp8";
  const auto tensors = model::checkpoint_tensors(c, WeightFormat::kNative);
  check_scale_pairing(c, tensors);
  const auto map = by_name(tensors);
  check_tensor(map, "layers.0.ffn.experts.0.w1.weight", DType::kF8E4M3, {96, 256});
  check_tensor(map, "layers.0.ffn.experts.0.w1.scale", DType::kF32, {1, 2});
  check_tensor(map, "layers.0.attn.wq_a.scale", DType::kF32, {2, 2});
}

TEST_CASE("matches transformers' save_pretrained names and shapes", "[tensor_table]") {
  const char* dir = std::getenv("QF_SOURCE_DIR");
  const nlohmann::json fixture = formats::read_json_file(
      std::string(dir ? dir : ".") + "/tests/fixtures/transformers_v4_small_saved.json");
  const model::ModelConfig c = model::ModelConfig::from_json(fixture["config"], "fixture");
  // transformers 5.17 writes these names differently from the native checkpoint.
  const std::map<std::string, std::string> renames = {{"embed_tokens.weight", "embed.weight"},
                                                      {"hc_head.hc_fn", "hc_head_fn"},
                                                      {"hc_head.hc_base", "hc_head_base"},
                                                      {"hc_head.hc_scale", "hc_head_scale"}};
  std::map<std::string, std::vector<int64_t>> theirs;
  for (const auto& [name, info] : fixture["tensors"].items()) {
    std::string n = strip_prefix(name, "model.");
    if (renames.count(n)) n = renames.at(n);
    const std::string kv = ".attn.norm.weight";  // native: attn.kv_norm.weight
    if (n.size() > kv.size() && ends_with(n, kv)) {
      n = strip_suffix(n, kv) + ".attn.kv_norm.weight";
    }
    theirs[n] = info["shape"].get<std::vector<int64_t>>();
  }
  std::map<std::string, std::vector<int64_t>> ours;
  for (const auto& t : model::checkpoint_tensors(c, WeightFormat::kBf16)) {
    if (!t.is_mtp) ours[t.spec.name] = t.spec.shape;  // transformers builds no MTP layers
  }
  for (const auto& [name, shape] : ours) {
    INFO("ours " << name);
    REQUIRE(theirs.count(name) == 1);
    CHECK(theirs.at(name) == shape);
  }
  for (const auto& [name, shape] : theirs) {
    INFO("theirs " << name);
    CHECK(ours.count(name) == 1);
  }
}
