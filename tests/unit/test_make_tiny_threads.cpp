// make-tiny on several threads: every output file is byte-identical to the one-thread run, tight
// in-flight caps do not deadlock, and errors of a worker or of the sink reach the caller as the
// original qf::Error with every thread stopped and the temp directory removed. make_tiny reads
// QF_THREADS, so the end-to-end cases set it.
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "formats_test_util.hpp"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "synthetic/make_tiny.hpp"
#include "synthetic/synthetic_weights.hpp"

using namespace qf;
using formats::test::read_bytes;
using formats::test::TempDir;
using model::WeightFormat;

namespace {

// Sets QF_THREADS for one scope (make_tiny reads it), restoring the previous value.
class ThreadsEnv {
 public:
  explicit ThreadsEnv(const std::string& value) {
    if (const char* old = ::getenv("QF_THREADS")) old_ = old, had_ = true;
    ::setenv("QF_THREADS", value.c_str(), 1);
  }
  ~ThreadsEnv() {
    if (had_)
      ::setenv("QF_THREADS", old_.c_str(), 1);
    else
      ::unsetenv("QF_THREADS");
  }

 private:
  std::string old_;
  bool had_ = false;
};

pipeline::MakeTinyOptions options(const std::string& out, WeightFormat format, int n_shards) {
  pipeline::MakeTinyOptions o;
  o.config = model::preset_config("tiny");
  o.format = format;
  o.n_shards = n_shards;
  o.seed = 11;
  o.out_dir = out;
  return o;
}

std::vector<std::string> file_names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// All bytes of `tensors`, concatenated in table order, as generate_tensors delivers them.
std::vector<uint8_t> generate_all(const std::vector<model::ModelTensor>& tensors,
                                  const pipeline::GenerateOptions& generate) {
  std::vector<uint8_t> bytes;
  size_t expected = 0;
  pipeline::generate_tensors(model::preset_config("tiny"), WeightFormat::kNative, 11, tensors,
                             generate, [&](size_t i, const void* data, uint64_t n_bytes) {
                               // In order, each tensor in consecutive calls.
                               REQUIRE((i == expected || i + 1 == expected));
                               expected = i + 1;
                               const auto* p = static_cast<const uint8_t*>(data);
                               bytes.insert(bytes.end(), p, p + n_bytes);
                             });
  CHECK(expected == tensors.size());
  return bytes;
}

}  // namespace

TEST_CASE("make-tiny output is byte-identical for 1 and 4 threads", "[make_tiny]") {
  for (const WeightFormat format : {WeightFormat::kNative, WeightFormat::kBf16}) {
    INFO("format " << model::weight_formats().name(format));
    TempDir tmp;
    {
      ThreadsEnv env("1");
      pipeline::make_tiny(options(tmp.file("t1"), format, 3));
    }
    {
      ThreadsEnv env("4");
      pipeline::make_tiny(options(tmp.file("t4"), format, 3));
    }
    const auto names = file_names(tmp.file("t1"));
    CHECK(names.size() == 5);  // 3 shards, index, config
    REQUIRE(names == file_names(tmp.file("t4")));
    for (const auto& name : names) {
      INFO("file " << name);
      CHECK(read_bytes(tmp.file("t1/" + name)) == read_bytes(tmp.file("t4/" + name)));
    }
  }
}

TEST_CASE("generate_tensors: same bytes for any thread count and in-flight caps", "[make_tiny]") {
  const auto tensors =
      model::checkpoint_tensors(model::preset_config("tiny"), WeightFormat::kNative);
  pipeline::GenerateOptions one;
  const std::vector<uint8_t> want = generate_all(tensors, one);
  CHECK(want.size() == model::total_bytes(tensors));
  struct Case {
    int n_threads, max_units;
    uint64_t max_bytes;
  };
  // Caps of one unit and of 1 byte (every unit exceeds it, so it must still run alone).
  for (const Case c : {Case{2, 0, uint64_t{2} << 30}, Case{3, 1, uint64_t{2} << 30}, Case{4, 0, 1},
                       Case{7, 2, 100000}, Case{64, 0, uint64_t{2} << 30}}) {
    INFO("threads " << c.n_threads << " units " << c.max_units << " bytes " << c.max_bytes);
    pipeline::GenerateOptions g;
    g.n_threads = c.n_threads;
    g.max_units_in_flight = c.max_units;
    g.max_bytes_in_flight = c.max_bytes;
    CHECK(generate_all(tensors, g) == want);
  }
}

TEST_CASE("generate_tensors: a worker's error reaches the caller as the qf::Error", "[make_tiny]") {
  auto tensors = model::checkpoint_tensors(model::preset_config("tiny"), WeightFormat::kNative);
  // A 3-D tensor with no value rule, in the middle of the table: its worker throws.
  model::ModelTensor bad = tensors.front();
  bad.spec.name = "layers.0.bogus";
  bad.spec.shape = {2, 3, 4};
  bad.scale_name.clear();
  bad.role = bad.native_role = model::TensorRole::kPlain;
  tensors.insert(tensors.begin() + static_cast<std::ptrdiff_t>(tensors.size() / 2), bad);
  for (const int n_threads : {1, 2, 4}) {
    INFO("threads " << n_threads);
    pipeline::GenerateOptions g;
    g.n_threads = n_threads;
    size_t n_sunk = 0;
    try {
      pipeline::generate_tensors(model::preset_config("tiny"), WeightFormat::kNative, 11, tensors,
                                 g, [&](size_t i, const void*, uint64_t) { n_sunk = i + 1; });
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("layers.0.bogus") != std::string::npos);
    }
    CHECK(n_sunk <= tensors.size() / 2);  // nothing after the bad tensor was delivered
  }
}

TEST_CASE("generate_tensors: the sink's error stops the workers and is rethrown", "[make_tiny]") {
  const auto tensors =
      model::checkpoint_tensors(model::preset_config("tiny"), WeightFormat::kNative);
  for (const int n_threads : {1, 3}) {
    INFO("threads " << n_threads);
    pipeline::GenerateOptions g;
    g.n_threads = n_threads;
    CHECK_THROWS_AS(
        pipeline::generate_tensors(
            model::preset_config("tiny"), WeightFormat::kNative, 11, tensors, g,
            [&](size_t i, const void*, uint64_t) { QF_CHECK(i < 10, "sink full at tensor", i); }),
        Error);
  }
}

// A failing write (file size limit) on the writer thread while workers are generating.
TEST_CASE("make-tiny on threads: a write failure leaves no temp directory and no --out",
          "[make_tiny]") {
  TempDir tmp;
  ThreadsEnv env("4");
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of a kill
  rlimit small = old;
  small.rlim_cur = 512 * 1024;  // tiny shards are ~2.8 MiB each
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  bool threw = false;
  try {
    pipeline::make_tiny(options(tmp.file("out"), WeightFormat::kNative, 2));
  } catch (const Error& e) {
    threw = true;
    WARN("expected failure: " << e.what());
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  CHECK(threw);
  CHECK(file_names(tmp.path()).empty());  // neither out nor out.tmp.<pid>
}
