// SafetensorsReader on hand-written malformed files: one test per named error, each checking that
// the message names the file, the tensor (where there is one) and the reason.
#include <limits>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/safetensors_reader.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;

namespace {

// Writes [len][json][data] to a fresh file in `tmp` and returns its path.
std::string make_file(const TempDir& tmp, const std::string& json, const std::string& data) {
  static int counter = 0;
  const std::string path = tmp.file("v" + std::to_string(counter++) + ".safetensors");
  write_bytes(path, raw_safetensors(json, data));
  return path;
}

// Opening [json][data] must fail with a message holding the path and every needle.
void require_open_error(const std::string& json, const std::string& data,
                        std::vector<std::string> needles) {
  TempDir tmp;
  const std::string path = make_file(tmp, json, data);
  needles.push_back(path);
  require_error([&] { SafetensorsReader reader(path); }, needles);
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

}  // namespace

TEST_CASE("valid files in reference-writer style parse", "[formats]") {
  TempDir tmp;
  // Keys in any order, metadata last, padding spaces, leading whitespace, zero-size and 0-d.
  const std::string json =
      "  \t\n{" + entry("b", "F32", "[1]", 8, 12) + "," + entry("a", "I64", "[]", 0, 8) + "," +
      entry("z", "BF16", "[0,3]", 12, 12) + "," + entry("f4", "F4", "[2,4]", 12, 16) +
      R"(,"__metadata__":{"format":"pt","k":""}}      )";
  const std::string path = make_file(tmp, json, std::string(16, '\x01'));
  const SafetensorsReader reader(path);
  REQUIRE(reader.tensors().size() == 4);
  CHECK(reader.tensors()[0].name == "a");
  CHECK(reader.tensors()[1].name == "b");
  CHECK(reader.tensors()[2].name == "z");  // [12,12) sorts before [12,16)
  CHECK(reader.tensors()[3].name == "f4");
  CHECK(reader.at("f4").n_elems() == 8);
  CHECK(reader.at("a").shape.empty());
  CHECK(reader.metadata().at("k").empty());
  CHECK(reader.data_offset() == 8 + json.size());
  CHECK(reader.read_tensor(reader.at("z")).empty());
}

TEST_CASE("bad header length", "[formats]") {
  TempDir tmp;
  SECTION("file shorter than the length prefix") {
    const std::string path = tmp.file("short.safetensors");
    write_bytes(path, "abc");
    require_error([&] { SafetensorsReader r(path); }, {path, "too short"});
  }
  SECTION("empty file") {
    const std::string path = tmp.file("empty.safetensors");
    write_bytes(path, "");
    require_error([&] { SafetensorsReader r(path); }, {path, "too short"});
  }
  SECTION("length above the 100,000,000-byte limit") {
    const std::string path = tmp.file("huge.safetensors");
    write_bytes(path, u64_le(100000001) + "{}");
    require_error([&] { SafetensorsReader r(path); }, {path, "bad header length", "limit"});
  }
  SECTION("length past the end of the file") {
    const std::string path = tmp.file("past.safetensors");
    write_bytes(path, u64_le(64) + "{}");
    require_error([&] { SafetensorsReader r(path); }, {path, "bad header length", "truncated"});
  }
  SECTION("length of 2^64-1") {
    const std::string path = tmp.file("max.safetensors");
    write_bytes(path, u64_le(std::numeric_limits<uint64_t>::max()) + "{}");
    require_error([&] { SafetensorsReader r(path); }, {path, "bad header length"});
  }
  SECTION("zero length") {
    const std::string path = tmp.file("zero.safetensors");
    write_bytes(path, u64_le(0));
    require_error([&] { SafetensorsReader r(path); }, {path, "not a JSON object"});
  }
  SECTION("missing file") {
    require_error([&] { SafetensorsReader r(tmp.file("nope.safetensors")); },
                  {"nope.safetensors", "cannot open", "No such file"});
  }
  SECTION("a directory") {
    require_error([&] { SafetensorsReader r(tmp.path()); }, {tmp.path()});
  }
}

TEST_CASE("header is not a JSON object", "[formats]") {
  require_open_error("hello   ", "", {"must start with '{'"});
  require_open_error("[1,2,3] ", "", {"must start with '{'"});
  require_open_error("        ", "", {"must start with '{'"});
  require_open_error("{\"a\":  ", "", {"invalid JSON"});
  require_open_error("{} {}   ", "", {"invalid JSON"});
  require_open_error(std::string("{}\0\0\0\0\0\0", 8), "", {"invalid JSON"});
  require_open_error("{\"\xff\":1}", "", {"invalid JSON"});                // not UTF-8
  require_open_error("{\"\\ud800\":1}", "", {"invalid JSON"});             // lone surrogate
  require_open_error("{\"a\":{\"dtype\":\"F32\"}", "", {"invalid JSON"});  // unbalanced
}

TEST_CASE("entry field errors name the tensor", "[formats]") {
  require_open_error("{" + entry("w", "F8_E4M3FN", "[2]", 0, 2) + "}", "ab",
                     {"'w'", "unknown dtype 'F8_E4M3FN'"});
  require_open_error("{" + entry("w", "bf16", "[2]", 0, 4) + "}", "abcd", {"'w'", "unknown dtype"});
  require_open_error(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,1]}})", "a",
                     {"'w'", "dtype must be a string"});
  require_open_error(R"({"w":{"shape":[1],"data_offsets":[0,1]}})", "a", {"'w'", "missing dtype"});
  require_open_error(R"({"w":{"dtype":"U8","data_offsets":[0,1]}})", "a", {"'w'", "missing shape"});
  require_open_error(R"({"w":{"dtype":"U8","shape":[1]}})", "a", {"'w'", "missing data_offsets"});
  require_open_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":1}})", "a",
                     {"'w'", "unknown field 'x'"});
  require_open_error(R"({"w":[1,2]})", "", {"'w'", "must be an object"});
  require_open_error("{" + entry("w", "U8", "[-1]", 0, 0) + "}", "", {"'w'", "non-negative"});
  require_open_error("{" + entry("w", "U8", "[1.0]", 0, 1) + "}", "a", {"'w'", "non-negative"});
  require_open_error("{" + entry("w", "U8", "[\"1\"]", 0, 1) + "}", "a", {"'w'", "non-negative"});
  require_open_error("{" + entry("w", "U8", "3", 0, 3) + "}", "abc", {"'w'", "must be an array"});
  require_open_error("{" + entry("w", "U8", "[18446744073709551615]", 0, 1) + "}", "a",
                     {"'w'", "non-negative"});
  require_open_error("{" + entry("w", "U8", "[4294967296,4294967296]", 0, 1) + "}", "a",
                     {"'w'", "overflows"});
  require_open_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "a",
                     {"'w'", "data_offsets must be [begin, end]"});
  require_open_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}})", "a",
                     {"'w'", "data_offsets must be [begin, end]"});
  require_open_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})", "a",
                     {"'w'", "data_offsets must be [begin, end]"});
}

