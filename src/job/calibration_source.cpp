// The two calibration sources (see calibration_source.hpp).
#include "job/calibration_source.hpp"

#include <cstdlib>
#include <string>

#include "calibrate/calibrate.hpp"
#include "calibrate/calibration_data.hpp"
#include "core/check.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "job/quantize_job.hpp"
#include "quantize/input_scales.hpp"
#include "quantize/quantize_weights.hpp"

namespace qf::pipeline {
namespace {

// The CUDA layer's policy: FP32-accurate linear inputs unless --cuda-bf16-inputs, and from the
// environment, read here at the top of the job only (kept for backward compatibility,
// docs/CUDA_BACKEND.md): QF_EXPERT_CACHE=0 turns the per-layer BF16 expert cache off; QF_PROFILE=1
// (any value but empty or starting with 0) logs GPU time per section of each layer.
gpu::DecoderLayerPolicy decoder_layer_policy(const QuantizeOptions& options) {
  gpu::DecoderLayerPolicy policy;
  policy.fp32_linear_inputs = !options.cuda_bf16_linear_inputs;
  const char* cache = std::getenv("QF_EXPERT_CACHE");
  policy.expert_cache = cache == nullptr || std::string(cache) != "0";
  const char* profile = std::getenv("QF_PROFILE");
  policy.profile_sections = profile != nullptr && profile[0] != '\0' && profile[0] != '0';
  return policy;
}

class AmaxFileSource final : public CalibrationSource {
 public:
  AmaxFileSource(const QuantizePlan& plan, const std::string& path,
                 std::map<std::string, float> amax)
      : plan_(plan), amax_(std::move(amax)) {
    log_info("calibration: input amax imported from ", path, " (", amax_.size(), " modules)");
  }
  void run(formats::StoreCommitter& store) override {
    QF_NVTX_RANGE("calibrate (amax file)");
    for (int layer = 0; layer < plan_.config.num_hidden_layers; ++layer) {
      if (store.has_layer(layer, formats::kStageCalib)) continue;
      store.submit(calib_record_from_amax(plan_, layer, amax_), formats::kStageCalib);
    }
  }

 private:
  const QuantizePlan& plan_;
  std::map<std::string, float> amax_;
};

// The calibration forward (calibrate.hpp) over the synthetic set or the --calib file.
class ForwardSource final : public CalibrationSource {
 public:
  ForwardSource(const QuantizePlan& plan, const formats::CheckpointDir& source,
                const QuantizeOptions& options, CalibrationSet set, dist::Communicator& comm,
                formats::StoreCommitter& store)
      : comm_(comm),
        calibrator_(plan.config, source, comm, plan.ownership, logged(std::move(set), options),
                    calibration_options(plan, options, comm, store)) {
    if (options.backend != dist::ComputeBackend::kCuda) return;
    // The CUDA engine holds each layer's exchanged bytes: quantize this rank's targets from
    // them and queue the quant record for commit right away, so the source is read once. The
    // hook runs inside the layer's forward step, so a failed earlier commit (rethrown by
    // submit) stops every rank there; the time blocked in submit counts as hook time.
    ops_ = std::make_unique<gpu::Nvfp4OpsPool>(dist::ComputeBackend::kCuda);
    calibrator_.set_layer_bytes_hook(
        [this, &plan, &store, &comm](int layer, const TensorBytes& bytes_of) {
          if (store.has_layer(layer, formats::kStageQuant)) return;
          auto record = quantize_owned_targets(plan, bytes_of, layer, comm.rank(), &fused_, *ops_);
          record.attrs["stage"] = "nvfp4 weights";
          store.submit(std::move(record), formats::kStageQuant);
        });
  }
  void run(formats::StoreCommitter& store) override {
    run_calibration(calibrator_, store, comm_, layer_hook_);
  }
  CalibrationCost cost() const override {
    const EngineTimes t = calibrator_.engine_times();
    return {calibrator_.exchange_stats().n_bytes_read, t.n_tokens, t.compute_seconds,
            t.peak_device_bytes, fused_};
  }

 private:
  static CalibrationOptions calibration_options(const QuantizePlan& plan,
                                                const QuantizeOptions& options,
                                                const dist::Communicator& comm,
                                                const formats::StoreCommitter& store) {
    CalibrationOptions o;
    // The calibration runs every layer from 0 (a resume recomputes the committed ones) unless
    // every layer is committed: then nothing is worth reading ahead.
    for (int l = 0; l < plan.config.num_hidden_layers && o.read_ahead_layer < 0; ++l) {
      if (!store.has_layer(l, formats::kStageCalib)) o.read_ahead_layer = 0;
    }
    o.batch_seqs = options.calib_batch;
    o.backend = options.backend;
    o.cpu_bf16_linear_inputs = options.cpu_bf16_linear_inputs;
    o.record_histograms = options.act_scale.needs_histogram();
    o.device_comm = options.device_comm;
    o.layer_policy = decoder_layer_policy(options);
    if (weight_scale_needs_hessian(plan.weight_scale)) {
      // X^T X of the targets that use it; each rank keeps its own targets' (the plan outlives
      // the calibrator).
      o.hessian_wanted = [&plan](const std::string& linear) {
        return plan.wants_hessian(linear + ".weight");
      };
      const int rank = comm.rank();
      o.hessian_kept = [&plan, rank](const std::string& linear) {
        return plan.ownership.owner_of(linear + ".weight") == rank;
      };
    }
    return o;
  }
  static CalibrationSet logged(CalibrationSet set, const QuantizeOptions& options) {
    log_info("calibration: ", set.n_samples, " samples x ", set.seq_len, " tokens (",
             options.calib_path.empty() ? "synthetic" : options.calib_path, ")");
    return set;
  }
  dist::Communicator& comm_;
  Calibrator calibrator_;
  std::unique_ptr<gpu::Nvfp4OpsPool> ops_;
  QuantizeStats fused_;  // targets quantized through the layer-bytes hook
};

}  // namespace

std::unique_ptr<CalibrationSource> make_calibration_source(
    const QuantizePlan& plan, const formats::CheckpointDir& source, const QuantizeOptions& options,
    CalibrationInputs inputs, dist::Communicator& comm, formats::StoreCommitter& store) {
  if (!options.amax_file.empty()) {
    return std::make_unique<AmaxFileSource>(plan, options.amax_file, std::move(inputs.amax));
  }
  QF_CHECK(inputs.set.has_value(), "internal: no calibration set was loaded");
  return std::make_unique<ForwardSource>(plan, source, options, std::move(*inputs.set), comm,
                                         store);
}

}  // namespace qf::pipeline
