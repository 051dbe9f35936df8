// Where a quantize run's calibration records come from: the calibration forward over token
// ids (default), or an imported {module: amax} file (--amax-file: amax measured elsewhere, and
// the tests' way to pin known values). Owns: that choice and the resume of calib records.
#pragma once
#include <memory>

#include "dist/communicator.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/rank_store.hpp"
#include "pipeline/quantize_plan.hpp"

namespace qf::pipeline {

struct QuantizeOptions;

class CalibrationSource {
 public:
  virtual ~CalibrationSource() = default;
  // Commits the calib record of every regular layer that `store` does not have yet, in layer
  // order. Collective: every rank commits identical records to its own store.
  virtual void run(formats::RankStore& store) = 0;
};

std::unique_ptr<CalibrationSource> make_calibration_source(const QuantizePlan& plan,
                                                           const formats::CheckpointDir& source,
                                                           const QuantizeOptions& options,
                                                           dist::Communicator& comm,
                                                           formats::RankStore& store);

}  // namespace qf::pipeline
