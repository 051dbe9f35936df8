// Derived stored tensors (formats/source_derived): the nibble and block-scale rules, which tensors
// are marked, the layer file round trip without their bytes (and the format version it takes),
// the rebuild from the source, and a changed source refused with the tensor, the source tensor
// and the file named.
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstring>
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
#include "kernels/nvfp4_quantize.cuh"
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
  apply_derivation_rule(DerivationRule::kFp4NegativeZeroCleared, 0, bytes.data(), bytes.size(),
                        bytes.data());
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
  apply_derivation_rule(DerivationRule::kIdentity, 0, identity.data(), identity.size(),
                        identity.data());
  CHECK(identity == bytes);
  apply_derivation_rule(DerivationRule::kFp4NegativeZeroCleared, 0, bytes.data(), bytes.size(),
                        bytes.data());
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
                                                {{"out.a", {"src.a", ""}},
                                                 {"out.b", {"src.b", ""}},
                                                 {"out.moved", {"src.a", ""}},
                                                 {"out.short", {"src.short", ""}},
                                                 {"out.gone", {"src.nowhere", ""}}});
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
  CHECK(header.format_version == 2);  // no block-scale rule: what the previous build reads
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
    REQUIRE(mark_source_derived(record, source, {{"out.a", {"src.a", ""}}}) == a.size());
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

namespace {

// An MXFP4 tensor [rows, cols] as the source holds it and its lossless cast (the CPU reference
// of the cast), with the w1/w3 sibling's max E8M0 byte `pair_max` (0: no sibling).
struct CastFixture {
  std::vector<uint8_t> packed, e8m0, out_packed, out_scale;
  float scale_2 = 0;
};
CastFixture cast_fixture(int64_t rows, int64_t cols, uint32_t pair_max, uint64_t seed) {
  CastFixture f;
  f.packed = random_bytes(static_cast<size_t>(rows * cols / 2), seed);
  f.e8m0 = random_bytes(static_cast<size_t>(rows * cols / 32), seed + 1);
  // Scales within 2^17 of the largest (every block in range), and a few zero bytes.
  for (size_t i = 0; i < f.e8m0.size(); ++i) f.e8m0[i] = uint8_t(110 + f.e8m0[i] % 18);
  for (size_t i = 0; i < f.e8m0.size(); i += 97) f.e8m0[i] = 0;
  uint32_t own_max = 0;
  for (const uint8_t b : f.e8m0) own_max = std::max<uint32_t>(own_max, b);
  f.out_packed.resize(f.packed.size());
  f.out_scale.resize(static_cast<size_t>(rows * cols / 16));
  uint64_t counts[kernels::kMxfp4CountSlots] = {};
  kernels::Mxfp4ToNvfp4Params p;
  p.packed = f.packed.data();
  p.e8m0 = f.e8m0.data();
  p.n_rows = rows;
  p.n_cols = cols;
  p.e8m0_max = &own_max;
  p.e8m0_max_pair = pair_max != 0 ? &pair_max : nullptr;
  p.out_packed = f.out_packed.data();
  p.out_scale = f.out_scale.data();
  p.out_scale_2 = &f.scale_2;
  p.counts = counts;
  kernels::mxfp4_to_nvfp4_ref(p);
  return f;
}

StoredTensor scalar_f32(const std::string& name, float value) {
  std::vector<uint8_t> bytes(4);
  std::memcpy(bytes.data(), &value, 4);
  return StoredTensor{name, DType::kF32, {}, std::move(bytes)};
}

}  // namespace

