// SafetensorsWriter -> SafetensorsReader round trips: every dtype, 0-d and zero-size tensors,
// streamed and positional writes, layout_safetensors agreement, commit/cleanup protocol.
#include <sys/resource.h>

#include <csignal>
#include <random>
#include <thread>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/dtype.hpp"
#include "formats/safetensors_reader.hpp"
#include "formats/safetensors_writer.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;

namespace {

// Deterministic contents for a tensor: depends on its name and the byte index.
std::string pattern_bytes(const TensorSpec& spec) {
  std::string bytes(spec.n_bytes(), '\0');
  const size_t seed = std::hash<std::string>()(spec.name);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((seed >> (i % 29)) + i);
  return bytes;
}

// One tensor of every dtype for each of several shapes, incl. 0-d and zero-size ones.
std::vector<TensorSpec> all_dtype_specs() {
  const std::vector<std::vector<int64_t>> shapes = {{}, {0}, {3, 0, 5}, {6}, {2, 3, 4}, {1, 1, 8}};
  std::vector<TensorSpec> specs;
  for (const DType dtype : all_dtypes()) {
    for (size_t i = 0; i < shapes.size(); ++i) {
      TensorSpec spec{std::string(dtype_name(dtype)) + ".t" + std::to_string(i), dtype, shapes[i]};
      if (dtype == DType::kF4 && spec.n_elems() % 2 != 0) continue;  // half a byte: not storable
      specs.push_back(spec);
    }
  }
  return specs;
}

void require_same_tensors(const SafetensorsReader& reader, const std::vector<TensorSpec>& specs) {
  REQUIRE(reader.tensors().size() == specs.size());
  uint64_t expected_begin = 0;
  for (const TensorInfo& info : reader.tensors()) {  // data-offset order, contiguous
    CHECK(info.begin == expected_begin);
    expected_begin = info.end;
  }
  CHECK(reader.data_offset() + expected_begin == reader.file_size());
  for (const TensorSpec& spec : specs) {
    INFO("tensor " << spec.name);
    const TensorInfo& info = reader.at(spec.name);
    CHECK(info.dtype == spec.dtype);
    CHECK(info.shape == spec.shape);
    CHECK(info.n_bytes() == spec.n_bytes());
    CHECK(info.n_elems() == spec.n_elems());
    CHECK(info.spec().name == spec.name);
    const std::vector<uint8_t> got = reader.read_tensor(info);
    CHECK(std::string(got.begin(), got.end()) == pattern_bytes(spec));
  }
}

}  // namespace

TEST_CASE("TensorSpec counts elements and bytes", "[formats]") {
  CHECK(TensorSpec{"s", DType::kF32, {}}.n_elems() == 1);
  CHECK(TensorSpec{"s", DType::kF32, {}}.n_bytes() == 4);
  CHECK(TensorSpec{"z", DType::kBF16, {4, 0}}.n_bytes() == 0);
  CHECK(TensorSpec{"f4", DType::kF4, {3, 4}}.n_bytes() == 6);
  CHECK(TensorSpec{"huge0", DType::kF32, {int64_t{1} << 40, int64_t{1} << 40, 0}}.n_elems() == 0);
  CHECK_THROWS_AS((TensorSpec{"f4", DType::kF4, {3}}.n_bytes()), Error);
  CHECK_THROWS_AS((TensorSpec{"neg", DType::kF32, {-1}}.n_elems()), Error);
  CHECK_THROWS_AS((TensorSpec{"ovf", DType::kU8, {int64_t{1} << 40, int64_t{1} << 40}}.n_elems()),
                  Error);
  CHECK_THROWS_AS((TensorSpec{"ovf", DType::kF64, {int64_t{1} << 31, int64_t{1} << 31}}.n_bytes()),
                  Error);
  CHECK(shape_str({7168, 2048}) == "[7168, 2048]");
}

TEST_CASE("append round trip: every dtype, 0-d and zero-size tensors", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("all.safetensors");
  const std::vector<TensorSpec> specs = all_dtype_specs();
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "tést ✓"}};
  const size_t chunk = GENERATE(size_t{1}, size_t{3}, size_t{7}, size_t{1000});
  {
    SafetensorsWriter writer(path, specs, metadata);
    CHECK(file_exists(writer.temp_path()));
    CHECK_FALSE(file_exists(path));
    std::string all_data;
    for (const TensorSpec& spec : specs) all_data += pattern_bytes(spec);
    for (size_t at = 0; at < all_data.size(); at += chunk) {  // splits tensors arbitrarily
      writer.append(all_data.data() + at, std::min(chunk, all_data.size() - at));
    }
    writer.commit();
    CHECK_FALSE(file_exists(writer.temp_path()));
  }
  const SafetensorsReader reader(path);
  CHECK(reader.path() == path);
  CHECK(reader.metadata() == metadata);
  CHECK(reader.data_offset() % 8 == 0);
  require_same_tensors(reader, specs);
}

