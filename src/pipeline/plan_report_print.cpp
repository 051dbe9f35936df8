// The `plan` report as text (fixed-width per-rank table, totals, the model with its formulas)
// and as JSON. Owns: presentation only; every number comes from build_plan_report().
#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <string>

#include "pipeline/plan_report.hpp"

namespace qf::pipeline {
namespace {

constexpr double kGB = 1e9;                    // disk I/O: decimal, as disk bandwidth is quoted
constexpr double kGiB = 1024.0 * 1024 * 1024;  // memory: binary, as GPU memory is quoted

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buffer[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof(buffer), format, args);
  va_end(args);
  return buffer;
}

std::string layer_label(int layer) { return layer < 0 ? "global" : std::to_string(layer); }

}  // namespace

void print_plan_report(const PlanReport& report, std::ostream& out) {
  const PlanReportOptions& opt = report.options;
  const MemoryModel& mem = report.memory;
  const dist::PlanBalance& bal = report.balance;
  out << "plan: " << report.source << ", " << opt.world_size << " ranks (" << opt.ranks_per_node
      << " per node), recipe " << recipe_name(opt.recipe) << "\n";
  out << fmt("source: %" PRIu64 " tensors, %.2f GB, %.3f T params\n", report.n_src_tensors,
             report.src_bytes / kGB, report.src_params / 1e12);
  out << fmt("output: %" PRIu64 " tensors, %.2f GB (%" PRIu64 " linears -> NVFP4)\n",
             report.n_out_tensors, report.out_bytes / kGB, report.n_nvfp4);
  out << fmt("ownership: %zu owner groups, largest %.3f GB; max/mean - 1 = %.3f%% over totals",
             bal.n_groups, bal.max_group_bytes / kGB, 100.0 * bal.imbalance);
  if (bal.worst_layer >= 0) {
    out << fmt(", worst layer %d: %.3f%%", bal.worst_layer, 100.0 * bal.worst_layer_imbalance);
  }
  out << fmt("; fingerprint %016" PRIx64 "\n\n", report.fingerprint);

  out << "rank  tensors   nvfp4    src GB   out GB  read GB  write GB  host GiB  gpu GiB  "
         "I/O s\n";
  auto row = [&out](const std::string& label, uint64_t n_tensors, uint64_t n_nvfp4, uint64_t src,
                    uint64_t out_bytes, uint64_t read, uint64_t write, const std::string& host,
                    const std::string& gpu, const std::string& secs) {
    out << fmt("%-5s %7" PRIu64 " %7" PRIu64 " %9.2f %8.2f %8.2f %9.2f %9s %8s %6s\n",
               label.c_str(), n_tensors, n_nvfp4, src / kGB, out_bytes / kGB, read / kGB,
               write / kGB, host.c_str(), gpu.c_str(), secs.c_str());
  };
  RankReport total;
  uint64_t max_host = 0;
  for (const RankReport& r : report.ranks) {
    row(std::to_string(r.rank), r.n_tensors, r.n_nvfp4, r.src_bytes, r.out_bytes, r.read_bytes,
        r.write_bytes, fmt("%.2f", r.host_peak_bytes / kGiB), fmt("%.2f", r.gpu_peak_bytes / kGiB),
        fmt("%.1f", r.io_seconds));
    total.n_tensors += r.n_tensors;
    total.n_nvfp4 += r.n_nvfp4;
    total.src_bytes += r.src_bytes;
    total.out_bytes += r.out_bytes;
    total.read_bytes += r.read_bytes;
    total.write_bytes += r.write_bytes;
    max_host = std::max(max_host, r.host_peak_bytes);
  }
  row("total", total.n_tensors, total.n_nvfp4, total.src_bytes, total.out_bytes, total.read_bytes,
      total.write_bytes, fmt("max %.2f", max_host / kGiB), fmt("%.2f", mem.gpu_bytes / kGiB),
      fmt("%.1f", report.job_seconds));
  out << fmt(
      "\njob time (I/O bound) = max over ranks = %.1f s (%.1f min), slowest rank %d; "
      "disk %.1f GB/s read, %.1f GB/s write per node, shared by %d ranks\n",
      report.job_seconds, report.job_seconds / 60, report.slowest_rank, opt.read_gbps,
      opt.write_gbps, opt.ranks_per_node);

  out << "\nmodel (per rank r of R; GB = 1e9 B, GiB = 2^30 B):\n"
      << "  read_r = source owned + NVFP4 work store read back at export + copied tensors\n"
      << "           re-read from the source at export;  write_r = work store + output shard\n"
      << "  time_r = read_r / (read_bw / ranks_per_node) + write_r / (write_bw / "
         "ranks_per_node);\n"
      << "           job = max_r time_r (disk only: compute and interconnect not counted)\n"
      << "  gpu = W + D + A + S + amax (calibration, layer by layer; same on every rank):\n";
  out << fmt("    W    %9.3f GiB  largest layer (%s) in source precision (every rank holds it)\n",
             mem.layer_weights_bytes / kGiB, layer_label(mem.layer_weights_layer).c_str());
  out << fmt("    D    %9.3f GiB  largest FP8/FP4 group dequantized to BF16 (%s)\n",
             mem.dequant_bytes / kGiB,
             mem.dequant_group.empty() ? "none" : mem.dequant_group.c_str());
  out << fmt(
      "    A    %9.3f GiB  2 x T_r x hidden x hc_mult x 2 B, T_r = ceil(%d/%d) x %d = %" PRIu64
      " tokens\n",
      mem.activation_bytes / kGiB, opt.samples, opt.world_size, opt.seq_len, mem.tokens_per_rank);
  out << fmt(
      "    S    %9.3f GiB  seq_len x (heads x head_dim + head_dim + top_k x (hidden + 2 x "
      "moe_inter)) x 2 B + seq_len x top_k x 8 B\n",
      mem.sequence_bytes / kGiB);
  out << fmt("    amax %9.3f GiB  8 B per NVFP4 linear\n", mem.amax_bytes / kGiB);
  out << "  host_r = max over layers of (r's source bytes in the layer + their NVFP4 output)\n";
}

