// The `plan` phase model (issue 19: "plan tells the truth, phase by phase"): the time of each
// phase of `quantize --backend cuda` (start, calibration, quantization, export) from each
// rank's bytes per layer, the disk bandwidths and the GPU's measured forward rates, as the
// streamed job runs them: a layer's reads, store commit and output writes overlap the previous
// layer's forward, and the export at the end writes only the input scales.
// Owns: that model and its measured constants. Does not own the bytes (plan_report) or the
// FLOPs (model/forward_flops).
#pragma once
#include <map>
#include <vector>

#include "model/config.hpp"

namespace qf::pipeline {

// One rank's bytes in one layer (-1: outside the layers; >= num_hidden_layers: MTP).
struct LayerBytes {
  uint64_t read = 0;   // owned source bytes
  uint64_t write = 0;  // NVFP4 work store + output (NVFP4 and copied tensors)
};

struct PhaseModelInputs {
  double read_bps = 0, write_bps = 0;              // per rank (the node's disk shared by its ranks)
  double linear_tflops = 0, attention_tflops = 0;  // one GPU's forward rates
  double tokens_per_rank = 0;                      // calibration tokens each rank runs
  int seq_len = 0;
};

struct PhaseTimes {
  double start = 0, calibration = 0, quantization = 0, export_ = 0;
  double total() const { return start + calibration + quantization + export_; }
};

// Measured constants (bench/RESULTS.md, issue 19, H100, benchmark 1: 1 rank, 16 x 4096
// tokens): the process, MPI, CUDA and NCCL start before the job's first phase (wall minus the
// job's own total, 2.4-3.0 s); the calibration's setup before layer 0 (the embedding's read,
// the tokens embedded on the GPU, the engine: 1.8-2.1 s in the fifth session); the host's handling
// of a layer's source bytes that the forward does not hide (pinned staging, NVFP4 results back);
// the export's input scales, fsync and rename (0.1-0.2 s).
inline constexpr double kPlanStartSeconds = 2.8;
inline constexpr double kPlanCalibSetupSeconds = 2.0;
inline constexpr double kPlanHostStagingBps = 3.9e9;
inline constexpr double kPlanExportSeconds = 0.2;
// Reads and writes in flight at once (a layer's writes beside the next layer's read, the copies
// of the tensors outside the layers): the longer of the two plus this share of the shorter. 1
// would be a disk that serves one after the other at the cat / dd rates; the job measured
// better (fifth session, 4 runs: calibration moved 9.0 GB read and 5.6 GB written in 9.4-10.6
// s where that sum is 10.9-12.7 s), and 0.5 puts every run's calibration phase within 13%.
inline constexpr double kPlanReadWriteSerialShare = 0.5;

// The phases of one rank, as the streamed job pipelines them (layer 0's read, then layer 1's,
// run beside the setup; layer l+1's read and layer l's store commit and output writes beside
// layer l's forward; the last layer's writes drain after calibration; one disk serves reads and
// writes, partly at once):
//   calibration  = S + both(R(outside), W(outside))  with  S = max(setup, R(0))
//                  + sum over l < L-1 of max(forward(l) + host(l), both(R'(l+1), W(l)))
//                  + forward(L-1) + host(L-1)
//   R'(1) = max(0, R(1) - (S - R(0))) (read during the setup), R'(l) = R(l) after
//   both(r, w) = max(r, w) + kPlanReadWriteSerialShare x min(r, w)
//   quantization = W(L-1) + sum over MTP layers of (R + W)       export = constant
//   R(l) = read_l / read_bps   W(l) = write_l / write_bps   host(l) = read_l / kPlanHostStagingBps
//   forward(l) = tokens_per_rank x (linear FLOPs / linear rate + attention FLOPs / its rate)
PhaseTimes rank_phase_times(const model::ModelConfig& config,
                            const std::map<int, LayerBytes>& layers, const PhaseModelInputs& in);
// Max over ranks, phase by phase.
PhaseTimes job_phase_times(const std::vector<PhaseTimes>& ranks);

}  // namespace qf::pipeline
