// `quantforge status`: what a quantize run in WORK (and its OUT) is now, found by looking only:
// every file is opened read-only, no lock is taken or created, nothing is written, so it is
// safe while a job runs. Owns: the facts gathered and the verdicts. Does not own printing them
// (status_print.hpp), the store format (formats/rank_store) nor the job (job/).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/lock_probe.hpp"
#include "formats/rank_store.hpp"

namespace qf::pipeline {

struct StatusOptions {
  std::string work_dir;
  std::string out_dir;     // "" = the OUT job.json names (if any)
  std::string in_dir;      // "" = the source job.json names (if any)
  bool verify_out = true;  // checksum every file of OUT against quantforge_checksums.json
};

// The process exit codes of `status` (documented in README "Operating a run").
enum class RunState {
  kComplete = 0,   // OUT exists and passes its checksums
  kRunning = 3,    // a live process holds a store's or OUT's lock
  kResumable = 4,  // stopped; --resume or --export-only would go on (see the verdicts)
  kBroken = 5,     // stopped and neither would: damaged store, other run, OUT fails checks
};
const char* run_state_name(RunState state);  // "complete" | "running" | "resumable" | "broken"

// One stage ("calib" | "quant") of one rank store, from manifest.json and the files' mtimes.
struct StageProgress {
  int n_committed = 0;
  uint64_t n_bytes = 0;
  double last_commit = 0;  // unix time (the newest committed file's mtime), 0 if none
  double rate = 0;         // layers/s over the last commits (0: fewer than two)
};

struct RankStatus {
  int rank = 0;
  formats::StoreInspection store;
  StageProgress calib, quant;
  formats::LockProbe lock;  // WORK/rank-R/writer.lock
};

struct OutStatus {
  std::string dir;  // "" when no OUT is known
  bool exists = false;
  bool staging_exists = false;  // OUT.partial (an export in progress, or a killed one)
  formats::LockProbe lock;      // the staging lock (a live quantize owns OUT)
  bool has_checksums = false;
  int n_files_checked = 0;
  std::vector<std::string> problems;  // checksum mismatches, missing files, unreadable sums
  bool ok() const { return exists && has_checksums && problems.empty(); }
};

// What a command would do if run now, or why it would be refused.
struct Verdict {
  bool allowed = false;
  std::string text;
};

struct RunStatus {
  std::string work_dir;
  nlohmann::json job;    // WORK/job.json, or null
  std::string job_note;  // why there is no job record
  int world_size = 0;    // ranks of the stores (rank 0's manifest, else job.json)
  int n_layers = -1;     // regular layers per store when complete (-1: unknown)
  std::vector<RankStatus> ranks;
  nlohmann::json provenance;  // rank 0's (the run's identity), or null
  std::string source_dir;
  std::string phase;               // startup | calibration | quantization | export | report | done
  double eta_seconds = -1;         // the current phase's remaining time (-1: unknown)
  bool writer_alive = false;       // some lock is held by a live process
  std::string writer;              // "pid 123 on host h since ..." of the live writer
  std::vector<std::string> notes;  // a dead run, lock states that cannot be told, ...
  std::vector<std::string> identity_differences;  // stored provenance vs source + options now
  bool identity_checked = false;
  Verdict resume, export_only;
  OutStatus out;
  RunState state = RunState::kBroken;
  std::string state_reason;
};

// Gathers everything (read-only). Throws qf::Error only when WORK does not exist.
RunStatus inspect_run(const StatusOptions& options);

// Internals shared by the status files.
void add_out_status(RunStatus& status, const StatusOptions& options);  // status_out.cpp
void add_verdicts(RunStatus& status);                                  // status_verdicts.cpp

}  // namespace qf::pipeline
