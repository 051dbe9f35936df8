// quantize_owned_targets: reads each owned target (and its w1/w3 sibling) from the source and
// runs the reference NVFP4 kernels (kernels/nvfp4_quantize_ref.cpp).
#include "quantize/quantize_weights.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>

#include "calibrate/hessian_recorder.hpp"
#include "core/check.hpp"
#include "core/log.hpp"
#include "core/parallel.hpp"
#include "core/strings.hpp"
#include "kernels/dequant.cuh"
#include "kernels/nvfp4_gptq.cuh"
#include "kernels/nvfp4_quantize.cuh"
#include "kernels/nvfp4_search.cuh"
#include "model/forward_linear.hpp"
#include "model/tensor_table.hpp"
#include "numerics/nvfp4_search.hpp"

namespace qf::pipeline {
namespace {

const char* source_kind_name(const NativeTensor& t) {
  return t.kind == StorageKind::kFp8Block   ? "FP8"
         : t.kind == StorageKind::kFp4Block ? "MXFP4"
                                            : dtype_name(t.stored.dtype);
}

// BF16 bits of a target's weight, exactly dequantized (FP8, MXFP4: the value times its scale,
// rounded once to BF16 as ModelOpt's `MXFP4QTensor.dequantize(dtype=bfloat16)`) or as stored.
std::vector<uint16_t> weight_as_bf16(const TensorBytes& bytes_of, const NativeTensor& t,
                                     gpu::Nvfp4Ops& ops) {
  std::vector<uint16_t> bf16(size_t(t.n_rows * t.n_cols));
  const auto codes = bytes_of(t.name);
  if (t.kind == StorageKind::kFp8Block) {
    const auto scales = bytes_of(t.scale_name);
    ops.fp8_block_dequant(
        {codes.data(), scales.data(), t.scale.dtype, t.n_rows, t.n_cols, bf16.data()});
  } else if (t.kind == StorageKind::kFp4Block) {
    const auto scales = bytes_of(t.scale_name);
    ops.fp4_block_dequant({codes.data(), scales.data(), t.n_rows, t.n_cols, bf16.data()});
  } else {
    QF_CHECK(t.kind == StorageKind::kPlain && t.stored.dtype == DType::kBF16, "tensor", t.name,
             "is", dtype_name(t.stored.dtype), "; NVFP4 targets must be FP8, FP4 or BF16");
    QF_CHECK(codes.size() == bf16.size() * 2, "tensor", t.name, "has", codes.size(),
             "bytes, expected", bf16.size() * 2);
    std::memcpy(bf16.data(), codes.data(), codes.size());
  }
  return bf16;
}

// The codes and scales are moved into the record (a layer's experts are gigabytes).
void add_nvfp4(formats::LayerRecord& record, const NativeTensor& t, std::vector<uint8_t> packed,
               std::vector<uint8_t> scale, float scale_2) {
  const std::string p = QuantizePlan::module_of(t.name);
  QF_CHECK(numerics::is_finite_float(scale_2) && scale_2 > 0, "tensor", t.name,
           "got weight_scale_2", scale_2, "; it must be finite and > 0");
  record.tensors.push_back(
      {p + model::kWeightSuffix, DType::kU8, {t.n_rows, t.n_cols / 2}, std::move(packed)});
  record.tensors.push_back(
      {p + ".weight_scale", DType::kF8E4M3, {t.n_rows, t.n_cols / 16}, std::move(scale)});
  std::vector<uint8_t> scale_2_bytes(4);
  std::memcpy(scale_2_bytes.data(), &scale_2, 4);
  record.tensors.push_back({p + ".weight_scale_2", DType::kF32, {}, std::move(scale_2_bytes)});
}

// FP4 experts: the lossless MXFP4 -> NVFP4 cast; k_max shared with the w1/w3 sibling.
void cast_fp4(const QuantizePlan& plan, const TensorBytes& bytes_of, const NativeTensor& t,
              formats::LayerRecord& record, QuantizeStats* stats, gpu::Nvfp4Ops& ops) {
  const auto packed = bytes_of(t.name);
  const auto e8m0 = bytes_of(t.scale_name);
  uint32_t e8m0_max = 0, e8m0_max_pair = 0;
  ops.mxfp4_e8m0_max({e8m0.data(), int64_t(e8m0.size()), &e8m0_max, false});
  const auto pair = plan.pair_of.find(t.name);
  if (pair != plan.pair_of.end()) {
    const auto pair_e8m0 = bytes_of(plan.tensor(pair->second).scale_name);
    ops.mxfp4_e8m0_max({pair_e8m0.data(), int64_t(pair_e8m0.size()), &e8m0_max_pair, false});
  }
  std::vector<uint8_t> out_packed(packed.size()), out_scale(size_t(t.n_rows * t.n_cols / 16));
  float scale_2 = 0;
  uint64_t counts[kernels::kMxfp4CountSlots] = {};
  kernels::Mxfp4ToNvfp4Params p;
  p.packed = packed.data();
  p.e8m0 = e8m0.data();
  p.n_rows = t.n_rows;
  p.n_cols = t.n_cols;
  p.e8m0_max = &e8m0_max;
  p.e8m0_max_pair = pair != plan.pair_of.end() ? &e8m0_max_pair : nullptr;
  p.out_packed = out_packed.data();
  p.out_scale = out_scale.data();
  p.out_scale_2 = &scale_2;
  p.counts = counts;
  ops.mxfp4_to_nvfp4(p);
  QF_CHECK(counts[kernels::kMxfp4CountNonfinite] == 0, "tensor", t.name, "has",
           counts[kernels::kMxfp4CountNonfinite],
           "NaN/Inf values (UE8M0 scale 0xFF or overflow); refusing to quantize it");
  add_nvfp4(record, t, std::move(out_packed), std::move(out_scale), scale_2);
  const std::string p_name = QuantizePlan::module_of(t.name);
  record.i64[p_name + ".cast_blocks"] = {int64_t(counts[kernels::kMxfp4CountLossless]),
                                         int64_t(counts[kernels::kMxfp4CountFallback])};
  stats->n_blocks_lossless += counts[kernels::kMxfp4CountLossless];
  stats->n_blocks_fallback += counts[kernels::kMxfp4CountFallback];
  log_all(t.name, " [", t.n_rows, ", ", t.n_cols,
          "] MXFP4 -> NVFP4 lossless cast: ", counts[kernels::kMxfp4CountLossless], "/",
          counts[kernels::kMxfp4CountLossless] + counts[kernels::kMxfp4CountFallback],
          " blocks exact, weight_scale_2 ", scale_2);
}

std::vector<float> widen_bf16(const std::vector<uint16_t>& bf16) {
  std::vector<float> x(bf16.size());
  for (size_t i = 0; i < bf16.size(); ++i) x[i] = numerics::bf16_to_float(bf16[i]);
  return x;
}

// A tensor's quantization error at weight_scale_2 `scale_2` under `search` (no output written).
double search_error(gpu::Nvfp4Ops& ops, const std::vector<float>& x, int64_t n_rows, int64_t n_cols,
                    float scale_2, numerics::Nvfp4BlockSearch search,
                    const std::vector<double>& h_blocks, int64_t h_group_rows) {
  double error = 0;
  uint64_t n_nonfinite = 0;
  kernels::Nvfp4SearchQuantizeParams p;
  p.x = x.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.scale_2 = scale_2;
  p.search = search;
  p.h_blocks = h_blocks.empty() ? nullptr : h_blocks.data();
  p.h_group_rows = h_group_rows;
  p.error = &error;
  p.n_nonfinite = &n_nonfinite;
  ops.nvfp4_search_quantize(p);
  return error;
}

// The per-tensor weight_scale_2 among numerics::kNvfp4Scale2Candidates whose searched block
// scales give the least error over the tensor and its w1/w3 sibling (x_pair, same X^T X).
int best_scale_2_candidate(gpu::Nvfp4Ops& ops, const NativeTensor& t, const std::vector<float>& x,
                           const std::vector<float>& x_pair, float amax,
                           numerics::Nvfp4BlockSearch search, const std::vector<double>& h_blocks,
                           int64_t group_rows) {
  // The sibling reads the same input (w1/w3): the same X^T X, one group.
  const int64_t pair_rows = x_pair.empty() ? 0 : int64_t(x_pair.size()) / t.n_cols;
  int best = 0;
  double best_error = 0;
  for (int c = 0; c < numerics::kNvfp4Scale2Candidates; ++c) {
    const float scale_2 = numerics::nvfp4_scale_2_candidate(amax, c);
    double error = search_error(ops, x, t.n_rows, t.n_cols, scale_2, search, h_blocks, group_rows);
    if (pair_rows > 0) {
      error += search_error(ops, x_pair, pair_rows, t.n_cols, scale_2, search, h_blocks, pair_rows);
    }
    if (c == 0 || error < best_error) best = c, best_error = error;
  }
  return best;
}

// GPTQ over each row group of x with its X^T X (h): codes and block scales into packed/scale.
// Returns the blocks whose scale is not the max-mapped one of the original weights.
uint64_t gptq_quantize(gpu::Nvfp4Ops& ops, const NativeTensor& t, const Hessian& h,
                       const std::vector<float>& x, int64_t group_rows, float scale_2,
                       numerics::Nvfp4BlockSearch search, std::vector<uint8_t>& packed,
                       std::vector<uint8_t>& scale) {
  const int64_t n = h.n, nn = n * n;
  std::vector<double> u(static_cast<size_t>(nn));
  for (int g = 0; g < h.n_groups; ++g) {
    int n_retries = 0;
    bool identity = false;
    ops.gptq_inverse_factor(
        {h.data.data() + g * nn, n, kernels::kGptqDefaultDamp, u.data(), &n_retries, &identity});
    if (identity || n_retries > 0) {
      log_warn("tensor ", t.name, " group ", g, ": X^T X + 1% damping is not positive definite",
               identity ? "; GPTQ falls back to plain rounding" : "",
               identity ? "" : str_cat("; damping raised 10x ", n_retries, " time(s)"));
    }
    kernels::Nvfp4GptqParams p;
    p.w = x.data() + g * group_rows * n;
    p.n_rows = group_rows;
    p.n_cols = n;
    p.u = u.data();
    p.scale_2 = scale_2;
    p.search = search;
    p.packed = packed.data() + g * group_rows * n / 2;
    p.scale = scale.data() + g * group_rows * n / 16;
    ops.nvfp4_gptq_quantize(p);
  }
  uint64_t n_moved = 0;
  for (int64_t b = 0; b < int64_t(scale.size()); ++b) {
    float block_amax = 0;
    for (int i = 0; i < numerics::kNvfp4BlockSize; ++i) {
      block_amax = std::max(block_amax, std::fabs(x[b * 16 + i]));
    }
    n_moved += scale[b] != numerics::nvfp4_block_scale(block_amax, scale_2) ? 1 : 0;
  }
  return n_moved;
}

// --weight-scale other than max (weight_scale.hpp): weight_scale_2 = the candidate
// (numerics/nvfp4_search.hpp) of least error summed over the tensor and its w1/w3 sibling (so
// both pick the same value: the sum is the same either way round), then the searched block
// scales, or GPTQ through the target's X^T X. `x` and `x_pair` (empty: no sibling) are the exact
// BF16 values widened, `amax` the max |x| over both (> 0).
void quantize_searched(const QuantizePlan& plan, const NativeTensor& t, const std::vector<float>& x,
                       const std::vector<float>& x_pair, float amax,
                       const formats::LayerRecord* hessians, formats::LayerRecord& record,
                       QuantizeStats* stats, gpu::Nvfp4Ops& ops) {
  const std::string module = QuantizePlan::module_of(t.name);
  const WeightScale method = plan.weight_scale;
  Hessian h;
  const bool has_h = weight_scale_needs_hessian(method) && plan.wants_hessian(t.name) && hessians &&
                     find_hessian(*hessians, module, &h);
  QF_CHECK(!weight_scale_needs_hessian(method) || !plan.wants_hessian(t.name) || has_h, "tensor",
           t.name, ": --weight-scale", weight_scale_methods().name(method),
           "needs its X^T X, but the layer's hessian record has none");
  if (has_h) {
    QF_CHECK(h.n == t.n_cols && h.n_groups >= 1 && t.n_rows % h.n_groups == 0, "tensor", t.name,
             "[", t.n_rows, ",", t.n_cols, "] does not match its X^T X [", h.n_groups, ",", h.n,
             ",", h.n, "]");
  }
  const numerics::Nvfp4BlockSearch search =
      has_h ? weight_scale_block_search(method) : weight_scale_block_search_without_hessian(method);
  const int64_t group_rows = has_h ? t.n_rows / h.n_groups : t.n_rows;
  std::vector<double> h_blocks;  // kHessian: [groups, n/16, 16, 16]
  if (search == numerics::Nvfp4BlockSearch::kHessian) {
    const int64_t nn = h.n * h.n, per_group = h.n / numerics::kNvfp4BlockSize * 256;
    h_blocks.resize(size_t(h.n_groups * per_group));
    for (int g = 0; g < h.n_groups; ++g) {
      kernels::nvfp4_hessian_diag_blocks_ref(h.data.data() + g * nn, h.n,
                                             h_blocks.data() + g * per_group);
    }
  }

  const int best = best_scale_2_candidate(ops, t, x, x_pair, amax, search, h_blocks, group_rows);
  const float scale_2 = numerics::nvfp4_scale_2_candidate(amax, best);
  QF_CHECK(numerics::is_finite_float(scale_2) && scale_2 > 0, "tensor", t.name,
           "got weight_scale_2", scale_2);

  std::vector<uint8_t> packed(x.size() / 2), scale(x.size() / 16);
  uint64_t n_moved = 0, n_nonfinite = 0;
  double error = 0;
  const bool gptq = method == WeightScale::kGptq && has_h;
  if (gptq) {
    n_moved = gptq_quantize(ops, t, h, x, group_rows, scale_2, search, packed, scale);
  } else {
    kernels::Nvfp4SearchQuantizeParams p;
    p.x = x.data();
    p.n_rows = t.n_rows;
    p.n_cols = t.n_cols;
    p.scale_2 = scale_2;
    p.search = search;
    p.h_blocks = h_blocks.empty() ? nullptr : h_blocks.data();
    p.h_group_rows = group_rows;
    p.packed = packed.data();
    p.scale = scale.data();
    p.error = &error;
    p.n_moved = &n_moved;
    p.n_nonfinite = &n_nonfinite;
    ops.nvfp4_search_quantize(p);
  }
  add_nvfp4(record, t, std::move(packed), std::move(scale), scale_2);
  record.i64[module + ".weight_scale_search"] = {int64_t(best), int64_t(n_moved), gptq ? 1 : 0};
  stats->n_blocks_moved += n_moved;
  // The max path's error at ModelOpt's weight_scale_2, for the log line.
  const double max_error =
      search_error(ops, x, t.n_rows, t.n_cols, numerics::nvfp4_scale_2_candidate(amax, 0),
                   numerics::Nvfp4BlockSearch::kMax, {}, t.n_rows);
  const float m = float(8 + numerics::nvfp4_scale_2_candidate_step(best)) / 8.0f;
  log_all(t.name, " [", t.n_rows, ", ", t.n_cols, "] ", source_kind_name(t), " -> NVFP4 (",
          weight_scale_methods().name(method),
          gptq ? "" : (search != weight_scale_block_search(method) ? ", no X^T X: mse" : ""),
          "), amax ", amax, ", weight_scale_2 ", scale_2, " (amax/2688 x ", m, "), ", n_moved, "/",
          x.size() / 16, " blocks off max-mapped",
          gptq ? std::string()
               : str_cat(", squared error x", error / std::max(max_error, 1e-300), " of max"));
}

// FP8 or BF16 sources, and FP4 experts under --expert-weights requantize (ModelOpt's
// `_quantize_weight_nvfp4`): exact BF16 values, weight amax (max over the w1/w3 pair),
// ModelOpt NVFP4; with --weight-scale other than max, quantize_searched.
void quantize_bf16(const QuantizePlan& plan, const TensorBytes& bytes_of, const NativeTensor& t,
                   formats::LayerRecord& record, QuantizeStats* stats, gpu::Nvfp4Ops& ops,
                   const formats::LayerRecord* hessians) {
  const auto bf16 = weight_as_bf16(bytes_of, t, ops);
  float amax = 0;
  uint64_t n_nonfinite = 0;
  ops.nvfp4_amax({bf16.data(), DType::kBF16, int64_t(bf16.size()), &amax, &n_nonfinite, false});
  QF_CHECK(n_nonfinite == 0, "tensor", t.name, "has", n_nonfinite,
           "NaN/Inf values; refusing to quantize it");
  const auto pair = plan.pair_of.find(t.name);
  std::vector<uint16_t> other;
  if (pair != plan.pair_of.end()) {
    other = weight_as_bf16(bytes_of, plan.tensor(pair->second), ops);
    ops.nvfp4_amax({other.data(), DType::kBF16, int64_t(other.size()), &amax, &n_nonfinite, true});
    QF_CHECK(n_nonfinite == 0, "tensor", pair->second, "has NaN/Inf values");
  }
  if (plan.weight_scale != WeightScale::kMax && amax > 0) {
    quantize_searched(plan, t, widen_bf16(bf16), widen_bf16(other), amax, hessians, record, stats,
                      ops);
    return;
  }
  // ModelOpt's exporter runs on the CPU by default: true division (numerics/nvfp4.hpp).
  float scale_2 = numerics::nvfp4_scale_from_amax(amax, numerics::Nvfp4ScaleDivision::kTrueDivide);
  if (amax == 0) {
    log_warn("tensor ", t.name, " is all zeros; weight_scale_2 set to 1 (codes are all 0)");
    scale_2 = 1.0f;
  }
  std::vector<uint8_t> packed(bf16.size() / 2), scale(bf16.size() / 16);
  kernels::Nvfp4QuantizeParams p;
  p.x = bf16.data();
  p.n_rows = t.n_rows;
  p.n_cols = t.n_cols;
  p.scale_2 = &scale_2;
  p.packed = packed.data();
  p.scale = scale.data();
  p.n_nonfinite = &n_nonfinite;
  ops.nvfp4_quantize(p);
  add_nvfp4(record, t, std::move(packed), std::move(scale), scale_2);
  log_all(t.name, " [", t.n_rows, ", ", t.n_cols, "] ", source_kind_name(t), " -> NVFP4, amax ",
          amax, ", weight_scale_2 ", scale_2);
}

}  // namespace

formats::LayerRecord quantize_owned_targets(const QuantizePlan& plan,
                                            const formats::CheckpointDir& source, int layer,
                                            int rank, QuantizeStats* stats, gpu::Nvfp4OpsPool& ops,
                                            const formats::LayerRecord* hessians) {
  std::atomic<uint64_t> bytes_read{0};
  const TensorBytes read = [&](const std::string& name) {
    std::vector<uint8_t> bytes = source.read_tensor(name);  // pread: safe from several workers
    bytes_read += bytes.size();
    return bytes;
  };
  formats::LayerRecord record =
      quantize_owned_targets(plan, read, layer, rank, stats, ops, hessians);
  stats->bytes_read += bytes_read;
  return record;
}

formats::LayerRecord quantize_owned_targets(const QuantizePlan& plan, const TensorBytes& bytes_of,
                                            int layer, int rank, QuantizeStats* stats,
                                            gpu::Nvfp4OpsPool& ops,
                                            const formats::LayerRecord* hessians) {
  std::vector<std::string> owned;
  for (const auto& name : plan.targets_of_layer(layer)) {
    if (plan.ownership.owner_of(name) == rank) owned.push_back(name);
  }
  // Each target's tensors go to its own part, merged in plan order afterwards.
  std::vector<formats::LayerRecord> parts(owned.size());
  std::vector<QuantizeStats> worker_stats(static_cast<size_t>(ops.size()));
  std::vector<std::exception_ptr> errors(owned.size());
  std::atomic<bool> failed{false};
  // One worker per Nvfp4Ops of the pool, each taking the next target as it finishes one.
  parallel_for_each(int64_t(owned.size()), ops.size(), [&](int64_t worker, int64_t i) {
    if (failed) return;  // an earlier target failed: leave the rest
    try {
      const NativeTensor& t = plan.tensor(owned[size_t(i)]);
      if (t.kind == StorageKind::kFp4Block && plan.expert_weights == ExpertWeights::kCast) {
        cast_fp4(plan, bytes_of, t, parts[size_t(i)], &worker_stats[size_t(worker)],
                 ops.at(int(worker)));
      } else {
        quantize_bf16(plan, bytes_of, t, parts[size_t(i)], &worker_stats[size_t(worker)],
                      ops.at(int(worker)), hessians);
      }
    } catch (...) {
      errors[size_t(i)] = std::current_exception();  // the earliest target's error wins below
      failed = true;
    }
  });
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
  formats::LayerRecord record;
  record.layer = layer;
  for (auto& part : parts) {
    for (auto& tensor : part.tensors) record.tensors.push_back(std::move(tensor));
    for (auto& [key, values] : part.i64) record.i64[key] = std::move(values);
  }
  for (const QuantizeStats& w : worker_stats) {
    stats->n_blocks_lossless += w.n_blocks_lossless;
    stats->n_blocks_fallback += w.n_blocks_fallback;
    stats->n_blocks_moved += w.n_blocks_moved;
  }
  stats->n_targets += owned.size();
  return record;
}

}  // namespace qf::pipeline
