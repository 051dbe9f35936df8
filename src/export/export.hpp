// Export: the output checkpoint from the per-rank stores (quantized targets) and the source
// (everything copied), laid out as docs/EXPORT_FORMAT.md says. Owns: who writes which bytes,
// the staging protocol, index/config files, and the single-shard rebuild. Does not own the
// quantization (quantize_weights) or the scale rules (input_scales).
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "dist/communicator.hpp"
#include "export/output_streamer.hpp"
#include "export/quant_config.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/staged_output.hpp"
#include "quantize/input_scales.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

struct ExportOptions {
  std::string out_dir;
  std::string work_dir;
  KvCache kv = KvCache::kNone;
  int store_world_size = 1;  // rank count of the run that filled WORK (the ownership plan)
};

struct ExportReport {
  uint64_t bytes_written = 0;  // by this rank
  uint64_t n_tensors = 0;
  std::map<std::string, uint64_t> tensor_digests;  // XXH64 of each tensor this rank wrote
};

// Collective: every rank writes the output tensors of the source tensors it owns (ownership of
// the store's run, so the current rank count must equal store_world_size), rank 0 stages the
// files first and writes index/config/other files and renames OUT.partial -> OUT last.
// `staged`: on rank 0 the output the job claimed at its start (StagedOutput::claim of
// options.out_dir, held since); null on the other ranks. On failure rank 0 discards it.
// `streamer` (every rank or none): the staging was prepared before calibration
// (prepare_staged_output) and the layers it streamed are not written again; it is finished
// (fsync) here. Null: rank 0 prepares the staging now and every output tensor is written here.
ExportReport export_checkpoint(const QuantizePlan& plan, const formats::CheckpointDir& source,
                               const InputScales& scales, const ExportOptions& options,
                               formats::StagedOutput* staged, dist::Communicator& comm,
                               OutputStreamer* streamer = nullptr);

// Rebuilds output shard `shard_file` of an existing export in place (temp + rename), reading
// quantized tensors from any rank's store. One process does it; other ranks only wait.
ExportReport export_one_shard(const QuantizePlan& plan, const formats::CheckpointDir& source,
                              const InputScales& scales, const ExportOptions& options,
                              const std::string& shard_file, dist::Communicator& comm);

}  // namespace qf::pipeline
