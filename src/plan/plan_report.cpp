// The plan's arithmetic: recipe output sizes, ownership, per-rank I/O, memory and time.
// Printing and JSON live in plan_report_print.cpp.
//
// The model, per rank r of R (GB = 1e9 B for I/O; memory in bytes):
//   src_r   = source bytes of the tensors r owns (ownership plan, balanced per layer)
//   work_r  = NVFP4 bytes r produces, less the packed FP4 expert weights the source already
//             holds (HDF5 work store: written once; a full run streams the same bytes into the
//             output from memory, so only --export-only reads them back)
//   pass_r  = bytes of the copied tensors r owns (of src_r: read once, by the forward or by
//             the copy itself; a copy of what the forward read comes from the page cache)
//   out_r   = bytes of r's export shard (NVFP4 outputs + copied tensors)
//   read_r  = src_r                             write_r = work_r + out_r
//   time_r  = read_r / (read_bw / ranks_per_node) + write_r / (write_bw / ranks_per_node)
//   job     = max_r time_r   (I/O only: compute, broadcasts and metadata are not counted, so
//                             this is a lower bound when the disk is the bottleneck)
// GPU (calibration working set, identical on every rank; the CPU backend needs it in host RAM):
//   W   = max over layers of the layer's source bytes (every rank holds all of layer l after
//         the owners broadcast it; global tensors count as one "layer")
//   D   = max over owner groups of 2 B x sum(rows x cols) of its FP8/FP4 weights (dequantized
//         to BF16 one linear / one expert at a time)
//   T_r = ceil(samples / R) x seq_len tokens (whole sequences per rank)
//   A   = 2 x T_r x hidden x hc_mult x 2 B (the mHC residual streams into and out of the layer)
//   S   = seq_len x (heads x head_dim + head_dim + top_k x (hidden + 2 x moe_inter)) x 2 B
//         + seq_len x top_k x 8 B: attention q/kv and MoE dispatch (gathered tokens, w1/w3
//         outputs, routing) for one sequence at a time
//   amax = 8 B per NVFP4 linear (input and weight amax, F32)
//   gpu = W + D + A + S + amax
// Host: max over layers of (r's source bytes in the layer + their output bytes): the staging of
// what r reads for one layer and the NVFP4 results it writes for it.
#include "plan/plan_report.hpp"

#include <algorithm>
#include <map>

#include "core/check.hpp"
#include "core/int_math.hpp"
#include "core/log.hpp"
#include "model/forward_flops.hpp"

