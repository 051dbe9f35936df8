// validate: a correct experts-recipe export (tests/unit/export_fixture.hpp, built from the
// reference kernels) passes every check; each corrupted copy fails with the named check(s).
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include "catch_compat.hpp"
#include "export_fixture.hpp"
#include "formats/checksum.hpp"
#include "formats/shard_digest.hpp"
#include "formats_test_util.hpp"
#include "validate/validate.hpp"

using namespace qf;
using formats::test::TempDir;
using pipeline::ValidateReport;

namespace {

struct Fixture {
  TempDir dir;
  std::string src = dir.file("src");
  std::string out = dir.file("out");
  Fixture() {
    test::make_fixture_source(src);
    test::build_experts_export(src, out);
  }
};

const Fixture& fixture() {
  static Fixture f;
  return f;
}

// Tensor names of the fixture (tiny preset: 4 regular layers, 8 experts, MTP layer 4).
const std::string kW1 = "layers.1.ffn.experts.2.w1";
const std::string kW3 = "layers.1.ffn.experts.2.w3";
const std::string kW2 = "layers.2.ffn.experts.5.w2";
const std::string kCopied = "layers.0.attn.wq_a.weight";

ValidateReport validate(const std::string& out, const std::string& src = fixture().src) {
  pipeline::ValidateOptions options;
  options.source_dir = src;
  options.out_dir = out;
  options.n_threads = 2;
  return pipeline::validate_export(options);
}

std::string copy_of_export(const TempDir& tmp) {
  const std::string out = tmp.file("out");
  std::filesystem::copy(fixture().out, out, std::filesystem::copy_options::recursive);
  return out;
}

std::set<std::string> failed(const ValidateReport& report) {
  const auto names = report.failed_checks();
  return {names.begin(), names.end()};
}

std::string printed(const ValidateReport& report) {
  std::ostringstream text;
  pipeline::print_validate_report(report, text, 5, 8);
  return text.str();
}

// The check failed and one of its listed failures mentions `needle`.
void require_failure(const ValidateReport& report, const std::string& check,
                     const std::string& needle) {
  INFO(printed(report));
  const auto& c = report.check(check);
  REQUIRE(c.n_fail > 0);
  bool found = false;
  for (const auto& f : c.failures) found = found || f.find(needle) != std::string::npos;
  CHECK(found);
}

}  // namespace

TEST_CASE("validate: the reference export passes every check", "[validate]") {
  const auto report = validate(fixture().out);
  INFO(printed(report));
  REQUIRE(report.passed());
  CHECK(report.recipe == "experts");
  CHECK(report.tensors.size() == 4 * 8 * 3);
  for (const char* name :
       {pipeline::kCheckIndex, pipeline::kCheckInventory, pipeline::kCheckLayout,
        pipeline::kCheckCopies, pipeline::kCheckScales, pipeline::kCheckGlobalScale,
        pipeline::kCheckPairScales, pipeline::kCheckAccuracy, pipeline::kCheckLossless,
        pipeline::kCheckConfig, pipeline::kCheckHfQuantConfig, pipeline::kCheckOtherFiles}) {
    INFO(name);
    CHECK(report.check(name).n_pass > 0);
  }
  CHECK(report.check(pipeline::kCheckPairScales).n_pass == 4 * 8);
  CHECK(report.check(pipeline::kCheckChecksums).note.find("absent") != std::string::npos);
  // No quantforge block in the fixture's hf_quant_config.json: the mode comes from the values.
  CHECK(report.expert_weights.rfind("cast (inferred from ", 0) == 0);
  for (const auto& t : report.tensors) {
    CHECK(t.source == "FP4");
    CHECK(t.n_lossless_blocks == t.n_elems / 32);  // tiny's scales all lie in the window
    CHECK(t.n_exact_blocks == t.n_lossless_blocks);
    CHECK(t.worst_rel == 0.0);
    CHECK(t.input_scale == test::kFixtureInputAmax / 2688.0f);
  }
  CHECK(report.summary().find("PASS") != std::string::npos);
}

