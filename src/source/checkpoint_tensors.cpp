// checkpoint_dir_tensors: a checkpoint's headers matched against its config's tensor table.
#include "source/checkpoint_tensors.hpp"

#include <algorithm>
#include <map>

#include "core/log.hpp"
#include "core/strings.hpp"
#include "model/tensor_table.hpp"
#include "source/native_tensors.hpp"

namespace qf::pipeline {

std::vector<model::ModelTensor> checkpoint_dir_tensors(const formats::CheckpointDir& dir,
                                                       const model::ModelConfig& config) {
  const std::vector<std::string> names = dir.tensor_names();
  const bool native = std::any_of(names.begin(), names.end(), [](const std::string& n) {
    return ends_with(n, model::kScaleSuffix);
  });
  const auto table = model::checkpoint_tensors(
      config, native ? model::WeightFormat::kNative : model::WeightFormat::kBf16);
  std::map<std::string, const model::ModelTensor*> by_name;
  for (const auto& t : table) by_name[t.spec.name] = &t;

  std::vector<model::ModelTensor> out;
  out.reserve(names.size());
  size_t n_unknown = 0, n_retyped = 0;
  for (const std::string& name : names) {
    const formats::TensorInfo& info = dir.tensor(name);
    model::ModelTensor t;
    const auto it = by_name.find(name);
    if (it != by_name.end()) {
      t = *it->second;
      if (t.spec.dtype != info.dtype || t.spec.shape != info.shape) {
        // Same name, other storage: keep the position facts, trust the file for the rest.
        ++n_retyped;
        if (t.spec.dtype != info.dtype) t.role = model::TensorRole::kPlain;
      }
    } else {
      ++n_unknown;
      t.layer = layer_of_name(name, config.num_hidden_layers);
      t.expert = expert_of_name(name);
      t.is_mtp = t.layer >= config.num_hidden_layers;
      if (info.shape.size() == 2) {
        t.n_rows = info.shape[0];
        t.n_cols = info.shape[1];
      }
    }
    t.spec = info.spec();
    out.push_back(std::move(t));
  }
  if (n_unknown > 0 || n_retyped > 0 || out.size() != table.size()) {
    log_warn("plan: ", dir.dir(), " has ", out.size(), " tensors, the config's ",
             native ? "native" : "bf16", " table ", table.size(), "; ", n_unknown,
             " not in the table (placed by name, copied as is), ", n_retyped,
             " with another dtype/shape");
  }
  return out;
}

}  // namespace qf::pipeline
