// `status` building blocks on fabricated work directories: the read-only lock probe (absent,
// held by a live FileLock, free once released; the probe never creates the file), the store
// states and exit codes of inspect_run (resumable, running, broken, complete), and that
// looking changes nothing on disk.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "catch_compat.hpp"
#include "formats/checksum.hpp"
#include "formats/file_lock.hpp"
#include "formats/lock_probe.hpp"
#include "formats/rank_store.hpp"
#include "rank_store_test_util.hpp"
#include "status/run_status.hpp"
#include "status/status_print.hpp"

using namespace qf;
using namespace qf::formats;
using namespace qf::formats::test;
using qf::pipeline::RunState;

namespace {

// A 2-rank, 2-layer work dir: rank 0 complete, rank 1 with `rank1_quant` quant layers.
void make_work(const std::string& work, int rank1_quant) {
  for (int rank = 0; rank < 2; ++rank) {
    auto store = RankStore::create(work, rank, 2, make_provenance());
    for (int layer = 0; layer < 2; ++layer) {
      store.commit_layer(make_layer_record(layer, kStageCalib), kStageCalib);
      if (rank == 0 || layer < rank1_quant) {
        store.commit_layer(make_layer_record(layer, kStageQuant), kStageQuant);
      }
    }
  }
  std::ofstream(work + "/job.json") << nlohmann::json{
      {"format", "quantforge.job"},
      {"format_version", 1},
      {"n_layers", 2},
      {"world_size", 2},
      {"status", "failed"}}.dump();
}

// Every path under `dir` with its size and mtime: what "changes nothing" compares.
std::string listing(const std::string& dir) {
  std::string text;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    struct stat st {};
    REQUIRE(::lstat(entry.path().c_str(), &st) == 0);
    text += entry.path().string() + " " + std::to_string(st.st_size) + " " +
            std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "\n";
  }
  return text;
}

pipeline::RunStatus look(const std::string& work, const std::string& out = "") {
  pipeline::StatusOptions options;
  options.work_dir = work;
  options.out_dir = out;
  return pipeline::inspect_run(options);
}

}  // namespace

TEST_CASE("probe_lock: absent, held, free; never creates the file") {
  TempDir dir;
  const std::string path = dir.file("writer.lock");
  CHECK(probe_lock(path).state == LockState::kAbsent);
  CHECK_FALSE(std::filesystem::exists(path));
  {
    FileLock lock = FileLock::acquire(path, "test", "hint", 0);
    const LockProbe probe = probe_lock(path);
    CHECK(probe.state == LockState::kHeld);
    CHECK(probe.holder_pid == ::getpid());
    CHECK(probe.record.pid == ::getpid());
    // Probing did not disturb the holder: a second probe sees the same.
    CHECK(probe_lock(path).state == LockState::kHeld);
  }
  const LockState after = probe_lock(path).state;
  CHECK((after == LockState::kFree || after == LockState::kAbsent));
}

TEST_CASE("inspect_run: an unfinished store is resumable, export-only refused") {
  TempDir dir;
  const std::string work = dir.file("work");
  make_work(work, 1);
  const std::string before = listing(work);
  const auto status = look(work);
  CHECK(listing(work) == before);
  CHECK(status.state == RunState::kResumable);
  CHECK(status.world_size == 2);
  CHECK(status.n_layers == 2);
  REQUIRE(status.ranks.size() == 2);
  CHECK(status.ranks[0].quant.n_committed == 2);
  CHECK(status.ranks[1].quant.n_committed == 1);
  CHECK(status.ranks[1].calib.n_bytes > 0);
  CHECK(status.phase == "quantization");
  CHECK(status.resume.allowed);
  CHECK_FALSE(status.export_only.allowed);
  CHECK(status.export_only.text.find("rank 1") != std::string::npos);
  const nlohmann::json j = pipeline::status_to_json(status);
  CHECK(j["state"] == "resumable");
  CHECK(j["exit_code"] == 4);
  CHECK(j["ranks"][1]["quant"]["committed"] == 1);
}

TEST_CASE("inspect_run: a live writer is running; looking does not disturb it") {
  TempDir dir;
  const std::string work = dir.file("work");
  make_work(work, 2);
  auto store = RankStore::create(work, 1, 2, make_provenance());  // holds rank 1's lock
  const std::string before = listing(work);
  const auto status = look(work);
  CHECK(listing(work) == before);
  CHECK(status.state == RunState::kRunning);
  CHECK(status.writer_alive);
  CHECK(status.ranks[1].lock.state == LockState::kHeld);
  CHECK_FALSE(status.resume.allowed);
  // The writer goes on committing after being looked at.
  store.commit_layer(make_layer_record(5, kStageQuant), kStageQuant);
}

TEST_CASE("inspect_run: every layer committed, no OUT: export-only allowed") {
  TempDir dir;
  const std::string work = dir.file("work");
  make_work(work, 2);
  const auto status = look(work, dir.file("out"));
  CHECK(status.state == RunState::kResumable);
  CHECK(status.export_only.allowed);
  CHECK(status.phase == "export");
}

TEST_CASE("inspect_run: a damaged store is broken") {
  TempDir dir;
  const std::string work = dir.file("work");
  make_work(work, 2);
  const std::string file = RankStore::rank_dir(work, 1) + "/layer-0001.quant.h5";
  std::ofstream(file, std::ios::app) << "x";  // a size the manifest does not list
  const auto status = look(work);
  CHECK(status.state == RunState::kBroken);
  CHECK_FALSE(status.resume.allowed);
  CHECK(status.resume.text.find("rank-1") != std::string::npos);
}

TEST_CASE("inspect_run: OUT with matching checksums is complete, a changed file is broken") {
  TempDir dir;
  const std::string work = dir.file("work");
  const std::string out = dir.file("out");
  make_work(work, 2);
  std::filesystem::create_directory(out);
  std::ofstream(out + "/model.safetensors") << "weights";
  const std::string hex = checksum_hex(checksum64("weights", 7));
  std::ofstream(out + "/" + kChecksumsFileName)
      << nlohmann::json{{"model.safetensors", hex}}.dump();
  auto status = look(work, out);
  CHECK(status.state == RunState::kComplete);
  CHECK(status.out.n_files_checked == 1);
  CHECK(status.phase == "done");
  CHECK_FALSE(status.resume.allowed);  // OUT is taken
  std::ofstream(out + "/model.safetensors") << "Weights";
  status = look(work, out);
  CHECK(status.state == RunState::kBroken);
  REQUIRE_FALSE(status.out.problems.empty());
}