TEST_CASE("validate: blocks outside the lossless window are bounded, not exact", "[validate]") {
  // One 32-block of w2 scaled down by 2^20 falls outside the 2^17 window: the cast takes the
  // data-derived fallback, which is lossy but must stay within the bound.
  TempDir tmp;
  const std::string src = tmp.file("src"), out = tmp.file("out");
  std::filesystem::copy(fixture().src, src, std::filesystem::copy_options::recursive);
  auto e8m0 = test::read_out_tensor(src, kW2 + ".scale");
  uint8_t max_byte = 0;
  for (const uint8_t b : e8m0) max_byte = std::max(max_byte, b);
  test::patch_tensor(src, kW2 + ".scale", 0, {uint8_t(max_byte - 20)});
  test::build_experts_export(src, out);
  const auto report = validate(out, src);
  INFO(printed(report));
  REQUIRE(report.passed());
  for (const auto& t : report.tensors) {
    if (t.name == kW2 + ".weight") CHECK(t.n_lossless_blocks + 1 == t.n_elems / 32);
  }
}

TEST_CASE("validate: inventory, layout and index defects", "[validate]") {
  TempDir tmp;
  const std::string out = copy_of_export(tmp);
  SECTION("a missing tensor") {
    test::edit_shard_of(out, kCopied, [](std::vector<test::FixtureTensor>& t) {
      t.erase(std::remove_if(t.begin(), t.end(), [](auto& x) { return x.spec.name == kCopied; }),
              t.end());
    });
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckInventory, "missing " + kCopied);
    CHECK(failed(report) == std::set<std::string>{"inventory", "layout"});
  }
  SECTION("an extra tensor") {
    test::edit_shard_of(out, kCopied, [](std::vector<test::FixtureTensor>& t) {
      t.push_back({{"layers.0.extra.weight", DType::kBF16, {2, 2}}, std::vector<uint8_t>(8, 0)});
    });
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckInventory, "unexpected tensor layers.0.extra.weight");
    CHECK(failed(report) == std::set<std::string>{"inventory", "layout"});
  }
  SECTION("the .scale of a quantized expert left in") {
    test::edit_shard_of(out, kW2 + ".weight", [](std::vector<test::FixtureTensor>& t) {
      t.push_back({{kW2 + ".scale", DType::kF8E8M0, {256, 3}}, std::vector<uint8_t>(768, 127)});
    });
    require_failure(validate(out), pipeline::kCheckInventory, "must be dropped");
  }
  SECTION("index total_size wrong") {
    test::edit_json(out + "/" + formats::kShardIndexFileName, [](nlohmann::json& j) {
      j["metadata"]["total_size"] = j["metadata"]["total_size"].get<uint64_t>() + 1;
    });
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckIndex, "total_size");
    CHECK(failed(report) == std::set<std::string>{"index"});
  }
  SECTION("index weight_map names the wrong shard") {
    test::edit_json(out + "/" + formats::kShardIndexFileName, [](nlohmann::json& j) {
      j["weight_map"][kCopied] = "model-00003-of-00003.safetensors";
    });
    CHECK(failed(validate(out)) == std::set<std::string>{"index"});
  }
}

TEST_CASE("validate: copied bytes, scales and pairs", "[validate]") {
  TempDir tmp;
  const std::string out = copy_of_export(tmp);
  SECTION("a copied tensor with a flipped byte") {
    const auto bytes = test::read_out_tensor(out, kCopied);
    test::patch_tensor(out, kCopied, 100, {uint8_t(bytes[100] ^ 0x10)});
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckCopies,
                    kCopied + " differs from the source at byte 100");
    CHECK(failed(report) == std::set<std::string>{"copies"});
  }
  SECTION("a weight_scale byte NaN") {
    test::patch_tensor(out, kW2 + ".weight_scale", 7, {0x7F});
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckScales, "(NaN)");
    CHECK(failed(report) == std::set<std::string>{"scales"});
  }
  SECTION("a weight_scale byte zero") {
    test::patch_tensor(out, kW2 + ".weight_scale", 3, {0x00});
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckScales, "(zero)");
    CHECK(failed(report) == std::set<std::string>{"scales"});
  }
  SECTION("weight_scale_2 = 0") {
    test::patch_tensor(out, kW2 + ".weight_scale_2", 0, test::f32_bytes(0.0f));
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckScales, kW2);
    CHECK(failed(report) == std::set<std::string>{"scales"});
  }
  SECTION("weight_scale_2 doubled breaks its rule and the bound") {
    const auto s2 = test::read_out_tensor(out, kW2 + ".weight_scale_2");
    float x;
    std::memcpy(&x, s2.data(), 4);
    test::patch_tensor(out, kW2 + ".weight_scale_2", 0, test::f32_bytes(2 * x));
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckGlobalScale, kW2);
    CHECK(failed(report) == std::set<std::string>{"global-scale", "accuracy", "lossless"});
  }
  SECTION("w1/w3 input_scale mismatch") {
    test::patch_tensor(out, kW3 + ".input_scale", 0, test::f32_bytes(3.5f / 2688.0f));
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckPairScales, kW1);
    CHECK(failed(report) == std::set<std::string>{"pair-scales"});
  }
}

