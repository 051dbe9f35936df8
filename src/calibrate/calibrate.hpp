// The calibration engine (CPU backend): layer-sequential, data-parallel over ranks. Each rank
// keeps the hidden states of its own samples between layers; per layer it runs the reference
// forward with an amax observer and all-reduces the statistics. Owns: the layer loop, the calib
// record format, resume. Does not own: weight exchange, the forward, the store, input scales.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "calibrate/calibration_data.hpp"
#include "calibrate/calibration_engine.hpp"
#include "calibrate/layer_weight_exchange.hpp"
#include "dist/communicator.hpp"
#include "dist/compute_backend.hpp"
#include "dist/ownership_plan.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/layer_record.hpp"
#include "formats/rank_store.hpp"
#include "formats/store_committer.hpp"
#include "model/config.hpp"

namespace qf::pipeline {

// ================================ calib record (stage "calib") ==================================
// One LayerRecord per regular layer L (MTP layers are never calibrated), identical on every
// rank; with the CPU backend also for every world size and batch size (bit for bit: MAX and
// integer SUM are exact, and each sample's forward does not depend on which rank or batch runs
// it). The CUDA backend is deterministic for a given world size and batch size only (GEMM
// kernels depend on the shapes), so both are part of a CUDA run's identity:
//   layer                   L
//   attrs["linear_names"]   every linear of layer L ('\n'-joined), native names without
//                           `.weight`, in checkpoint table order (model::checkpoint_tensors):
//                           layers.L.attn.wq_a, ..., layers.L.ffn.experts.E.w1, ...
//                           (all 2-D `.weight` tensors of the layer, whatever the recipe)
//   f32["input_amax"]       [n linears] max |input| over all calibration tokens, same order;
//                           0 = never seen (an expert no token was routed to)
//   i64["expert_tokens"]    [n_routed_experts] (token, top-k slot) assignments per expert,
//                           summed over ranks (a hash row naming an expert twice counts twice)
//   i64["input_hist"]       [n linears, kActHistBins] counts of |input| in the log2 bins of
//                           act_histogram.hpp, summed over ranks: always with the CPU backend,
//                           with the CUDA backend when CalibrationOptions::record_histograms
//                           (absent otherwise, and from records of older versions)
//   attrs["input_hist_bins"]  with input_hist: kActHistBinning
//   attrs["n_tokens"]       calibration tokens that went through the layer (all ranks)
//   attrs["n_samples"], attrs["seq_len"]   the calibration set's shape
//   attrs["calib_set"]      calibration_fingerprint of the set, 16 hex digits
// w1 and w3 of an expert share one input, so their amax are equal.
// ================================================================================================

struct CalibrationOptions {
  // Sequences per forward call: bounds the activation memory of one call. CPU results do not
  // depend on it; CUDA results only in the last bits.
  int batch_seqs = 4;
  // kCpu: the FP32 reference forward on the host. kCuda: calibration_engine.hpp's CUDA engine
  // (amax within ~1% of the reference: BF16 GEMM inputs).
  dist::ComputeBackend backend = dist::ComputeBackend::kCpu;
  // CPU backend only: round linear inputs to BF16 as the CUDA backend does
  // (model::decoder_layer_forward's bf16_linear_inputs), to compare the two backends on equal
  // terms.
  bool cpu_bf16_linear_inputs = false;
  // CUDA backend: also record input_hist (what --act-scale percentile/mse need; it costs a pass
  // over every linear input). The CPU backend always records it.
  bool record_histograms = false;
  // CUDA backend: an NCCL communicator on this rank's GPU (--comm nccl; outlives the
  // calibrator) for the layer weights and the input amax; null: all over the host
  // communicator. Results are the same either way.
  dist::Communicator* device_comm = nullptr;
  // CUDA backend: FP32-accurate linear inputs (unless --cuda-bf16-inputs), and the GPU layer's
  // expert cache and section profiling (the job fills those from QF_EXPERT_CACHE / QF_PROFILE;
  // results do not depend on them).
  gpu::DecoderLayerPolicy layer_policy;
  // CUDA backend: the first layer the run calibrates (-1: none): its owned source bytes, then
  // the next layer's, are read while the calibration sets up (embedding, hidden states,
  // engine), so that nothing waits for the cold read of layer 0 alone and the disk does not
  // idle behind the setup (issue 19).
  int read_ahead_layer = -1;
  // CPU backend only: record X^T X of the inputs of the linears (calib names) hessian_wanted
  // selects, for --weight-scale gptq | hessian (hessian_recorder.hpp); every rank passes the
  // same predicate. This rank's hessian record keeps those hessian_kept selects (its own
  // targets). Null: no Hessians.
  std::function<bool(const std::string& linear)> hessian_wanted;
  std::function<bool(const std::string& linear)> hessian_kept;
};

class HessianRecorder;

class Calibrator {
 public:
  // Collective (fetches the embedding). Every rank passes the same config, source, plan and
  // calibration set; the rank runs samples_of_rank(set.n_samples, comm.rank(), world). All
  // references must outlive the calibrator.
  Calibrator(const model::ModelConfig& config, const formats::CheckpointDir& source,
             dist::Communicator& comm, const dist::OwnershipPlan& plan, CalibrationSet set,
             CalibrationOptions options = {});
  Calibrator(const Calibrator&) = delete;  // the weight exchange points into this object
  Calibrator& operator=(const Calibrator&) = delete;

