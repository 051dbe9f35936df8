// The `quantize` job: plan -> calibration records -> per-rank quantization (HDF5 stores, one
// committed layer at a time, resumable) -> export. Owns: the phase order, resume rules and
// provenance. Does not own calibration, quantization arithmetic or the export layout.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/io_counters.hpp"
#include "dist/communicator.hpp"
#include "dist/compute_backend.hpp"
#include "export/quant_config.hpp"
#include "formats/checkpoint_dir.hpp"
#include "plan/plan_report.hpp"
#include "quantize/act_scale.hpp"
#include "quantize/expert_weights.hpp"
#include "quantize/weight_scale.hpp"

namespace qf::pipeline {

struct QuantizeOptions {
  std::string in_dir;
  std::string out_dir;
  std::string work_dir;
  Recipe recipe = Recipe::kExperts;
  ExpertWeights expert_weights = ExpertWeights::kCast;  // FP4 experts: lossless cast or requantize
  // Scales of the requantized targets (weight_scale.hpp). gptq | hessian record X^T X during the
  // calibration forward (cpu backend, token calibration: not with --amax-file).
  WeightScale weight_scale = WeightScale::kMax;
  KvCache kv = KvCache::kNone;
  dist::ComputeBackend backend = dist::ComputeBackend::kCpu;
  bool resume = false;       // continue a run whose stores exist in work_dir
  bool export_only = false;  // every layer is committed; only (re)write the output
  std::string shard;         // with export_only: rebuild only this output shard file
  // Re-hash every source file before resuming or exporting and compare with the content digests
  // the store recorded (job/source_check.hpp); accepts a source whose dates or inodes changed
  // (a copy) when its contents did not. Not part of the run's identity.
  bool verify_source = false;
  // Calibration: token ids (--calib), or an imported {module: amax} file (--amax-file).
  std::string calib_path;
  std::string amax_file;
  int samples = 16;
  int seq_len = 256;
  uint64_t seed = 0;
  int calib_batch = 4;  // sequences per calibration forward (memory; cuda: last-bit effects)
  bool cpu_bf16_linear_inputs = false;   // CalibrationOptions::cpu_bf16_linear_inputs
  bool cuda_bf16_linear_inputs = false;  // not gpu::DecoderLayerPolicy::fp32_linear_inputs
  // Clipping amax of the input scales (act_scale.hpp); non-max methods need the calibration's
  // histograms (recorded by either backend, not by an --amax-file).
  ActScaleMethod act_scale;
  // --comm nccl: the NCCL communicator of the CUDA calibration engine (CalibrationOptions::
  // device_comm), owned by the caller; null = everything over the host communicator. Not part
  // of the run's identity (provenance): it moves the same bytes, results are identical.
  dist::Communicator* device_comm = nullptr;
  // --progress-json: rank 0 appends the job's events there (core/progress_stream.hpp); "" = off.
  // Not part of the run's identity.
  std::string progress_json;
};

// What quantize counted, summed over ranks (the report's one reduction; the summary reuses it).
struct QuantizeReportTotals {
  uint64_t n_targets_planned = 0;  // NVFP4 targets of the plan
  uint64_t n_targets = 0;          // quantized in this invocation (all ranks)
  uint64_t n_blocks_lossless = 0;
  uint64_t n_blocks_fallback = 0;
  uint64_t n_blocks_moved = 0;
  uint64_t bytes_written = 0;
};

struct QuantizeReport {
  uint64_t n_targets = 0;  // quantized by this rank in this run
  uint64_t n_blocks_lossless = 0;
  uint64_t n_blocks_fallback = 0;
  uint64_t n_blocks_moved = 0;      // --weight-scale search: 16-blocks off the max-mapped scale
  uint64_t n_fallback_experts = 0;  // experts with the documented input_scale fallback
  uint64_t bytes_written = 0;
  double seconds = 0;
  // This rank's cost per phase, for the job summary (zeros for phases skipped on resume).
  double calib_seconds = 0, quant_seconds = 0, export_seconds = 0;
  double calib_forward_seconds = 0;      // CUDA: the forward alone
  uint64_t calib_tokens = 0;             // token-layers this rank pushed through (CUDA engine)
  double calib_flops = 0;                // their arithmetic (model/forward_flops.hpp)
  uint64_t bytes_read = 0;               // source bytes (calibration + quantization)
  uint64_t store_bytes_written = 0;      // work-store layer files committed in this run
  uint64_t store_bytes_derived = 0;      // tensor bytes those files left in the source (derived)
  double store_commit_seconds = 0;       // committing them (in the background of the phases)
  double store_commit_wait_seconds = 0;  // the phases blocked on those commits (queue full, drain)
  uint64_t peak_device_bytes = 0;
  // This process's I/O per phase (/proc/self/io) and for the whole job, and the source's file
  // bytes: the summary's "bytes moved" table against the minimum (issue 19).
  IoCounters io_calib, io_quant, io_export, io_total;
  uint64_t source_file_bytes = 0;
  // XXH64 of the work store's provenance (job/output_provenance.hpp): the report records which
  // store an export came from, and --shard refuses another one.
  std::string store_provenance_xxh64;
  QuantizeReportTotals totals;  // over all ranks, the same on every rank
};

QuantizeReport run_quantize(const QuantizeOptions& options, dist::Communicator& comm);

// What makes two runs the same run (the rank stores' provenance; resume refuses any difference):
// options, calibration inputs and the source's files (sizes, header checksums) and config.
// `quantforge status` recomputes it to say whether a --resume would be refused.
nlohmann::json quantize_provenance(const QuantizeOptions& options,
                                   const formats::CheckpointDir& source);
// The differences --export-only refuses: provenance_differences without the options that only
// decide how layers are computed (backend, calib_batch), stored first.
std::vector<std::string> export_only_provenance_differences(const nlohmann::json& stored,
                                                            const nlohmann::json& current);

}  // namespace qf::pipeline
