// Input scales at the edges of float32 (issue 18 defect 7) and what an --amax-file may name
// (defect 13): every input_scale written is a normal, positive float32; an amax file value that
// would give a zero or subnormal scale is refused naming the module and value, a calibrated one
// is raised with a warning; keys that name no module of the checkpoint are refused.
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "catch_compat.hpp"
#include "error_test_util.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats_test_util.hpp"
#include "job/quantize_checks.hpp"
#include "numerics/nvfp4.hpp"
#include "quantize/input_scales.hpp"
#include "tiny_checkpoint_util.hpp"

using namespace qf;
using namespace qf::pipeline;
using qf::formats::test::TempDir;
using qf::test::contains;
using qf::test::error_of;
using qf::test::write_text;

namespace {

float scale_of(float amax) {
  return numerics::nvfp4_scale_from_amax(amax, numerics::Nvfp4ScaleDivision::kTrueDivide);
}

std::map<std::string, float> every_expert(const QuantizePlan& plan, float amax) {
  std::map<std::string, float> out;
  for (const auto& weight : plan.targets) out[QuantizePlan::module_of(weight)] = amax;
  return out;
}

std::map<int, formats::LayerRecord> records(const QuantizePlan& plan,
                                            const std::map<std::string, float>& amax) {
  std::map<int, formats::LayerRecord> out;
  for (int l = 0; l < plan.config.num_hidden_layers; ++l) {
    out[l] = calib_record_from_amax(plan, l, amax);
  }
  return out;
}

}  // namespace

TEST_CASE("min_input_amax: the boundary of a normal float32 input_scale", "[input_scales]") {
  const float lo = min_input_amax();
  CHECK(lo > 3.1e-35f);
  CHECK(lo < 3.2e-35f);
  CHECK(std::isnormal(scale_of(lo)));
  CHECK_FALSE(std::isnormal(scale_of(std::nextafter(lo, 0.0f))));
  CHECK(scale_of(1e-45f) == 0.0f);  // the reported defect: amax 1e-45 gave input_scale 0
}

TEST_CASE("read_amax_file: finite, >= 0, and 0 or a normal input_scale", "[input_scales]") {
  TempDir tmp;
  const std::string path = tmp.file("amax.json");
  const auto refused = [&](const std::string& text) {
    REQUIRE(write_text(path, text));
    return error_of([&] { read_amax_file(path); });
  };
  CHECK(contains(refused(R"({"layers.0.ffn.experts.1.w1": 1e-45})"),
                 "amax of layers.0.ffn.experts.1.w1 is 1e-45 - below"));
  CHECK(contains(refused(R"({"layers.0.ffn.experts.1.w1": 1e-45})"), "use 0 for a module"));
  CHECK(contains(refused(R"({"m": 3e-36})"), "below"));
  CHECK(contains(refused(R"({"m": -0.5})"), "must be finite in float32 and >= 0"));
  CHECK(contains(refused(R"({"m": 1e39})"), "must be finite in float32"));  // inf as float
  CHECK(contains(refused(R"({"m": "1.0"})"), "value of m is not a number"));
  CHECK(contains(refused(R"({"a\u0000b": -1})"), "amax of a\\x00b is -1"));  // NUL escaped
  CHECK(contains(refused(R"([1, 2])"), "expected a JSON object"));
  REQUIRE(write_text(path, R"({"a": 0, "b": 3.2e-35, "c": 3.4e38})"));
  const auto amax = read_amax_file(path);
  CHECK(amax.at("a") == 0.0f);
  CHECK(amax.at("c") == 3.4e38f);
}

TEST_CASE("compute_input_scales: every scale a normal float32; tiny calibrated amax raised",
          "[input_scales]") {
  TempDir tmp;
  const formats::CheckpointDir source(qf::test::make_tiny_checkpoint(tmp.file("src"), 3));
  const QuantizePlan plan = build_quantize_plan(source, Recipe::kExperts, 1);
  REQUIRE_FALSE(plan.targets.empty());
  SECTION("a calibrated amax too small for a normal scale is raised to min_input_amax") {
    auto amax = every_expert(plan, 1.0f);
    std::string tiny;  // a w2: no w1/w3 sibling whose amax would win
    for (const auto& weight : plan.targets) {
      if (weight.find(".w2.") != std::string::npos) tiny = QuantizePlan::module_of(weight);
    }
    REQUIRE_FALSE(tiny.empty());
    amax[tiny] = 1e-40f;
    auto scales = compute_input_scales(plan, records(plan, amax));
    CHECK(scales.of_module.at(tiny) == scale_of(min_input_amax()));
    for (const auto& [module, scale] : scales.of_module) {
      INFO(module);
      CHECK(std::isnormal(scale));
      CHECK(scale > 0);
    }
  }
  SECTION("huge amax stays finite") {
    const auto scales = compute_input_scales(plan, records(plan, every_expert(plan, 3.4e38f)));
    for (const auto& [module, scale] : scales.of_module) CHECK(std::isfinite(scale));
  }
  SECTION("unseen experts take the fallback; nothing seen at all is an error naming one") {
    auto amax = every_expert(plan, 0.0f);
    CHECK(contains(error_of([&] { compute_input_scales(plan, records(plan, amax)); }),
                   "saw no calibration token"));
  }
}

TEST_CASE("check_amax_modules: keys must be modules of the checkpoint", "[input_scales]") {
  TempDir tmp;
  const formats::CheckpointDir source(qf::test::make_tiny_checkpoint(tmp.file("src"), 3));
  const QuantizePlan plan = build_quantize_plan(source, Recipe::kExperts, 1);
  auto amax = every_expert(plan, 1.0f);
  CHECK(error_of([&] { check_amax_modules(plan, amax, "f.json"); }).empty());
  // The reported defect: a misspelled file ("layer." for "layers.") was "imported".
  std::map<std::string, float> typo;
  for (const auto& [module, value] : amax) typo["layer" + module.substr(6)] = value;
  const std::string message = error_of([&] { check_amax_modules(plan, typo, "f.json"); });
  CHECK(contains(message, "f.json: " + std::to_string(typo.size()) + " of " +
                              std::to_string(typo.size()) + " keys name no module"));
  CHECK(contains(message, "layer.0.ffn.experts.0.w1"));
  CHECK(contains(message, "in all)"));
  // One unknown key among good ones is refused too (it would silently count as unseen).
  auto one_bad = amax;
  one_bad["layers.0.ffn.experts.0.w4"] = 1.0f;
  CHECK(contains(error_of([&] { check_amax_modules(plan, one_bad, "f.json"); }),
                 "1 of " + std::to_string(one_bad.size()) +
                     " keys name no module of the "
                     "checkpoint (no <key>.weight tensor): layers.0.ffn.experts.0.w4"));
  // Modules of the checkpoint the recipe does not quantize: accepted (warning), unless the
  // file names no target at all.
  std::map<std::string, float> attention_only = {{"layers.0.attn.wq_a", 2.0f}};
  CHECK(contains(error_of([&] { check_amax_modules(plan, attention_only, "f.json"); }),
                 "names none of the"));
  attention_only.insert(amax.begin(), amax.end());
  CHECK(error_of([&] { check_amax_modules(plan, attention_only, "f.json"); }).empty());
}
