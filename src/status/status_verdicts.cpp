// add_verdicts: what `quantize --resume` and `--export-only` would do now, or why they would
// be refused, by the same rules the job applies (quantize_job.cpp, RankStore::create), checked
// read-only. The run's options come from job.json; the source is re-read (headers only) to
// recompute the provenance the stores must match.
#include <filesystem>

#include "dist/compute_backend.hpp"
#include "export/quant_config.hpp"
#include "formats/checkpoint_dir.hpp"
#include "job/quantize_job.hpp"
#include "quantize/act_scale.hpp"
#include "quantize/expert_weights.hpp"
#include "recipe/recipe.hpp"
#include "status/run_status.hpp"

namespace qf::pipeline {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string str_or_empty(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

// The QuantizeOptions of the run job.json records (the identity part of them).
QuantizeOptions options_of_job(const json& job) {
  QuantizeOptions options;
  const json& o = job.at("options");
  const json& c = o.at("calibration");
  options.in_dir = str_or_empty(job, "source");
  options.out_dir = str_or_empty(job, "out");
  options.work_dir = str_or_empty(job, "work");
  options.recipe = recipes().parse(o.at("recipe").get<std::string>());
  options.expert_weights = expert_weights_modes().parse(o.at("expert_weights").get<std::string>());
  options.kv = kv_caches().parse(o.at("kv_cache").get<std::string>());
  options.backend = o.at("backend").get<std::string>() == "cuda" ? dist::ComputeBackend::kCuda
                                                                 : dist::ComputeBackend::kCpu;
  options.act_scale = parse_act_scale(o.at("act_scale").get<std::string>());
  options.samples = c.at("samples").get<int>();
  options.seq_len = c.at("seq_len").get<int>();
  options.seed = c.at("seed").get<uint64_t>();
  options.calib_path = str_or_empty(c, "calib");
  options.amax_file = str_or_empty(c, "amax_file");
  options.calib_batch = c.at("calib_batch").get<int>();
  options.cpu_bf16_linear_inputs = c.at("cpu_bf16_inputs").get<bool>();
  return options;
}

// Stored provenance vs the source and options now (what create() and --export-only compare).
void check_identity(RunStatus& status, std::vector<std::string>& export_differences) {
  // A job record without options (not written by quantize) cannot name the run's options.
  if (!status.job.is_object() || !status.job.contains("options") || status.provenance.is_null()) {
    return;
  }
  try {
    const QuantizeOptions options = options_of_job(status.job);
    const formats::CheckpointDir source(status.source_dir);
    const json now = quantize_provenance(options, source);
    status.identity_differences = formats::RankStore::compare_provenance(status.provenance, now);
    export_differences = export_only_provenance_differences(status.provenance, now);
    status.identity_checked = true;
  } catch (const std::exception& e) {
    status.identity_differences.push_back("cannot re-check the run's identity: " +
                                          std::string(e.what()));
    export_differences = status.identity_differences;
  }
}

std::string store_problem(const RankStatus& r) {
  if (!r.store.error.empty()) return r.store.dir + ": " + r.store.error;
  if (!r.store.problems.empty()) {
    return r.store.dir + ": " + std::to_string(r.store.problems.size()) +
           " committed file(s) fail verification (" + r.store.problems.front() + "); delete " +
           r.store.dir + " to redo this rank";
  }
  return "";
}

}  // namespace

void add_verdicts(RunStatus& status) {
  Verdict& resume = status.resume;
  Verdict& exp = status.export_only;
  auto refuse_both = [&](const std::string& why) {
    resume = {false, why};
    exp = {false, why};
  };
  if (status.writer_alive)
    return refuse_both("refused now: a live run holds it (" + status.writer + ")");
  if (status.ranks.empty() || !status.ranks[0].store.exists) {
    return refuse_both("nothing to resume: no rank store in " + status.work_dir);
  }
  for (const RankStatus& r : status.ranks) {
    const std::string problem = store_problem(r);
    if (!problem.empty()) return refuse_both("refused: " + problem);
  }
  std::vector<std::string> export_differences;
  check_identity(status, export_differences);
  const int np = status.world_size;
  const std::string out_dir = status.out.dir.empty() ? "OUT" : status.out.dir;
  const bool out_taken = status.out.exists;
  // --resume
  if (!status.identity_differences.empty()) {
    resume = {false, "refused: the stores belong to another run (stored vs now): " +
                         status.identity_differences.front()};
  } else if (out_taken) {
    resume = {false, "refused: " + out_dir + " exists and is not empty"};
  } else if (status.n_layers < 0) {
    resume = {true, "would continue the stores with -np " + std::to_string(np) +
                        " (layer count unknown: no job.json and no --in)"};
  } else {
    int calib_left = 0, quant_left = 0, calib_done = 0;
    for (const RankStatus& r : status.ranks) {
      calib_left += status.n_layers - r.calib.n_committed;
      quant_left += status.n_layers - r.quant.n_committed;
      calib_done += r.calib.n_committed;
    }
    std::string text = "with -np " + std::to_string(np) + ": ";
    if (calib_left > 0) {
      text += "recompute and check " + std::to_string(calib_done) +
              " committed calibration record(s), calibrate " + std::to_string(calib_left) +
              " more (all ranks), ";
    }
    text += "quantize " + std::to_string(quant_left) + " layer(s) over the ranks, then write " +
            out_dir;
    resume = {true, "would " + text};
    if (!status.identity_checked) resume.text += " (identity not re-checked: no job.json)";
  }
  // --export-only
  if (!export_differences.empty()) {
    exp = {false, "refused: the stores belong to another run: " + export_differences.front()};
    return;
  }
  if (out_taken) {
    exp = {false, "refused: " + out_dir + " exists and is not empty (--shard rebuilds one file)"};
    return;
  }
  for (const RankStatus& r : status.ranks) {
    const bool calib_missing = status.n_layers < 0 || r.calib.n_committed < status.n_layers;
    const bool quant_missing = status.n_layers < 0 || r.quant.n_committed < status.n_layers;
    if (!r.store.exists || (r.rank == 0 && calib_missing) || quant_missing) {
      exp = {false, "refused: rank " + std::to_string(r.rank) + " has " +
                        std::to_string(r.quant.n_committed) + "/" +
                        (status.n_layers < 0 ? std::string("?") : std::to_string(status.n_layers)) +
                        " quantized layers; run --resume first"};
      return;
    }
  }
  exp = {true,
         "would write " + out_dir + " from the " + std::to_string(np) + " rank store(s) (any -np)"};
}

}  // namespace qf::pipeline
