// validate --work: store vs export, input scales vs calibration records (see work_provenance.hpp).
#include "validate/work_provenance.hpp"

#include <cstring>
#include <map>
#include <memory>

#include "core/check.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/rank_store.hpp"
#include "formats/source_identity.hpp"
#include "quantize/act_scale.hpp"
#include "quantize/expert_weights.hpp"
#include "quantize/input_scales.hpp"
#include "quantize/quantize_plan.hpp"
#include "recipe/recipe.hpp"
#include "report/quantization_report.hpp"

namespace qf::pipeline {
namespace {

formats::RankStore open_rank0(const std::string& work_dir) {
  return formats::RankStore::open(work_dir, 0, formats::StoreVerify::kSizes);
}

// The store's provenance field `key` (a JSON value), or null.
nlohmann::json field(const formats::RankStore& store, const char* section, const char* key) {
  const auto& p = store.provenance();
  if (!p.contains(section) || !p[section].is_object() || !p[section].contains(key)) return {};
  return p[section][key];
}

}  // namespace

void check_work_matches_export(const std::string& source_dir, const std::string& out_dir,
                               const std::string& work_dir) {
  const auto store = open_rank0(work_dir);
  const formats::CheckpointDir source(source_dir);
  const auto& prov = store.provenance();
  const std::string refuse = "validate: --work " + work_dir + " is from another run:";
  QF_CHECK(prov.value("source_files", nlohmann::json()) == formats::source_header_digests(source),
           refuse, "its store was computed from other source shards than --source", source_dir,
           "(names, sizes or header checksums differ)");
  QF_CHECK(prov.value("config_xxh64", std::string()) == formats::source_config_xxh64(source),
           refuse, "its store was computed with another config.json than --source's", source_dir);
  const nlohmann::json report = read_quantization_report(quantization_report_path(out_dir));
  if (report.contains("quantize") && report["quantize"].is_object() &&
      report["quantize"].contains("store_provenance_xxh64")) {
    const auto& recorded = report["quantize"]["store_provenance_xxh64"];
    QF_CHECK(recorded.is_string() && recorded.get<std::string>() == store.provenance_xxh64(),
             refuse, "its store's provenance xxh64 is", store.provenance_xxh64() + ",",
             out_dir + "'s quantization report records", recorded.dump(),
             "(another calibration, seed, recipe or option)");
  }
}

WorkScalesCheck check_input_scales_against_work(const std::string& source_dir,
                                                const std::string& out_dir,
                                                const std::string& work_dir) {
  WorkScalesCheck out;
  const auto store = open_rank0(work_dir);
  const formats::CheckpointDir source(source_dir);
  const auto recipe_name = field(store, "options", "recipe");
  QF_CHECK(recipe_name.is_string(), store.dir() + ":", "its provenance names no recipe");
  const Recipe recipe = recipes().parse(recipe_name.get<std::string>());
  const auto weights = field(store, "options", "expert_weights");
  const auto act = field(store, "options", "act_scale");
  const QuantizePlan plan = build_quantize_plan(
      source, recipe, store.world_size(),
      weights.is_string() ? expert_weights_modes().parse(weights.get<std::string>())
                          : ExpertWeights::kCast);
  std::map<int, formats::LayerRecord> calib;
  for (int l = 0; l < plan.config.num_hidden_layers; ++l) {
    if (!store.has_layer(l, formats::kStageCalib)) {
      out.problems.push_back(str_cat("layer ", l, " has no calibration record in ", store.dir(),
                                     ": input scales not checked"));
      return out;
    }
    calib[l] = store.read_layer(l, formats::kStageCalib);
  }
  const InputScales scales = compute_input_scales(
      plan, calib, act.is_string() ? parse_act_scale(act.get<std::string>()) : ActScaleMethod{});
  std::unique_ptr<formats::CheckpointDir> exported;
  try {
    exported = std::make_unique<formats::CheckpointDir>(out_dir);
  } catch (const Error& e) {
    out.problems.push_back("input scales not checked: " + e.message());
    return out;
  }
  for (const auto& [module, expected] : scales.of_module) {
    const std::string name = module + ".input_scale";
    if (!exported->has_tensor(name)) {
      out.problems.push_back(name + ": missing from the output");
      continue;
    }
    const auto bytes = exported->read_tensor(name);
    if (exported->tensor(name).dtype != DType::kF32 || bytes.size() != sizeof(float)) {
      out.problems.push_back(name + ": not one float32");
      continue;
    }
    float got = 0;
    std::memcpy(&got, bytes.data(), sizeof(got));
    ++out.n_checked;
    if (std::memcmp(&got, &expected, sizeof(got)) != 0) {
      out.problems.push_back(
          str_cat(name, " is ", got, ", the work store's calibration gives ", expected));
    }
  }
  return out;
}

}  // namespace qf::pipeline
