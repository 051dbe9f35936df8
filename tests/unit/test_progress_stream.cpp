// The --progress-json stream: one complete JSON object per line with the common fields
// (v, event, time, t, job), phases naming the previous one, appends across opens (a resumed
// run continues the file), nothing written once closed, and warnings copied from the log.
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/log.hpp"
#include "core/progress_stream.hpp"
#include "error_test_util.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using qf::formats::test::TempDir;

namespace {

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

}  // namespace

TEST_CASE("progress stream: one object per line, common fields, phases, append") {
  TempDir dir;
  const std::string path = dir.file("progress.jsonl");
  {
    ProgressStreamScope scope(path, "quantize");
    CHECK(progress_stream::active());
    progress_stream::emit("start", {{"command", "quantize"}, {"world_size", 2}});
    progress_stream::phase("calibration");
    progress_stream::phase("quantization");
    progress_stream::emit("layer_committed", {{"layer", 3}, {"rank", 1}, {"stage", "quant"}});
  }
  CHECK_FALSE(progress_stream::active());
  progress_stream::emit("ignored");  // closed: a no-op
  auto lines = read_lines(path);
  REQUIRE(lines.size() == 4);
  for (const auto& line : lines) {
    CHECK(line["v"] == kProgressSchemaVersion);
    CHECK(line["job"] == "quantize");
    CHECK(line["time"].get<std::string>().back() == 'Z');
    CHECK(line["t"].get<double>() >= 0);
  }
  CHECK(lines[0]["event"] == "start");
  CHECK(lines[0]["world_size"] == 2);
  CHECK(lines[1]["phase"] == "calibration");
  CHECK(lines[1]["previous"] == "");
  CHECK(lines[2]["previous"] == "calibration");
  CHECK(lines[3]["layer"] == 3);
  {
    ProgressStreamScope scope(path, "quantize");  // a resume appends
    progress_stream::emit("end", {{"status", "ok"}});
  }
  lines = read_lines(path);
  REQUIRE(lines.size() == 5);
  CHECK(lines[4]["event"] == "end");
}

TEST_CASE("progress stream: rank 0's warnings become warning events") {
  TempDir dir;
  const std::string path = dir.file("progress.jsonl");
  {
    ProgressStreamScope scope(path, "dequant");
    log_warn("disk is ", 97, "% full");
  }
  const auto lines = read_lines(path);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0]["event"] == "warning");
  CHECK(lines[0]["message"].get<std::string>().find("97% full") != std::string::npos);
}

TEST_CASE("progress stream: an unopenable path is an error naming it") {
  const std::string message =
      qf::test::error_of([] { progress_stream::open("/nonexistent_dir_qf/p.jsonl", "quantize"); });
  CHECK(qf::test::contains(message, "/nonexistent_dir_qf/p.jsonl"));
}
