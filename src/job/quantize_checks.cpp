// Checks before a quantize run creates anything (see quantize_checks.hpp).
#include "job/quantize_checks.hpp"

#include <unistd.h>

#include <filesystem>
#include <set>
#include <vector>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/strings.hpp"
#include "formats/path_overlap.hpp"
#include "formats/staged_output.hpp"
#include "job/quantize_job.hpp"
#include "quantize/input_scales.hpp"
#include "report/quantization_report.hpp"
#include "report/quantization_report_html.hpp"

namespace qf::pipeline {
namespace fs = std::filesystem;
namespace {

using formats::check_not_inside;
using formats::NamedPath;

constexpr size_t kListedNames = 5;  // names listed in an amax-file message

// Everything the run creates, replaces or deletes beside the work stores.
std::vector<NamedPath> written_paths(const QuantizeOptions& options) {
  auto paths = formats::StagedOutput::written_paths(options.out_dir);
  const std::string report = quantization_report_path(options.out_dir);
  paths.push_back({"the quantization report", report});
  paths.push_back({"the quantization report table", quantization_report_text_path(report)});
  paths.push_back({"the quantization report page", quantization_report_html_path(report)});
  return paths;
}

// --out inside WORK/rank-N: the store's directory of a rank.
void check_out_not_in_rank_dir(const QuantizeOptions& options) {
  const fs::path work(formats::resolved_path(options.work_dir));
  const fs::path out(formats::resolved_path(options.out_dir));
  const fs::path relative = out.lexically_relative(work);
  if (relative.empty() || *relative.begin() == "..") return;
  const std::string first = relative.begin()->string();
  QF_CHECK(!starts_with(first, "rank-"), "--out", options.out_dir, "is inside", first, "of --work",
           options.work_dir + ":", "that directory is a rank's work store");
}

std::string listed(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size() && i < kListedNames; ++i) {
    text += (i ? ", " : "") + escape_nonprintable(names[i]);
  }
  if (names.size() > kListedNames) text += ", ... (" + std::to_string(names.size()) + " in all)";
  return text;
}

}  // namespace

void check_quantize_paths(const QuantizeOptions& options) {
  const NamedPath in{"--in", options.in_dir}, work{"--work", options.work_dir};
  for (const NamedPath& written : written_paths(options)) {
    check_not_inside(written, in,
                     "the run would write into the source checkpoint (and every later export of "
                     "it would copy what it wrote)");
    check_not_inside(in, written, "the run creates, replaces or deletes that path");
    check_not_inside(work, written,
                     "the run creates, replaces or deletes that path; the work stores would be "
                     "lost or moved into the export");
  }
  check_not_inside(work, in,
                   "the work stores (manifests, locks, layer files) would become files of the "
                   "source checkpoint, copied into every later export");
  check_out_not_in_rank_dir(options);
  for (const NamedPath& file :
       {NamedPath{"--calib", options.calib_path}, NamedPath{"--amax-file", options.amax_file}}) {
    for (const NamedPath& written : written_paths(options)) {
      check_not_inside(file, written, "the run would replace the file it reads");
    }
  }
}

void check_work_dir_usable(const std::string& work_dir) {
  QF_CHECK(!work_dir.empty(), "--work is empty");
  std::error_code error;
  fs::path existing(formats::resolved_path(work_dir));
  while (!fs::exists(existing, error) && existing.has_parent_path() &&
         existing != existing.root_path()) {
    existing = existing.parent_path();
  }
  QF_CHECK(fs::is_directory(existing, error), "--work", work_dir + ":", existing.string(),
           "exists and is not a directory");
  QF_CHECK(::access(existing.c_str(), W_OK) == 0, "--work", work_dir + ":", existing.string(),
           "is not writable");
}

void check_amax_modules(const QuantizePlan& plan, const std::map<std::string, float>& amax,
                        const std::string& path) {
  std::set<std::string> modules, targets;
  for (const auto& t : plan.tensors) {
    if (ends_with(t.name, ".weight")) modules.insert(QuantizePlan::module_of(t.name));
  }
  for (const auto& weight : plan.targets) targets.insert(QuantizePlan::module_of(weight));
  std::vector<std::string> unknown, not_targets;
  size_t n_targets = 0;
  for (const auto& [name, value] : amax) {
    if (targets.count(name)) {
      ++n_targets;
    } else if (modules.count(name)) {
      not_targets.push_back(name);
    } else {
      unknown.push_back(name);
    }
  }
  QF_CHECK(unknown.empty(), path + ":", unknown.size(), "of", amax.size(),
           "keys name no module of the checkpoint (no <key>.weight tensor):", listed(unknown) + ";",
           "keys look like", targets.empty() ? std::string("?") : *targets.begin());
  QF_CHECK(targets.empty() || n_targets > 0, path + ":", "names none of the", targets.size(),
           "NVFP4 target modules of recipe", recipes().name(plan.recipe), "(e.g.",
           *targets.begin() + ")");
  if (!not_targets.empty()) {
    log_warn(path, ": ignoring ", not_targets.size(), " module(s) that recipe ",
             recipes().name(plan.recipe), " does not quantize: ", listed(not_targets));
  }
  if (n_targets < targets.size()) {
    log_info("calibration: ", targets.size() - n_targets, " of ", targets.size(),
             " NVFP4 target modules are not in ", path, " (they count as never seen)");
  }
}

CalibrationInputs load_calibration_inputs(const QuantizePlan& plan,
                                          const QuantizeOptions& options) {
  CalibrationInputs inputs;
  if (options.export_only) return inputs;
  if (!options.amax_file.empty()) {
    inputs.amax = read_amax_file(options.amax_file);
    check_amax_modules(plan, inputs.amax, options.amax_file);
    return inputs;
  }
  inputs.set =
      options.calib_path.empty()
          ? synthetic_calibration_set(plan.config, options.samples, options.seq_len, options.seed)
          : load_calibration_set(options.calib_path, options.samples, options.seq_len,
                                 plan.config.vocab_size);
  return inputs;
}

}  // namespace qf::pipeline