TEST_CASE("validate: decoded values", "[validate]") {
  TempDir tmp;
  const std::string out = copy_of_export(tmp);
  const auto packed = test::read_out_tensor(out, kW1 + ".weight");
  SECTION("a nibble flipped in a lossless block") {
    // The first byte whose low nibble has a non-zero magnitude (so the change is visible).
    size_t i = 0;
    while ((packed[i] & 0x7) == 0) ++i;
    test::patch_tensor(out, kW1 + ".weight", i, {uint8_t(packed[i] ^ 0x2)});
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckLossless, kW1 + ".weight: 1 of");
    CHECK(failed(report).count("lossless"));
    CHECK_FALSE(failed(report).count("inventory"));
  }
  SECTION("a block scale one code below what its amax needs") {
    // A block holding a magnitude-6 code (amax = 6s exactly): one E4M3 code lower is beyond
    // round-to-nearest, so the saturation premise of the bound is broken.
    size_t i = 0;
    while ((packed[i] & 0x7) != 0x7 && (packed[i] & 0x70) != 0x70) ++i;
    const size_t block = i / 8;
    const auto scales = test::read_out_tensor(out, kW1 + ".weight_scale");
    test::patch_tensor(out, kW1 + ".weight_scale", block, {uint8_t(scales[block] - 1)});
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckAccuracy, "below amax/6");
  }
  SECTION("the codes of a block zeroed") {
    // Block 0 of row 5 (16 elements = 8 bytes); a block that is all zeros already is skipped.
    size_t at = 5 * 128;
    while (std::all_of(packed.begin() + at, packed.begin() + at + 8,
                       [](uint8_t b) { return (b & 0x77) == 0; }))
      at += 8;
    test::patch_tensor(out, kW1 + ".weight", at, std::vector<uint8_t>(8, 0));
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckAccuracy, "outside the bound");
    CHECK(failed(report) == std::set<std::string>{"accuracy", "lossless"});
    for (const auto& t : report.tensors) {
      if (t.name == kW1 + ".weight") CHECK(t.worst_bound_ratio > 1.0);
    }
  }
}

