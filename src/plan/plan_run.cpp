// run_plan (see plan_run.hpp).
#include "plan/plan_run.hpp"

#include "formats/atomic_file.hpp"
#include "formats/checkpoint_dir.hpp"
#include "model/config.hpp"
#include "model/presets.hpp"
#include "source/checkpoint_tensors.hpp"

namespace qf::pipeline {
namespace {

PlanReport plan_checkpoint(const PlanRunOptions& options) {
  const formats::CheckpointDir dir(options.checkpoint_dir);
  const model::ModelConfig config =
      !options.config_path.empty()
          ? model::ModelConfig::load(options.config_path)
          : model::ModelConfig::from_json(dir.read_json("config.json"), dir.dir() + "/config.json");
  return build_plan_report(config, checkpoint_dir_tensors(dir, config), options.report,
                           "checkpoint " + dir.dir());
}

PlanReport plan_config(const PlanRunOptions& options) {
  const bool preset = !options.preset.empty();
  const model::ModelConfig config =
      preset ? model::preset_config(options.preset) : model::ModelConfig::load(options.config_path);
  std::string label = preset ? "preset " + options.preset : options.config_path;
  const model::WeightFormat format = options.format.value_or(model::config_weight_format(config));
  label += std::string(" (") + model::weight_formats().name(format) + ")";
  return build_plan_report(config, model::checkpoint_tensors(config, format), options.report,
                           label);
}

}  // namespace

PlanReport run_plan(const PlanRunOptions& options, std::ostream& out) {
  const PlanReport report =
      options.checkpoint_dir.empty() ? plan_config(options) : plan_checkpoint(options);
  print_plan_report(report, out);
  out.flush();
  if (!options.json_path.empty()) {
    formats::write_file_atomic(options.json_path, plan_report_json(report).dump(2) + "\n");
  }
  return report;
}

}  // namespace qf::pipeline
