// Fuzz-style robustness of SafetensorsReader: every truncation, seeded random corruption of the
// header, byte insertions and deletions. Each case must parse to a self-consistent result or throw
// qf::Error; any other exception fails the test (Catch reports it), crashes fail the binary.
#include <random>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/strings.hpp"
#include "formats/safetensors_reader.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;

namespace {

// A small valid file with every feature the parser handles: metadata, 0-d, zero-size, F4, FP8.
std::string make_seed_file(const TempDir& tmp) {
  const std::string path = tmp.file("seed.safetensors");
  const std::vector<TensorSpec> specs = {{"model.layers.0.w", DType::kBF16, {4, 3}},
                                         {"s", DType::kF32, {}},
                                         {"empty", DType::kI64, {0, 7}},
                                         {"experts.0.w1", DType::kF4, {2, 8}},
                                         {"scale", DType::kF8E8M0, {5}}};
  SafetensorsWriter writer(path, specs, {{"format", "pt"}, {"origin", "fuzz"}});
  std::string data;
  for (const TensorSpec& spec : specs) data += std::string(spec.n_bytes(), 'd');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 37 + 11);
  writer.append(data.data(), data.size());
  writer.commit();
  return read_bytes(path);
}

// Invariants that must hold for anything the reader accepts.
void check_consistent(const SafetensorsReader& reader) {
  uint64_t expected = 0;
  for (const TensorInfo& info : reader.tensors()) {
    REQUIRE(info.begin == expected);
    REQUIRE(info.end >= info.begin);
    REQUIRE(info.n_bytes() == tensor_n_bytes(info.dtype, info.n_elems(), info.name));
    REQUIRE(reader.find(info.name) != nullptr);
    REQUIRE(reader.read_tensor(info).size() == info.n_bytes());
    expected = info.end;
  }
  REQUIRE(reader.data_offset() + expected == reader.file_size());
}

enum class Outcome { kParsed, kRejected };

Outcome open_bytes(const std::string& path, const std::string& bytes) {
  write_bytes(path, bytes);
  try {
    const SafetensorsReader reader(path);
    check_consistent(reader);
    return Outcome::kParsed;
  } catch (const qf::Error& e) {
    // Every rejection names the file.
    REQUIRE(e.message().find(path) != std::string::npos);
    return Outcome::kRejected;
  }
}

// Bytes that steer mutations into the JSON grammar instead of only breaking the lexer.
constexpr char kJsonBytes[] = "{}[]\",:0123456789-.eE \t\nF4U8I64BF16truefalsenull\\u_";

}  // namespace

TEST_CASE("every truncation of a valid file is rejected", "[formats][fuzz]") {
  TempDir tmp;
  const std::string seed = make_seed_file(tmp);
  const std::string path = tmp.file("cut.safetensors");
  REQUIRE(open_bytes(path, seed) == Outcome::kParsed);
  for (size_t n_bytes = 0; n_bytes < seed.size(); ++n_bytes) {  // header region and all data
    INFO("truncated to " << n_bytes << " of " << seed.size() << " bytes");
    CHECK(open_bytes(path, seed.substr(0, n_bytes)) == Outcome::kRejected);
  }
  for (const std::string& tail : {std::string("x"), std::string(8, '\0'), std::string(1000, ' ')}) {
    CHECK(open_bytes(path, seed + tail) == Outcome::kRejected);  // trailing bytes
  }
}

