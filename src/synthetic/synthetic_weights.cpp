// Synthetic tensor values and their native encodings (see synthetic_weights.hpp).
#include "synthetic/synthetic_weights.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.hpp"
#include "core/strings.hpp"
#include "numerics/codecs.hpp"

namespace qf::pipeline {
namespace {

using model::ModelTensor;
using model::TensorRole;

// ----------------------------------------------------------------------------------------------
// Random numbers: splitmix64 (Steele, Lea, Flood 2014) and Irwin-Hall normals.

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return splitmix64(state_); }
  // Sum of six 24-bit uniforms, centred and scaled to unit variance; range +-4.24.
  float normal() {
    double sum = 0.0;
    for (int i = 0; i < 3; ++i) {
      const uint64_t bits = next();
      sum += static_cast<double>(bits >> 40) * 0x1p-24;
      sum += static_cast<double>((bits >> 8) & 0xFFFFFFu) * 0x1p-24;
    }
    return static_cast<float>((sum - 3.0) * 1.4142135623730951);
  }

 private:
  uint64_t state_;
};

// ----------------------------------------------------------------------------------------------
// What each tensor holds, from its name.

enum class ValueKind {
  kLinear,
  kEmbed,
  kNorm,
  kSink,
  kApe,
  kGateBias,
  kHcFn,
  kHcBase,
  kHcScale,
  kTid2eid
};

ValueKind value_kind(const ModelTensor& t) {
  const std::string& n = t.spec.name;
  if (ends_with(n, ".tid2eid")) return ValueKind::kTid2eid;
  if (ends_with(n, ".attn_sink")) return ValueKind::kSink;
  if (ends_with(n, ".ape")) return ValueKind::kApe;
  if (ends_with(n, ".gate.bias")) return ValueKind::kGateBias;
  const std::string leaf = n.substr(n.rfind('.') + 1);
  if (starts_with(leaf, "hc_")) {
    if (ends_with(leaf, "_fn")) return ValueKind::kHcFn;
    if (ends_with(leaf, "_base")) return ValueKind::kHcBase;
    return ValueKind::kHcScale;
  }
  if (ends_with(n, "norm.weight")) return ValueKind::kNorm;
  if (n == "embed.weight") return ValueKind::kEmbed;
  QF_CHECK(t.spec.shape.size() == 2, "make-tiny: no value rule for tensor", n);
  return ValueKind::kLinear;
}

// Row-major values of one tensor: mean + std * normal * column_scale.
class ValueGen {
 public:
  ValueGen(const ModelTensor& t, uint64_t tensor_seed) : rng_(tensor_seed) {
    const ValueKind kind = value_kind(t);
    const int64_t n_cols = t.spec.shape.empty() ? 1 : t.spec.shape.back();
    switch (kind) {
      case ValueKind::kLinear:
        std_ = 1.0f / std::sqrt(static_cast<float>(t.n_cols));
        break;
      case ValueKind::kEmbed:
        std_ = 1.0f;
        break;
      case ValueKind::kNorm:
        mean_ = 1.0f, std_ = 0.05f;
        break;
      case ValueKind::kSink:
        std_ = 0.5f;
        break;
      case ValueKind::kApe:
        std_ = 0.1f;
        break;
      case ValueKind::kGateBias:
        std_ = 0.01f;
        break;
      case ValueKind::kHcFn:
        std_ = 0.5f / std::sqrt(static_cast<float>(n_cols));
        break;
      case ValueKind::kHcBase:
        std_ = 0.1f;
        break;
      case ValueKind::kHcScale:
        mean_ = 1.0f, std_ = 0.1f;
        break;
      case ValueKind::kTid2eid:
        break;
    }
    if (kind == ValueKind::kLinear) {
      // Outlier input channels: ~1 in 64 columns x6, chosen by a stream of their own.
      col_scale_.assign(static_cast<size_t>(t.n_cols), 1.0f);
      uint64_t state = tensor_seed ^ 0xC0FFEE0DDF00Dull;
      for (auto& s : col_scale_) {
        if (splitmix64(state) % 64 == 0) s = 6.0f;
      }
      // Row gains (1 + u) * 2^k, u ~ U(0, 1), k in {-2..1}, per group of 64 output rows: FP8
      // tiles get different scales, so a reader applying the wrong tile's scale is caught.
      row_gain_seed_ = tensor_seed ^ 0x5EED0F6A1Aull;
    }
  }

  void fill(float* dst, int64_t n_rows, int64_t n_cols) {
    for (int64_t r = 0; r < n_rows; ++r, ++row_) {
      float gain = 1.0f;
      if (!col_scale_.empty()) {
        uint64_t state = row_gain_seed_ + static_cast<uint64_t>(row_ / 64);
        const uint64_t bits = splitmix64(state);
        const float u = static_cast<float>(bits >> 40) * 0x1p-24f;    // [0, 1)
        gain = std::ldexp(1.0f + u, static_cast<int>(bits % 4) - 2);  // exact, no libm
      }
      for (int64_t c = 0; c < n_cols; ++c) {
        float v = mean_ + std_ * rng_.normal();
        if (!col_scale_.empty()) v *= gain * col_scale_[static_cast<size_t>(c)];
        dst[r * n_cols + c] = v;
      }
    }
  }

