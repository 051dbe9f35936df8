// inspect_run: the rank stores, their locks, job.json, phase and ETA, the overall state
// (see run_status.hpp). OUT and the verdicts are in status_out.cpp and status_verdicts.cpp.
#include "status/run_status.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "core/check.hpp"
#include "formats/atomic_file.hpp"
#include "job/job_record.hpp"

namespace qf::pipeline {
namespace {

namespace fs = std::filesystem;

// Rates use the last commits only: the first layers of a resumed run (recomputed, not
// rewritten) and a long pause would otherwise skew them.
constexpr size_t kRateWindow = 8;

double mtime_of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return double(st.st_mtim.tv_sec) + double(st.st_mtim.tv_nsec) * 1e-9;
}

StageProgress stage_progress(const formats::StoreInspection& store, const std::string& stage) {
  StageProgress progress;
  std::vector<double> times;
  for (const formats::StoreFileEntry& entry : store.manifest.files) {
    if (entry.stage != stage) continue;
    ++progress.n_committed;
    progress.n_bytes += entry.n_bytes;
    const double t = mtime_of(store.dir + "/" + entry.file);
    if (t > 0) times.push_back(t);
  }
  std::sort(times.begin(), times.end());
  if (!times.empty()) progress.last_commit = times.back();
  const size_t n = std::min(times.size(), kRateWindow);
  if (n >= 2) {
    const double span = times.back() - times[times.size() - n];
    if (span > 0) progress.rate = double(n - 1) / span;
  }
  return progress;
}

// Rank stores present: rank-0..rank-(W-1) for the world size rank 0's manifest (or job.json)
// names; without either, every rank-R directory there is.
int count_world_size(const std::string& work_dir, const nlohmann::json& job) {
  const auto rank0 = formats::RankStore::inspect(work_dir, 0);
  if (rank0.exists && rank0.error.empty()) return rank0.manifest.world_size;
  if (job.is_object() && job.value("world_size", 0) > 0) return job.value("world_size", 0);
  int n = 0;
  while (fs::exists(formats::RankStore::rank_dir(work_dir, n))) ++n;
  return n;
}

int layers_of_source(const std::string& source_dir) {
  if (source_dir.empty()) return -1;
  try {
    const nlohmann::json config = formats::read_json_file(source_dir + "/config.json");
    return config.value("num_hidden_layers", -1);
  } catch (const std::exception&) {
    return -1;
  }
}

// Phase from the committed history (job.json's phase wins while its writer lives).
void add_phase_and_eta(RunStatus& status) {
  if (status.ranks.empty() || status.n_layers < 0) {
    status.phase = status.ranks.empty() ? "startup" : "unknown";
    return;
  }
  int min_calib = status.n_layers, min_quant = status.n_layers;
  for (const RankStatus& r : status.ranks) {
    min_calib = std::min(min_calib, r.calib.n_committed);
    min_quant = std::min(min_quant, r.quant.n_committed);
  }
  const bool calibrating = min_calib < status.n_layers;
  status.phase = calibrating                   ? "calibration"
                 : min_quant < status.n_layers ? "quantization"
                                               : "export";
  if (status.phase == "export" && status.out.ok()) status.phase = "done";
  if (status.writer_alive && status.job.is_object() && status.job.contains("phase")) {
    status.phase = status.job.value("phase", status.phase);
  }
  if (status.phase != "calibration" && status.phase != "quantization") return;
  // The slowest rank decides: every rank must finish before the export.
  double eta = 0;
  for (const RankStatus& r : status.ranks) {
    const StageProgress& p = calibrating ? r.calib : r.quant;
    const int remaining = status.n_layers - p.n_committed;
    if (remaining <= 0) continue;
    if (p.rate <= 0) return;  // unknown
    eta = std::max(eta, remaining / p.rate);
  }
  status.eta_seconds = eta;
}

void add_writer(RunStatus& status) {
  auto consider = [&](const formats::LockProbe& probe, const std::string& what) {
    if (probe.state == formats::LockState::kHeld) {
      if (!status.writer_alive) {
        status.writer = probe.record.describe();
        if (status.writer.empty()) status.writer = "pid " + std::to_string(probe.holder_pid);
      }
      status.writer_alive = true;
    } else if (probe.state == formats::LockState::kUnknown) {
      status.notes.push_back(what + ": cannot tell whether its writer lives (" + probe.how + ")");
    }
  };
  for (const RankStatus& r : status.ranks) consider(r.lock, r.store.dir);
  consider(status.out.lock, "OUT " + status.out.dir);
  if (!status.writer_alive && status.job.is_object() &&
      status.job.value("status", "") == "running") {
    status.notes.push_back(
        "job.json says running (pid " + std::to_string(status.job.value("pid", 0L)) + " on host " +
        status.job.value("host", std::string("?")) + ") but no lock is held: the run is dead");
  }
}

void decide_state(RunStatus& status) {
  if (status.writer_alive) {
    status.state = RunState::kRunning;
    status.state_reason = "a live process writes this run: " + status.writer;
    return;
  }
  if (status.out.ok()) {
    status.state = RunState::kComplete;
    status.state_reason = status.out.dir + " exists and passes its checksums (" +
                          std::to_string(status.out.n_files_checked) + " files)";
    return;
  }
  if (status.out.exists && !status.out.problems.empty()) {
    status.state = RunState::kBroken;
    status.state_reason = status.out.dir + " fails its checks: " + status.out.problems.front();
    return;
  }
  if (status.resume.allowed || status.export_only.allowed) {
    status.state = RunState::kResumable;
    status.state_reason = status.export_only.allowed ? "every layer is committed: --export-only "
                                                       "(or --resume) writes OUT"
                                                     : "stopped: --resume continues it";
    return;
  }
  status.state = RunState::kBroken;
  status.state_reason = status.resume.text;
}

}  // namespace

