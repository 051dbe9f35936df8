// The export's units of work (see export_jobs.hpp).
#include "export/export_jobs.hpp"

#include "core/strings.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {

bool is_stored(const OutputTensor& out) {
  return out.kind != OutputKind::kCopy && out.kind != OutputKind::kInputScale;
}

std::string owning_tensor(const QuantizePlan& plan, const OutputTensor& out) {
  if (plan.tensor_index.count(out.source_name)) return out.source_name;
  return strip_suffix(out.source_name, model::kScaleSuffix) + model::kWeightSuffix;
}

std::vector<ExportJob> export_jobs_where(const QuantizePlan& plan,
                                         const std::function<bool(const ExportJob&)>& keep) {
  std::vector<ExportJob> jobs;
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    for (const auto& out : plan.shards[s].tensors) {
      const std::string owning = owning_tensor(plan, out);
      const ExportJob job{&out, s, plan.tensor(owning).layer, plan.ownership.owner_of(owning)};
      if (keep(job)) jobs.push_back(job);
    }
  }
  return jobs;
}

}  // namespace qf::pipeline