nlohmann::json plan_report_json(const PlanReport& report) {
  const PlanReportOptions& opt = report.options;
  const MemoryModel& mem = report.memory;
  const dist::PlanBalance& bal = report.balance;
  nlohmann::json j;
  j["source"] = report.source;
  j["options"] = {{"ranks", opt.world_size},          {"ranks_per_node", opt.ranks_per_node},
                  {"read_gbps", opt.read_gbps},       {"write_gbps", opt.write_gbps},
                  {"samples", opt.samples},           {"seq_len", opt.seq_len},
                  {"recipe", recipe_name(opt.recipe)}};
  j["totals"] = {{"n_src_tensors", report.n_src_tensors}, {"src_bytes", report.src_bytes},
                 {"src_params", report.src_params},       {"n_out_tensors", report.n_out_tensors},
                 {"out_bytes", report.out_bytes},         {"n_nvfp4", report.n_nvfp4}};
  j["balance"] = {{"n_groups", bal.n_groups},
                  {"max_group_bytes", bal.max_group_bytes},
                  {"max_rank_bytes", bal.max_rank_bytes},
                  {"min_rank_bytes", bal.min_rank_bytes},
                  {"imbalance", bal.imbalance},
                  {"worst_layer", bal.worst_layer},
                  {"worst_layer_imbalance", bal.worst_layer_imbalance},
                  {"fingerprint", fmt("%016" PRIx64, report.fingerprint)}};
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
  j["time"] = {{"job_seconds", report.job_seconds},
               {"slowest_rank", report.slowest_rank},
               {"formula",
                "time_r = read_r/(read_gbps/ranks_per_node) + write_r/(write_gbps/ranks_per_node); "
                "job = max_r time_r; read_r = src + work + passthrough; write_r = work + out"}};
  if (opt.with_owners) {
    nlohmann::json owners = nlohmann::json::object();
    for (const auto& [name, rank] : report.owners) owners[name] = rank;
    j["owners"] = std::move(owners);
  }
  return j;
}

}  // namespace qf::pipeline
