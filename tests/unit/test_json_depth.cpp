// Deeply nested JSON is refused with a message naming the file, wherever quantforge parses
// JSON: config.json / index / any JSON file, safetensors headers, calibration JSONL and text
// JSONL lines (issue 18: 200,000 nested '[' used to overflow the stack in a later deep copy).
#include <cstdlib>
#include <string>

#include "calibrate/calibration_data.hpp"
#include "catch_compat.hpp"
#include "error_test_util.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/safetensors_reader.hpp"
#include "formats_test_util.hpp"
#include "tokenizer/text_calibration.hpp"
#include "tokenizer/tokenizer.hpp"

using namespace qf;
using qf::formats::test::TempDir;
using qf::formats::test::u64_le;
using qf::formats::test::write_bytes;
using qf::test::contains;
using qf::test::error_of;

namespace {

std::string nested(int depth, const std::string& inner = "1") {
  return std::string(size_t(depth), '[') + inner + std::string(size_t(depth), ']');
}

void require_depth_error(const std::string& message, const std::string& file) {
  INFO(message);
  CHECK(contains(message, file));
  CHECK(contains(message, "nested deeper than"));
}

}  // namespace

TEST_CASE("parse_json_strict: the depth limit is exact", "[json]") {
  const int limit = formats::kMaxJsonDepth;
  CHECK_NOTHROW(formats::parse_json_strict(nested(limit), "ok.json"));
  require_depth_error(error_of([&] { formats::parse_json_strict(nested(limit + 1), "x.json"); }),
                      "x.json");
  // Objects count like arrays.
  std::string objects;
  for (int i = 0; i <= limit; ++i) objects += "{\"a\":";
  objects += "1" + std::string(size_t(limit + 1), '}');
  require_depth_error(error_of([&] { formats::parse_json_strict(objects, "o.json"); }), "o.json");
}

TEST_CASE("200,000 nested arrays in every JSON input: an error, no crash", "[json]") {
  TempDir tmp;
  const std::string deep = nested(200000);
  SECTION("a JSON file (config.json)") {
    write_bytes(tmp.file("config.json"), "{\"model_type\": \"deepseek_v4\", \"x\": " + deep + "}");
    require_depth_error(error_of([&] { formats::read_json_file(tmp.file("config.json")); }),
                        "config.json");
  }
  SECTION("a safetensors header") {
    const std::string header = "{\"__metadata__\": " + deep + "}";
    write_bytes(tmp.file("m.safetensors"), u64_le(header.size()) + header);
    require_depth_error(
        error_of([&] { formats::SafetensorsReader reader(tmp.file("m.safetensors")); }),
        "m.safetensors");
  }
  SECTION("the index metadata") {
    write_bytes(tmp.file("model.safetensors.index.json"),
                "{\"metadata\": " + deep + ", \"weight_map\": {}}");
    require_depth_error(error_of([&] { formats::CheckpointDir dir(tmp.path()); }),
                        "model.safetensors.index.json");
  }
  SECTION("a calibration JSONL line") {
    write_bytes(tmp.file("calib.jsonl"), "[1, 2, 3]\n{\"input_ids\": " + deep + "}\n");
    require_depth_error(
        error_of([&] { pipeline::load_calibration_set(tmp.file("calib.jsonl"), 2, 3, 100); }),
        "calib.jsonl");
  }
  SECTION("a text dataset line") {
    const char* src = std::getenv("QF_SOURCE_DIR");
    REQUIRE(src != nullptr);
    const auto tok = tokenizer::Tokenizer::load(
        std::string(src) + "/tests/fixtures/tokenizer/deepseek_like.tokenizer.json");
    write_bytes(tmp.file("text.jsonl"), "{\"text\": " + deep + "}\n");
    tokenizer::TextCalibrationOptions options;
    options.sources = {tokenizer::parse_text_source(tmp.file("text.jsonl"))};
    options.seq_len = 4;
    options.samples = 1;
    require_depth_error(error_of([&] { tokenizer::build_text_calibration(tok, options); }),
                        "text.jsonl");
  }
}