TEST_CASE("validate: configs, other files, checksums", "[validate]") {
  TempDir tmp;
  const std::string out = copy_of_export(tmp);
  SECTION("quant_method changed to an unknown value") {
    test::edit_json(out + "/config.json",
                    [](nlohmann::json& j) { j["quantization_config"]["quant_method"] = "nvfp4"; });
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckConfig, "quant_method");
    CHECK(failed(report) == std::set<std::string>{"config"});
    CHECK(report.recipe == "experts (inferred from tensors)");
  }
  SECTION("quant_method modelopt declares recipe full, which the tensors do not follow") {
    test::edit_json(out + "/config.json", [](nlohmann::json& j) {
      j["quantization_config"]["quant_method"] = "modelopt";
    });
    const auto report = validate(out);
    CHECK(report.recipe == "full");
    CHECK(failed(report).count("config"));
    CHECK(failed(report).count("inventory"));
  }
  SECTION("a model field changed") {
    test::edit_json(out + "/config.json", [](nlohmann::json& j) { j["vocab_size"] = 1; });
    require_failure(validate(out), pipeline::kCheckConfig, "vocab_size");
  }
  SECTION("hf_quant_config with a different exclude list") {
    test::edit_json(out + "/hf_quant_config.json", [](nlohmann::json& j) {
      j["quantization"]["exclude_modules"].push_back("embed");
    });
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckHfQuantConfig, "exclude_modules");
    CHECK(failed(report) == std::set<std::string>{"hf-quant-config"});
  }
  SECTION("a non-shard file differs") {
    formats::write_file_atomic(out + "/tokenizer.json", "{}\n");
    CHECK(failed(validate(out)) == std::set<std::string>{"other-files"});
  }
  SECTION("checksums file: verified when right, failing when a shard changed") {
    nlohmann::json manifest = nlohmann::json::object();
    for (const auto& entry : std::filesystem::directory_iterator(out)) {
      if (entry.path().extension() != ".safetensors") continue;
      manifest[entry.path().filename().string()] =
          formats::checksum_hex(formats::checksum_file(entry.path().string()).digest);
    }
    formats::write_file_atomic(out + "/" + formats::kChecksumsFileName, manifest.dump(2));
    auto report = validate(out);
    REQUIRE(report.passed());
    CHECK(report.check(pipeline::kCheckChecksums).n_pass == 3);
    const std::string first = manifest.begin().key();
    manifest[first] = "0000000000000000";
    formats::write_file_atomic(out + "/" + formats::kChecksumsFileName, manifest.dump(2));
    report = validate(out);
    require_failure(report, pipeline::kCheckChecksums, first);
    CHECK(failed(report) == std::set<std::string>{"checksums"});
  }
  SECTION(
      "checksums file, version 2 (shard digests from tensor digests): verified, then a "
      "changed tensor byte fails") {
    std::map<std::string, uint64_t> files;
    std::string last;
    for (const auto& entry : std::filesystem::directory_iterator(out)) {
      if (entry.path().extension() != ".safetensors") continue;
      last = entry.path().filename().string();
      files[last] = formats::shard_digest_of_file(entry.path().string());
    }
    formats::write_file_atomic(out + "/" + formats::kChecksumsFileName,
                               formats::checksums_manifest_json(files).dump(2));
    auto report = validate(out);
    REQUIRE(report.passed());
    CHECK(report.check(pipeline::kCheckChecksums).n_pass == 3);
    // The last byte of a shard is tensor data: flip one bit of it.
    const std::string shard = out + "/" + last;
    std::string bytes = formats::read_file_bytes(shard);
    bytes.back() = char(bytes.back() ^ 0x01);
    formats::write_file_atomic(shard, bytes);
    report = validate(out);
    require_failure(report, pipeline::kCheckChecksums, last);
  }
}

