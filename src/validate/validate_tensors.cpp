// validate: the values of every quantized linear. Scales finite and > 0, weight_scale_2 by its
// rule, w1/w3 pairs equal, every element within the NVFP4 error bound of the exact source value,
// lossless-cast MXFP4 blocks bit-exact (FP4 experts cast, not requantized). Streams rows; memory
// is one row chunk per thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "kernels/dequant.cuh"
#include "kernels/nvfp4_quantize.cuh"
#include "numerics/mxfp4_to_nvfp4.hpp"
#include "numerics/nvfp4_search.hpp"
#include "validate/validate_context.hpp"

namespace qf::pipeline::validate_detail {
namespace {

using numerics::kNvfp4BlockSize;

constexpr int64_t kChunkElems = 4 << 20;  // source elements per step (rows of 128 at least)
// Float32 rounding slack of the bound: the quantizer's division x / s and the decoder's product
// code * s are each rounded once (relative 2^-24); 2^-20 of |x| + s covers both with margin.
constexpr double kBoundSlack = 0x1p-20;

// Per target, what the post-pass (global-scale, pair-scales) needs.
struct TargetResult {
  bool scalars_valid = false;  // weight_scale_2 and input_scale finite and > 0
  bool values_checked = false;
  float weight_scale_2 = 0, input_scale = 0;
  float source_amax = 0;
  uint32_t e8m0_max = 0;  // FP4 source: largest UE8M0 byte
  TensorAccuracy accuracy;
  std::string first_inexact;  // FP4 source: the first lossless-window block not decoded exactly
};

bool positive_finite(float x) { return numerics::is_finite_float(x) && x > 0.0f; }

float read_f32(const OutputDir& out, const std::string& name) {
  const auto bytes = out.read(name);
  QF_CHECK(bytes.size() == 4, name, "is not one float32");
  float x;
  std::memcpy(&x, bytes.data(), 4);
  return x;
}

// The exact dequantization of the source weight, rows [row0, row0 + n_rows), as float.
class SourceRows {
 public:
  SourceRows(const formats::CheckpointDir& source, const NativeTensor& t) : t_(t) {
    info_ = &source.tensor(t.name, &shard_);
    if (t.kind != StorageKind::kPlain) {
      const formats::SafetensorsReader* scale_shard = nullptr;
      const auto& scale_info = source.tensor(t.scale_name, &scale_shard);
      scale_ = scale_shard->read_tensor(scale_info);
    }
    QF_CHECK(t.kind != StorageKind::kPlain || t.stored.dtype == DType::kBF16, "source weight",
             t.name, "is", dtype_name(t.stored.dtype), "; only FP8, FP4 and BF16 are quantized");
  }
  const std::vector<uint8_t>& scale() const { return scale_; }

  void read(int64_t row0, int64_t n_rows, std::vector<float>& out) {
    const int64_t n_cols = t_.n_cols, n = n_rows * n_cols;
    bf16_.resize(static_cast<size_t>(n));
    if (t_.kind == StorageKind::kPlain) {
      shard_->read(*info_, uint64_t(row0 * n_cols) * 2, uint64_t(n) * 2, bf16_.data());
    } else if (t_.kind == StorageKind::kFp8Block) {
      raw_.resize(static_cast<size_t>(n));
      shard_->read(*info_, uint64_t(row0 * n_cols), uint64_t(n), raw_.data());
      const int64_t scale_offset =
          (row0 / numerics::kFp8TileRows) * kernels::fp8_block_scale_cols(n_cols);
      const size_t scale_elem = t_.scale.dtype == DType::kF32 ? 4 : 1;
      kernels::fp8_block_dequant_ref({raw_.data(), scale_.data() + scale_offset * scale_elem,
                                      t_.scale.dtype, n_rows, n_cols, bf16_.data()});
    } else {
      raw_.resize(static_cast<size_t>(n / 2));
      shard_->read(*info_, uint64_t(row0 * n_cols / 2), uint64_t(n / 2), raw_.data());
      kernels::fp4_block_dequant_ref(
          {raw_.data(), scale_.data() + row0 * (n_cols / 32), n_rows, n_cols, bf16_.data()});
    }
    out.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[i] = numerics::bf16_to_float(bf16_[i]);
  }

