// What a stop signal (SIGINT/SIGTERM) left of a quantize run, and how to go on: the message of
// the Interrupted that main prints. Owns that text. Does not own the stop itself
// (core/stop_signal) nor what the phases keep (quantize_job).
#pragma once
#include <string>

#include "core/stop_signal.hpp"
#include "job/quantize_job.hpp"

namespace qf::pipeline {

// Where a run is when a stop signal reaches it (what it kept depends on it).
enum class QuantizePhase { kChecks, kStores, kExport };

std::string stopped_message(const QuantizeOptions& options, QuantizePhase phase,
                            const Interrupted& e);

}  // namespace qf::pipeline
