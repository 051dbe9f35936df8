// print_quantize_summary (see quantize_summary.hpp).
#include "job/quantize_summary.hpp"

#include <sys/resource.h>

#include <cstdio>
#include <utility>
#include <vector>

#include "core/log.hpp"
#include "core/progress.hpp"

namespace qf::pipeline {
namespace {

// This rank's figures of the per-rank table, in the allgather's order.
constexpr int kN = 6;
enum Figure { kRead, kWritten, kPeakDevice, kPeakHost, kCalibTokens, kCommSeconds };

// Time per phase (rank 0's clock; every phase ends in a collective, so ranks agree to within a
// step), the background store commits and the calibration throughput.
void log_phases(const QuantizeReport& r, const std::vector<double>& all, int world_size) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "  %-13s %10s", "phase", "time");
  log_info(buf);
  const std::pair<const char*, double> phases[] = {{"calibration", r.calib_seconds},
                                                   {"quantization", r.quant_seconds},
                                                   {"export", r.export_seconds},
                                                   {"total", r.seconds}};
  for (const auto& [name, seconds] : phases) {
    std::snprintf(buf, sizeof(buf), "  %-13s %10s", name,
                  ProgressMeter::format_seconds(seconds).c_str());
    log_info(buf);
  }
  if (r.store_bytes_written > 0) {
    // Commits run on a background thread: only the wait is part of the phases above.
    std::snprintf(buf, sizeof(buf),
                  "  work store: %s committed in %s in the background, phases waited %s (rank 0);"
                  " %s of tensors left in the source (derived)",
                  ProgressMeter::format_bytes(double(r.store_bytes_written)).c_str(),
                  ProgressMeter::format_seconds(r.store_commit_seconds).c_str(),
                  ProgressMeter::format_seconds(r.store_commit_wait_seconds).c_str(),
                  ProgressMeter::format_bytes(double(r.store_bytes_derived)).c_str());
    log_info(buf);
  }
  double tokens = 0;
  for (int k = 0; k < world_size; ++k) tokens += all[kN * k + kCalibTokens];
  if (r.calib_seconds > 0 && tokens > 0) {
    // Token-layers: one token through one layer (tokens/s of the model = this / n_layers).
    std::snprintf(buf, sizeof(buf), "  calibration: %.0f token-layers/s (all ranks, with I/O)",
                  tokens / r.calib_seconds);
    log_info(buf);
    if (r.calib_forward_seconds > 0) {
      std::snprintf(buf, sizeof(buf),
                    "  calibration forward alone: %.0f token-layers/s, %.1f TFLOP/s (rank 0)",
                    all[kCalibTokens] / r.calib_forward_seconds,
                    r.calib_flops / r.calib_forward_seconds / 1e12);
      log_info(buf);
    }
  }
}

void log_ranks(const std::vector<double>& all, int world_size) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "  %-5s %12s %12s %14s %14s %10s", "rank", "read", "written",
                "peak GPU mem", "peak host mem", "comm");
  log_info(buf);
  for (int k = 0; k < world_size; ++k) {
    const double* v = &all[kN * size_t(k)];
    std::snprintf(buf, sizeof(buf), "  %-5d %12s %12s %14s %14s %9.2fs", k,
                  ProgressMeter::format_bytes(v[kRead]).c_str(),
                  ProgressMeter::format_bytes(v[kWritten]).c_str(),
                  v[kPeakDevice] > 0 ? ProgressMeter::format_bytes(v[kPeakDevice]).c_str() : "-",
                  ProgressMeter::format_bytes(v[kPeakHost]).c_str(), v[kCommSeconds]);
    log_info(buf);
  }
}