 private:
  const NativeTensor& t_;
  const formats::SafetensorsReader* shard_ = nullptr;
  const formats::TensorInfo* info_ = nullptr;
  std::vector<uint8_t> scale_, raw_;
  std::vector<uint16_t> bf16_;
};

// The error bound of one element (validate.hpp "Accuracy bound"): with
// s = e4m3(block scale) * weight_scale_2, |x| <= 6s rounds to the nearest E2M1 value, so the
// error is at most half the E2M1 step around |x|/s (0.25 up to 2, 0.5 up to 4, 1 up to 6) times
// s; |x| > 6s (the block scale rounded down) saturates to 6s, error |x| - 6s.
// Divisions are hoisted out of the per-element loop: the caller passes 2s, 4s, 6s.
double element_bound(double abs_x, double s, double s2, double s4, double s6) {
  const double bound = abs_x > s6 ? abs_x - s6 : (abs_x <= s2 ? 0.25 : abs_x <= s4 ? 0.5 : 1.0) * s;
  return bound + kBoundSlack * (abs_x + s);
}

// How far above 6s a block's amax may be: the E4M3 scale rounds amax / (6 * weight_scale_2) to
// nearest, so it is at most half-way to the next code (448 saturates, reached only by rounding).
double block_scale_limit(uint8_t code) {
  const double here = numerics::e4m3_to_float(code);
  const double next = code < numerics::kE4m3MaxCode ? numerics::e4m3_to_float(code + 1) : here;
  return 0.5 * (here + next) * (1.0 + kBoundSlack);
}

// Whether --weight-scale chose this target's scales: a method other than max, and a requantized
// source (FP8/BF16; FP4 only under --expert-weights requantize, as declared).
bool searched_scales(const Context& ctx, const NativeTensor& t) {
  if (ctx.weight_scale == WeightScale::kMax) return false;
  return t.kind != StorageKind::kFp4Block ||
         (ctx.expert_weights_known && ctx.expert_weights == ExpertWeights::kRequantize);
}

// The element bound and the block-scale bound of a target. --weight-scale other than max: a
// searched block scale may clip the block's max (it rounds with less error that way), and GPTQ's
// codes are not the nearest ones by design; the counts stay in the report, not failures.
bool accuracy_holds(const Context& ctx, const NativeTensor& t, uint64_t n_out_of_bound,
                    uint64_t n_scale_too_small) {
  const bool searched = searched_scales(ctx, t);
  const bool gptq = searched && ctx.weight_scale == WeightScale::kGptq;
  return (n_out_of_bound == 0 || gptq) && (n_scale_too_small == 0 || searched);
}

// The four outputs of a target with the dtypes and shapes the export declares; inventory has
// already reported any that is missing or misshapen (so nothing is judged here).
const formats::TensorInfo* well_formed_outputs(const Context& ctx, const NativeTensor& t,
                                               const std::string& p) {
  const std::vector<int64_t> w_shape = {t.n_rows, t.n_cols / 2},
                             s_shape = {t.n_rows, t.n_cols / 16};
  const auto* w_info = ctx.out.find(p + ".weight");
  const auto* s_info = ctx.out.find(p + ".weight_scale");
  const auto* s2_info = ctx.out.find(p + ".weight_scale_2");
  const auto* in_info = ctx.out.find(p + ".input_scale");
  const bool ok = w_info && s_info && s2_info && in_info && w_info->dtype == DType::kU8 &&
                  w_info->shape == w_shape && s_info->dtype == DType::kF8E4M3 &&
                  s_info->shape == s_shape && s2_info->dtype == DType::kF32 &&
                  in_info->dtype == DType::kF32 && s2_info->n_elems() == 1 &&
                  in_info->n_elems() == 1;
  return ok ? w_info : nullptr;
}

// The scalars and the block scales: finite and > 0. Fills res's scalars; false (and the
// failure recorded) otherwise.
bool scales_valid(Context& ctx, const NativeTensor& t, const std::string& p,
                  const std::vector<uint8_t>& block_scale, TargetResult& res) {
  res.weight_scale_2 = res.accuracy.weight_scale_2 = read_f32(ctx.out, p + ".weight_scale_2");
  res.input_scale = res.accuracy.input_scale = read_f32(ctx.out, p + ".input_scale");
  res.scalars_valid = positive_finite(res.weight_scale_2) && positive_finite(res.input_scale);
  uint64_t n_bad = 0, first_bad = 0;
  for (size_t i = 0; i < block_scale.size(); ++i) {
    const uint8_t b = block_scale[i];
    if (b == 0 || b >= numerics::kE4m3NanCode) {  // zero, NaN, or sign bit set (<= 0 or -0)
      if (n_bad++ == 0) first_bad = i;
    }
  }
  if (res.scalars_valid && n_bad == 0) {
    ctx.check(kCheckScales).pass();
    return true;
  }
  std::string bad_blocks;
  if (n_bad) {
    const uint8_t b = block_scale[first_bad];
    bad_blocks = str_cat(n_bad, " weight_scale byte(s) not finite and > 0, first [",
                         first_bad / size_t(t.n_cols / 16), ", ", first_bad % size_t(t.n_cols / 16),
                         "] = 0x", std::hex, int(b), std::dec,
                         b == 0x7F || b == 0xFF ? " (NaN)"
                         : b == 0 || b == 0x80  ? " (zero)"
                                                : " (negative)");
  }
  ctx.check(kCheckScales)
      .fail(p + ": weight_scale_2", res.weight_scale_2, "input_scale",
            str_cat(res.input_scale, bad_blocks.empty() ? "" : ";"), bad_blocks);
  return false;
}

// FP4 source: the largest UE8M0 byte (into res) and k_max, shared by the w1/w3 pair
// (EXPORT_FORMAT.md), as the lossless window is.
int fp4_k_max(const Context& ctx, const Target& target, const std::vector<uint8_t>& e8m0,
              TargetResult& res) {
  for (const uint8_t b : e8m0) res.e8m0_max = std::max<uint32_t>(res.e8m0_max, b);
  int k_max = numerics::mxfp4_k_max(res.e8m0_max);
  if (target.pair_weight.empty()) return k_max;
  const NativeTensor& pair = *ctx.source_by_name.at(target.pair_weight);
  uint32_t pair_max = 0;
  if (pair.kind == StorageKind::kFp4Block) {
    const formats::SafetensorsReader* shard = nullptr;
    const auto& info = ctx.source.tensor(pair.scale_name, &shard);
    for (const uint8_t b : shard->read_tensor(info)) pair_max = std::max<uint32_t>(pair_max, b);
  }
  return std::max(k_max, numerics::mxfp4_k_max(pair_max));
}

// What the value pass gathers over the chunks of one target besides TensorAccuracy.
struct ValueScan {
  double sum_rel = 0;
  std::string first_out, first_inexact, first_small;
};

// One chunk of rows [row0, row0 + n / n_cols): every 16-block's scale bound and every element's
// error bound (validate.hpp "Accuracy bound"), source x against decoded y.
void scan_blocks(const std::vector<float>& x, const std::vector<float>& y,
                 const uint8_t* chunk_scales, float scale_2, int64_t row0, int64_t n,
                 int64_t n_cols, TensorAccuracy& acc, ValueScan& scan) {
  for (int64_t b = 0; b < n / kNvfp4BlockSize; ++b) {
    const int64_t e0 = b * kNvfp4BlockSize;
    const uint8_t code = chunk_scales[b];
    const double s = numerics::nvfp4_block_divisor(code, scale_2);
    float amax = 0;
    for (int i = 0; i < kNvfp4BlockSize; ++i) amax = std::max(amax, std::fabs(x[e0 + i]));
    acc.source_amax = std::max(acc.source_amax, amax);
    if (double(amax) / (6.0 * double(scale_2)) > block_scale_limit(code)) {
      if (acc.n_scale_too_small++ == 0) {
        scan.first_small = str_cat("block [", row0 + e0 / n_cols, ", ", (e0 % n_cols) / 16,
                                   "]: amax ", amax, " needs scale >= ", amax / (6.0 * scale_2),
                                   " but has ", numerics::e4m3_to_float(code));
      }
    }
    const double inv_rel_base = 1.0 / (amax > 0 ? double(amax) : 6.0 * s);
    const double s2 = 2.0 * s, s4 = 4.0 * s, s6 = 6.0 * s;
    for (int i = 0; i < kNvfp4BlockSize; ++i) {
      const double xv = x[e0 + i], yv = y[e0 + i];
      const double err = std::fabs(yv - xv), bound = element_bound(std::fabs(xv), s, s2, s4, s6);
      const double rel = err * inv_rel_base;  // NaN for a NaN source or decode
      scan.sum_rel += rel;
      if (!(rel <= acc.worst_rel)) acc.worst_rel = std::isnan(rel) ? INFINITY : rel;
      if (!(err <= acc.worst_bound_ratio * bound)) {
        acc.worst_bound_ratio = std::isnan(err) ? INFINITY : err / bound;
      }
      if (!(err <= bound) && acc.n_out_of_bound++ == 0) {
        scan.first_out =
            str_cat("first [", row0 + (e0 + i) / n_cols, ", ", (e0 + i) % n_cols, "]: decoded ", yv,
                    " source ", xv, " bound ", bound, " (block scale ", s, ")");
      }
    }
  }
}

// FP4 source, one chunk: the 32-blocks the lossless cast keeps exactly
// (numerics/mxfp4_to_nvfp4.hpp) must decode to the source bit for bit.
void scan_lossless(const std::vector<float>& x, const std::vector<float>& y,
                   const uint8_t* chunk_e8m0, int k_max, int64_t row0, int64_t n, int64_t n_cols,
                   TensorAccuracy& acc, ValueScan& scan) {
  for (int64_t g = 0; g < n / 32; ++g) {
    const uint8_t e = chunk_e8m0[g];
    const int k = numerics::mxfp4_exponent(e);
    if (e == 0 || k < k_max - numerics::kMxfp4LosslessSpan || k > numerics::kMxfp4MaxFiniteExponent)
      continue;
    ++acc.n_lossless_blocks;
    bool exact = true;
    for (int i = 0; i < 32 && exact; ++i) exact = y[g * 32 + i] == x[g * 32 + i];
    if (exact) {
      ++acc.n_exact_blocks;
    } else if (scan.first_inexact.empty()) {
      int i = 0;
      while (y[g * 32 + i] == x[g * 32 + i]) ++i;
      scan.first_inexact =
          str_cat("first block [", row0 + (g * 32) / n_cols, ", ", (g * 32 % n_cols) / 32,
                  "] element ", i, ": decoded ", y[g * 32 + i], " source ", x[g * 32 + i]);
    }
  }
}

// The accuracy verdict of a scanned target.
void judge_accuracy(Context& ctx, const NativeTensor& t, const TensorAccuracy& acc,
                    const ValueScan& scan) {
  auto& accuracy = ctx.check(kCheckAccuracy);
  if (accuracy_holds(ctx, t, acc.n_out_of_bound, acc.n_scale_too_small)) {
    accuracy.pass();
    return;
  }
  std::string text =
      str_cat(t.name, ": ", acc.n_out_of_bound, " of ", acc.n_elems, " elements outside the bound");
  if (acc.n_out_of_bound) text += "; " + scan.first_out;
  if (acc.n_scale_too_small) {
    text += str_cat("; ", acc.n_scale_too_small,
                    " block scale(s) below amax/6 by more than E4M3 rounding; ", scan.first_small);
  }
  accuracy.fail_text(text);
}

TargetResult check_target(Context& ctx, const Target& target) {
  const NativeTensor& t = *target.source;
  const std::string& p = target.module;
  TargetResult res;
  auto& acc = res.accuracy;
  acc.name = t.name;
  acc.source = t.kind == StorageKind::kFp8Block   ? "FP8"
               : t.kind == StorageKind::kFp4Block ? "FP4"
                                                  : "BF16";
  acc.n_elems = uint64_t(t.n_rows) * uint64_t(t.n_cols);
  const bool is_fp4 = t.kind == StorageKind::kFp4Block;
  auto skip_values = [&] {
    ctx.check(kCheckAccuracy).skip();
    if (is_fp4) ctx.check(kCheckLossless).skip();
  };
  const formats::TensorInfo* w_info = well_formed_outputs(ctx, t, p);
  if (w_info == nullptr) {
    ctx.check(kCheckScales).skip();
    skip_values();
    return res;
  }
  const auto block_scale = ctx.out.read(p + ".weight_scale");
  if (!scales_valid(ctx, t, p, block_scale, res)) {
    skip_values();
    return res;
  }

  // ---- values, a chunk of rows at a time
  SourceRows source(ctx.source, t);
  const int64_t n_cols = t.n_cols, n_blocks_per_row = n_cols / kNvfp4BlockSize;
  const int64_t rows_per_chunk =
      numerics::kFp8TileRows *
      std::max<int64_t>(1, kChunkElems / (numerics::kFp8TileRows * n_cols));
  const int k_max = is_fp4 ? fp4_k_max(ctx, target, source.scale(), res) : 0;
  const formats::SafetensorsReader* out_shard = nullptr;
  ctx.out.find(p + ".weight", &out_shard);
  std::vector<float> x, y;
  std::vector<uint8_t> packed;
  ValueScan scan;
  const float scale_2 = res.weight_scale_2;
  for (int64_t row0 = 0; row0 < t.n_rows; row0 += rows_per_chunk) {
    const int64_t n_rows = std::min(rows_per_chunk, t.n_rows - row0), n = n_rows * n_cols;
    source.read(row0, n_rows, x);
    packed.resize(size_t(n / 2));
    out_shard->read(*w_info, uint64_t(row0 * n_cols / 2), uint64_t(n / 2), packed.data());
    y.resize(size_t(n));
    const uint8_t* chunk_scales = block_scale.data() + row0 * n_blocks_per_row;
    kernels::nvfp4_dequantize_ref({packed.data(), chunk_scales, &scale_2, n_rows, n_cols,
                                   kernels::Nvfp4ScaleLayout::kLinear, y.data()});
    scan_blocks(x, y, chunk_scales, scale_2, row0, n, n_cols, acc, scan);
    if (is_fp4) {
      scan_lossless(x, y, source.scale().data() + row0 * (n_cols / 32), k_max, row0, n, n_cols, acc,
                    scan);
    }
  }
  acc.mean_rel = acc.n_elems ? scan.sum_rel / double(acc.n_elems) : 0.0;
  res.source_amax = acc.source_amax;
  res.values_checked = true;
  judge_accuracy(ctx, t, acc, scan);
  // The lossless verdict waits for the export's expert-weights mode (check_quantized).
  res.first_inexact = scan.first_inexact;
  return res;
}

// FP4 source, 2^(k_max - 8) with k_max shared by the pair: the lossless cast's weight_scale_2.
float cast_scale_2(const TargetResult& r, const TargetResult* pair) {
  int k_max = numerics::mxfp4_k_max(r.e8m0_max);
  if (pair) k_max = std::max(k_max, numerics::mxfp4_k_max(pair->e8m0_max));
  return numerics::mxfp4_nvfp4_scale_2(k_max);
}

// amax / 2688 with amax the max over the pair: true division (torch on CPU) or times 1/2688 (on
// CUDA); an all-zero weight may use any finite positive scale.
// With searched scales (--weight-scale other than max), any of the search's candidates
// (amax/2688) * (8 + j)/8 (numerics/nvfp4_search.hpp).
bool amax_rule_holds(const TargetResult& r, const TargetResult* pair, bool searched, float* want) {
  const float amax = std::max(r.source_amax, pair ? pair->source_amax : 0.0f);
  const float a = numerics::nvfp4_scale_from_amax(amax, numerics::Nvfp4ScaleDivision::kTrueDivide);
  const float b =
      numerics::nvfp4_scale_from_amax(amax, numerics::Nvfp4ScaleDivision::kReciprocalMultiply);
  const uint32_t have = numerics::float_to_bits(r.weight_scale_2);
  *want = a;
  if (amax == 0.0f || have == numerics::float_to_bits(a) || have == numerics::float_to_bits(b)) {
    return true;
  }
  for (int c = 0; searched && c < numerics::kNvfp4Scale2Candidates; ++c) {
    if (have == numerics::float_to_bits(numerics::nvfp4_scale_2_candidate(amax, c))) return true;
  }
  return false;
}

// One target's weight_scale_2 against its rule: the lossless cast's (`cast`) or amax/2688. A
// failure says when the value follows the other rule (an export mixing the two).
void check_global_scale(CheckRecorder& global, const Target& target, const TargetResult& r,
                        const TargetResult* pair, bool cast, bool searched) {
  if (!r.values_checked || (pair && !pair->values_checked)) {
    global.skip();
    return;
  }
  const bool is_fp4 = target.source->kind == StorageKind::kFp4Block;
  const uint32_t have = numerics::float_to_bits(r.weight_scale_2);
  float amax_want = 0;
  const bool amax_ok = amax_rule_holds(r, pair, searched, &amax_want);
  const float cast_want = is_fp4 ? cast_scale_2(r, pair) : 0.0f;
  const bool cast_ok = is_fp4 && have == numerics::float_to_bits(cast_want);
  if (cast ? cast_ok : amax_ok) {
    global.pass();
  } else if (cast) {
    global.fail(
        target.module + ": weight_scale_2", r.weight_scale_2,
        "but the lossless cast's 2^(k_max-8), k_max shared with the pair, is", cast_want,
        amax_ok ? "(it follows amax/2688: an export mixing cast and requantized experts)" : "");
  } else {
    global.fail(target.module + ": weight_scale_2", r.weight_scale_2, "but weight amax",
                std::max(r.source_amax, pair ? pair->source_amax : 0.0f),
                pair ? "(max over the w1/w3 pair)" : "", "gives amax/2688 =", amax_want,
                searched ? "(nor one of the --weight-scale search's multiples of it)" : "",
                cast_ok ? "(it follows the lossless cast's 2^(k_max-8): an export mixing cast "
                          "and requantized experts)"
                        : "");
  }
}

using ResultsByName = std::map<std::string, const TargetResult*>;

const TargetResult* pair_result_of(const ResultsByName& by_name, const Target& target) {
  return target.pair_weight.empty() ? nullptr : by_name.at(target.pair_weight);
}

// The FP4 experts' mode: as OUT declares it, else the one the first checked FP4 target (by
// name) follows; every other FP4 target must follow the same. A cast scale 2^(k_max-8) is never
// also amax/2688 (amax = E2M1 value * 2^k, and 2688 = 21 * 2^7), so the two cannot be confused.
// Returns whether any target has an FP4 source.
bool settle_expert_weights(Context& ctx, const std::vector<const Target*>& targets,
                           const std::vector<TargetResult>& results, const ResultsByName& by_name) {
  bool any_fp4 = false;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i]->source->kind != StorageKind::kFp4Block) continue;
    any_fp4 = true;
    const TargetResult* pair = pair_result_of(by_name, *targets[i]);
    if (ctx.expert_weights_known || !results[i].values_checked || (pair && !pair->values_checked)) {
      continue;
    }
    const bool cast = numerics::float_to_bits(cast_scale_2(results[i], pair)) ==
                      numerics::float_to_bits(results[i].weight_scale_2);
    ctx.expert_weights = cast ? ExpertWeights::kCast : ExpertWeights::kRequantize;
    ctx.expert_weights_known = true;
    ctx.expert_weights_text = std::string(expert_weights_modes().name(ctx.expert_weights)) +
                              " (inferred from " + targets[i]->module + ".weight_scale_2)";
  }
  if (any_fp4 && ctx.expert_weights_text.empty() && ctx.expert_weights_known) {
    ctx.expert_weights_text = expert_weights_modes().name(ctx.expert_weights);
  }
  return any_fp4;
}