TEST_CASE("offsets out of range, reversed, size mismatch", "[formats]") {
  require_open_error("{" + entry("w", "U8", "[100]", 0, 100) + "}", std::string(8, 'x'),
                     {"'w'", "out of range", "8 bytes"});
  require_open_error("{" + entry("w", "U8", "[0]", 5, 3) + "}", "abcde",
                     {"'w'", "begin 5 > end 3"});
  require_open_error("{" + entry("w", "F32", "[3]", 0, 8) + "}", std::string(8, 'x'),
                     {"'w'", "size mismatch", "needs 12 bytes", "span 8"});
  // F4: the shape counts elements, 2 per byte.
  require_open_error("{" + entry("e", "F4", "[2,4]", 0, 8) + "}", std::string(8, 'x'),
                     {"'e'", "size mismatch", "needs 4 bytes"});
  require_open_error("{" + entry("e", "F4", "[3]", 0, 2) + "}", "ab",
                     {"'e'", "not a whole number of bytes"});
}

TEST_CASE("tensors must tile the buffer: overlap, gap, trailing bytes", "[formats]") {
  require_open_error(
      "{" + entry("a", "U8", "[8]", 0, 8) + "," + entry("b", "U8", "[8]", 4, 12) + "}",
      std::string(12, 'x'), {"'b'", "overlap tensor 'a'", "[4, 12)"});
  require_open_error(
      "{" + entry("a", "U8", "[8]", 0, 8) + "," + entry("z", "U8", "[0]", 3, 3) + "}",
      std::string(8, 'x'), {"'z'", "overlap tensor 'a'"});
  require_open_error(
      "{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[4]", 8, 12) + "}",
      std::string(12, 'x'), {"'b'", "gap", "[4, 8)"});
  require_open_error("{" + entry("a", "U8", "[4]", 4, 8) + "}", std::string(8, 'x'),
                     {"'a'", "gap"});
  require_open_error("{" + entry("a", "U8", "[4]", 0, 4) + "}", std::string(5, 'x'),
                     {"tensors end at data byte 4", "1 more bytes", "trailing"});
  require_open_error("{}      ", "x", {"trailing"});
  require_open_error(R"({"__metadata__":{"format":"pt"}})", "xy", {"trailing"});
}

TEST_CASE("duplicate keys are rejected", "[formats]") {
  require_open_error(
      "{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("a", "U8", "[4]", 4, 8) + "}",
      std::string(8, 'x'), {"duplicate key \"a\""});
  require_open_error(
      "{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("a", "U8", "[4]", 0, 4) + "}",
      std::string(4, 'x'), {"duplicate key \"a\""});
  require_open_error(R"({"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}})", "x",
                     {"duplicate key \"dtype\"", "depth 2"});
  require_open_error(R"({"__metadata__":{"k":"1","k":"2"}})", "", {"duplicate key \"k\""});
  require_open_error(R"({"__metadata__":{},"__metadata__":{}})", "", {"duplicate key"});
}

TEST_CASE("__metadata__ must map strings to strings", "[formats]") {
  require_open_error(R"({"__metadata__":{"format":"pt","n":1}})", "",
                     {"__metadata__ value of key 'n'", "must be a string"});
  require_open_error(R"({"__metadata__":{"o":{"a":"b"}}})", "", {"key 'o'", "must be a string"});
  require_open_error(R"({"__metadata__":{"x":null}})", "", {"key 'x'"});
  require_open_error(R"({"__metadata__":"pt"})", "", {"__metadata__ must be an object"});
  require_open_error(R"({"__metadata__":null})", "", {"__metadata__ must be an object"});
}