TEST_CASE("random byte corruption of the header never escapes as a non-qf error",
          "[formats][fuzz]") {
  TempDir tmp;
  const std::string seed = make_seed_file(tmp);
  const std::string path = tmp.file("fuzz.safetensors");
  const uint64_t data_offset = SafetensorsReader(tmp.file("seed.safetensors")).data_offset();
  std::mt19937_64 rng(20240611);
  int n_parsed = 0;
  int n_rejected = 0;
  const int n_cases = 3000;
  for (int c = 0; c < n_cases; ++c) {
    std::string bytes = seed;
    const int n_flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < n_flips; ++f) {
      // Mostly the JSON; sometimes the length prefix.
      const size_t at = (rng() % 8 == 0) ? rng() % 8 : 8 + rng() % (data_offset - 8);
      switch (rng() % 3) {
        case 0:
          bytes[at] = static_cast<char>(rng() & 0xFF);
          break;
        case 1:
          bytes[at] = kJsonBytes[rng() % (sizeof(kJsonBytes) - 1)];
          break;
        default:
          bytes[at] = static_cast<char>(bytes[at] ^ (1u << (rng() % 8)));
          break;
      }
    }
    INFO("case " << c);
    (open_bytes(path, bytes) == Outcome::kParsed ? n_parsed : n_rejected)++;
  }
  INFO("parsed " << n_parsed << ", rejected " << n_rejected);
  CHECK(n_rejected > n_cases / 2);
  CHECK(n_parsed > 0);  // e.g. flips inside metadata strings or padding stay valid
}

TEST_CASE("byte insertions and deletions in the header", "[formats][fuzz]") {
  TempDir tmp;
  const std::string seed = make_seed_file(tmp);
  const std::string path = tmp.file("indel.safetensors");
  const uint64_t data_offset = SafetensorsReader(tmp.file("seed.safetensors")).data_offset();
  std::mt19937_64 rng(7);
  for (int c = 0; c < 1000; ++c) {
    std::string json = seed.substr(8, data_offset - 8);
    const std::string data = seed.substr(data_offset);
    const size_t at = rng() % json.size();
    if (rng() % 2 == 0) {
      json.erase(at, 1 + rng() % 4);
    } else {
      json.insert(at, 1, kJsonBytes[rng() % (sizeof(kJsonBytes) - 1)]);
    }
    INFO("case " << c);
    // Length prefix kept consistent, so the damage reaches the JSON and offset checks.
    const Outcome outcome = open_bytes(path, raw_safetensors(json, data));
    CHECK((outcome == Outcome::kParsed || outcome == Outcome::kRejected));
  }
}

TEST_CASE("random headers from grammar pieces parse in memory or throw qf::Error",
          "[formats][fuzz]") {
  // In-memory: many more cases than the file-based loops, straight into the header parser.
  const std::vector<std::string> pieces = {"{",
                                           "}",
                                           "[",
                                           "]",
                                           ",",
                                           ":",
                                           "\"a\"",
                                           "\"b\"",
                                           "\"__metadata__\"",
                                           "\"dtype\"",
                                           "\"shape\"",
                                           "\"data_offsets\"",
                                           "\"F32\"",
                                           "\"F4\"",
                                           "\"U8\"",
                                           "\"X\"",
                                           "0",
                                           "1",
                                           "2",
                                           "4",
                                           "8",
                                           "-1",
                                           "1.5",
                                           "1e3",
                                           "18446744073709551616",
                                           "null",
                                           "true",
                                           "\"\\u00e9\"",
                                           " "};
  std::mt19937_64 rng(99);
  int n_parsed = 0;
  for (int c = 0; c < 20000; ++c) {
    std::string json = "{";
    const int n_pieces = static_cast<int>(rng() % 40);
    for (int p = 0; p < n_pieces; ++p) json += pieces[rng() % pieces.size()];
    json += "}";
    const uint64_t buffer_n_bytes = rng() % 16;
    try {
      const SafetensorsHeader header = parse_safetensors_header(json, buffer_n_bytes, "mem");
      uint64_t expected = 0;
      for (const TensorInfo& info : header.tensors) {
        REQUIRE(info.begin == expected);
        expected = info.end;
      }
      REQUIRE(expected == buffer_n_bytes);
      ++n_parsed;
    } catch (const qf::Error& e) {
      REQUIRE(starts_with(e.message(), "mem"));
    }
  }
  CHECK(n_parsed > 0);  // at least "{}" with an empty buffer
}
