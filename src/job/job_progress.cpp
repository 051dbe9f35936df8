// JobProgress: job.json, the progress stream's quantize events, the commit exchange.
#include "job/job_progress.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "core/progress_stream.hpp"
#include "formats/rank_store.hpp"
#include "job/quantize_job.hpp"

namespace qf::pipeline {
namespace {

using json = nlohmann::json;

json path_or_null(const std::string& path) { return path.empty() ? json() : json(path); }

std::string absolute(const std::string& path) {
  if (path.empty()) return path;
  std::error_code error;
  const auto p = std::filesystem::absolute(path, error);
  return error ? path : p.lexically_normal().string();
}

// "2026-12-05T13:05:02.123Z"
std::string utc_ms(double unix_time) {
  const auto seconds = static_cast<std::time_t>(std::floor(unix_time));
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[40];
  const size_t n = std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(text + n, sizeof(text) - n, ".%03dZ",
                static_cast<int>((unix_time - std::floor(unix_time)) * 1000) % 1000);
  return text;
}

const char* mode_of(const QuantizeOptions& options) {
  if (options.export_only) return options.shard.empty() ? "export-only" : "export-only --shard";
  return options.resume ? "resume" : "run";
}

}  // namespace

json JobProgress::options_json(const QuantizeOptions& options) {
  const json calibration = {{"samples", options.samples},
                            {"seq_len", options.seq_len},
                            {"seed", options.seed},
                            {"calib", path_or_null(options.calib_path)},
                            {"amax_file", path_or_null(options.amax_file)},
                            {"calib_batch", options.calib_batch},
                            {"cpu_bf16_inputs", options.cpu_bf16_linear_inputs}};
  return {{"recipe", recipes().name(options.recipe)},
          {"expert_weights", expert_weights_modes().name(options.expert_weights)},
          {"kv_cache", kv_caches().name(options.kv)},
          {"backend", dist::backend_name(options.backend)},
          {"act_scale", act_scale_name(options.act_scale)},
          {"shard", path_or_null(options.shard)},
          {"calibration", calibration}};
}

JobProgress::JobProgress(const QuantizeOptions& options, dist::Communicator& comm)
    : options_(options), comm_(comm) {
  if (comm_.rank() != 0) return;
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '?';
  progress_stream::emit("start", {{"command", "quantize"},
                                  {"mode", mode_of(options)},
                                  {"world_size", comm_.world_size()},
                                  {"pid", static_cast<int64_t>(::getpid())},
                                  {"host", host},
                                  {"in", absolute(options.in_dir)},
                                  {"out", absolute(options.out_dir)},
                                  {"work", absolute(options.work_dir)}});
}

void JobProgress::own_work_dir(int n_layers) {
  if (comm_.rank() != 0) return;
  record_.start(options_.work_dir,
                {{"tool", std::string("quantforge ") + QF_VERSION},
                 {"command", "quantize"},
                 {"mode", mode_of(options_)},
                 {"source", absolute(options_.in_dir)},
                 {"out", absolute(options_.out_dir)},
                 {"work", absolute(options_.work_dir)},
                 {"world_size", comm_.world_size()},
                 {"n_layers", n_layers},
                 {"progress_json", path_or_null(absolute(options_.progress_json))},
                 {"options", options_json(options_)}});
  const std::string current = progress_stream::current_phase();
  if (!current.empty()) record_.phase(current);
}

void JobProgress::phase(const std::string& phase) {
  if (comm_.rank() != 0) return;
  progress_stream::phase(phase);
  record_.phase(phase);
}

void JobProgress::collect(formats::StoreCommitter& store) {
  for (const formats::StoreCommitter::Committed& c : store.take_committed()) {
    const int32_t stage = c.stage == formats::kStageCalib   ? 0
                          : c.stage == formats::kStageQuant ? 1
                                                            : -1;
    if (stage < 0) continue;
    pending_.push_back(Commit{stage, c.layer, c.n_bytes, c.seconds, c.unix_time});
  }
}

void JobProgress::emit_own() {
  if (comm_.rank() != 0) return;
  for (const Commit& c : pending_) emit(0, c);
  pending_.clear();
}

void JobProgress::exchange() {
  // Every rank has the same options: without a stream no rank exchanges anything.
  if (options_.progress_json.empty()) {
    pending_.clear();
    return;
  }
  const int world = comm_.world_size();
  std::vector<uint64_t> counts(static_cast<size_t>(world), 0);
  uint64_t mine = pending_.size();
  comm_.allgather(&mine, counts.data(), sizeof(mine), "progress: commit counts");
  std::vector<size_t> n_bytes_of_rank(static_cast<size_t>(world));
  uint64_t total = 0;
  for (int r = 0; r < world; ++r) {
    n_bytes_of_rank[size_t(r)] = size_t(counts[size_t(r)]) * sizeof(Commit);
    total += counts[size_t(r)];
  }
  if (total == 0) return;
  std::vector<Commit> all(total);
  comm_.allgatherv(pending_.data(), all.data(), n_bytes_of_rank, "progress: commits");
  pending_.clear();
  if (comm_.rank() != 0) return;
  size_t i = 0;
  for (int r = 0; r < world; ++r) {
    for (uint64_t k = 0; k < counts[size_t(r)]; ++k) emit(r, all[i++]);
  }
}

void JobProgress::emit(int rank, const Commit& c) const {
  progress_stream::emit("layer_committed",
                        {{"layer", c.layer},
                         {"rank", rank},
                         {"stage", c.stage == 0 ? formats::kStageCalib : formats::kStageQuant},
                         {"bytes", c.n_bytes},
                         {"seconds", c.seconds},
                         {"at", utc_ms(c.unix_time)}});
}

void JobProgress::finish(bool ok, const std::string& message, double seconds) {
  if (comm_.rank() != 0) return;
  if (ok) progress_stream::phase("done");
  json fields = {{"status", ok ? "ok" : "failed"}, {"seconds", seconds}};
  if (!ok) fields["message"] = message;
  progress_stream::emit("end", fields);
  record_.finish(ok, message);
}

}  // namespace qf::pipeline
