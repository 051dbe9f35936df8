// The `plan` report as text (fixed-width per-rank table, totals, the model with its formulas)
// and as JSON. Owns: presentation only; every number comes from build_plan_report().
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <string>

#include "core/strings.hpp"
#include "plan/plan_report.hpp"

namespace qf::pipeline {
namespace {

// Disk I/O in decimal units (as disk bandwidth is quoted), memory in binary units (as GPU
// memory is quoted); the largest unit that keeps the totals >= 10 of it, so tiny models show.
struct Unit {
  const char* name;
  double n_bytes;
};
Unit io_unit(uint64_t n_bytes) {
  if (n_bytes >= 10e9) return {"GB", 1e9};
  if (n_bytes >= 10e6) return {"MB", 1e6};
  return {"kB", 1e3};
}
Unit mem_unit(uint64_t n_bytes) {
  if (n_bytes >= 10.0 * (1 << 30)) return {"GiB", 1024.0 * 1024 * 1024};
  if (n_bytes >= 10.0 * (1 << 20)) return {"MiB", 1024.0 * 1024};
  return {"KiB", 1024.0};
}

std::string layer_label(int layer) { return layer < 0 ? "global" : std::to_string(layer); }

// One row per rank and a total row (sums; max of the host peaks).
void print_rank_table(const PlanReport& report, const Unit& io, const Unit& ram,
                      std::ostream& out) {
  const MemoryModel& mem = report.memory;
  auto unit = [](const char* what, const Unit& u) { return std::string(what) + " " + u.name; };
  out << str_printf("%-5s %7s %7s %8s %8s %8s %9s %9s %8s %6s\n", "rank", "tensors", "nvfp4",
                    unit("src", io).c_str(), unit("out", io).c_str(), unit("read", io).c_str(),
                    unit("write", io).c_str(), unit("host", ram).c_str(), unit("gpu", ram).c_str(),
                    "I/O s");
  auto row = [&](const std::string& label, const RankReport& r, const std::string& host) {
    out << str_printf("%-5s %7" PRIu64 " %7" PRIu64 " %8.2f %8.2f %8.2f %9.2f %9s %8.2f %6.1f\n",
                      label.c_str(), r.n_tensors, r.n_nvfp4, r.src_bytes / io.n_bytes,
                      r.out_bytes / io.n_bytes, r.read_bytes / io.n_bytes,
                      r.write_bytes / io.n_bytes, host.c_str(), r.gpu_peak_bytes / ram.n_bytes,
                      r.io_seconds);
  };
  RankReport total;
  uint64_t max_host = 0;
  for (const RankReport& r : report.ranks) {
    row(std::to_string(r.rank), r, str_printf("%.2f", r.host_peak_bytes / ram.n_bytes));
    total.n_tensors += r.n_tensors;
    total.n_nvfp4 += r.n_nvfp4;
    total.src_bytes += r.src_bytes;
    total.out_bytes += r.out_bytes;
    total.read_bytes += r.read_bytes;
    total.write_bytes += r.write_bytes;
    max_host = std::max(max_host, r.host_peak_bytes);
  }
  total.gpu_peak_bytes = mem.gpu_bytes;
  total.io_seconds = report.job_seconds;
  row("total", total, str_printf("max %.2f", max_host / ram.n_bytes));
}

// The I/O and memory model behind the table, with this plan's memory terms.
void print_model(const PlanReport& report, const Unit& ram, std::ostream& out) {
  const PlanReportOptions& opt = report.options;
  const MemoryModel& mem = report.memory;
  out << "\nmodel, per rank r of R:\n"
      << "  read_r  = source owned, read once (copies and digests come from the same reads;\n"
      << "            the NVFP4 work store is streamed to the output, not read back)\n"
      << "  write_r = NVFP4 work store (HDF5; the FP4 experts' packed weights and block scales "
         "stay in the source) + output shard\n"
      << "  time_r  = read_r / (read_bw / ranks_per_node) + write_r / (write_bw / "
         "ranks_per_node)\n"
      << "  job     = max_r time_r (disk only; calibration compute and interconnect excluded)\n"
      << "  host_r  = max over layers of (r's source bytes in the layer + their NVFP4 output)\n"
      << "  gpu     = W + D + A + S + amax (calibration, layer by layer, same on every rank):\n";
  out << str_printf(
      "    W    %9.3f %s  largest layer (%s) in source precision, held by every rank\n",
      mem.layer_weights_bytes / ram.n_bytes, ram.name,
      layer_label(mem.layer_weights_layer).c_str());
  out << str_printf("    D    %9.3f %s  largest FP8/FP4 owner group dequantized to BF16 (%s)\n",
                    mem.dequant_bytes / ram.n_bytes, ram.name,
                    mem.dequant_group.empty() ? "none" : mem.dequant_group.c_str());
  out << str_printf(
      "    A    %9.3f %s  residual in+out: 2 x T_r x hidden x hc_mult x 2 B,\n"
      "                        T_r = ceil(samples/R) x seq_len = ceil(%d/%d) x %d = %" PRIu64
      " tokens\n",
      mem.activation_bytes / ram.n_bytes, ram.name, opt.samples, opt.world_size, opt.seq_len,
      mem.tokens_per_rank);
  out << str_printf(
      "    S    %9.3f %s  one sequence: seq_len x (heads x head_dim + head_dim\n"
      "                        + top_k x (hidden + 2 x moe_inter)) x 2 B + seq_len x top_k"
      " x 8 B\n",
      mem.sequence_bytes / ram.n_bytes, ram.name);
  out << str_printf("    amax %9.3f %s  8 B per NVFP4 linear (input and weight amax)\n",
                    mem.amax_bytes / ram.n_bytes, ram.name);
}

// The phase model's prediction (plan_phases.hpp), slowest rank per phase.
void print_phases(const PlanReport& report, std::ostream& out) {
  const PhaseTimes& p = report.phases;
  out << "phases of `quantize --backend cuda` (streamed export; max over ranks):\n";
  out << str_printf("  start         %7.1f s  process, MPI, CUDA and NCCL start (measured)\n",
                    p.start);
  out << str_printf(
      "  calibration   %7.1f s  max(setup %.1f s, R(0)) + both(R, W outside the layers)\n"
      "                           + sum over l of max(forward(l) + host(l), both(R(l+1), W(l)))\n"
      "                           (layer 1's read starts in the setup, after layer 0's)\n",
      p.calibration, kPlanCalibSetupSeconds);
  out << str_printf("  quantization  %7.1f s  the last layer's writes drain, MTP layers' I/O\n",
                    p.quantization);
  out << str_printf("  export        %7.1f s  input scales, fsync, rename (measured)\n", p.export_);
  out << str_printf(
      "  total         %7.1f s (%.1f min); R = read / read_bw, W = (store + output) / "
      "write_bw,\n"
      "                           host = source bytes / %.1f GB/s (staging the forward does not "
      "hide),\n"
      "                           both(r, w) = max(r, w) + %.1f x min(r, w) (reads and writes at "
      "once)\n",
      p.total(), p.total() / 60, kPlanHostStagingBps / 1e9, kPlanReadWriteSerialShare);
}

nlohmann::json phases_json(const PhaseTimes& p) {
  return {{"start_seconds", p.start},
          {"calibration_seconds", p.calibration},
          {"quantization_seconds", p.quantization},
          {"export_seconds", p.export_},
          {"total_seconds", p.total()}};
}

}  // namespace

void print_plan_report(const PlanReport& report, std::ostream& out) {
  const PlanReportOptions& opt = report.options;
  const MemoryModel& mem = report.memory;
  const dist::PlanBalance& bal = report.balance;
  const Unit io = io_unit(report.src_bytes);
  const Unit ram = mem_unit(mem.gpu_bytes);
  out << "plan: " << report.source << ", " << opt.world_size << " ranks (" << opt.ranks_per_node
      << " per node), recipe " << recipes().name(opt.recipe) << "\n";
  out << str_printf("source: %" PRIu64 " tensors, %.2f %s, %.4g G params (%.4g G without MTP)\n",
                    report.n_src_tensors, report.src_bytes / io.n_bytes, io.name,
                    report.src_params / 1e9, (report.src_params - report.src_params_mtp) / 1e9);
  out << str_printf("output: %" PRIu64 " tensors, %.2f %s (%" PRIu64 " linears -> NVFP4)\n",
                    report.n_out_tensors, report.out_bytes / io.n_bytes, io.name, report.n_nvfp4);
  out << str_printf(
      "ownership: %zu owner groups (largest %.3f %s), max/mean - 1 = %.3f%% over totals",
      bal.n_groups, bal.max_group_bytes / io.n_bytes, io.name, 100.0 * bal.imbalance);
  if (bal.worst_layer >= 0) {
    out << str_printf(", worst layer %d: %.2f%%", bal.worst_layer,
                      100.0 * bal.worst_layer_imbalance);
  }
  out << str_printf("; fingerprint %016" PRIx64 "\n\n", report.fingerprint);

  print_rank_table(report, io, ram, out);
  out << str_printf(
      "\njob time, disk-bound = max over ranks = %.1f s (%.1f min), slowest rank %d;\n"
      "  disk %.1f GB/s read, %.1f GB/s write per node (inputs), shared by %d ranks\n",
      report.job_seconds, report.job_seconds / 60, report.slowest_rank, opt.read_gbps,
      opt.write_gbps, opt.ranks_per_node);

  if (opt.calib_tflops > 0) {
    out << str_printf(
        "calibration compute: %.3g PFLOP (%d x %d tokens) at %.0f TFLOP/s (linears) and %.1f "
        "TFLOP/s (attention core) per GPU (%s) = %.1f s;\n"
        "projected job time = disk-bound + compute (no overlap credited) = %.1f s (%.1f min)\n",
        report.calib_flops / 1e15, opt.samples, opt.seq_len, opt.calib_tflops,
        opt.calib_attention_tflops > 0 ? opt.calib_attention_tflops : opt.calib_tflops,
        opt.gpu.c_str(), report.calib_compute_seconds, report.total_seconds,
        report.total_seconds / 60);
    print_phases(report, out);
  }

  print_model(report, ram, out);
}

nlohmann::json plan_report_json(const PlanReport& report) {
  const PlanReportOptions& opt = report.options;
  const MemoryModel& mem = report.memory;
  const dist::PlanBalance& bal = report.balance;
  nlohmann::json j;
  j["source"] = report.source;
  j["options"] = {{"ranks", opt.world_size},
                  {"ranks_per_node", opt.ranks_per_node},
                  {"read_gbps", opt.read_gbps},
                  {"write_gbps", opt.write_gbps},
                  {"samples", opt.samples},
                  {"seq_len", opt.seq_len},
                  {"recipe", recipes().name(opt.recipe)}};
  j["totals"] = {{"n_src_tensors", report.n_src_tensors},
                 {"src_bytes", report.src_bytes},
                 {"src_params", report.src_params},
                 {"src_params_mtp", report.src_params_mtp},
                 {"n_out_tensors", report.n_out_tensors},
                 {"out_bytes", report.out_bytes},
                 {"n_nvfp4", report.n_nvfp4}};
  j["balance"] = {{"n_groups", bal.n_groups},
                  {"max_group_bytes", bal.max_group_bytes},
                  {"max_rank_bytes", bal.max_rank_bytes},
                  {"min_rank_bytes", bal.min_rank_bytes},
                  {"imbalance", bal.imbalance},
                  {"worst_layer", bal.worst_layer},
                  {"worst_layer_imbalance", bal.worst_layer_imbalance},
                  {"fingerprint", str_printf("%016" PRIx64, report.fingerprint)}};
  j["memory"] = {{"layer_weights_bytes", mem.layer_weights_bytes},
                 {"layer_weights_layer", mem.layer_weights_layer},
                 {"dequant_bytes", mem.dequant_bytes},
                 {"dequant_group", mem.dequant_group},
                 {"tokens_per_rank", mem.tokens_per_rank},
                 {"activation_bytes", mem.activation_bytes},
                 {"sequence_bytes", mem.sequence_bytes},
                 {"amax_bytes", mem.amax_bytes},
                 {"gpu_bytes", mem.gpu_bytes},
                 {"formula",
                  "gpu = W + D + A + S + amax; A = 2*T_r*hidden*hc_mult*2; T_r = "
                  "ceil(samples/R)*seq_len; S = seq_len*(heads*head_dim + head_dim + "
                  "top_k*(hidden + 2*moe_inter))*2 + seq_len*top_k*8"}};
  nlohmann::json ranks = nlohmann::json::array();
  for (const RankReport& r : report.ranks) {
    ranks.push_back({{"rank", r.rank},
                     {"n_tensors", r.n_tensors},
                     {"n_nvfp4", r.n_nvfp4},
                     {"n_out_tensors", r.n_out_tensors},
                     {"src_bytes", r.src_bytes},
                     {"nvfp4_bytes", r.nvfp4_bytes},
                     {"work_bytes", r.work_bytes},
                     {"passthrough_bytes", r.passthrough_bytes},
                     {"out_bytes", r.out_bytes},
                     {"read_bytes", r.read_bytes},
                     {"write_bytes", r.write_bytes},
                     {"host_peak_bytes", r.host_peak_bytes},
                     {"gpu_peak_bytes", r.gpu_peak_bytes},
                     {"io_seconds", r.io_seconds}});
  }
  j["ranks"] = std::move(ranks);
  if (opt.calib_tflops > 0) j["phases"] = phases_json(report.phases);
  j["time"] = {{"job_seconds", report.job_seconds},
               {"calib_flops", report.calib_flops},
               {"calib_compute_seconds", report.calib_compute_seconds},
               {"calib_tflops_per_gpu", opt.calib_tflops},
               {"calib_attention_tflops_per_gpu", opt.calib_attention_tflops},
               {"total_seconds", report.total_seconds},
               {"slowest_rank", report.slowest_rank},
               {"formula",
                "time_r = read_r/(read_gbps/ranks_per_node) + write_r/(write_gbps/ranks_per_node); "
                "job = max_r time_r; read_r = src; write_r = work + out"}};
  if (opt.with_owners) {
    nlohmann::json owners = nlohmann::json::object();
    for (const auto& [name, rank] : report.owners) owners[name] = rank;
    j["owners"] = std::move(owners);
  }
  return j;
}

}  // namespace qf::pipeline
