// claim_output / input_scales_for_export (see output_step.hpp).
#include "job/output_step.hpp"

#include "core/log.hpp"
#include "dist/collective_step.hpp"
#include "export/output_streamer.hpp"
#include "job/source_check.hpp"

namespace qf::pipeline {

// Rank 0 owns OUT from here to the end: a second run on the same output fails now, not after
// calibration. Released (lock file removed) when the job stops early. `stream_output`: the
// staging is made now (prepare_staged_output) for the ranks' OutputStreamers.
std::optional<formats::StagedOutput> claim_output(const QuantizeOptions& options,
                                                  const QuantizePlan& plan, bool stream_output,
                                                  dist::Communicator& comm) {
  std::optional<formats::StagedOutput> output;
  dist::run_on_root(comm, 0, "claiming the output directory", [&] {
    output.emplace(options.shard.empty() ? formats::StagedOutput::claim(options.out_dir)
                                         : formats::StagedOutput::claim_existing(options.out_dir));
    if (stream_output) prepare_staged_output(plan, *output);
  });
  return output;
}

// Collective: every layer's input scales, once the source is checked unchanged since the start
// (the layers were computed from it as it was; the export copies from it).
InputScales input_scales_for_export(const QuantizePlan& plan, const formats::CheckpointDir& source,
                                    const formats::SourceIdentity& source_at_start,
                                    const std::map<int, formats::LayerRecord>& calib,
                                    const QuantizeOptions& options, dist::Communicator& comm) {
  InputScales scales;
  dist::run_on_all_ranks(comm, "computing input scales", [&] {
    check_source_unchanged_since_start(source, source_at_start);
    scales = compute_input_scales(plan, calib, options.act_scale);
  });
  for (const auto& module : scales.fallback_modules) {
    log_info("uncalibrated expert (input_scale from the max of its projection): ", module);
  }
  return scales;
}

}  // namespace qf::pipeline