// The report's notes on what the modes relax: no lossless cast for requantized experts; the
// bounds a --weight-scale search may leave.
void note_modes(Context& ctx, bool any_fp4, bool fp4_cast) {
  if (any_fp4 && !fp4_cast) {
    ctx.check(kCheckLossless)
        .set_note("FP4 experts requantized (--expert-weights requantize): no lossless cast");
  }
  if (ctx.weight_scale != WeightScale::kMax) {
    ctx.check(kCheckAccuracy)
        .set_note(str_cat("--weight-scale ", weight_scale_methods().name(ctx.weight_scale),
                          ": block scales below the block max are allowed",
                          ctx.weight_scale == WeightScale::kGptq
                              ? "; GPTQ's codes are not nearest-rounded, the element bound is "
                                "reported, not enforced"
                              : "",
                          "; weight_scale_2 may be any of the search's candidates"));
  }
}

}  // namespace

std::vector<TensorAccuracy> check_quantized(Context& ctx,
                                            const std::function<void(uint64_t)>& progress) {
  std::vector<const Target*> targets;
  for (const auto& [name, target] : ctx.targets) targets.push_back(&target);
  std::vector<TargetResult> results(targets.size());
  parallel_for(
      targets.size(), ctx.options.n_threads,
      [&](size_t i) {
        results[i] = check_target(ctx, *targets[i]);
        progress(targets[i]->source->stored.n_bytes());
      },
      [&](size_t i, const std::string& message) {
        ctx.check(kCheckAccuracy)
            .fail(targets[i]->source->name + ": could not be checked:", message);
      });
  ResultsByName by_name;
  for (size_t i = 0; i < targets.size(); ++i) by_name[targets[i]->source->name] = &results[i];
  const auto pair_result = [&](const Target& target) { return pair_result_of(by_name, target); };
  const bool any_fp4 = settle_expert_weights(ctx, targets, results, by_name);
  const bool fp4_cast = ctx.expert_weights == ExpertWeights::kCast;
  auto& lossless = ctx.check(kCheckLossless);
  note_modes(ctx, any_fp4, fp4_cast);

  // weight_scale_2 rule (EXPORT_FORMAT.md): FP4 sources cast: 2^(k_max - 8) with k_max shared by
  // the pair; FP8/BF16 sources and requantized FP4 sources: amax / 2688 with amax the max over
  // the pair (amax_rule_holds).
  auto& global = ctx.check(kCheckGlobalScale);
  auto& pairs = ctx.check(kCheckPairScales);
  for (size_t i = 0; i < targets.size(); ++i) {
    const Target& target = *targets[i];
    TargetResult& r = results[i];
    const TargetResult* pair = pair_result(target);
    const bool is_fp4 = target.source->kind == StorageKind::kFp4Block;
    if (is_fp4 && !fp4_cast) {  // requantized: no block is meant to be kept exactly
      r.accuracy.n_lossless_blocks = r.accuracy.n_exact_blocks = 0;
    } else if (is_fp4 && r.values_checked) {  // unchecked ones were counted as skipped
      if (r.accuracy.n_exact_blocks == r.accuracy.n_lossless_blocks) {
        lossless.pass();
      } else {
        lossless.fail(target.source->name + ":",
                      r.accuracy.n_lossless_blocks - r.accuracy.n_exact_blocks, "of",
                      r.accuracy.n_lossless_blocks, "lossless-cast blocks not bit-exact;",
                      r.first_inexact);
      }
    }
    check_global_scale(global, target, r, pair, is_fp4 && fp4_cast,
                       searched_scales(ctx, *target.source));
    // Each pair once, from its w1.
    if (!pair || target.source->name > target.pair_weight) continue;
    if (!r.scalars_valid || !pair->scalars_valid) {
      pairs.skip();
    } else if (numerics::float_to_bits(r.weight_scale_2) !=
                   numerics::float_to_bits(pair->weight_scale_2) ||
               numerics::float_to_bits(r.input_scale) !=
                   numerics::float_to_bits(pair->input_scale)) {
      pairs.fail(target.module, "and", module_of_weight(target.pair_weight) + ": weight_scale_2",
                 r.weight_scale_2, "vs", str_cat(pair->weight_scale_2, ","), "input_scale",
                 r.input_scale, "vs", pair->input_scale, "(must be equal)");
    } else {
      pairs.pass();
    }
  }
  std::vector<TensorAccuracy> out;
  for (const auto& r : results) {
    if (r.values_checked) out.push_back(r.accuracy);
  }
  return out;
}

}  // namespace qf::pipeline::validate_detail
