// The tensor list of a real checkpoint directory, placed by the config's tensor table (what
// `plan --in` and the quantize plan reason about). Owns only that matching; the table itself is
// model/tensor_table.
#pragma once
#include <vector>

#include "formats/checkpoint_dir.hpp"
#include "model/config.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {

// The tensors of a real checkpoint: names, dtypes, shapes and bytes from its headers; roles,
// layers and linear dims from the config's tensor table where the name matches (the format is
// native when any `.scale` tensor exists), else from the name (layers.N / mtp.M / experts.E).
std::vector<model::ModelTensor> checkpoint_dir_tensors(const formats::CheckpointDir& dir,
                                                       const model::ModelConfig& config);

}  // namespace qf::pipeline
