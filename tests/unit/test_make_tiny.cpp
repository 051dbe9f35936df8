// make-tiny: shard placement, the written checkpoint against the tensor table, determinism
// across shard counts, BF16 = exact dequantization of native, scale choice, value sanity.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "catch_compat.hpp"
#include "core/strings.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats_test_util.hpp"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "numerics/codecs.hpp"
#include "synthetic/make_tiny.hpp"
#include "synthetic/synthetic_weights.hpp"
#include "tiny_checkpoint_util.hpp"

using namespace qf;
using formats::test::TempDir;
using model::TensorRole;
using model::WeightFormat;

namespace {

pipeline::MakeTinyOptions tiny_options(const std::string& out, WeightFormat format, int n_shards,
                                       uint64_t seed = 7) {
  return qf::test::tiny_options(out, format, n_shards, seed);
}

std::vector<uint8_t> read_tensor(const formats::CheckpointDir& ckpt, const std::string& name) {
  const formats::SafetensorsReader* shard = nullptr;
  const formats::TensorInfo& info = ckpt.tensor(name, &shard);
  return shard->read_tensor(info);
}

float max_abs_e4m3(const std::vector<uint8_t>& w, int64_t n_cols, int64_t r0, int64_t nr,
                   int64_t c0, int64_t nc) {
  float m = 0.0f;
  for (int64_t r = r0; r < r0 + nr; ++r) {
    for (int64_t c = c0; c < c0 + nc; ++c) {
      m = std::max(m, std::fabs(numerics::e4m3_to_float(w[static_cast<size_t>(r * n_cols + c)])));
    }
  }
  return m;
}

}  // namespace

TEST_CASE("assign_shards: contiguous, non-empty, balanced, scale with its weight", "[make_tiny]") {
  const auto tensors =
      model::checkpoint_tensors(model::preset_config("tiny"), WeightFormat::kNative);
  for (const int n : {1, 2, 3, 4, 7, 64, 100000}) {
    INFO("n_shards " << n);
    const std::vector<int> shard = pipeline::assign_shards(tensors, n);
    REQUIRE(shard.size() == tensors.size());
    CHECK(shard.front() == 0);
    const int used = shard.back() + 1;
    CHECK(used <= n);
    if (n <= 64) CHECK(used == n);
    for (size_t i = 1; i < shard.size(); ++i) {
      CHECK((shard[i] == shard[i - 1] || shard[i] == shard[i - 1] + 1));
      if (!tensors[i - 1].scale_name.empty()) CHECK(shard[i] == shard[i - 1]);
    }
    if (n >= 2 && n <= 4) {
      std::vector<uint64_t> bytes(static_cast<size_t>(used), 0);
      for (size_t i = 0; i < tensors.size(); ++i)
        bytes[static_cast<size_t>(shard[i])] += tensors[i].spec.n_bytes();
      const uint64_t total = model::total_bytes(tensors);
      for (const uint64_t b : bytes) CHECK(b < 2 * total / static_cast<uint64_t>(n) + 600000);
    }
  }
}

TEST_CASE("pow2_scale_exponent picks the smallest fitting power of two", "[make_tiny]") {
  CHECK(pipeline::pow2_scale_exponent(448.0f, 448.0f) == 0);
  CHECK(pipeline::pow2_scale_exponent(448.1f, 448.0f) == 1);
  CHECK(pipeline::pow2_scale_exponent(224.0f, 448.0f) == -1);
  CHECK(pipeline::pow2_scale_exponent(6.0f, 6.0f) == 0);
  CHECK(pipeline::pow2_scale_exponent(0.1f, 6.0f) == -5);  // 6/32 = 0.1875 >= 0.1 > 0.09375
  CHECK(pipeline::pow2_scale_exponent(0.0f, 6.0f) == 0);
}