namespace qf::pipeline {

// The calibration forward's effective rates on one H100 SXM (bench/RESULTS.md, issue 19,
// benchmark 1's steady layer: 65536 tokens, --calib-batch 4, GPU time per section from
// QF_PROFILE=1): everything but the attention core 37.4 TFLOP in 296 ms (each linear input in
// three BF16 planes since issue 24: the tensor cores do 3x the useful FLOPs), the attention
// core 1.08 TFLOP in 59 ms.
constexpr double kMeasuredH100LinearTflops = 126.0;
constexpr double kMeasuredH100AttentionTflops = 18.3;

namespace {

bool is_low_precision_weight(model::TensorRole role) {
  return role == model::TensorRole::kFp8Weight || role == model::TensorRole::kFp4Weight;
}

// What one source tensor becomes under the recipe.
struct TensorOutput {
  uint64_t n_bytes = 0, n_tensors = 0;
  bool nvfp4 = false;
  uint64_t store_bytes = 0;  // of n_bytes, what the work store writes (NVFP4 targets only)
};

// Per tensor: output bytes and output tensor count under the recipe, and the ownership plan's
// items; counts the totals into `report`. The `.scale` of an NVFP4 target is replaced by the
// target's weight_scale (counted with the target).
std::map<std::string, TensorOutput> tensor_outputs(const std::vector<model::ModelTensor>& tensors,
                                                   Recipe recipe, PlanReport& report,
                                                   std::vector<dist::PlanItem>& items) {
  std::map<std::string, const model::ModelTensor*> by_name;
  for (const auto& t : tensors) {
    QF_CHECK(by_name.emplace(t.spec.name, &t).second, "plan: tensor", t.spec.name, "twice");
  }
  std::map<std::string, bool> dropped_scale;
  for (const auto& t : tensors) {
    if (is_nvfp4_target(t, recipe) && !t.scale_name.empty()) {
      dropped_scale[t.scale_name] = true;
    }
  }
  std::map<std::string, TensorOutput> out_of;
  items.reserve(tensors.size());
  for (const auto& t : tensors) {
    TensorOutput out;
    if (is_nvfp4_target(t, recipe)) {
      out = {nvfp4_n_bytes(t.n_rows, t.n_cols), 4, true};  // weight, _scale, _scale_2, input
      out.store_bytes = out.n_bytes;
      // An FP4 expert's lossless cast keeps the source's packed codes and takes its block
      // scales from the source's E8M0 scales: the store leaves both in the source
      // (formats/source_derived; assumes every block in range, as in V4's experts, and the
      // default --expert-weights cast).
      if (t.role == model::TensorRole::kFp4Weight) {
        out.store_bytes -= t.spec.n_bytes() + nvfp4_block_scale_bytes(t.n_rows, t.n_cols);
      }
    } else if (!dropped_scale.count(t.spec.name)) {
      out = {t.spec.n_bytes(), 1, false};
    }
    out_of[t.spec.name] = out;
    items.push_back({t.spec.name, t.spec.n_bytes(), t.layer, t.expert});
    report.n_src_tensors += 1;
    report.src_bytes += t.spec.n_bytes();
    report.n_out_tensors += out.n_tensors;
    report.out_bytes += out.n_bytes;
    report.n_nvfp4 += out.nvfp4 ? 1 : 0;
  }
  return out_of;
}

// The calibration working set: W (largest layer), D (largest dequantized group), A, S, amax.
void fill_memory_model(const model::ModelConfig& config,
                       const std::vector<model::ModelTensor>& tensors, const PlanReportOptions& opt,
                       uint64_t n_nvfp4, MemoryModel& mem) {
  std::map<int, uint64_t> layer_bytes;
  std::map<std::string, uint64_t> dequant_of_group;
  for (const auto& t : tensors) {
    layer_bytes[t.layer] += t.spec.n_bytes();
    if (is_low_precision_weight(t.role)) {
      dequant_of_group[dist::owner_key(t.spec.name)] +=
          2 * static_cast<uint64_t>(t.n_rows) * static_cast<uint64_t>(t.n_cols);
    }
  }
  for (const auto& [layer, n_bytes] : layer_bytes) {
    if (n_bytes > mem.layer_weights_bytes) {
      mem.layer_weights_bytes = n_bytes;
      mem.layer_weights_layer = layer;
    }
  }
  for (const auto& [key, n_bytes] : dequant_of_group) {
    if (n_bytes > mem.dequant_bytes) {
      mem.dequant_bytes = n_bytes;
      mem.dequant_group = key;
    }
  }
  const uint64_t seq = static_cast<uint64_t>(opt.seq_len);
  const uint64_t hidden = static_cast<uint64_t>(config.hidden_size);
  const uint64_t top_k = static_cast<uint64_t>(config.num_experts_per_tok);
  const uint64_t q_dim =
      static_cast<uint64_t>(config.num_attention_heads) * static_cast<uint64_t>(config.head_dim);
  mem.tokens_per_rank = static_cast<uint64_t>(ceil_div(opt.samples, opt.world_size)) * seq;
  mem.activation_bytes = 2 * mem.tokens_per_rank * hidden * config.hc_mult * 2;
  mem.sequence_bytes =
      seq * (q_dim + config.head_dim + top_k * (hidden + 2 * config.moe_intermediate_size)) * 2 +
      seq * top_k * 8;
  mem.amax_bytes = n_nvfp4 * 2 * sizeof(float);
  mem.gpu_bytes = mem.layer_weights_bytes + mem.dequant_bytes + mem.activation_bytes +
                  mem.sequence_bytes + mem.amax_bytes;
}

// Per rank: ownership, I/O, host staging, time; the slowest rank sets the job's I/O time.
void fill_rank_reports(const dist::OwnershipPlan& plan,
                       const std::map<std::string, TensorOutput>& out_of, PlanReport& report) {
  const PlanReportOptions& opt = report.options;
  const int n_ranks = opt.world_size;
  const double read_bps = opt.read_gbps * 1e9 / opt.ranks_per_node;
  const double write_bps = opt.write_gbps * 1e9 / opt.ranks_per_node;
  report.ranks.resize(n_ranks);
  for (int r = 0; r < n_ranks; ++r) {
    RankReport& rank = report.ranks[r];
    rank.rank = r;
    std::map<int, uint64_t> staged;  // layer -> owned source + output bytes
    for (const size_t i : plan.items_of(r)) {
      const dist::PlanItem& item = plan.items()[i];
      const TensorOutput& out = out_of.at(item.name);
      rank.n_tensors += 1;
      rank.n_nvfp4 += out.nvfp4 ? 1 : 0;
      rank.n_out_tensors += out.n_tensors;
      rank.src_bytes += item.n_bytes;
      rank.out_bytes += out.n_bytes;
      if (out.nvfp4) {
        rank.nvfp4_bytes += out.n_bytes;
        rank.work_bytes += out.store_bytes;
      } else {
        rank.passthrough_bytes += out.n_bytes;
      }
      staged[item.layer] += item.n_bytes + (out.nvfp4 ? out.n_bytes : 0);
      rank.layers[item.layer].read += item.n_bytes;
      rank.layers[item.layer].write += out.n_bytes + out.store_bytes;  // output + store
      if (opt.with_owners) report.owners.emplace_back(item.name, r);
    }
    for (const auto& [layer, n_bytes] : staged) {
      rank.host_peak_bytes = std::max(rank.host_peak_bytes, n_bytes);
    }
    rank.read_bytes = rank.src_bytes;
    rank.write_bytes = rank.work_bytes + rank.out_bytes;
    rank.gpu_peak_bytes = report.memory.gpu_bytes;
    rank.io_seconds = rank.read_bytes / read_bps + rank.write_bytes / write_bps;
    if (rank.io_seconds > report.job_seconds) {
      report.job_seconds = rank.io_seconds;
      report.slowest_rank = r;
    }
  }
  std::sort(report.owners.begin(), report.owners.end());
}

// The calibration forward's FLOPs and, given the rates, its compute time split over the ranks.
void add_calibration_compute(const model::ModelConfig& config, PlanReport& report) {
  const PlanReportOptions& opt = report.options;
  const double tokens = double(opt.samples) * double(opt.seq_len);
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const model::LayerFlops f = model::layer_flops_per_token(config, l, opt.seq_len);
    report.calib_flops += tokens * f.total();
    if (opt.calib_tflops > 0) {
      const double attention_rate =
          opt.calib_attention_tflops > 0 ? opt.calib_attention_tflops : opt.calib_tflops;
      report.calib_compute_seconds +=
          tokens * (f.linears / (opt.calib_tflops * 1e12) + f.attention / (attention_rate * 1e12));
    }
  }
  report.calib_compute_seconds /= double(opt.world_size);
}

}  // namespace

