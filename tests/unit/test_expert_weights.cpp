// --expert-weights: the option's table, and what each mode makes of the FP4 routed experts.
// requantize = the exact BF16 dequantization quantized to NVFP4 with the weight amax of the w1/w3
// pair (ModelOpt's `_quantize_weight_nvfp4`; the reference is rebuilt here from the kernel
// references); cast = the lossless cast, with its block counts. Other targets do not depend on it.
#include <cmath>
#include <cstring>
#include <string>

#include "catch_compat.hpp"
#include "core/log.hpp"
#include "error_test_util.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats_test_util.hpp"
#include "kernels/dequant.cuh"
#include "kernels/nvfp4_quantize.cuh"
#include "numerics/codecs.hpp"
#include "numerics/nvfp4.hpp"
#include "quantize/expert_weights.hpp"
#include "quantize/quantize_plan.hpp"
#include "quantize/quantize_weights.hpp"
#include "tiny_checkpoint_util.hpp"

using namespace qf;
using namespace qf::pipeline;

namespace {

struct Bf16Weight {
  std::vector<uint16_t> bits;
  float amax = 0;
};

// A FP4 expert weight as ModelOpt's `_dequantize_mxfp4_to_bf16` makes it, and its max |x|.
Bf16Weight dequantize_fp4(const formats::CheckpointDir& source, const NativeTensor& t) {
  REQUIRE(t.kind == StorageKind::kFp4Block);
  const auto packed = source.read_tensor(t.name);
  const auto e8m0 = source.read_tensor(t.scale_name);
  Bf16Weight w;
  w.bits.resize(size_t(t.n_rows * t.n_cols));
  kernels::fp4_block_dequant_ref({packed.data(), e8m0.data(), t.n_rows, t.n_cols, w.bits.data()});
  for (const uint16_t b : w.bits) w.amax = std::max(w.amax, std::fabs(numerics::bf16_to_float(b)));
  return w;
}

const formats::StoredTensor& tensor_of(const formats::LayerRecord& record,
                                       const std::string& name) {
  const auto* t = record.find_tensor(name);
  INFO(name);
  REQUIRE(t != nullptr);
  return *t;
}

float f32_of(const formats::StoredTensor& t) {
  REQUIRE(t.bytes.size() == 4);
  float x;
  std::memcpy(&x, t.bytes.data(), 4);
  return x;
}

}  // namespace

TEST_CASE("--expert-weights: one table for the parser, the names and the help", "[quantize]") {
  const auto& table = expert_weights_modes();
  CHECK(table.parse("cast") == ExpertWeights::kCast);
  CHECK(table.parse("requantize") == ExpertWeights::kRequantize);
  CHECK(std::string(table.name(ExpertWeights::kCast)) == "cast");
  CHECK(std::string(table.name(ExpertWeights::kRequantize)) == "requantize");
  CHECK(table.names() == "cast | requantize");
  const std::string help = table.help("intro:");
  CHECK(help.find("intro:\n  cast: ") == 0);
  CHECK(help.find("\n  requantize: ") != std::string::npos);
  const std::string error = test::error_of([&] { table.parse("requant"); });
  CHECK(error.find("--expert-weights") != std::string::npos);
  CHECK(error.find("'requant'") != std::string::npos);
  CHECK(error.find("cast | requantize") != std::string::npos);
  // The default of every plan is the cast (what --recipe experts has always written).
  formats::test::TempDir dir;
  const formats::CheckpointDir source(test::make_tiny_checkpoint(dir.path() + "/tiny", 3));
  CHECK(build_quantize_plan(source, Recipe::kExperts, 1).expert_weights == ExpertWeights::kCast);
}

