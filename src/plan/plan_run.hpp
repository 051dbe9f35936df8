// `quantforge plan` as a job: where the tensor list comes from (a checkpoint directory, a
// config file or a preset, in a weight format), the report on a stream and as a JSON file.
// Owns that choice and the output. Does not own the model (plan_report) or option parsing.
#pragma once
#include <optional>
#include <ostream>
#include <string>

#include "model/tensor_table.hpp"
#include "plan/plan_report.hpp"

namespace qf::pipeline {

struct PlanRunOptions {
  PlanReportOptions report;
  // Exactly one source: checkpoint_dir (its index and shard headers; config.json from the
  // directory unless config_path is set), config_path, or preset (model/presets.hpp).
  std::string checkpoint_dir;
  std::string config_path;
  std::string preset;
  // config/preset only: the source storage (default: model::config_weight_format).
  std::optional<model::WeightFormat> format;
  std::string json_path;  // "": no JSON file
};

// Builds the report, prints it on `out` and writes the JSON (atomically) when asked.
PlanReport run_plan(const PlanRunOptions& options, std::ostream& out);

}  // namespace qf::pipeline