TEST_CASE("tiny native checkpoint: table, index, config, scales, values", "[make_tiny]") {
  TempDir tmp;
  const std::string out = tmp.file("tiny");
  const auto t0 = std::chrono::steady_clock::now();
  const auto result = pipeline::make_tiny(tiny_options(out, WeightFormat::kNative, 3));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN("make-tiny tiny: " << seconds << " s, " << result.n_bytes << " bytes");
  CHECK(seconds < 5.0);
  CHECK(result.shard_files.size() == 3);
  CHECK_FALSE(std::filesystem::exists(out + ".tmp." + std::to_string(::getpid())));

  const formats::CheckpointDir ckpt(out);
  const model::ModelConfig config = model::ModelConfig::load(out + "/config.json");
  CHECK(config.to_json() == model::preset_config("tiny").to_json());
  const auto table = model::checkpoint_tensors(config, WeightFormat::kNative);
  CHECK(ckpt.tensor_names().size() == table.size());
  for (const auto& t : table) {
    INFO("tensor " << t.spec.name);
    const formats::TensorInfo& info = ckpt.tensor(t.spec.name);
    CHECK(info.dtype == t.spec.dtype);
    CHECK(info.shape == t.spec.shape);
  }
  CHECK(ckpt.index().metadata["total_size"].get<uint64_t>() == model::total_bytes(table));
  CHECK(ckpt.index().shard_files() == std::vector<std::string>{"model-00001-of-00003.safetensors",
                                                               "model-00002-of-00003.safetensors",
                                                               "model-00003-of-00003.safetensors"});

  // Each FP8 tile / FP4 block scale is the smallest power of two that fits the amax, so the
  // largest code of a tile is >= half the format maximum.
  for (size_t i = 0; i < table.size(); ++i) {
    const auto& t = table[i];
    if (t.role == TensorRole::kFp8Weight) {
      INFO("fp8 " << t.spec.name);
      const auto w = read_tensor(ckpt, t.spec.name);
      const auto s = read_tensor(ckpt, t.scale_name);
      for (int64_t tr = 0; tr * 128 < t.n_rows; ++tr) {
        for (int64_t tc = 0; tc * 128 < t.n_cols; ++tc) {
          const float m =
              max_abs_e4m3(w, t.n_cols, tr * 128, std::min<int64_t>(128, t.n_rows - tr * 128),
                           tc * 128, std::min<int64_t>(128, t.n_cols - tc * 128));
          CHECK(m >= 224.0f);
          CHECK(m <= 448.0f);
          const uint8_t e = s[static_cast<size_t>(tr * ((t.n_cols + 127) / 128) + tc)];
          CHECK(e != 0xFF);
        }
      }
    } else if (t.role == TensorRole::kFp4Weight) {
      INFO("fp4 " << t.spec.name);
      const auto w = read_tensor(ckpt, t.spec.name);
      for (int64_t r = 0; r < t.n_rows; ++r) {
        for (int64_t b = 0; b < t.n_cols / 32; ++b) {
          float m = 0.0f;
          for (int64_t j = 0; j < 16; ++j) {
            const uint8_t byte = w[static_cast<size_t>(r * t.n_cols / 2 + b * 16 + j)];
            m = std::max({m, std::fabs(numerics::e2m1_to_float(byte & 0xF)),
                          std::fabs(numerics::e2m1_to_float(byte >> 4))});
          }
          CHECK(m >= 3.0f);
        }
      }
    }
  }

  // tid2eid: top-k distinct experts per token.
  const auto tid = read_tensor(ckpt, "layers.0.ffn.gate.tid2eid");
  std::vector<int64_t> ids(tid.size() / 8);
  std::memcpy(ids.data(), tid.data(), tid.size());
  std::set<int64_t> used;
  for (size_t v = 0; v < ids.size(); v += 2) {
    CHECK(ids[v] != ids[v + 1]);
    CHECK((ids[v] >= 0 && ids[v] < 8 && ids[v + 1] >= 0 && ids[v + 1] < 8));
    used.insert(ids[v]);
  }
  CHECK(used.size() == 8);

  // Norms are ~1.
  const auto norm = read_tensor(ckpt, "layers.1.attn_norm.weight");
  double sum = 0.0;
  for (size_t i = 0; i < norm.size(); i += 2) {
    uint16_t bits;
    std::memcpy(&bits, &norm[i], 2);
    sum += numerics::bf16_to_float(bits);
  }
  CHECK(std::fabs(sum / (norm.size() / 2) - 1.0) < 0.05);
}

TEST_CASE("values do not depend on the shard count; the seed changes them", "[make_tiny]") {
  TempDir tmp;
  pipeline::make_tiny(tiny_options(tmp.file("a"), WeightFormat::kNative, 1));
  pipeline::make_tiny(tiny_options(tmp.file("b"), WeightFormat::kNative, 5));
  pipeline::make_tiny(tiny_options(tmp.file("c"), WeightFormat::kNative, 1, 8));
  const formats::CheckpointDir a(tmp.file("a")), b(tmp.file("b")), c(tmp.file("c"));
  CHECK(a.shard_files().size() == 1);
  CHECK(b.shard_files().size() == 5);
  size_t n_same_seed_differs = 0, n_other_seed_same = 0;
  for (const auto& name : a.tensor_names()) {
    const auto bytes = read_tensor(a, name);
    n_same_seed_differs += bytes != read_tensor(b, name);
    // Tile scales may coincide across seeds; every value tensor must not.
    const bool is_scale = ends_with(name, model::kScaleSuffix);
    if (!is_scale) n_other_seed_same += bytes == read_tensor(c, name);
  }
  CHECK(n_same_seed_differs == 0);
  CHECK(n_other_seed_same == 0);
}

