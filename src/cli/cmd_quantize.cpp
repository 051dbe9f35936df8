// `quantforge quantize`: the main job (calibrate + quantize + per-rank stores + export).
#include <sys/resource.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "cli/options.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/mpi_env.hpp"
#include "job/quantize_job.hpp"

namespace qf::cli {
namespace {

// The end-of-job table on rank 0: time per phase (rank 0's clock; every phase ends in a
// collective, so ranks agree to within a step), per-rank bytes, peak memory and communication
// time (Communicator::stats(), taken before the summary's own collective), and rank 0's
// communication per operation kind for the host (MPI) and, if any, the device (NCCL)
// communicator. bench/bench_multi_rank.sh parses these lines.
void print_summary(const pipeline::QuantizeReport& r, dist::ComputeBackend backend,
                   dist::Communicator& comm, dist::Communicator* device_comm) {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const dist::CommStats host_stats = comm.stats();
  const dist::CommStats device_stats = device_comm ? device_comm->stats() : dist::CommStats{};
  constexpr int kN = 6;
  const double comm_seconds = host_stats.seconds() + device_stats.seconds();
  const double mine[kN] = {double(r.bytes_read),        double(r.bytes_written),
                           double(r.peak_device_bytes), double(usage.ru_maxrss) * 1024.0,
                           double(r.calib_tokens),      comm_seconds};
  std::vector<double> all(kN * size_t(comm.world_size()));
  comm.allgather(mine, all.data(), sizeof(mine), "quantize summary");
  if (comm.rank() != 0) return;
  double tokens = 0;
  for (int k = 0; k < comm.world_size(); ++k) tokens += all[kN * k + 4];
  auto line = [](const char* text) { log_info(text); };
  char buf[256];
  std::snprintf(buf, sizeof(buf), "summary (%d rank(s), backend %s)", comm.world_size(),
                dist::backend_name(backend));
  line(buf);
  std::snprintf(buf, sizeof(buf), "  %-13s %10s", "phase", "time");
  line(buf);
  const std::pair<const char*, double> phases[] = {{"calibration", r.calib_seconds},
                                                   {"quantization", r.quant_seconds},
                                                   {"export", r.export_seconds},
                                                   {"total", r.seconds}};
  for (const auto& [name, seconds] : phases) {
    std::snprintf(buf, sizeof(buf), "  %-13s %10s", name,
                  ProgressMeter::format_seconds(seconds).c_str());
    line(buf);
  }
  if (r.store_bytes_written > 0) {
    // Commits run on a background thread: only the wait is part of the phases above.
    std::snprintf(buf, sizeof(buf),
                  "  work store: %s committed in %s in the background, phases waited %s (rank 0)",
                  ProgressMeter::format_bytes(double(r.store_bytes_written)).c_str(),
                  ProgressMeter::format_seconds(r.store_commit_seconds).c_str(),
                  ProgressMeter::format_seconds(r.store_commit_wait_seconds).c_str());
    line(buf);
  }
  if (r.calib_seconds > 0 && tokens > 0) {
    // Token-layers: one token through one layer (tokens/s of the model = this / n_layers).
    std::snprintf(buf, sizeof(buf), "  calibration: %.0f token-layers/s (all ranks, with I/O)",
                  tokens / r.calib_seconds);
    line(buf);
    if (r.calib_forward_seconds > 0) {
      std::snprintf(buf, sizeof(buf),
                    "  calibration forward alone: %.0f token-layers/s, %.1f TFLOP/s (rank 0)",
                    all[4] / r.calib_forward_seconds, r.calib_flops / r.calib_forward_seconds / 1e12);
      line(buf);
    }
  }
  // (std::string: describe() is longer than buf)
  log_info("  communication (rank 0, ", dist::backend_name(comm.backend()),
           "): ", host_stats.describe(r.seconds));
  if (device_comm) {
    log_info("  communication (rank 0, ", dist::backend_name(device_comm->backend()),
             "): ", device_stats.describe(r.seconds));
  }
  std::snprintf(buf, sizeof(buf), "  %-5s %12s %12s %14s %14s %10s", "rank", "read", "written",
                "peak GPU mem", "peak host mem", "comm");
  line(buf);
  for (int k = 0; k < comm.world_size(); ++k) {
    const double* v = &all[kN * size_t(k)];
    std::snprintf(buf, sizeof(buf), "  %-5d %12s %12s %14s %14s %9.2fs", k,
                  ProgressMeter::format_bytes(v[0]).c_str(),
                  ProgressMeter::format_bytes(v[1]).c_str(),
                  v[2] > 0 ? ProgressMeter::format_bytes(v[2]).c_str() : "-",
                  ProgressMeter::format_bytes(v[3]).c_str(), v[5]);
    line(buf);
  }
}

}  // namespace

int cmd_quantize(const Args& args) {
  pipeline::QuantizeOptions run;
  std::string recipe, kv, backend, act_scale, expert_weights;
  std::string comm_name;  // --comm
  po::options_description input("input"), calib("calibration"), quant("quantization"),
      output("output and resume");
  input.add_options()  //
      ("in", po::value(&run.in_dir)->required(),
       "source checkpoint: native DeepSeek V4 (FP8 + FP4 experts) or BF16 (from dequant)");
  calib.add_options()  //
      (
          "calib", po::value(&run.calib_path),
          "token ids: safetensors (input_ids [n, L]) or JSONL; default: a deterministic synthetic "
          "set")                                                                                 //
      ("samples", po::value(&run.samples)->default_value(16), "calibration sequences")           //
      ("seq-len", po::value(&run.seq_len)->default_value(256), "tokens per sequence")            //
      ("seed", po::value(&run.seed)->default_value(0), "seed of the synthetic calibration set")  //
      ("cpu-bf16-inputs", po::bool_switch(&run.cpu_bf16_linear_inputs),
       "--backend cpu: round every linear's input to BF16 like the CUDA backend (the reference "
       "the CUDA results are compared with; the default cpu forward is FP32 throughout)")  //
      ("calib-batch", po::value(&run.calib_batch)->default_value(4),
       "sequences per calibration forward: bounds activation memory and sets the expert GEMM "
       "sizes (cuda: 8 x 4096 tokens keeps an H100's MoE GEMMs above half of peak); the cpu "
       "backend's results do not depend on it, the cuda backend's only in the last bits (cuBLAS "
       "picks kernels by shape)")  //
      ("amax-file", po::value(&run.amax_file),
       "use these input amax values ({\"layers.N.ffn.experts.E.w1\": amax, ...}) instead of "
       "running calibration; modules not listed count as unseen");
  quant.add_options()  //
      ("recipe", po::value(&recipe)->default_value("experts"),
       "experts: routed experts -> NVFP4, the rest copied (published V4 NVFP4 checkpoints; vLLM, "
       "SGLang) | full: every FP8/FP4 linear -> NVFP4 (generic ModelOpt loaders)")  //
      ("expert-weights", po::value(&expert_weights)->default_value("cast"),
       pipeline::expert_weights_modes().help().c_str())  //
      ("kv-cache", po::value(&kv)->default_value("none"),
       "none | fp8_cast: declare an FP8 KV cache (no k/v scale tensors, as ModelOpt's "
       "constant-amax recipe)")  //
      ("backend", po::value(&backend)->default_value("auto"),
       "auto | cpu | cuda. cuda: calibration forward and NVFP4 kernels on this rank's GPU "
       "(local rank % GPUs); weights bit-identical to cpu, input amax within ~1% (BF16 GEMM "
       "inputs). auto: cuda when a GPU is visible")  //
      ("comm", po::value(&comm_name)->default_value("auto"),
       "auto | mpi | nccl: what carries the cuda calibration's layer weights and input amax "
       "between ranks. mpi: host buffers (owners broadcast, every rank uploads the layer); "
       "nccl: each owner uploads its own linears and NCCL broadcasts them GPU to GPU, amax "
       "all-reduced on the GPU (needs --backend cuda and one GPU per rank). auto: nccl for the "
       "cuda backend when every rank has its own GPU, else mpi. Results are identical")  //
      ("act-scale", po::value(&act_scale)->default_value("max"),
       "activation input_scale = clip / 2688 with clip: max (calibrated max |x|, as ModelOpt) | "
       "percentile[:P] (P-th percentile of |x|, default 99.99) | mse (minimises a modelled "
       "NVFP4 activation error). percentile and mse use |x| histograms recorded during "
       "calibration (either backend; not with --amax-file)");
  output.add_options()  //
      ("out", po::value(&run.out_dir)->required(),
       "output checkpoint directory (absent or empty; written as OUT.partial, then renamed)")  //
      (
          "work", po::value(&run.work_dir)->required(),
          "work directory for the per-rank HDF5 stores (WORK/rank-R), one committed layer at a "
          "time")                                                                              //
      ("resume", po::bool_switch(&run.resume), "continue the run whose stores are in --work")  //
      ("export-only", po::bool_switch(&run.export_only),
       "write the output from the stores alone (every layer committed)")  //
      ("shard", po::value(&run.shard),
       "with --export-only: rebuild only this output shard file (e.g. "
       "model-00002-of-00004.safetensors) of an existing export; any process count");
  po::options_description all("quantize options");
  all.add(input).add(calib).add(quant).add(output);
  add_common_options(all);
  po::variables_map vm;
  if (!parse_command_line(
          "quantize", "--in SRC --out DST --work WORK [options]",
          "Quantizes a DeepSeek V4 checkpoint to NVFP4 (ModelOpt format, docs/EXPORT_FORMAT.md).\n"
          "Every rank owns a slice of the tensors; calibration records and quantized weights are\n"
          "committed per layer into WORK/rank-R (HDF5), so a crash loses at most one layer\n"
          "(--resume). MTP layers are not calibrated and are copied unchanged.\n"
          "  mpirun -np 8 quantforge quantize --in SRC --out DST --work WORK",
          all, {}, args, vm)) {
    return 0;
  }
  run.recipe = pipeline::recipes().parse(recipe);
  run.expert_weights = pipeline::expert_weights_modes().parse(expert_weights);
  run.kv = pipeline::parse_kv_cache(kv);
  run.act_scale = pipeline::parse_act_scale(act_scale);
  run.backend = dist::resolve_backend(backend);
  if (run.backend == dist::ComputeBackend::kCuda) dist::select_cuda_device(mpi_env().local_rank());
  QF_CHECK(run.shard.empty() || run.export_only, "--shard needs --export-only");
  QF_CHECK(run.samples > 0 && run.seq_len > 0, "--samples and --seq-len must be positive");
  QF_CHECK(run.calib_batch > 0, "--calib-batch must be positive");
  dist::MpiCommunicator comm(mpi_env(), dist::CommunicatorOptions{});
  // NCCL needs a GPU per rank; hosts may differ, so the ranks decide together.
  int64_t n_sharing_gpu = mpi_env().local_size() > dist::cuda_device_count() ? 1 : 0;
  comm.allreduce_counts(&n_sharing_gpu, 1, "ranks sharing a GPU");
  const dist::Backend comm_backend =
      dist::resolve_comm(comm_name, run.backend, n_sharing_gpu == 0);
  // After MpiEnv (main), so destroyed before MPI_Finalize; only where a forward runs.
  std::unique_ptr<dist::Communicator> device_comm;
  if (comm_backend == dist::Backend::kNccl && !run.export_only && run.amax_file.empty()) {
    device_comm = dist::make_communicator(dist::Backend::kNccl, mpi_env());
    run.device_comm = device_comm.get();
    if (comm.rank() == 0) log_info("quantize: layer weights and input amax over NCCL");
  }
  const auto report = pipeline::run_quantize(run, comm);
  uint64_t totals[5] = {report.n_targets, report.n_blocks_lossless, report.n_blocks_fallback,
                        report.bytes_written, 0};
  comm.allreduce_counts(totals, 5, "quantize totals");
  log_info("quantize: ", totals[0], " tensors quantized in this run (lossless MXFP4 blocks ",
           totals[1], ", fallback blocks ", totals[2], "), ", report.n_fallback_experts,
           " uncalibrated experts, wrote ", ProgressMeter::format_bytes(double(totals[3])), " in ",
           ProgressMeter::format_seconds(report.seconds), " -> ", run.out_dir);
  print_summary(report, run.backend, comm, device_comm.get());
  return 0;
}

}  // namespace qf::cli
