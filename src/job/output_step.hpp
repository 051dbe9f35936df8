// The quantize job's steps around its output: claiming OUT (and, for a streamed export,
// preparing its staging) at the start, and the input scales the export needs at the end.
// Owns: those two collective steps. Does not own the phases' order (quantize_job).
#pragma once
#include <map>
#include <optional>

#include "dist/communicator.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/layer_record.hpp"
#include "formats/source_identity.hpp"
#include "formats/staged_output.hpp"
#include "job/quantize_job.hpp"
#include "quantize/input_scales.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

// Rank 0 owns OUT from here to the end: a second run on the same output fails now, not after
// calibration. Released (lock file removed) when the job stops early. `stream_output`: the
// staging is made now (prepare_staged_output) for the ranks' OutputStreamers.
std::optional<formats::StagedOutput> claim_output(const QuantizeOptions& options,
                                                  const QuantizePlan& plan, bool stream_output,
                                                  dist::Communicator& comm);

// Collective: every layer's input scales, once the source is checked unchanged since the start
// (the layers were computed from it as it was; the export copies from it).
InputScales input_scales_for_export(const QuantizePlan& plan, const formats::CheckpointDir& source,
                                    const formats::SourceIdentity& source_at_start,
                                    const std::map<int, formats::LayerRecord>& calib,
                                    const QuantizeOptions& options, dist::Communicator& comm);

}  // namespace qf::pipeline
