// The machine-readable progress stream of a long job (`--progress-json FILE`): one JSON object
// per line, appended by rank 0 only, one write() per line (O_APPEND: a line is never torn or
// interleaved, `tail -f` sees each line once it is complete; a resumed run appends to the same
// file). Owns: the file, the common fields, the event names below. Does not own what happens
// (the jobs emit) nor the human log (log.hpp; its warnings and errors are copied here).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace qf {

// ================================ progress stream, schema version 1 =============================
// Every line: {"v": 1, "event": NAME, "time": UTC ISO 8601 with milliseconds,
//              "t": seconds since the stream was opened (monotonic), "job": "quantize"|"dequant",
//              ...the event's fields}
// Fields are added, never renamed or removed, within schema version 1; readers ignore unknown
// fields and events.
//   start            command, mode, world_size, pid, host, plus the job's paths (in, out, work)
//   phase            phase (the new one), previous ("" at the first): quantize: calibration,
//                    quantization, export, report; dequant: convert, finish
//   layer_committed  layer, rank, stage ("calib" | "quant"), bytes (layer file), seconds (the
//                    commit: HDF5 write, checksum, fsync), at (UTC time the commit finished on
//                    its rank; the line's "time" is when rank 0 learned of it: other ranks'
//                    commits arrive with the next collective step, see README)
//   progress         phase, done, total, unit ("layers" | "B"), rate (unit/s), eta_seconds;
//                    calibration also tokens_per_second, layer
//   warning          message, rank (a warning logged on rank 0)
//   error            message (an error logged on rank 0)
//   end              status ("ok" | "failed"), seconds; message when failed
// ================================================================================================
constexpr int kProgressSchemaVersion = 1;

namespace progress_stream {

// Opens `path` for appending (created 0644 if absent) on rank 0; other ranks and an empty path
// keep the stream off. Throws qf::Error naming the file if it cannot be opened. `job` goes into
// every line.
void open(const std::string& path, const std::string& job);
// Closes the stream (idempotent); later emits are no-ops.
void close();
bool active();
// Appends one line: the common fields, then `fields` (an object). Thread-safe. Never throws: a
// failed write is logged once and turns the stream off (progress must not fail the job).
void emit(const char* event, const nlohmann::json& fields = nlohmann::json::object());
// Convenience: {"phase": phase, "previous": the last phase emitted}.
void phase(const std::string& phase);
// The last phase passed to phase() ("" before the first).
std::string current_phase();

}  // namespace progress_stream

// Closes the stream when the job's scope ends (the command's lifetime).
class ProgressStreamScope {
 public:
  ProgressStreamScope(const std::string& path, const std::string& job) {
    progress_stream::open(path, job);
  }
  ~ProgressStreamScope() { progress_stream::close(); }
  ProgressStreamScope(const ProgressStreamScope&) = delete;
  ProgressStreamScope& operator=(const ProgressStreamScope&) = delete;
};

}  // namespace qf
