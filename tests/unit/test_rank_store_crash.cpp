// kill -9 at random moments: a forked writer commits layers in a loop and is SIGKILLed after a
// seeded random delay, 20 times on one store; every committed layer must then read back intact.
// On a loaded machine a short delay may kill the writer before its first commit every time, so
// after two kills without progress the next kill waits until the writer committed a layer.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>

#include "catch_compat.hpp"
#include "core/log.hpp"
#include "formats/rank_store.hpp"
#include "formats_test_util.hpp"
#include "rank_store_test_util.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;

namespace {

constexpr uint64_t kRecordSeed = 7;
constexpr size_t kWeightBytes = 48 << 10;  // per weight tensor: wide enough windows to land in
constexpr int kIterations = 20;
constexpr int kMaxDelayUs = 60000;

// The child: resume the store and commit (calib, quant) for layer 0, 1, 2, ... until killed.
[[noreturn]] void run_writer(const std::string& work_dir) {
  set_log_level(LogLevel::kError);
  try {
    RankStore store = RankStore::create(work_dir, 0, 1, make_provenance(), StoreVerify::kSizes);
    for (int layer = 0;; ++layer) {
      for (const char* stage : {kStageCalib, kStageQuant}) {
        if (store.has_layer(layer, stage)) continue;
        store.commit_layer(make_layer_record(layer, stage, kRecordSeed, kWeightBytes), stage);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "writer failed: %s\n", e.what());
    ::_exit(3);
  }
}

std::vector<int> iota_vector(size_t n) {
  std::vector<int> values(n);
  std::iota(values.begin(), values.end(), 0);
  return values;
}

// Polls (up to 60 s) until the store lists more than `n_calib` committed calib layers.
void wait_for_progress(const std::string& work_dir, size_t n_calib) {
  for (int i = 0; i < 6000; ++i) {
    try {
      const RankStore store = RankStore::open(work_dir, 0, StoreVerify::kSizes);
      if (store.committed_layers(kStageCalib).size() > n_calib) return;
    } catch (const Error&) {  // not created yet, or a commit in flight: look again
    }
    ::usleep(10000);
  }
}

size_t count_temp_files(const std::string& dir) {
  size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) ++n;
  }
  return n;
}

}  // namespace

TEST_CASE("kill -9 at random moments never damages committed layers", "[rank_store][crash]") {
  // The reader's warnings about each kill's leftovers are expected; keep the output short.
  const LogLevel saved_level = log_level();
  set_log_level(LogLevel::kError);
  TempDir tmp;
  const std::string dir = RankStore::rank_dir(tmp.path(), 0);
  std::mt19937 rng(20250131);
  std::uniform_int_distribution<int> delay_us(0, kMaxDelayUs);
  size_t n_calib_before = 0;
  size_t n_kills_mid_write = 0;
  int kills_without_progress = 0;

  for (int iteration = 0; iteration < kIterations; ++iteration) {
    INFO("iteration " << iteration);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) run_writer(tmp.path());
    if (kills_without_progress >= 2) wait_for_progress(tmp.path(), n_calib_before);
    ::usleep(static_cast<useconds_t>(delay_us(rng)));
    REQUIRE(::kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    // Any other end means the writer failed on its own (it printed why), e.g. a failed resume.
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);

    if (!file_exists(dir + "/manifest.json")) {  // killed before the store existed
      REQUIRE(n_calib_before == 0);
      ++kills_without_progress;
      continue;
    }
    if (count_temp_files(dir) > 0) ++n_kills_mid_write;

    // Full verification: every listed file has its size and checksum.
    const RankStore store = RankStore::open(tmp.path(), 0, StoreVerify::kChecksums);
    const std::vector<int> calib = store.committed_layers(kStageCalib);
    const std::vector<int> quant = store.committed_layers(kStageQuant);
    // Commits happen in the order calib 0, quant 0, calib 1, ...: both are prefixes of the
    // layers and quant lags calib by at most one layer.
    CHECK(calib == iota_vector(calib.size()));
    CHECK(quant == iota_vector(quant.size()));
    CHECK((quant.size() == calib.size() || quant.size() + 1 == calib.size()));
    CHECK(calib.size() >= n_calib_before);  // nothing committed is ever lost
    kills_without_progress = calib.size() > n_calib_before ? 0 : kills_without_progress + 1;
    n_calib_before = calib.size();
    for (const int layer : calib) {
      CHECK(store.read_layer(layer, kStageCalib) ==
            make_layer_record(layer, kStageCalib, kRecordSeed, kWeightBytes));
    }
    for (const int layer : quant) {
      CHECK(store.read_layer(layer, kStageQuant) ==
            make_layer_record(layer, kStageQuant, kRecordSeed, kWeightBytes));
    }
  }

  // A final resume cleans up whatever the last kill left and carries on.
  RankStore store = RankStore::create(tmp.path(), 0, 1, make_provenance());
  CHECK(count_temp_files(dir) == 0);
  const int next = static_cast<int>(store.committed_layers(kStageCalib).size());
  if (!store.has_layer(next - 1, kStageQuant) && next > 0) {
    store.commit_layer(make_layer_record(next - 1, kStageQuant, kRecordSeed, kWeightBytes),
                       kStageQuant);
  }
  store.commit_layer(make_layer_record(next, kStageCalib, kRecordSeed, kWeightBytes), kStageCalib);
  CHECK(store.verify_files().empty());
  CHECK(n_calib_before > 0);  // the writers made progress between kills
  set_log_level(saved_level);
  std::fprintf(stderr, "crash test: %zu calib layers committed over %d kills, %zu mid-write\n",
               n_calib_before, kIterations, n_kills_mid_write);
}
