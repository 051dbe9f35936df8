// Calibration token sets: safetensors (2-D rows, 1-D stream) and JSONL files, their errors
// (naming file and line), the synthetic set's determinism and spread, and the rank split.
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "calibrate/calibration_data.hpp"
#include "catch_compat.hpp"
#include "core/check.hpp"
#include "error_test_util.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats_test_util.hpp"
#include "model/presets.hpp"

using namespace qf;
using formats::test::TempDir;
using pipeline::CalibrationSet;
using pipeline::load_calibration_set;

namespace {

using qf::test::contains;
using qf::test::error_of;

#define REQUIRE_WRITE_TEXT(path, text) REQUIRE(qf::test::write_text(path, text))

// A safetensors file with one integer tensor `name` holding 0, 1, 2, ... (x step).
void write_ids(const std::string& path, const std::string& name, DType dtype,
               std::vector<int64_t> shape, int64_t step = 1) {
  formats::TensorSpec spec{name, dtype, shape};
  formats::SafetensorsWriter writer(path, {spec});
  const uint64_t n = spec.n_elems();
  for (uint64_t i = 0; i < n; ++i) {
    const int64_t v = static_cast<int64_t>(i) * step;
    if (dtype == DType::kI64) {
      writer.append(&v, 8);
    } else if (dtype == DType::kI32) {
      const int32_t v32 = static_cast<int32_t>(v);
      writer.append(&v32, 4);
    } else {
      const float f = static_cast<float>(v);
      writer.append(&f, 4);
    }
  }
  writer.commit();
}

}  // namespace

TEST_CASE("safetensors 2-D input_ids: rows cut to seq_len, I32 and I64", "[calib_data]") {
  TempDir tmp;
  for (const DType dtype : {DType::kI64, DType::kI32}) {
    const std::string path = tmp.file(std::string("ids_") + dtype_name(dtype) + ".safetensors");
    write_ids(path, "input_ids", dtype, {5, 8});
    const CalibrationSet set = load_calibration_set(path, 3, 6, 100);
    CHECK(set.n_samples == 3);
    CHECK(set.seq_len == 6);
    REQUIRE(set.token_ids.size() == 18);
    CHECK(set.token_ids[0] == 0);
    CHECK(set.token_ids[5] == 5);
    CHECK(set.token_ids[6] == 8);  // row 1 starts at element 8
    CHECK(set.token_ids[17] == 21);
    CHECK(set.source == path);
    CHECK(load_calibration_set(path, 0, 8, 100).n_samples == 5);  // 0: every row
  }
}

TEST_CASE("safetensors 1-D stream is cut into seq_len windows", "[calib_data]") {
  TempDir tmp;
  const std::string path = tmp.file("stream.safetensors");
  write_ids(path, "input_ids", DType::kI64, {23});
  const CalibrationSet all = load_calibration_set(path, 0, 5, 100);
  CHECK(all.n_samples == 4);  // 23 / 5, the partial window dropped
  REQUIRE(all.token_ids.size() == 20);
  for (size_t i = 0; i < all.token_ids.size(); ++i) CHECK(all.token_ids[i] == int64_t(i));
  CHECK(load_calibration_set(path, 2, 5, 100).token_ids == all.tokens_of(0, 2));
}

TEST_CASE("safetensors errors name the file and the problem", "[calib_data]") {
  TempDir tmp;
  const std::string wrong_name = tmp.file("a.safetensors");
  write_ids(wrong_name, "tokens", DType::kI64, {2, 4});
  CHECK(contains(error_of([&] { load_calibration_set(wrong_name, 1, 4, 100); }), wrong_name));
  CHECK(contains(error_of([&] { load_calibration_set(wrong_name, 1, 4, 100); }), "input_ids"));

  const std::string floats = tmp.file("f.safetensors");
  write_ids(floats, "input_ids", DType::kF32, {2, 4});
  CHECK(contains(error_of([&] { load_calibration_set(floats, 1, 4, 100); }), "I32 or I64"));

  const std::string ids = tmp.file("ids.safetensors");
  write_ids(ids, "input_ids", DType::kI64, {2, 4}, 10);  // ids 0..70
  CHECK(contains(error_of([&] { load_calibration_set(ids, 1, 5, 100); }), "shorter"));
  CHECK(contains(error_of([&] { load_calibration_set(ids, 3, 4, 100); }), "--samples"));
  const std::string vocab_error = error_of([&] { load_calibration_set(ids, 2, 4, 50); });
  CHECK(contains(vocab_error, "sample 1"));
  CHECK(contains(vocab_error, "vocabulary"));
  CHECK(!error_of([&] { load_calibration_set(tmp.file("missing.safetensors"), 1, 4, 9); }).empty());
}

TEST_CASE("JSONL: arrays and input_ids objects, blank lines skipped, cut to seq_len",
          "[calib_data]") {
  TempDir tmp;
  const std::string path = tmp.file("calib.jsonl");
  REQUIRE_WRITE_TEXT(path,
                     "[1, 2, 3, 4, 5]\n"
                     "\n"
                     "{\"input_ids\": [6, 7, 8, 9], \"text\": \"ignored\"}\n"
                     "  \r\n"
                     "[10, 11, 12, 13, 14, 15]\n");
  const CalibrationSet set = load_calibration_set(path, 0, 4, 16);
  CHECK(set.n_samples == 3);
  CHECK(set.token_ids == std::vector<int64_t>{1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13});
  CHECK(load_calibration_set(path, 2, 4, 16).token_ids == set.tokens_of(0, 2));
}

