// The compute side of one calibration layer, behind one interface so the Calibrator's layer
// loop, record format and resume stay the same for every backend. The CPU engine is the
// reference forward inside Calibrator itself; the CUDA engine (calibrate_cuda.cu) keeps the
// hidden states on the GPU, streams each layer's weights in source precision (reading layer
// l+1 while layer l computes) and runs gpu::GpuDecoderLayer.
// Owns: the engine contract and its timing counters. Does not own: reductions over ranks or
// the calib record.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/forward_config.hpp"
#include "pipeline/layer_weight_exchange.hpp"

namespace qf::pipeline {

// This rank's statistics of one layer (before the all-reduce).
struct LayerStatistics {
  std::vector<float> amax;             // per linear name, in the order asked for; 0 = not seen
  std::vector<int64_t> expert_tokens;  // [n_routed_experts]
};

struct EngineTimes {
  double weights_seconds = 0;   // waiting for / exchanging / uploading weights (not overlapped)
  double read_wait_seconds = 0;  // of which: waiting for this rank's reads (read-ahead misses)
  double hook_seconds = 0;      // the layer-bytes hook (quantize + commit the layer's NVFP4)
  double compute_seconds = 0;   // the forward itself
  uint64_t n_tokens = 0;        // tokens pushed through layers (sum over layers)
  uint64_t peak_device_bytes = 0;
};

class CalibrationEngine {
 public:
  virtual ~CalibrationEngine() = default;
  // Collective: exchanges layer `layer`'s weights and makes them ready for compute_layer
  // (dropping the previous layer's).
  virtual void fetch_layer(int layer, const std::vector<std::string>& linear_names) = 0;
  // Local (may throw on this rank only: callers wrap it in run_on_all_ranks). Runs the fetched
  // layer over this rank's samples, updating the hidden states, and returns the statistics of
  // `linear_names` (calib order).
  virtual LayerStatistics compute_layer(int layer, const std::vector<std::string>& linear_names) = 0;
  virtual EngineTimes times() const = 0;

  // Called at the start of compute_layer (so inside the caller's run_on_all_ranks step) with
  // the layer's linear weights as exchanged, by checkpoint name (weights and `.scale`s): lets
  // the caller quantize them without reading the source a second time.
  using LayerBytesHook = std::function<void(int layer, const TensorBytes& bytes_of)>;
  virtual void set_layer_bytes_hook(LayerBytesHook hook) = 0;
};

#ifdef QF_HAVE_CUDA
// The CUDA engine on the current device. hidden: the embedded tokens [local tokens, hc, hidden]
// (moved in); token_ids: this rank's samples, sample-major; batch_seqs sequences per forward.
std::unique_ptr<CalibrationEngine> make_cuda_calibration_engine(
    const model::ModelConfig& config, const model::ForwardConfig& forward_config,
    LayerWeightExchange& exchange, std::vector<float> hidden, std::vector<int64_t> token_ids,
    int seq_len, int batch_seqs);
#endif

}  // namespace qf::pipeline