// Bytes moved per phase, summed over the ranks (each rank's /proc/self/io), against the
// minimum a run must move: the source read once, the output and the work store written once.
// "disk" is what reached storage; "calls" what went through read()/write() (page cache hits
// included), so calls above disk show re-reads the page cache absorbed on this run.
void log_bytes_moved(const QuantizeReport& r, dist::Communicator& comm) {
  constexpr int kPhases = 4, kCounters = 4;
  const IoCounters* phases[kPhases] = {&r.io_calib, &r.io_quant, &r.io_export, &r.io_total};
  uint64_t counts[kPhases * kCounters + 3] = {};
  for (int p = 0; p < kPhases; ++p) {
    counts[kCounters * p + 0] = phases[p]->disk_read;
    counts[kCounters * p + 1] = phases[p]->disk_write;
    counts[kCounters * p + 2] = phases[p]->calls_read;
    counts[kCounters * p + 3] = phases[p]->calls_write;
  }
  uint64_t* const extra = counts + kPhases * kCounters;
  extra[0] = comm.rank() == 0 ? r.source_file_bytes : 0;  // every rank sees the same files
  extra[1] = r.store_bytes_written;
  extra[2] = r.io_total.available ? 1 : 0;  // ranks that could read their counters
  comm.allreduce_counts(counts, kPhases * kCounters + 3, "bytes moved");
  if (comm.rank() != 0 || extra[2] != uint64_t(comm.world_size())) return;
  const auto gb = [](uint64_t n) { return ProgressMeter::format_bytes(double(n)); };
  char buf[256];
  std::snprintf(buf, sizeof(buf), "  %-13s %11s %11s %11s %11s", "bytes moved", "disk read",
                "disk write", "calls read", "calls write");
  log_info(buf);
  const char* names[kPhases] = {"calibration", "quantization", "export", "whole job"};
  for (int p = 0; p < kPhases; ++p) {
    const uint64_t* v = counts + kCounters * p;
    std::snprintf(buf, sizeof(buf), "  %-13s %11s %11s %11s %11s", names[p], gb(v[0]).c_str(),
                  gb(v[1]).c_str(), gb(v[2]).c_str(), gb(v[3]).c_str());
    log_info(buf);
  }
  const uint64_t output = r.totals.bytes_written;
  std::snprintf(buf, sizeof(buf),
                "  minimum: read the source once %s; write the output once %s + the work store "
                "once %s = %s",
                gb(extra[0]).c_str(), gb(output).c_str(), gb(extra[1]).c_str(),
                gb(output + extra[1]).c_str());
  log_info(buf);
}

}  // namespace

void print_quantize_summary(const QuantizeReport& r, const QuantizeOptions& options,
                            dist::Communicator& comm, dist::Communicator* device_comm) {
  const QuantizeReportTotals& t = r.totals;
  log_info("quantize: ", t.n_targets, " tensors quantized in this run (lossless MXFP4 blocks ",
           t.n_blocks_lossless, ", fallback blocks ", t.n_blocks_fallback,
           options.weight_scale == WeightScale::kMax
               ? std::string()
               : str_cat("; --weight-scale ", weight_scale_methods().name(options.weight_scale),
                         ": ", t.n_blocks_moved, " blocks off the max-mapped scale"),
           "), ", r.n_fallback_experts, " uncalibrated experts, wrote ",
           ProgressMeter::format_bytes(double(t.bytes_written)), " in ",
           ProgressMeter::format_seconds(r.seconds), " -> ", options.out_dir);
  // Communication so far (Communicator::stats()), before the summary's own collective.
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const dist::CommStats host_stats = comm.stats();
  const dist::CommStats device_stats = device_comm ? device_comm->stats() : dist::CommStats{};
  const double mine[kN] = {
      double(r.bytes_read),        double(r.bytes_written),
      double(r.peak_device_bytes), double(usage.ru_maxrss) * 1024.0,
      double(r.calib_tokens),      host_stats.seconds() + device_stats.seconds()};
  std::vector<double> all(kN * size_t(comm.world_size()));
  comm.allgather(mine, all.data(), sizeof(mine), "quantize summary");
  if (comm.rank() == 0) {
    log_info("summary (", comm.world_size(), " rank(s), backend ",
             dist::backend_name(options.backend), ")");
    log_phases(r, all, comm.world_size());
  }
  log_bytes_moved(r, comm);  // collective
  if (comm.rank() != 0) return;
  // rank 0's communication per operation kind, host (MPI) and device (NCCL) communicator.
  log_info("  communication (rank 0, ", dist::backend_name(comm.backend()),
           "): ", host_stats.describe(r.seconds));
  if (device_comm) {
    log_info("  communication (rank 0, ", dist::backend_name(device_comm->backend()),
             "): ", device_stats.describe(r.seconds));
  }
  log_ranks(all, comm.world_size());
}

}  // namespace qf::pipeline