TEST_CASE("JSONL errors name the file and line", "[calib_data]") {
  TempDir tmp;
  const auto error_for = [&](const std::string& text, int samples, int64_t vocab = 100) {
    const std::string path = tmp.file("bad.jsonl");
    REQUIRE_WRITE_TEXT(path, text);
    return error_of([&] { load_calibration_set(path, samples, 3, vocab); });
  };
  const std::string bad = tmp.file("bad.jsonl");
  CHECK(contains(error_for("[1,2,3]\n[1,2,\n", 2), bad + ":2"));
  CHECK(contains(error_for("[1,2,3]\n[1,2,\n", 2), "invalid JSON"));
  CHECK(contains(error_for("[1,2,3]\n\n[1,2]\n", 2), bad + ":3"));
  CHECK(contains(error_for("[1,2,3]\n\n[1,2]\n", 2), "shorter"));
  CHECK(contains(error_for("[1,2,3.5]\n", 1), bad + ":1"));
  CHECK(contains(error_for("[1,2,3.5]\n", 1), "not an integer"));
  CHECK(contains(error_for("{\"ids\": [1,2,3]}\n", 1), "input_ids"));
  CHECK(contains(error_for("\"text\"\n", 1), "array"));
  CHECK(contains(error_for("[1,2,3]\n[4,5,100]\n", 2), bad + ":2"));
  CHECK(contains(error_for("[1,2,3]\n[4,5,100]\n", 2), "vocabulary"));
  CHECK(contains(error_for("[1,2,-1]\n", 1), "vocabulary"));
  CHECK(contains(error_for("[1,2,3]\n", 2), "--samples"));
  CHECK(contains(error_for("\n\n", 0), "no sample"));
  CHECK(contains(error_of([&] { load_calibration_set(tmp.file("none.jsonl"), 1, 3, 9); }),
                 "cannot open"));
  CHECK(!error_of([&] { load_calibration_set(bad, 1, 0, 9); }).empty());
}

TEST_CASE("synthetic set: deterministic, seeded, in vocab, spread out, bos first", "[calib_data]") {
  const model::ModelConfig config = model::preset_config("tiny");
  const CalibrationSet a = pipeline::synthetic_calibration_set(config, 6, 40, 0);
  const CalibrationSet b = pipeline::synthetic_calibration_set(config, 6, 40, 0);
  const CalibrationSet c = pipeline::synthetic_calibration_set(config, 6, 40, 1);
  CHECK(a.n_samples == 6);
  CHECK(a.seq_len == 40);
  REQUIRE(a.token_ids.size() == 240);
  CHECK(a.token_ids == b.token_ids);
  CHECK(a.token_ids != c.token_ids);
  CHECK(pipeline::calibration_fingerprint(a) == pipeline::calibration_fingerprint(b));
  CHECK(pipeline::calibration_fingerprint(a) != pipeline::calibration_fingerprint(c));
  std::set<int64_t> distinct;
  for (int s = 0; s < a.n_samples; ++s) {
    CHECK(a.token_ids[size_t(s) * 40] == config.raw["bos_token_id"].get<int64_t>());
  }
  for (const int64_t id : a.token_ids) {
    REQUIRE(id >= 0);
    REQUIRE(id < config.vocab_size);
    distinct.insert(id);
  }
  // Zipf over 1024 ids: many distinct ids, some repeated, and not clustered at small ids.
  CHECK(distinct.size() > 60);
  CHECK(distinct.size() < 234);
  CHECK(*distinct.rbegin() > config.vocab_size / 2);
  // A prefix of a larger set is not required, but more samples keep the first ones' ids.
  const CalibrationSet more = pipeline::synthetic_calibration_set(config, 8, 40, 0);
  CHECK(more.tokens_of(0, 6) == a.token_ids);
  CHECK_THROWS_AS(pipeline::synthetic_calibration_set(config, 0, 40, 0), Error);
}

TEST_CASE("samples_of_rank covers every sample exactly once, contiguously", "[calib_data]") {
  for (int world = 1; world <= 7; ++world) {
    for (int n = 0; n <= 23; ++n) {
      std::vector<int> seen(size_t(n), 0);
      int expected_begin = 0, min_size = n, max_size = 0;
      for (int rank = 0; rank < world; ++rank) {
        const pipeline::SampleRange r = pipeline::samples_of_rank(n, rank, world);
        CHECK(r.begin == expected_begin);
        REQUIRE(r.end >= r.begin);
        for (int s = r.begin; s < r.end; ++s) ++seen[size_t(s)];
        expected_begin = r.end;
        min_size = std::min(min_size, r.n_samples());
        max_size = std::max(max_size, r.n_samples());
      }
      CHECK(expected_begin == n);
      CHECK(max_size - min_size <= 1);
      for (const int count : seen) CHECK(count == 1);
    }
  }
  CHECK_THROWS_AS(pipeline::samples_of_rank(4, 2, 2), Error);
  CHECK_THROWS_AS(pipeline::samples_of_rank(4, 0, 0), Error);
}

TEST_CASE("tokens_of returns sample-major slices and checks its range", "[calib_data]") {
  CalibrationSet set;
  set.n_samples = 3;
  set.seq_len = 2;
  set.token_ids = {1, 2, 3, 4, 5, 6};
  CHECK(set.tokens_of(1, 3) == std::vector<int64_t>{3, 4, 5, 6});
  CHECK(set.tokens_of(2, 2).empty());
  CHECK_THROWS_AS(set.tokens_of(2, 4), Error);
}