PlanReport build_plan_report(const model::ModelConfig& config,
                             const std::vector<model::ModelTensor>& tensors,
                             const PlanReportOptions& options, const std::string& source) {
  PlanReport report;
  report.options = options;
  PlanReportOptions& opt = report.options;
  QF_CHECK(opt.world_size >= 1, "plan: --ranks must be >= 1, got", opt.world_size);
  if (opt.ranks_per_node <= 0) opt.ranks_per_node = std::min(opt.world_size, 8);
  if (opt.write_gbps <= 0.0) opt.write_gbps = opt.read_gbps;
  QF_CHECK(opt.read_gbps > 0.0, "plan: disk bandwidth must be positive, got", opt.read_gbps);
  QF_CHECK(opt.samples >= 1 && opt.seq_len >= 1, "plan: --samples and --seq-len must be >= 1");
  report.source = source;

  std::vector<dist::PlanItem> items;
  const std::map<std::string, TensorOutput> out_of =
      tensor_outputs(tensors, opt.recipe, report, items);
  report.src_params = model::total_params(tensors);
  std::vector<model::ModelTensor> mtp;
  for (const auto& t : tensors) {
    if (t.is_mtp) mtp.push_back(t);
  }
  report.src_params_mtp = model::total_params(mtp);

  const dist::OwnershipPlan plan = dist::build_ownership_plan(items, opt.world_size);
  report.balance = plan.balance();
  report.fingerprint = plan.fingerprint();
  fill_memory_model(config, tensors, opt, report.n_nvfp4, report.memory);
  fill_rank_reports(plan, out_of, report);
  add_calibration_compute(config, report);
  report.total_seconds = report.job_seconds + report.calib_compute_seconds;
  if (opt.calib_tflops > 0) {
    const PhaseModelInputs in{opt.read_gbps * 1e9 / opt.ranks_per_node,
                              opt.write_gbps * 1e9 / opt.ranks_per_node,
                              opt.calib_tflops,
                              opt.calib_attention_tflops,
                              double(report.memory.tokens_per_rank),
                              opt.seq_len};
    std::vector<PhaseTimes> ranks;
    for (RankReport& rank : report.ranks) {
      rank.phases = rank_phase_times(config, rank.layers, in);
      ranks.push_back(rank.phases);
    }
    report.phases = job_phase_times(ranks);
  }
  return report;
}

const EnumTable<CalibrationGpu>& calibration_gpus() {
  static const EnumTable<CalibrationGpu> table(
      "--gpu", {{"h100", CalibrationGpu::kH100, "rates measured on an H100 SXM"},
                {"h200", CalibrationGpu::kH200, "as h100 (same chip; faster memory not credited)"},
                {"b200", CalibrationGpu::kB200,
                 "h100's scaled by BF16 (linears) and FP32 (attention) peak"}});
  return table;
}

CalibrationRates gpu_calibration_rates(CalibrationGpu gpu) {
  const CalibrationRates h100{kMeasuredH100LinearTflops, kMeasuredH100AttentionTflops};
  if (gpu != CalibrationGpu::kB200) return h100;
  // B200: 2.25 PFLOP/s dense BF16 vs 989 TFLOP/s; ~80 vs 67 TFLOP/s FP32.
  return {h100.linear_tflops * 2250.0 / 989.0, h100.attention_tflops * 80.0 / 67.0};
}

}  // namespace qf::pipeline