const char* run_state_name(RunState state) {
  switch (state) {
    case RunState::kComplete:
      return "complete";
    case RunState::kRunning:
      return "running";
    case RunState::kResumable:
      return "resumable";
    case RunState::kBroken:
      return "broken";
  }
  return "?";
}

RunStatus inspect_run(const StatusOptions& options) {
  std::error_code error;
  QF_CHECK(fs::is_directory(options.work_dir, error), "--work", options.work_dir,
           "is not a directory");
  RunStatus status;
  status.work_dir = options.work_dir;
  status.job = read_job_record(options.work_dir, &status.job_note);
  const bool have_job = status.job.is_object();
  status.source_dir = !options.in_dir.empty() ? options.in_dir
                      : have_job              ? status.job.value("source", std::string())
                                              : std::string();
  status.world_size = count_world_size(options.work_dir, status.job);
  status.n_layers = have_job ? status.job.value("n_layers", -1) : -1;
  if (status.n_layers < 0) status.n_layers = layers_of_source(status.source_dir);
  for (int rank = 0; rank < status.world_size; ++rank) {
    RankStatus r;
    r.rank = rank;
    r.store = formats::RankStore::inspect(options.work_dir, rank);
    if (r.store.exists && r.store.error.empty()) {
      r.calib = stage_progress(r.store, formats::kStageCalib);
      r.quant = stage_progress(r.store, formats::kStageQuant);
    }
    r.lock = formats::probe_lock(formats::RankStore::lock_path(options.work_dir, rank));
    status.ranks.push_back(std::move(r));
  }
  if (!status.ranks.empty() && status.ranks[0].store.exists &&
      status.ranks[0].store.error.empty()) {
    status.provenance = status.ranks[0].store.manifest.provenance;
  }
  add_out_status(status, options);
  add_writer(status);
  add_phase_and_eta(status);
  add_verdicts(status);
  decide_state(status);
  return status;
}

}  // namespace qf::pipeline