 private:
  Rng rng_;
  float mean_ = 0.0f, std_ = 1.0f;
  std::vector<float> col_scale_;  // empty unless a linear weight
  uint64_t row_gain_seed_ = 0;
  int64_t row_ = 0;  // rows produced so far
};

float abs_max(const float* x, int64_t n, int64_t stride, int64_t n_rows) {
  float amax = 0.0f;
  for (int64_t r = 0; r < n_rows; ++r) {
    for (int64_t c = 0; c < n; ++c) amax = std::max(amax, std::fabs(x[r * stride + c]));
  }
  return amax;
}

}  // namespace

uint64_t synthetic_tensor_seed(const std::string& name, uint64_t seed) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a 64
  for (const unsigned char ch : name) h = (h ^ ch) * 0x100000001B3ull;
  uint64_t state = h ^ (seed * 0x9E3779B97F4A7C15ull);
  return splitmix64(state);
}

int pow2_scale_exponent(float amax, float max_code) {
  if (!(amax > 0.0f) || std::isinf(amax)) return 0;
  int k = 0;
  std::frexp(amax / max_code, &k);
  while (std::ldexp(max_code, k) < amax) ++k;
  while (std::ldexp(max_code, k - 1) >= amax) --k;
  return std::clamp(k, -numerics::kE8m0Bias, numerics::kE8m0Bias);
}

SyntheticWeights::SyntheticWeights(const model::ModelConfig& config, model::WeightFormat format,
                                   uint64_t seed)
    : config_(config), format_(format), seed_(seed) {}

void SyntheticWeights::emit(const ModelTensor& t, const ByteSink& sink) {
  if (t.role == TensorRole::kFp8Scale || t.role == TensorRole::kFp4Scale) {
    QF_CHECK(t.spec.name == pending_scale_name_ && pending_scale_.size() == t.spec.n_bytes(),
             "make-tiny: scale", t.spec.name, "does not directly follow its weight");
    sink(pending_scale_.data(), pending_scale_.size());
    pending_scale_name_.clear();
    pending_scale_.clear();
    return;
  }
  if (t.native_role == TensorRole::kFp8Weight) return emit_fp8_weight(t, sink);
  if (t.native_role == TensorRole::kFp4Weight) return emit_fp4_weight(t, sink);
  emit_plain(t, sink);
}

