// WORK/job.json: what the last `quantize` invocation on a work directory is: who runs it (rank 0's
// pid and host), with which options, source and OUT, which phase since when, and how it ended.
// Written by rank 0 for `quantforge status`, which can then name the run, find OUT and the
// source, and tell the phase and rate without the job's log. Never read by the job itself and
// not part of the run's identity (the stores' provenance is): deleting it loses nothing.
// Owns: the file's fields and its writes. Does not own the stores, the phases or the options.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace qf::pipeline {

// ================================ WORK/job.json, format version 1 ===============================
//   format          "quantforge.job"
//   format_version  1
//   tool            "quantforge X.Y.Z"
//   command         "quantize"
//   mode            "run" | "resume" | "export-only" | "export-only --shard"
//   source, out, work   absolute paths of --in, --out, --work
//   world_size      ranks of the invocation
//   n_layers        regular layers of the model (what each rank store holds when complete)
//   pid, host       rank 0's process
//   started         UTC ISO 8601
//   progress_json   the --progress-json file, or null
//   options         the options as the quantization report names them (recipe, expert_weights,
//                   kv_cache, backend, act_scale, shard, calibration {samples, seq_len, seed,
//                   calib, amax_file, calib_batch, cpu_bf16_inputs})
//   phase           the current (or last) phase: startup, calibration, quantization, export,
//                   report, done; phase_since: when it began
//   phases          [{phase, started, ended}] in order (ended null for the current one)
//   status          "running" | "ok" | "failed"; finished: UTC or null; message: why it failed
// Written atomically (temp + rename) at the start, at each phase change and at the end.
// ================================================================================================
constexpr const char* kJobRecordFormat = "quantforge.job";
constexpr int kJobRecordFormatVersion = 1;

std::string job_record_path(const std::string& work_dir);  // WORK/job.json

// The record at WORK/job.json, or null when there is none or it is not a readable job record
// (`*error` says why, if given).
nlohmann::json read_job_record(const std::string& work_dir, std::string* error = nullptr);

// The writing side, used by rank 0 only (a default-made or unstarted record writes nothing).
// Write failures are logged as one warning and never fail the job.
class JobRecord {
 public:
  // Writes the record of a starting invocation: `fields` (the identity fields above) plus the
  // format, pid, host, started, phase "startup", status "running".
  void start(const std::string& work_dir, nlohmann::json fields);
  // Ends the current phase and begins `phase`.
  void phase(const std::string& phase);
  // The end: status ok (phase "done") or failed with `message`.
  void finish(bool ok, const std::string& message);
  bool started() const { return !path_.empty(); }

 private:
  void write();
  std::string path_;
  nlohmann::json doc_;
  bool warned_ = false;
};

}  // namespace qf::pipeline
