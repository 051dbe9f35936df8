// status_to_json and print_status_text (see status_print.hpp).
#include "status/status_print.hpp"

#include <cmath>
#include <cstdio>
#include <ctime>

#include "core/progress.hpp"

namespace qf::pipeline {
namespace {

using json = nlohmann::json;

std::string utc(double unix_time) {
  if (unix_time <= 0) return "";
  const auto seconds = static_cast<std::time_t>(std::floor(unix_time));
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

json time_or_null(double unix_time) { return unix_time > 0 ? json(utc(unix_time)) : json(); }

json stage_json(const StageProgress& p) {
  return {{"committed", p.n_committed},
          {"bytes", p.n_bytes},
          {"last_commit", time_or_null(p.last_commit)},
          {"layers_per_second", p.rate}};
}

json lock_json(const formats::LockProbe& lock) {
  json j = {{"state", formats::lock_state_name(lock.state)}, {"how", lock.how}};
  if (lock.state == formats::LockState::kHeld || lock.record.pid > 0) {
    j["pid"] = lock.holder_pid > 0 ? lock.holder_pid : lock.record.pid;
    j["host"] = lock.record.host;
    j["since"] = lock.record.since;
  }
  return j;
}

std::string stage_text(const StageProgress& p, int n_layers) {
  std::string text = std::to_string(p.n_committed) + "/" +
                     (n_layers < 0 ? std::string("?") : std::to_string(n_layers));
  if (p.rate > 0) text += " (" + ProgressMeter::format_seconds(1.0 / p.rate) + "/layer)";
  return text;
}

}  // namespace

json status_to_json(const RunStatus& s) {
  json ranks = json::array();
  for (const RankStatus& r : s.ranks) {
    ranks.push_back({{"rank", r.rank},
                     {"dir", r.store.dir},
                     {"exists", r.store.exists},
                     {"error", r.store.error.empty() ? json() : json(r.store.error)},
                     {"problems", r.store.problems},
                     {"temp_files", r.store.temp_files},
                     {"calib", stage_json(r.calib)},
                     {"quant", stage_json(r.quant)},
                     {"writer", lock_json(r.lock)}});
  }
  json identity = {{"source", s.source_dir},
                   {"provenance", s.provenance},
                   {"checked", s.identity_checked},
                   {"differences", s.identity_differences}};
  if (s.job.is_object()) {
    identity["options"] = s.job.value("options", json());
    identity["mode"] = s.job.value("mode", json());
  }
  const OutStatus& o = s.out;
  json out = {{"dir", o.dir},
              {"exists", o.exists},
              {"staging", o.staging_exists},
              {"writer", lock_json(o.lock)},
              {"checksums", o.has_checksums},
              {"files_checked", o.n_files_checked},
              {"ok", o.ok()},
              {"problems", o.problems}};
  return {{"format", "quantforge.status"},
          {"format_version", 1},
          {"work", s.work_dir},
          {"state", run_state_name(s.state)},
          {"exit_code", static_cast<int>(s.state)},
          {"reason", s.state_reason},
          {"phase", s.phase},
          {"eta_seconds", s.eta_seconds >= 0 ? json(s.eta_seconds) : json()},
          {"writer_alive", s.writer_alive},
          {"writer", s.writer},
          {"world_size", s.world_size},
          {"n_layers", s.n_layers},
          {"ranks", ranks},
          {"job", s.job},
          {"identity", identity},
          {"resume", {{"allowed", s.resume.allowed}, {"text", s.resume.text}}},
          {"export_only", {{"allowed", s.export_only.allowed}, {"text", s.export_only.text}}},
          {"out", out},
          {"notes", s.notes}};
}

void print_status_text(const RunStatus& s, std::ostream& out) {
  out << "work   " << s.work_dir << "\n";
  out << "state  " << run_state_name(s.state) << ": " << s.state_reason << "\n";
  out << "phase  " << s.phase;
  if (s.eta_seconds >= 0) out << ", ETA " << ProgressMeter::format_seconds(s.eta_seconds);
  out << "\n";
  if (s.provenance.is_object()) {
    const json& o = s.provenance.value("options", json::object());
    out << "run    source " << (s.source_dir.empty() ? "?" : s.source_dir) << ", recipe "
        << o.value("recipe", "?") << ", backend " << o.value("backend", "?") << ", calibration "
        << s.provenance.value("calibration", json::object()).dump() << "\n";
  }
  out << "ranks  " << s.world_size << " store(s), " << s.n_layers << " layer(s) each\n";
  for (const RankStatus& r : s.ranks) {
    out << "  rank " << r.rank << ": ";
    if (!r.store.exists) {
      out << "no store yet\n";
      continue;
    }
    if (!r.store.error.empty()) {
      out << "DAMAGED: " << r.store.error << "\n";
      continue;
    }
    const double last = std::max(r.calib.last_commit, r.quant.last_commit);
    out << "calib " << stage_text(r.calib, s.n_layers) << ", quant "
        << stage_text(r.quant, s.n_layers) << ", "
        << ProgressMeter::format_bytes(double(r.calib.n_bytes + r.quant.n_bytes))
        << (last > 0 ? ", last commit " + utc(last) : std::string()) << ", writer "
        << formats::lock_state_name(r.lock.state);
    if (r.lock.state == formats::LockState::kHeld) out << " (" << r.lock.record.describe() << ")";
    out << "\n";
    for (const std::string& p : r.store.problems) out << "    problem: " << p << "\n";
  }
  out << "resume       " << s.resume.text << "\n";
  out << "export-only  " << s.export_only.text << "\n";
  if (!s.out.dir.empty()) {
    out << "out    " << s.out.dir << ": "
        << (!s.out.exists ? "absent"
            : s.out.ok()
                ? "ok (" + std::to_string(s.out.n_files_checked) + " checksums)"
                : "FAILS: " + (s.out.problems.empty() ? std::string("?") : s.out.problems.front()))
        << (s.out.staging_exists ? " (staging directory present)" : "") << "\n";
  }
  for (const std::string& note : s.notes) out << "note   " << note << "\n";
}

}  // namespace qf::pipeline