TEST_CASE("the block-scale rule gives the lossless cast's block scales, stored as version 3",
          "[source_derived]") {
  TempDir tmp;
  const int64_t rows = 256, cols = 2048;  // scales: 16 KiB source, 32 KiB derived
  const CastFixture own = cast_fixture(rows, cols, 0, 21);
  const CastFixture paired = cast_fixture(rows, cols, 130, 31);  // scale_2 from the sibling
  REQUIRE(own.scale_2 != paired.scale_2);
  write_source(tmp,
               {{"w", own.packed}, {"s", own.e8m0}, {"pw", paired.packed}, {"ps", paired.e8m0}});
  const CheckpointDir source(tmp.path());
  const SafetensorsReader* shard = nullptr;
  const TensorInfo& s_info = source.tensor("s", &shard);
  shard->digest_whole_reads(true);  // as the job reads: a whole-tensor read notes a digest
  LayerRecord record;
  record.tensors.push_back(packed("a.weight", own.out_packed));  // not a candidate here
  record.tensors.push_back({"a.weight_scale", DType::kF8E4M3, {rows, cols / 16}, own.out_scale});
  record.tensors.push_back(scalar_f32("a.weight_scale_2", own.scale_2));
  record.tensors.push_back({"b.weight_scale", DType::kF8E4M3, {rows, cols / 16}, paired.out_scale});
  record.tensors.push_back(scalar_f32("b.weight_scale_2", paired.scale_2));
  std::vector<uint8_t> off = own.out_scale;
  off[off.size() - 1] ^= 0x08;  // the last block scale differs
  record.tensors.push_back({"c.weight_scale", DType::kF8E4M3, {rows, cols / 16}, off});
  record.tensors.push_back({"d.weight_scale", DType::kF8E4M3, {rows, cols / 16}, own.out_scale});
  record.tensors.push_back(scalar_f32("d.weight_scale_2", own.scale_2 * 3));  // not 2^k
  record.tensors.push_back({"e.weight_scale", DType::kF8E4M3, {rows, cols / 16}, own.out_scale});
  const LayerRecord original = record;

  const uint64_t n_marked =
      mark_source_derived(record, source,
                          {{"a.weight_scale", {"s", "a.weight_scale_2"}},
                           {"b.weight_scale", {"ps", "b.weight_scale_2"}},
                           {"c.weight_scale", {"s", "a.weight_scale_2"}},
                           {"d.weight_scale", {"s", "d.weight_scale_2"}},
                           {"e.weight_scale", {"s", "e.weight_scale_2"}}});  // no such scalar
  CHECK(n_marked == 2 * own.out_scale.size());
  REQUIRE(record.tensors[1].derived);
  CHECK(record.tensors[1].derived->rule == DerivationRule::kE8m0BlockScaleAsE4m3);
  CHECK(record.tensors[1].derived->shift == std::ilogb(own.scale_2));
  REQUIRE(record.tensors[3].derived);
  CHECK(record.tensors[3].derived->shift == std::ilogb(paired.scale_2));
  for (const size_t i : {0, 2, 4, 5, 6, 7, 8}) CHECK_FALSE(record.tensors[i].derived);

  write_layer_file(tmp.file("layer.h5"), record, "quant", 0);
  LayerFileHeader header;
  LayerRecord read = read_layer_file(tmp.file("layer.h5"), &header);
  CHECK(header.format_version == 3);
  CHECK(read.tensors[1].bytes.empty());
  CHECK(read.tensors[3].derived == record.tensors[3].derived);
  materialize_source_derived(read, source, "layer.h5");
  for (auto& t : read.tensors) t.derived.reset();
  CHECK(read == original);
  // The check and the rebuild read "s" (16 KiB) in pieces, never whole: the digest the job's
  // own read noted is not overwritten.
  uint64_t digest = 0;
  CHECK_FALSE(shard->known_digest(s_info, &digest));
}

namespace {

// Sets (or, with `remove`, deletes) the int64 attribute `attr` of `object` in an HDF5 file.
void edit_i64_attr(const std::string& path, const std::string& object, const std::string& attr,
                   int64_t value, bool remove = false) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(file >= 0);
  const hid_t owner = H5Oopen(file, object.c_str(), H5P_DEFAULT);
  REQUIRE(owner >= 0);
  if (remove) {
    CHECK(H5Adelete(owner, attr.c_str()) >= 0);
  } else {
    const hid_t a = H5Aopen(owner, attr.c_str(), H5P_DEFAULT);
    REQUIRE(a >= 0);
    CHECK(H5Awrite(a, H5T_NATIVE_INT64, &value) >= 0);
    H5Aclose(a);
  }
  H5Oclose(owner);
  H5Fclose(file);
}

}  // namespace

TEST_CASE("a layer file's block-scale derivation is refused under version 2 or a bad shift",
          "[source_derived]") {
  TempDir tmp;
  LayerRecord record;
  record.tensors.push_back({"x.weight_scale", DType::kF8E4M3, {4, 2}, {}});
  record.tensors[0].derived =
      SourceDerivation{"x.scale", DerivationRule::kE8m0BlockScaleAsE4m3, 0x1234, -9};
  const std::string path = tmp.file("layer.h5");
  write_layer_file(path, record, "quant", 0);
  CHECK(read_layer_file(path).tensors[0].derived == record.tensors[0].derived);
  SECTION("the file says version 2") {
    edit_i64_attr(path, ".", "format_version", 2);
    require_error([&] { read_layer_file(path); },
                  {"x.weight_scale", "e8m0_block_scale_as_e4m3", "format version 2", "version 3"});
  }
  SECTION("the shift is missing") {
    edit_i64_attr(path, "tensors/x.weight_scale", "derivation_shift", 0, true);
    require_error([&] { read_layer_file(path); }, {"x.weight_scale", "derivation_shift"});
  }
  SECTION("the shift is absurd") {
    edit_i64_attr(path, "tensors/x.weight_scale", "derivation_shift", int64_t{1} << 40);
    require_error([&] { read_layer_file(path); },
                  {"x.weight_scale", "derivation_shift", "outside"});
  }
}
