// Where a quantize run's calibration records come from: the calibration forward over token
// ids (default), or an imported {module: amax} file (--amax-file: amax measured elsewhere, and
// the tests' way to pin known values). Owns: that choice and the resume of calib records.
#pragma once
#include <memory>

#include "calibrate/calibrate.hpp"
#include "dist/communicator.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/rank_store.hpp"
#include "formats/store_committer.hpp"
#include "job/quantize_checks.hpp"
#include "quantize/quantize_plan.hpp"
#include "quantize/quantize_weights.hpp"

namespace qf::pipeline {

struct QuantizeOptions;

// What a calibration run cost on this rank (for the job summary).
struct CalibrationCost {
  uint64_t bytes_read = 0;         // source bytes this rank read
  uint64_t n_tokens = 0;           // tokens this rank pushed through layers
  double forward_seconds = 0;      // CUDA engine: compute only (0 for the CPU backend)
  uint64_t peak_device_bytes = 0;  // CUDA engine: device memory in use at its peak
  QuantizeStats fused;             // CUDA engine: NVFP4 targets quantized from its layer copy
};

class CalibrationSource {
 public:
  virtual ~CalibrationSource() = default;
  virtual CalibrationCost cost() const { return {}; }
  // Submits the calib record of every regular layer that the store does not have yet, in layer
  // order (the caller drains). Collective: every rank commits identical records to its own store.
  virtual void run(formats::StoreCommitter& store) = 0;
  // Called on every rank after each calibrated layer's collective step (the forward source;
  // an amax file has no such steps). Set before run().
  void set_layer_hook(CalibrationLayerHook hook) { layer_hook_ = std::move(hook); }

 protected:
  CalibrationLayerHook layer_hook_;
};

// `inputs`: what load_calibration_inputs loaded and checked before the run created anything
// (the token set or the amax map; moved from).
std::unique_ptr<CalibrationSource> make_calibration_source(
    const QuantizePlan& plan, const formats::CheckpointDir& source, const QuantizeOptions& options,
    CalibrationInputs inputs, dist::Communicator& comm, formats::StoreCommitter& store);

}  // namespace qf::pipeline
