// The compute side of one calibration layer, behind one interface so the Calibrator's layer
// loop, record format and resume stay the same for every backend. The CPU engine is the
// reference forward inside Calibrator itself; the CUDA engine (cuda_calibration_engine.cu)
// keeps the hidden states on the GPU, streams each layer's weights in source precision (reading
// layer l+1 while layer l computes; with an NCCL communicator, broadcast device to device from
// their owners) and runs gpu::GpuDecoderLayer.
// Owns: the engine contract and its timing counters. Does not own: reductions over ranks or
// the calib record.
#pragma once
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "calibrate/layer_read_ahead.hpp"
#include "calibrate/layer_weight_exchange.hpp"
#include "gpu/gpu_decoder_layer.hpp"
#include "model/config.hpp"

namespace qf::pipeline {

// This rank's statistics of one layer (before the all-reduce).
struct LayerStatistics {
  std::vector<float> amax;             // per linear name, in the order asked for; 0 = not seen
  std::vector<int64_t> expert_tokens;  // [n_routed_experts]
  // [n linears, kActHistBins] counts of |input| (act_histogram.hpp bins), calib order, when the
  // engine records histograms (set_record_histograms); empty otherwise.
  std::vector<int64_t> hist;
};

struct EngineTimes {
  double weights_seconds = 0;    // waiting for / exchanging / uploading weights (not overlapped)
  double read_wait_seconds = 0;  // of which: waiting for this rank's reads (read-ahead misses)
  double hook_seconds = 0;       // waiting for the layer-bytes hook (NVFP4 of the layer, queued
                                 // commit) after the forward, which it runs beside
  double compute_seconds = 0;    // the forward itself
  uint64_t n_tokens = 0;         // tokens pushed through layers (sum over layers)
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
  virtual LayerStatistics compute_layer(int layer,
                                        const std::vector<std::string>& linear_names) = 0;
  virtual EngineTimes times() const = 0;
  // Whether compute_layer also returns LayerStatistics::hist (off by default: it costs one more
  // pass over every linear input, and an FP32 copy of each expert's SwiGLU output).
  virtual void set_record_histograms(bool on) = 0;

  // With a device communicator (NCCL), compute_layer leaves the input amax on the device and
  // returns LayerStatistics::amax empty; once compute_layer has succeeded on every rank (never
  // inside a step that may fail on one rank: NCCL would wait for it forever), every rank calls
  // reduce_amax, which all-reduces MAX on the device and returns the amax of `linear_names`,
  // identical on every rank (no host all-reduce needed). Any error after the device collective
  // stops every rank (run_on_all_ranks).
  virtual bool amax_on_device() const { return false; }
  virtual std::vector<float> reduce_amax(int layer, const std::vector<std::string>& linear_names) {
    (void)layer;
    (void)linear_names;
    return {};
  }

  // Called during compute_layer (so inside the caller's run_on_all_ranks step; the CUDA engine
  // runs it on another thread beside the forward and joins it before returning) with the
  // layer's linear weights as exchanged, by checkpoint name (weights and `.scale`s): lets the
  // caller quantize them without reading the source a second time. bytes_of may be called from
  // several threads at once.
  using LayerBytesHook = std::function<void(int layer, const TensorBytes& bytes_of)>;
  virtual void set_layer_bytes_hook(LayerBytesHook hook) = 0;
};

// Where the CUDA engine's hidden states start: `hidden`, embedded on the host ([local tokens, hc,
// hidden] FP32), or, when `embed_bf16` holds the BF16 embedding table ([vocab, hidden], its
// source bytes), embedded by the engine on the GPU (only where they stay resident there:
// gpu::DeviceHiddenStates::fit_on_device). The same states either way.
struct InitialHiddenStates {
  std::vector<float> hidden;
  std::vector<uint8_t> embed_bf16;
};

#ifdef QF_HAVE_CUDA
// The CUDA engine on the current device. initial: the embedded tokens (moved in); token_ids: this
// rank's samples, sample-major; batch_seqs sequences per forward. device_comm: null = weights and
// amax go through the exchange's host communicator (MPI); else an NCCL communicator on this device
// (outliving the engine), ordered with the engine's stream while the engine lives: each layer's
// arena linears are broadcast on the device from their owners (layer_arena.hpp), and the amax are
// all-reduced on the device. layer_policy: the GPU layer's memory and profiling choices (the
// caller's options). read_ahead: layers whose reads the caller started (the first layers' cold
// reads, begun before the calibration's setup so that the setup hides them, issue 19); the engine
// takes each when it fetches that layer and queues layer l+1's read once layer l is on the GPU.
// Without a reader the engine reads through `exchange`.
std::unique_ptr<CalibrationEngine> make_cuda_calibration_engine(
    const model::ModelConfig& config, LayerWeightExchange& exchange, InitialHiddenStates initial,
    std::vector<int64_t> token_ids, int seq_len, int batch_seqs,
    dist::Communicator* device_comm = nullptr, gpu::DecoderLayerPolicy layer_policy = {},
    LayerReadAhead read_ahead = {});
#endif

}  // namespace qf::pipeline
