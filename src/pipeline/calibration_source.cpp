// The two calibration sources (see calibration_source.hpp).
#include "pipeline/calibration_source.hpp"

#include "core/check.hpp"
#include "core/log.hpp"
#include "pipeline/input_scales.hpp"
#include "pipeline/quantize.hpp"

namespace qf::pipeline {
namespace {

class AmaxFileSource final : public CalibrationSource {
 public:
  AmaxFileSource(const QuantizePlan& plan, const std::string& path)
      : plan_(plan), amax_(read_amax_file(path)) {
    log_info("calibration: input amax imported from ", path, " (", amax_.size(), " modules)");
  }
  void run(formats::RankStore& store) override {
    for (int layer = 0; layer < plan_.config.num_hidden_layers; ++layer) {
      if (store.has_layer(layer, formats::kStageCalib)) continue;
      store.commit_layer(calib_record_from_amax(plan_, layer, amax_), formats::kStageCalib);
    }
  }

 private:
  const QuantizePlan& plan_;
  std::map<std::string, float> amax_;
};

}  // namespace

std::unique_ptr<CalibrationSource> make_calibration_source(const QuantizePlan& plan,
                                                           const formats::CheckpointDir& source,
                                                           const QuantizeOptions& options,
                                                           dist::Communicator& comm,
                                                           formats::RankStore& store) {
  (void)source;
  (void)comm;
  (void)store;
  if (!options.amax_file.empty()) return std::make_unique<AmaxFileSource>(plan, options.amax_file);
  QF_FAIL("calibration from token ids is not wired in yet; pass --amax-file");
}

}  // namespace qf::pipeline