TEST_CASE(
    "--expert-weights requantize: FP4 experts are their BF16 values quantized with the "
    "pair's amax",
    "[quantize]") {
  const LogLevel saved_level = log_level();
  set_log_level(LogLevel::kWarn);
  formats::test::TempDir dir;
  const formats::CheckpointDir source(test::make_tiny_checkpoint(dir.path() + "/tiny", 9));
  gpu::Nvfp4OpsPool ops(dist::ComputeBackend::kCpu, 2);
  const QuantizePlan cast = build_quantize_plan(source, Recipe::kFull, 1, ExpertWeights::kCast);
  const QuantizePlan requant =
      build_quantize_plan(source, Recipe::kFull, 1, ExpertWeights::kRequantize);
  REQUIRE(cast.targets == requant.targets);
  int n_fp4 = 0, n_other = 0;
  for (int layer = 0; layer < requant.config.num_hidden_layers; ++layer) {
    QuantizeStats s_cast, s_requant;
    const auto r_cast = quantize_owned_targets(cast, source, layer, 0, &s_cast, ops);
    const auto r_requant = quantize_owned_targets(requant, source, layer, 0, &s_requant, ops);
    CHECK(s_requant.n_blocks_lossless == 0);
    CHECK(s_requant.n_blocks_fallback == 0);
    CHECK(s_cast.n_targets == s_requant.n_targets);
    for (const auto& weight : requant.targets_of_layer(layer)) {
      const NativeTensor& t = requant.tensor(weight);
      const std::string p = QuantizePlan::module_of(weight);
      INFO(weight);
      if (t.kind != StorageKind::kFp4Block) {
        ++n_other;
        for (const char* suffix : {".weight", ".weight_scale", ".weight_scale_2"}) {
          CHECK(tensor_of(r_cast, p + suffix).bytes == tensor_of(r_requant, p + suffix).bytes);
        }
        continue;
      }
      ++n_fp4;
      CHECK(r_cast.i64.count(p + ".cast_blocks") == 1);
      CHECK(r_requant.i64.count(p + ".cast_blocks") == 0);
      // The reference: dequantize, amax over the w1/w3 pair, weight_scale_2 = amax / 2688 (true
      // division, as torch on the CPU), the NVFP4 reference quantizer.
      const Bf16Weight w = dequantize_fp4(source, t);
      float amax = w.amax;
      const auto pair = requant.pair_of.find(weight);
      if (pair != requant.pair_of.end()) {
        amax = std::max(amax, dequantize_fp4(source, requant.tensor(pair->second)).amax);
      }
      CHECK((pair != requant.pair_of.end()) == (weight.find(".w2.") == std::string::npos));
      const float scale_2 =
          numerics::nvfp4_scale_from_amax(amax, numerics::Nvfp4ScaleDivision::kTrueDivide);
      std::vector<uint8_t> packed(w.bits.size() / 2), scale(w.bits.size() / 16);
      uint64_t n_nonfinite = 0;
      kernels::Nvfp4QuantizeParams q;
      q.x = w.bits.data();
      q.n_rows = t.n_rows;
      q.n_cols = t.n_cols;
      q.scale_2 = &scale_2;
      q.packed = packed.data();
      q.scale = scale.data();
      q.n_nonfinite = &n_nonfinite;
      kernels::nvfp4_quantize_ref(q);
      REQUIRE(n_nonfinite == 0);
      CHECK(tensor_of(r_requant, p + ".weight").bytes == packed);
      CHECK(tensor_of(r_requant, p + ".weight_scale").bytes == scale);
      CHECK(numerics::float_to_bits(f32_of(tensor_of(r_requant, p + ".weight_scale_2"))) ==
            numerics::float_to_bits(scale_2));
      // The cast's scale is a power of two; amax/2688 never is (2688 = 21 * 2^7).
      const float cast_scale_2 = f32_of(tensor_of(r_cast, p + ".weight_scale_2"));
      int exponent = 0;
      CHECK(std::frexp(cast_scale_2, &exponent) == 0.5f);
      CHECK(std::frexp(scale_2, &exponent) != 0.5f);
    }
  }
  CHECK(n_fp4 == 3 * 8 * requant.config.num_hidden_layers);
  CHECK(n_other > 0);
  set_log_level(saved_level);
}
