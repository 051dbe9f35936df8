// Derived stored tensors (formats/source_derived): the nibble rule, which tensors are marked, the
// layer file round trip without their bytes, the rebuild from the source, and a changed source
// refused with the tensor, the source tensor and the file named.
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/checksum.hpp"
#include "formats/layer_file.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats/source_derived.hpp"
#include "formats_test_util.hpp"
#include "rank_store_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;

namespace {

// A one-file source holding `tensors` (name -> I8 bytes, shape {n}).
void write_source(const TempDir& tmp,
                  const std::vector<std::pair<std::string, std::vector<uint8_t>>>& tensors) {
  std::vector<TensorSpec> specs;
  for (const auto& [name, bytes] : tensors) {
    specs.push_back({name, DType::kI8, {static_cast<int64_t>(bytes.size())}});
  }
  SafetensorsWriter writer(tmp.file("model.safetensors"), specs);
  for (const auto& [name, bytes] : tensors) writer.append(bytes.data(), bytes.size());
  writer.commit();
}

std::vector<uint8_t> cleared(std::vector<uint8_t> bytes) {
  apply_derivation_rule(DerivationRule::kFp4NegativeZeroCleared, bytes.data(), bytes.size());
  return bytes;
}

// 3 MiB: more than one of the rule's read pieces, with every byte value present.
std::vector<uint8_t> fp4_bytes(uint64_t seed) { return random_bytes(3u << 20, seed); }

StoredTensor packed(const std::string& name, std::vector<uint8_t> bytes) {
  const auto n = static_cast<int64_t>(bytes.size());
  return StoredTensor{name, DType::kU8, {n}, std::move(bytes)};
}

}  // namespace

TEST_CASE("the FP4 rule clears -0 codes and keeps every other nibble", "[source_derived]") {
  std::vector<uint8_t> bytes(256);
  for (int b = 0; b < 256; ++b) bytes[b] = static_cast<uint8_t>(b);
  std::vector<uint8_t> identity = bytes;
  apply_derivation_rule(DerivationRule::kIdentity, identity.data(), identity.size());
  CHECK(identity == bytes);
  apply_derivation_rule(DerivationRule::kFp4NegativeZeroCleared, bytes.data(), bytes.size());
  for (int b = 0; b < 256; ++b) {
    const int lo = b & 0x0F, hi = b >> 4;
    const int want = ((hi == 8 ? 0 : hi) << 4) | (lo == 8 ? 0 : lo);
    INFO("byte " << b);
    CHECK(bytes[b] == want);
  }
  CHECK(derivation_rules().parse("fp4_negative_zero_cleared") ==
        DerivationRule::kFp4NegativeZeroCleared);
  CHECK_FALSE(derivation_rules().contains("FP4_negative_zero_cleared"));
}

