// build_quantize_plan: source vs tensor table, targets, pairs, ownership, output layout.
#include "quantize/quantize_plan.hpp"

#include <algorithm>

#include "core/check.hpp"
#include "core/strings.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {
namespace {

// The source must be exactly the checkpoint its config describes: a config that does not
// match the tensors is refused before any work.
void check_against_table(const formats::CheckpointDir& source, const model::ModelConfig& config,
                         const std::vector<model::ModelTensor>& table) {
  const auto names = source.tensor_names();
  std::set<std::string> have(names.begin(), names.end());
  for (const auto& t : table) {
    QF_CHECK(have.count(t.spec.name), source.dir() + ":", "tensor", t.spec.name,
             "is missing (config.json:", config.num_hidden_layers, "layers,",
             config.n_routed_experts, "routed experts, requires it)");
    const auto& info = source.tensor(t.spec.name);
    QF_CHECK(info.dtype == t.spec.dtype && info.shape == t.spec.shape, source.dir() + ":", "tensor",
             t.spec.name, "is", dtype_name(info.dtype), formats::shape_str(info.shape),
             "but config.json implies", dtype_name(t.spec.dtype), formats::shape_str(t.spec.shape));
    have.erase(t.spec.name);
  }
  QF_CHECK(have.empty(), source.dir(), ":", have.size(), "tensor(s) not described by config.json,",
           "e.g.", have.empty() ? "" : *have.begin());
}

}  // namespace

std::string QuantizePlan::module_of(const std::string& weight_name) {
  QF_CHECK(ends_with(weight_name, model::kWeightSuffix), "not a weight name:", weight_name);
  return strip_suffix(weight_name, model::kWeightSuffix);
}

const NativeTensor& QuantizePlan::tensor(const std::string& name) const {
  const auto it = tensor_index.find(name);
  QF_CHECK(it != tensor_index.end(), "tensor", name, "is not in the source");
  return tensors[it->second];
}

std::vector<std::string> QuantizePlan::targets_of_layer(int layer) const {
  std::vector<std::string> out;
  for (const auto& name : targets) {
    if (tensor(name).layer == layer) out.push_back(name);
  }
  return out;
}

bool QuantizePlan::requantized(const std::string& weight_name) const {
  if (!targets.count(weight_name)) return false;
  return tensor(weight_name).kind != StorageKind::kFp4Block ||
         expert_weights == ExpertWeights::kRequantize;
}

bool QuantizePlan::wants_hessian(const std::string& weight_name) const {
  return weight_scale_needs_hessian(weight_scale) && requantized(weight_name) &&
         !is_routed_expert_weight_name(weight_name);
}

QuantizePlan build_quantize_plan(const formats::CheckpointDir& source, Recipe recipe,
                                 int world_size, ExpertWeights expert_weights) {
  QuantizePlan plan;
  plan.recipe = recipe;
  plan.expert_weights = expert_weights;
  const std::string config_path = source.dir() + "/config.json";
  plan.config = model::ModelConfig::from_json(source.read_json("config.json"), config_path);
  const auto table =
      model::checkpoint_tensors(plan.config, model::config_weight_format(plan.config));
  check_against_table(source, plan.config, table);

  plan.tensors = classify_native_tensors(source);
  for (size_t i = 0; i < plan.tensors.size(); ++i) plan.tensor_index[plan.tensors[i].name] = i;
  for (const auto& t : table) {
    if (!is_nvfp4_target(t, recipe)) continue;
    plan.targets.insert(t.spec.name);
  }
  for (const auto& name : plan.targets) {
    const std::string other = nvfp4_sibling(name);
    if (!other.empty() && plan.targets.count(other)) plan.pair_of[name] = other;
  }

  // Output: each source shard's tensors in source order; a target becomes its four tensors.
  std::map<std::string, size_t> shard_index;
  for (const auto& file : source.shard_files()) {
    shard_index[file] = plan.shards.size();
    plan.shards.push_back(OutputShard{file, {}, {}});
  }
  for (const auto& t : plan.tensors) {
    auto& shard = plan.shards[shard_index.at(t.shard)];
    if (!plan.targets.count(t.name)) {
      shard.tensors.push_back({t.stored, OutputKind::kCopy, t.name});
      if (t.kind != StorageKind::kPlain) {
        shard.tensors.push_back({t.scale, OutputKind::kCopy, t.scale_name});
      }
      continue;
    }
    QF_CHECK(t.n_cols % 16 == 0, "tensor", t.name, "has", t.n_cols,
             "input columns, not a multiple of the NVFP4 block (16)");
    const std::string p = QuantizePlan::module_of(t.name);
    shard.tensors.push_back({{p + model::kWeightSuffix, DType::kU8, {t.n_rows, t.n_cols / 2}},
                             OutputKind::kNvfp4Weight,
                             t.name});
    shard.tensors.push_back({{p + ".weight_scale", DType::kF8E4M3, {t.n_rows, t.n_cols / 16}},
                             OutputKind::kNvfp4Scale,
                             t.name});
    shard.tensors.push_back(
        {{p + ".weight_scale_2", DType::kF32, {}}, OutputKind::kNvfp4Scale2, t.name});
    shard.tensors.push_back(
        {{p + ".input_scale", DType::kF32, {}}, OutputKind::kInputScale, t.name});
  }
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    std::vector<formats::TensorSpec> specs;
    for (const auto& out : plan.shards[s].tensors) {
      specs.push_back(out.spec);
      plan.shard_of_output[out.spec.name] = s;
    }
    plan.shards[s].layout = formats::layout_safetensors(specs);
  }

  std::vector<dist::PlanItem> items;
  for (const auto& t : plan.tensors) {
    items.push_back({t.name, t.stored.n_bytes() + t.scale.n_bytes(), t.layer, t.expert});
  }
  plan.ownership = dist::build_ownership_plan(items, world_size);
  plan.other_files = source.other_files();
  return plan;
}

}  // namespace qf::pipeline