// One 128-row strip at a time: per 128x128 tile, scale 2^k so that amax/2^k <= 448, codes by
// RNE (float_to_e4m3). F32 scales (fp8-expert checkpoints) are amax/448, as DeepSeek V3's.
void SyntheticWeights::emit_fp8_weight(const ModelTensor& t, const ByteSink& sink) {
  const bool native = format_ == model::WeightFormat::kNative;
  const bool e8m0 = config_.experts_fp4();
  const int64_t n_rows = t.n_rows, n_cols = t.n_cols, tile = model::kFp8Tile;
  const int64_t n_tile_cols = (n_cols + tile - 1) / tile;
  ValueGen gen(t, synthetic_tensor_seed(t.spec.name, seed_));
  std::vector<float> strip(static_cast<size_t>(tile * n_cols));
  std::vector<uint8_t> codes(native ? strip.size() : 0);
  std::vector<uint16_t> bf16(native ? 0 : strip.size());
  if (native) {
    pending_scale_name_ = t.scale_name;
    pending_scale_.clear();
  }
  for (int64_t r0 = 0; r0 < n_rows; r0 += tile) {
    const int64_t nr = std::min(tile, n_rows - r0);
    gen.fill(strip.data(), nr, n_cols);
    for (int64_t tc = 0; tc < n_tile_cols; ++tc) {
      const int64_t c0 = tc * tile, nc = std::min(tile, n_cols - c0);
      const float amax = abs_max(strip.data() + c0, nc, n_cols, nr);
      float scale = 1.0f, inv_scale = 1.0f;
      if (e8m0) {
        const int k = pow2_scale_exponent(amax, numerics::kE4m3Max);
        scale = std::ldexp(1.0f, k);
        inv_scale = std::ldexp(1.0f, -k);
        if (native) pending_scale_.push_back(numerics::e8m0_from_exponent(k));
      } else {
        scale = amax > 0.0f ? amax / numerics::kE4m3Max : 1.0f;
        inv_scale = 1.0f / scale;
        if (native) {
          uint8_t bytes[4];
          std::memcpy(bytes, &scale, 4);
          pending_scale_.insert(pending_scale_.end(), bytes, bytes + 4);
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        for (int64_t c = c0; c < c0 + nc; ++c) {
          const size_t i = static_cast<size_t>(r * n_cols + c);
          const float x = strip[i];
          const uint8_t code = numerics::float_to_e4m3(e8m0 ? x * inv_scale : x / scale);
          if (native)
            codes[i] = code;
          else
            bf16[i] = numerics::fp8_block_to_bf16(code, scale);
        }
      }
    }
    const uint64_t n = static_cast<uint64_t>(nr * n_cols);
    if (native)
      sink(codes.data(), n);
    else
      sink(bf16.data(), 2 * n);
  }
}

// Per row and 32-element block: scale 2^k so that amax/2^k <= 6, E2M1 codes (ModelOpt rule),
// packed low nibble first; I8 [out, in/2] + E8M0 [out, in/32].
void SyntheticWeights::emit_fp4_weight(const ModelTensor& t, const ByteSink& sink) {
  const bool native = format_ == model::WeightFormat::kNative;
  const int64_t n_rows = t.n_rows, n_cols = t.n_cols, block = model::kFp4Block;
  const int64_t strip_rows = 128;
  ValueGen gen(t, synthetic_tensor_seed(t.spec.name, seed_));
  std::vector<float> strip(static_cast<size_t>(strip_rows * n_cols));
  std::vector<uint8_t> packed(native ? strip.size() / 2 : 0);
  std::vector<uint16_t> bf16(native ? 0 : strip.size());
  if (native) {
    pending_scale_name_ = t.scale_name;
    pending_scale_.clear();
    pending_scale_.reserve(static_cast<size_t>(n_rows * (n_cols / block)));
  }
  for (int64_t r0 = 0; r0 < n_rows; r0 += strip_rows) {
    const int64_t nr = std::min(strip_rows, n_rows - r0);
    gen.fill(strip.data(), nr, n_cols);
    for (int64_t r = 0; r < nr; ++r) {
      for (int64_t c0 = 0; c0 < n_cols; c0 += block) {
        const float* x = strip.data() + r * n_cols + c0;
        const int k = pow2_scale_exponent(abs_max(x, block, block, 1), numerics::kE2m1Max);
        const float inv_scale = std::ldexp(1.0f, -k), scale = std::ldexp(1.0f, k);
        if (native) pending_scale_.push_back(numerics::e8m0_from_exponent(k));
        for (int64_t j = 0; j < block; j += 2) {
          const uint8_t lo = numerics::float_to_e2m1(x[j] * inv_scale);
          const uint8_t hi = numerics::float_to_e2m1(x[j + 1] * inv_scale);
          const size_t i = static_cast<size_t>(r * n_cols + c0 + j);
          if (native) {
            packed[i / 2] = numerics::e2m1_pack(lo, hi);
          } else {
            bf16[i] = numerics::fp4_to_bf16(lo, scale);
            bf16[i + 1] = numerics::fp4_to_bf16(hi, scale);
          }
        }
      }
    }
    const uint64_t n = static_cast<uint64_t>(nr * n_cols);
    if (native)
      sink(packed.data(), n / 2);
    else
      sink(bf16.data(), 2 * n);
  }
}

void SyntheticWeights::emit_plain(const ModelTensor& t, const ByteSink& sink) {
  const uint64_t tensor_seed = synthetic_tensor_seed(t.spec.name, seed_);
  if (value_kind(t) == ValueKind::kTid2eid) {
    // Each token id -> top-k distinct experts, uniformly at random (deterministic).
    QF_CHECK(t.spec.dtype == DType::kI64 && t.spec.shape.size() == 2, "make-tiny:", t.spec.name,
             "must be I64 [vocab, top_k]");
    const int64_t n_tokens = t.spec.shape[0], k = t.spec.shape[1];
    const uint64_t n_experts = static_cast<uint64_t>(config_.n_routed_experts);
    Rng rng(tensor_seed);
    std::vector<int64_t> row(static_cast<size_t>(k));
    for (int64_t v = 0; v < n_tokens; ++v) {
      for (int64_t j = 0; j < k; ++j) {
        int64_t e = 0;
        do {
          e = static_cast<int64_t>(rng.next() % n_experts);
        } while (std::find(row.begin(), row.begin() + j, e) != row.begin() + j);
        row[static_cast<size_t>(j)] = e;
      }
      sink(row.data(), row.size() * sizeof(int64_t));
    }
    return;
  }
  QF_CHECK(t.spec.dtype == DType::kBF16 || t.spec.dtype == DType::kF32, "make-tiny: tensor",
           t.spec.name, "has unexpected dtype", dtype_name(t.spec.dtype));
  ValueGen gen(t, tensor_seed);
  const int64_t n_cols = t.spec.shape.empty() ? 1 : t.spec.shape.back();
  const int64_t n_rows = static_cast<int64_t>(t.spec.n_elems()) / std::max<int64_t>(n_cols, 1);
  std::vector<float> row(static_cast<size_t>(n_cols));
  std::vector<uint16_t> row_bf16(t.spec.dtype == DType::kBF16 ? row.size() : 0);
  for (int64_t r = 0; r < n_rows; ++r) {
    gen.fill(row.data(), 1, n_cols);
    if (t.spec.dtype == DType::kF32) {
      sink(row.data(), row.size() * sizeof(float));
    } else {
      for (size_t c = 0; c < row.size(); ++c) row_bf16[c] = numerics::float_to_bf16(row[c]);
      sink(row_bf16.data(), row_bf16.size() * sizeof(uint16_t));
    }
  }
}

}  // namespace qf::pipeline