TEST_CASE("tensors the source holds are marked, stored without bytes and rebuilt",
          "[source_derived]") {
  TempDir tmp;
  const std::vector<uint8_t> a = fp4_bytes(1), b = fp4_bytes(2);
  write_source(tmp, {{"src.a", a}, {"src.b", b}, {"src.short", random_bytes(64, 3)}});
  const CheckpointDir source(tmp.path());

  LayerRecord record;
  record.layer = 7;
  record.tensors.push_back(packed("out.a", cleared(a)));  // the lossless cast's codes
  record.tensors.push_back(packed("out.b", b));           // the same bytes
  std::vector<uint8_t> one_off = cleared(a);
  one_off.back() ^= 0x01;  // one nibble differs in the last piece
  record.tensors.push_back(packed("out.moved", one_off));
  record.tensors.push_back(packed("out.short", random_bytes(32, 4)));  // another byte count
  record.tensors.push_back(packed("out.free", random_bytes(16, 5)));   // not a candidate
  record.tensors.push_back(packed("out.gone", random_bytes(16, 6)));   // source tensor absent
  const LayerRecord original = record;

  const uint64_t n_marked = mark_source_derived(record, source,
                                                {{"out.a", "src.a"},
                                                 {"out.b", "src.b"},
                                                 {"out.moved", "src.a"},
                                                 {"out.short", "src.short"},
                                                 {"out.gone", "src.nowhere"}});
  CHECK(n_marked == a.size() + b.size());
  REQUIRE(record.tensors[0].derived);
  CHECK(record.tensors[0].derived->source == "src.a");
  CHECK(record.tensors[0].derived->rule == DerivationRule::kFp4NegativeZeroCleared);
  CHECK(record.tensors[0].derived->xxh64 ==
        checksum64(original.tensors[0].bytes.data(), original.tensors[0].bytes.size()));
  REQUIRE(record.tensors[1].derived);
  CHECK(record.tensors[1].derived->rule == DerivationRule::kIdentity);
  for (size_t i = 2; i < record.tensors.size(); ++i) CHECK_FALSE(record.tensors[i].derived);
  CHECK(record.tensors[0].bytes == original.tensors[0].bytes);  // still in memory

  write_layer_file(tmp.file("layer.h5"), record, "quant", 0);
  LayerFileHeader header;
  LayerRecord read = read_layer_file(tmp.file("layer.h5"), &header);
  CHECK(header.format_version == kLayerFileFormatVersion);
  CHECK(read.tensors[0].bytes.empty());
  CHECK(read.tensors[1].bytes.empty());
  CHECK(read.tensors[0].derived == record.tensors[0].derived);
  CHECK(read.tensors[2].bytes == original.tensors[2].bytes);
  CHECK(read.n_tensor_bytes() == original.n_tensor_bytes() - a.size() - b.size());

  materialize_source_derived(read, source, "layer.h5");
  record.tensors[0].derived.reset();
  record.tensors[1].derived.reset();
  for (auto& t : read.tensors) t.derived.reset();
  CHECK(read == original);
}

TEST_CASE("a rebuild from a changed source is refused, naming what changed", "[source_derived]") {
  TempDir tmp;
  const std::vector<uint8_t> a = fp4_bytes(11);
  write_source(tmp, {{"src.a", a}});
  LayerRecord record;
  record.tensors.push_back(packed("out.a", cleared(a)));
  {
    const CheckpointDir source(tmp.path());
    REQUIRE(mark_source_derived(record, source, {{"out.a", "src.a"}}) == a.size());
  }
  write_layer_file(tmp.file("layer.h5"), record, "quant", 0);

  SECTION("one byte of the source differs") {
    std::vector<uint8_t> changed = a;
    changed[changed.size() / 2] ^= 0x33;
    write_source(tmp, {{"src.a", changed}});
    const CheckpointDir source(tmp.path());
    LayerRecord read = read_layer_file(tmp.file("layer.h5"));
    require_error([&] { materialize_source_derived(read, source, "rank-0 layer 0"); },
                  {"rank-0 layer 0", "out.a", "src.a", "model.safetensors",
                   "the source changed since this layer was committed"});
  }
  SECTION("the source tensor has another size") {
    std::vector<uint8_t> shorter(a.begin(), a.end() - 2);
    write_source(tmp, {{"src.a", shorter}});
    const CheckpointDir source(tmp.path());
    LayerRecord read = read_layer_file(tmp.file("layer.h5"));
    require_error([&] { materialize_source_derived(read, source, "L"); },
                  {"out.a", "src.a", "bytes", "the source changed"});
  }
  SECTION("the source tensor is gone") {
    write_source(tmp, {{"src.other", a}});
    const CheckpointDir source(tmp.path());
    LayerRecord read = read_layer_file(tmp.file("layer.h5"));
    require_error([&] { materialize_source_derived(read, source, "L"); },
                  {"out.a", "no longer has", "src.a"});
  }
}

TEST_CASE("a record validates derived tensors with or without their bytes", "[source_derived]") {
  LayerRecord record;
  record.tensors.push_back(packed("t", {1, 2, 3, 4}));
  record.tensors[0].derived = SourceDerivation{"src", DerivationRule::kIdentity, 0};
  CHECK_NOTHROW(validate_layer_record(record, "r"));
  record.tensors[0].bytes.clear();
  CHECK_NOTHROW(validate_layer_record(record, "r"));
  record.tensors[0].bytes = {1, 2};  // neither empty nor the full count
  require_error([&] { validate_layer_record(record, "r"); }, {"tensor t", "needs 4 bytes"});
  record.tensors[0].bytes.clear();
  record.tensors[0].derived->source.clear();
  require_error([&] { validate_layer_record(record, "r"); }, {"tensor t", "empty name"});
}