  // Collective. Runs regular layer `layer` on this rank's samples (layers strictly in order
  // 0, 1, ..., num_hidden_layers - 1), all-reduces the statistics and returns the calib record
  // (identical on every rank). Any rank's failure stops every rank (qf::CollectiveError).
  // With CalibrationOptions::hessian_wanted, *hessian (required then) receives this rank's
  // hessian record of the layer (hessian_recorder.hpp).
  formats::LayerRecord calibrate_layer(int layer, formats::LayerRecord* hessian = nullptr);
  bool records_hessians() const { return bool(options_.hessian_wanted); }

  int next_layer() const { return next_layer_; }
  int n_layers() const { return config_.num_hidden_layers; }
  SampleRange local_samples() const { return local_; }
  const CalibrationSet& calibration_set() const { return set_; }
  const ExchangeStats& exchange_stats() const { return exchange_.stats(); }
  // Timing of the CUDA engine (zeros for the CPU backend).
  EngineTimes engine_times() const { return engine_ ? engine_->times() : EngineTimes{}; }
  dist::ComputeBackend backend() const { return options_.backend; }
  // CUDA engine: see CalibrationEngine::set_layer_bytes_hook. Returns false (and installs
  // nothing) for the CPU backend.
  bool set_layer_bytes_hook(CalibrationEngine::LayerBytesHook hook) {
    if (!engine_) return false;
    engine_->set_layer_bytes_hook(std::move(hook));
    return true;
  }

 private:
  // One layer's statistics on this rank (amax, expert tokens, histograms when recorded), from
  // the CUDA engine (amax already MAX-reduced when the engine reduces on the device) or from the
  // CPU reference forward over this rank's samples. Every failure is a collective step's.
  bool embeds_on_gpu(const NativeTensor& embedding) const;
  LayerStatistics forward_layer_cuda(int layer, const std::vector<std::string>& names,
                                     const std::string& tag, bool with_hist);
  // hessians (may be null) also observes the CPU forward's linear inputs.
  LayerStatistics forward_layer_cpu(int layer, const std::vector<std::string>& names,
                                    const std::string& tag, HessianRecorder* hessians);
  // Collective: the Hessians of every rank summed; this rank's hessian record.
  formats::LayerRecord reduce_hessians(int layer, HessianRecorder& hessians);

  const model::ModelConfig& config_;
  dist::Communicator& comm_;
  CalibrationSet set_;
  CalibrationOptions options_;
  SampleRange local_;
  std::vector<int64_t> local_tokens_;  // this rank's samples, sample-major
  std::vector<float> hidden_;          // [local tokens, hc_mult, hidden]: after next_layer_ - 1
  LayerWeightExchange exchange_;
  std::unique_ptr<CalibrationEngine> engine_;  // CUDA backend; null for the CPU reference
  int next_layer_ = 0;
};

// Every linear of regular layer `layer` (the order of attrs["linear_names"]).
std::vector<std::string> calib_linear_names(const model::ModelConfig& config, int layer);

struct CalibrationRunStats {
  int n_layers_committed = 0;   // computed and committed now
  int n_layers_recomputed = 0;  // already in the store: recomputed and checked equal
  double seconds = 0.0;
};

// What run_calibration knows after each layer's collective step (for progress reporting).
struct CalibrationLayerDone {
  int layer = 0;
  int n_layers = 0;
  double layer_seconds = 0;      // this layer, on this rank
  double layers_per_second = 0;  // since run_calibration started
  double eta_seconds = 0;        // the remaining layers at that rate
  double tokens_per_second = 0;  // this layer: calibration tokens (all ranks) / layer_seconds
  bool recomputed = false;       // resumed: recomputed and checked against the stored record
};
// Called on every rank after each layer's step, at the same point on every rank: it may run
// collectives.
using CalibrationLayerHook = std::function<void(const CalibrationLayerDone&)>;

// Calibrates every regular layer and commits each record to `store` (stage "calib"; and stage
// "hessian" when the calibrator records Hessians: committed after the layer's calib record).
// Resume: the hidden states after a layer are not stored, so a run that finds layers already
// committed recomputes them (to rebuild the hidden states) and checks that each recomputed
// record equals the stored one bit for bit (a free determinism check: a difference means other
// inputs or a nondeterministic forward, and stops the run). A hessian record already committed
// is kept (not compared: its sums depend on the world size in the last bits); a missing one is
// committed from the recomputation. If every rank's store holds every layer (both stages when
// Hessians are recorded), nothing is recomputed. One progress line per layer on rank 0.
// This form leaves the last commits in flight: the caller drains `store` (in a collective step).
CalibrationRunStats run_calibration(Calibrator& calibrator, formats::StoreCommitter& store,
                                    dist::Communicator& comm,
                                    const CalibrationLayerHook& on_layer = {});
// The same on a bare store, drained before returning.
CalibrationRunStats run_calibration(Calibrator& calibrator, formats::RankStore& store,
                                    dist::Communicator& comm);

}  // namespace qf::pipeline