// --expert-weights requantize: FP4 experts are not lossless casts. Their weight_scale_2 follows
// the amax/2688 rule, every element the accuracy bound, and no block is meant to be exact. The
// mode is the one hf_quant_config.json's quantforge block declares (absent key = cast), or, for
// an export without that block (ModelOpt's own), the one the weight_scale_2 values follow.
TEST_CASE("validate: requantized FP4 experts", "[validate]") {
  TempDir tmp;
  const std::string out = tmp.file("requantized");
  test::build_experts_export(fixture().src, out, test::FixtureExperts::kRequantize);
  const auto declare = [&](const nlohmann::json* expert_weights) {
    test::edit_json(out + "/hf_quant_config.json", [&](nlohmann::json& j) {
      j["quantforge"] = {{"version", "test"}, {"recipe", "experts"}};
      if (expert_weights) j["quantforge"]["expert_weights"] = *expert_weights;
    });
  };
  const auto check_requantized_report = [](const ValidateReport& report) {
    INFO(printed(report));
    REQUIRE(report.passed());
    CHECK(report.check(pipeline::kCheckGlobalScale).n_pass == 4 * 8 * 3);
    CHECK(report.check(pipeline::kCheckPairScales).n_pass == 4 * 8);
    CHECK(report.check(pipeline::kCheckAccuracy).n_pass == 4 * 8 * 3);
    const auto& lossless = report.check(pipeline::kCheckLossless);
    CHECK(lossless.n_pass + lossless.n_fail + lossless.n_skip == 0);
    CHECK(lossless.note.find("requantized") != std::string::npos);
    for (const auto& t : report.tensors) {
      CHECK(t.n_lossless_blocks == 0);
      CHECK(t.worst_rel > 0.0);  // lossy, unlike the cast of the same source
    }
  };
  SECTION("declared requantize") {
    const nlohmann::json requantize = "requantize";
    declare(&requantize);
    const auto report = validate(out);
    check_requantized_report(report);
    CHECK(report.expert_weights == "requantize");
    CHECK(report.summary().find("expert weights requantize") != std::string::npos);
    CHECK(report.to_json()["expert_weights"] == "requantize");
  }
  SECTION("undeclared (no quantforge block): inferred from weight_scale_2") {
    const auto report = validate(out);
    check_requantized_report(report);
    CHECK(report.expert_weights.rfind("requantize (inferred from layers.0.ffn.experts.0.w1", 0) ==
          0);
  }
  SECTION("declared cast (a quantforge block without the key) but requantized") {
    declare(nullptr);
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckGlobalScale, "mixing cast and requantized");
    CHECK(failed(report).count("global-scale"));
    CHECK(failed(report).count("lossless"));  // the cast's exact blocks are not there
    CHECK(report.expert_weights == "cast");
  }
  SECTION("the cast export declared requantize") {
    const std::string cast_out = copy_of_export(tmp);
    test::edit_json(cast_out + "/hf_quant_config.json", [](nlohmann::json& j) {
      j["quantforge"] = {
          {"version", "test"}, {"recipe", "experts"}, {"expert_weights", "requantize"}};
    });
    const auto report = validate(cast_out);
    require_failure(report, pipeline::kCheckGlobalScale, "mixing cast and requantized");
    CHECK(failed(report) == std::set<std::string>{"global-scale"});
  }
  SECTION("an unknown or explicit-default expert_weights value") {
    for (const nlohmann::json& value : {nlohmann::json("bogus"), nlohmann::json("cast")}) {
      declare(&value);
      const auto report = validate(out);
      INFO(value.dump());
      require_failure(report, pipeline::kCheckHfQuantConfig, "expert_weights");
    }
  }
  SECTION("undeclared and mixed: one pair cast, the rest requantized") {
    const std::string cast_out = copy_of_export(tmp);
    // layers.3 sorts last: the first FP4 target (layers.0...) decides "requantize".
    for (const std::string w : {"layers.3.ffn.experts.7.w1", "layers.3.ffn.experts.7.w3"}) {
      for (const char* suffix : {".weight", ".weight_scale", ".weight_scale_2"}) {
        const auto bytes = test::read_out_tensor(cast_out, w + suffix);
        test::patch_tensor(out, w + suffix, 0, bytes);
      }
    }
    const auto report = validate(out);
    require_failure(report, pipeline::kCheckGlobalScale, "follows the lossless cast");
    CHECK(report.check(pipeline::kCheckGlobalScale).n_fail == 2);
    CHECK(failed(report) == std::set<std::string>{"global-scale"});
  }
}

TEST_CASE("validate: the command exits 0 on a good export and 1 on a bad one", "[validate]") {
  const char* bin = std::getenv("QF_BIN");
  if (!bin) {
    WARN("QF_BIN not set; skipping the command-line test");
    return;
  }
  TempDir tmp;
  const std::string out = copy_of_export(tmp);
  const std::string command = std::string(bin) + " validate --log-level warn --source " +
                              fixture().src + " --out " + out + " > " + tmp.file("log") + " 2>&1";
  CHECK(std::system(command.c_str()) == 0);
  test::patch_tensor(out, kW2 + ".weight_scale", 0, {0xFF});
  const int status = std::system(command.c_str());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  const std::string log = formats::test::read_bytes(tmp.file("log"));
  CHECK(log.find("FAIL") != std::string::npos);
  CHECK(log.find("[scales]") != std::string::npos);
}