TEST_CASE("bf16 checkpoint is the exact dequantization of the native one", "[make_tiny]") {
  TempDir tmp;
  pipeline::make_tiny(tiny_options(tmp.file("n"), WeightFormat::kNative, 2));
  pipeline::make_tiny(tiny_options(tmp.file("b"), WeightFormat::kBf16, 3));
  const formats::CheckpointDir native(tmp.file("n")), bf16(tmp.file("b"));
  const model::ModelConfig config = model::ModelConfig::load(tmp.file("b") + "/config.json");
  CHECK_FALSE(config.has_quantization_config());
  for (const auto& t : model::checkpoint_tensors(config, WeightFormat::kNative)) {
    INFO("tensor " << t.spec.name);
    if (t.role == TensorRole::kFp8Scale || t.role == TensorRole::kFp4Scale) {
      CHECK_FALSE(bf16.has_tensor(t.spec.name));
      continue;
    }
    const auto got = read_tensor(bf16, t.spec.name);
    const auto w = read_tensor(native, t.spec.name);
    if (t.role == TensorRole::kPlain) {
      CHECK(got == w);
      continue;
    }
    const auto s = read_tensor(native, t.scale_name);
    std::vector<uint16_t> want(static_cast<size_t>(t.n_rows * t.n_cols));
    for (int64_t r = 0; r < t.n_rows; ++r) {
      for (int64_t c = 0; c < t.n_cols; ++c) {
        const size_t i = static_cast<size_t>(r * t.n_cols + c);
        if (t.role == TensorRole::kFp8Weight) {
          const uint8_t e = s[static_cast<size_t>((r / 128) * ((t.n_cols + 127) / 128) + c / 128)];
          want[i] = numerics::fp8_block_to_bf16(w[i], numerics::e8m0_to_float(e));
        } else {
          const uint8_t byte = w[i / 2];
          const uint8_t code = (c % 2) ? (byte >> 4) : (byte & 0xF);
          const uint8_t e = s[static_cast<size_t>(r * (t.n_cols / 32) + c / 32)];
          want[i] = numerics::fp4_to_bf16(code, numerics::e8m0_to_float(e));
        }
      }
    }
    REQUIRE(got.size() == want.size() * 2);
    CHECK(std::memcmp(got.data(), want.data(), got.size()) == 0);
  }
}

TEST_CASE("the output directory is never overwritten by accident", "[make_tiny]") {
  TempDir tmp;
  const std::string out = tmp.file("ckpt");
  std::filesystem::create_directories(out);  // an empty directory is fine
  pipeline::make_tiny(tiny_options(out, WeightFormat::kNative, 2));
  CHECK_THROWS_AS(pipeline::make_tiny(tiny_options(out, WeightFormat::kBf16, 2)), Error);
  CHECK(model::ModelConfig::load(out + "/config.json").has_quantization_config());
  auto forced = tiny_options(out, WeightFormat::kBf16, 2);
  forced.force = true;
  pipeline::make_tiny(forced);
  CHECK_FALSE(model::ModelConfig::load(out + "/config.json").has_quantization_config());
  formats::test::write_bytes(tmp.file("file"), "x");
  CHECK_THROWS_AS(pipeline::make_tiny(tiny_options(tmp.file("file"), WeightFormat::kNative, 1)),
                  Error);
}

TEST_CASE("fp8-expert (Base) configs: block-FP8 experts with F32 scales", "[make_tiny]") {
  TempDir tmp;
  auto native = tiny_options(tmp.file("n"), WeightFormat::kNative, 2);
  native.config.expert_dtype = "fp8";
  pipeline::make_tiny(native);
  auto bf16 = native;
  bf16.format = WeightFormat::kBf16;
  bf16.out_dir = tmp.file("b");
  pipeline::make_tiny(bf16);
  const formats::CheckpointDir n(tmp.file("n")), b(tmp.file("b"));
  const auto table = model::checkpoint_tensors(native.config, WeightFormat::kNative);
  CHECK(n.tensor_names().size() == table.size());
  CHECK(n.tensor("layers.0.ffn.experts.0.w1.weight").dtype == DType::kF8E4M3);
  CHECK(n.tensor("layers.0.ffn.experts.0.w1.scale").dtype == DType::kF32);
  // BF16 = float32 product of code and F32 scale, rounded once (what dequant computes).
  const auto w = read_tensor(n, "layers.0.ffn.experts.0.w1.weight");
  const auto s = read_tensor(n, "layers.0.ffn.experts.0.w1.scale");
  const auto got = read_tensor(b, "layers.0.ffn.experts.0.w1.weight");
  float scale0;
  std::memcpy(&scale0, s.data(), 4);
  CHECK(scale0 > 0.0f);
  uint16_t first;
  std::memcpy(&first, got.data(), 2);
  CHECK(first == numerics::fp8_block_to_bf16(w[0], scale0));
}
