// Which output tensor is written by whom, from where: the unit of work the export and the output
// streamer share. Owns: the owner rule (a copied `.scale` belongs to its weight's owner) and
// the filters over the plan's output tensors. Does not own the writing.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

struct ExportJob {
  const OutputTensor* out;
  size_t shard;  // index into plan.shards
  int layer;     // the layer of the owning source tensor (NativeTensor::layer)
  int owner;     // the rank whose store holds a quantized `out` (and who writes it)
};

// NVFP4 outputs: their bytes come from a quant record, not from the source or the scales.
bool is_stored(const OutputTensor& out);
// The source tensor whose owner writes `out` (a copied `.scale` belongs to its weight).
std::string owning_tensor(const QuantizePlan& plan, const OutputTensor& out);
// Every output tensor of the plan, in shard then layout order, for which keep() holds.
std::vector<ExportJob> export_jobs_where(const QuantizePlan& plan,
                                         const std::function<bool(const ExportJob&)>& keep);

}  // namespace qf::pipeline