TEST_CASE("positional writes from several threads, in any order", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("pos.safetensors");
  std::vector<TensorSpec> specs = all_dtype_specs();
  specs.push_back({"big", DType::kBF16, {64, 1000}});
  {
    SafetensorsWriter writer(path, specs, {});
    std::vector<std::thread> threads;
    const int n_threads = 4;
    for (int t = 0; t < n_threads; ++t) {
      threads.emplace_back([&, t] {
        // Thread t writes every n_threads-th tensor, back to front in 5-byte pieces.
        for (size_t i = t; i < specs.size(); i += n_threads) {
          const std::string bytes = pattern_bytes(specs[i]);
          for (size_t end = bytes.size(); end > 0;) {
            const size_t begin = end >= 5 ? end - 5 : 0;
            writer.write_at(specs[i].name, begin, bytes.data() + begin, end - begin);
            end = begin;
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();
    writer.commit();
  }
  const SafetensorsReader reader(path);
  CHECK(reader.metadata().empty());
  require_same_tensors(reader, specs);

  // Partial reads at offsets inside a tensor.
  const TensorInfo& big = reader.at("big");
  const std::string expected = pattern_bytes(specs.back());
  std::string part(100, '\0');
  reader.read(big, 1234, part.size(), part.data());
  CHECK(part == expected.substr(1234, 100));
  reader.read(big, big.n_bytes(), 0, part.data());  // empty read at the end is fine
  require_error([&] { reader.read(big, big.n_bytes() - 1, 2, part.data()); },
                {path, "'big'", "outside"});
  TensorInfo foreign = big;
  foreign.begin += 2;
  require_error([&] { reader.read(foreign, 0, 1, part.data()); }, {path, "not from this file"});
  foreign.name = "nope";
  require_error([&] { reader.read_tensor(foreign); }, {path, "'nope'", "not from this file"});
  CHECK(reader.find("nope") == nullptr);
  require_error([&] { reader.at("nope"); }, {path, "'nope'"});
}

TEST_CASE("layout_safetensors matches the writer's file", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("layout.safetensors");
  const std::vector<TensorSpec> specs = {{"b.weight", DType::kBF16, {3, 5}},
                                         {"a.scale", DType::kF32, {}},
                                         {"e", DType::kF8E4M3, {0}},
                                         {"experts.w", DType::kF4, {4, 6}}};
  const SafetensorsLayout layout = layout_safetensors(specs);
  {
    SafetensorsWriter writer(path, specs);
    CHECK(writer.data_offset() == layout.header_bytes.size());
    for (const TensorSpec& spec : specs) {
      CHECK(writer.tensor_offset(spec.name) == layout.file_offset.at(spec.name));
      const std::string bytes = pattern_bytes(spec);
      writer.append(bytes.data(), bytes.size());
    }
    require_error([&] { writer.tensor_offset("zz"); }, {path, "'zz'"});
    writer.commit();
  }
  const std::string file = read_bytes(path);
  CHECK(file.size() == layout.file_size);
  CHECK(file.substr(0, layout.header_bytes.size()) == layout.header_bytes);
  CHECK(layout.header_bytes.size() % 8 == 0);
  const SafetensorsReader reader(path);
  CHECK(reader.metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  for (const TensorSpec& spec : specs) {
    CHECK(layout.file_offset.at(spec.name) == reader.data_offset() + reader.at(spec.name).begin);
  }
  // Data follows the given order.
  CHECK(reader.at("b.weight").begin == 0);
  CHECK(reader.at("a.scale").begin == 30);
  CHECK(reader.at("experts.w").begin == 34);
}

TEST_CASE("layout golden bytes: padded with spaces, metadata first, given order", "[formats]") {
  const SafetensorsLayout layout =
      layout_safetensors({{"w", DType::kBF16, {2, 2}}, {"s", DType::kF32, {}}});
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},)"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[8,12]}})";
  const std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  CHECK(layout.header_bytes == u64_le(padded.size()) + padded);
  CHECK(layout.file_offset.at("w") == 8 + padded.size());
  CHECK(layout.file_size == 8 + padded.size() + 12);
  CHECK(layout_safetensors({}, {}).header_bytes == u64_le(8) + "{}      ");
}

TEST_CASE("layout rejects bad tensor lists", "[formats]") {
  require_error([] { layout_safetensors({{"", DType::kU8, {1}}}); }, {"empty tensor name"});
  require_error([] { layout_safetensors({{"__metadata__", DType::kU8, {1}}}); }, {"__metadata__"});
  require_error(
      [] {
        layout_safetensors({{"a", DType::kU8, {1}}, {"a", DType::kU8, {2}}});
      },
      {"duplicate", "a"});
  require_error([] { layout_safetensors({{"odd", DType::kF4, {3}}}); }, {"odd"});
  require_error([] { layout_safetensors({{"bad\xff", DType::kU8, {1}}}); }, {"serialize"});
}

TEST_CASE("writer errors leave nothing under the final name", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("w.safetensors");
  const std::vector<TensorSpec> specs = {{"a", DType::kF32, {4}}, {"b", DType::kU8, {3}}};
  const std::string bytes(19, 'x');

  SECTION("destructor without commit removes the temp file") {
    std::string temp;
    {
      SafetensorsWriter writer(path, specs);
      temp = writer.temp_path();
      writer.append(bytes.data(), 10);
    }
    CHECK_FALSE(file_exists(temp));
    CHECK_FALSE(file_exists(path));
  }
  SECTION("commit with unwritten bytes names the tensor") {
    SafetensorsWriter writer(path, specs);
    writer.append(bytes.data(), 16);
    writer.write_at("b", 2, bytes.data(), 1);
    require_error([&] { writer.commit(); }, {path, "'b'", "byte 0", "never written"});
    CHECK_FALSE(file_exists(path));
  }
  SECTION("append past the end, write_at outside a tensor or to an unknown one") {
    SafetensorsWriter writer(path, specs);
    writer.append(bytes.data(), 18);
    require_error([&] { writer.append(bytes.data(), 2); }, {path, "past the end"});
    require_error([&] { writer.write_at("a", 15, bytes.data(), 2); }, {path, "'a'", "outside"});
    require_error([&] { writer.write_at("c", 0, bytes.data(), 1); }, {path, "'c'"});
    writer.append(bytes.data(), 1);
    writer.commit();
    require_error([&] { writer.append(bytes.data(), 0); }, {path, "after commit"});
    require_error([&] { writer.write_at("a", 0, bytes.data(), 1); }, {path, "after commit"});
    require_error([&] { writer.commit(); }, {path, "after commit"});
    CHECK(SafetensorsReader(path).tensors().size() == 2);
  }
  SECTION("rename onto a directory fails and the temp file is removed") {
    std::filesystem::create_directory(path);
    std::string temp;
    {
      SafetensorsWriter writer(path, specs);
      temp = writer.temp_path();
      writer.append(bytes.data(), bytes.size());
      require_error([&] { writer.commit(); }, {"rename", path});
    }
    CHECK_FALSE(file_exists(temp));
  }
  SECTION("missing directory") {
    require_error([&] { SafetensorsWriter(tmp.file("no/such/dir.safetensors"), specs); },
                  {"no/such/dir.safetensors", "cannot open"});
  }
  SECTION("moved writer owns the file") {
    SafetensorsWriter first(path, specs);
    SafetensorsWriter second(std::move(first));
    second.append(bytes.data(), bytes.size());
    second.commit();
    CHECK(SafetensorsReader(path).at("b").n_bytes() == 3);
  }
}

TEST_CASE("a failing write() is reported with the file name", "[formats]") {
  // RLIMIT_FSIZE makes write() fail with EFBIG, standing in for ENOSPC on a full disk.
  TempDir tmp;
  const std::string path = tmp.file("big.safetensors");
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = saved;
  small.rlim_cur = 64 * 1024;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string temp;
  {
    SafetensorsWriter writer(path, {{"t", DType::kU8, {1 << 20}}});
    temp = writer.temp_path();
    const std::string bytes(1 << 20, 'y');
    require_error([&] { writer.append(bytes.data(), bytes.size()); }, {path, "write of"});
  }
  REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
  std::signal(SIGXFSZ, old_handler);
  CHECK_FALSE(file_exists(temp));
  CHECK_FALSE(file_exists(path));
}

TEST_CASE("a file truncated after opening fails on read, not with garbage", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("t.safetensors");
  const TensorSpec spec{"t", DType::kF32, {256}};
  {
    SafetensorsWriter writer(path, {spec});
    const std::string bytes = pattern_bytes(spec);
    writer.append(bytes.data(), bytes.size());
    writer.commit();
  }
  const SafetensorsReader reader(path);
  std::filesystem::resize_file(path, reader.data_offset() + 100);
  require_error([&] { reader.read_tensor(reader.at("t")); }, {path, "end of file"});
}

TEST_CASE("empty checkpoint file: no tensors", "[formats]") {
  TempDir tmp;
  const std::string path = tmp.file("empty.safetensors");
  SafetensorsWriter writer(path, {});
  writer.commit();
  const SafetensorsReader reader(path);
  CHECK(reader.tensors().empty());
  CHECK(reader.data_offset() == reader.file_size());
  CHECK(reader.metadata().at("format") == "pt");
}
