// RoPE tables and rotation (transformers 5.17 modeling_rope_utils + modeling_deepseek_v4).
// V4 rotates the LAST rope_dim channels of a head ([nope | rope] layout, the reference's
// x[..., -rd:]) with interleaved pairs (GPT-J style), not the rotate_half of Llama.
#include "ops/rope.hpp"

#include <algorithm>
#include <cmath>

#include "core/check.hpp"

namespace qf::ops {
namespace {

// theta^(e) with e = (float)(2i) / (float)dim, as torch does `base ** tensor` in FP32.
float pow_freq(double theta, int64_t two_i, int64_t dim) {
  const float e = static_cast<float>(two_i) / static_cast<float>(dim);
  return static_cast<float>(std::pow(static_cast<double>(static_cast<float>(theta)), e));
}

double yarn_get_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

}  // namespace

RopeTable make_rope_table(const RopeParams& p, int64_t head_dim, int64_t max_position_embeddings) {
  RopeTable t;
  const auto dim = static_cast<int64_t>(static_cast<double>(head_dim) * p.partial_rotary_factor);
  QF_CHECK(dim > 0 && dim % 2 == 0, "rope dim", dim, "must be positive and even");
  t.rope_dim = dim;
  t.inv_freq.resize(dim / 2);
  if (p.rope_type == "default") {
    for (int64_t i = 0; i < dim / 2; ++i) t.inv_freq[i] = 1.0f / pow_freq(p.rope_theta, 2 * i, dim);
    t.attention_scaling = 1.0f;
    return t;
  }
  QF_CHECK(p.rope_type == "yarn", "rope_type", p.rope_type, "not supported");
  double factor = p.factor;
  int64_t original_max = max_position_embeddings;
  if (p.has_original_max_position_embeddings) {
    // transformers: factor is re-derived from the two lengths when the original is given.
    original_max = p.original_max_position_embeddings;
    factor = static_cast<double>(max_position_embeddings) / static_cast<double>(original_max);
  }
  double attention_factor = p.attention_factor;
  if (!p.has_attention_factor) {
    attention_factor =
        (p.mscale != 0.0 && p.mscale_all_dim != 0.0)
            ? yarn_get_mscale(factor, p.mscale) / yarn_get_mscale(factor, p.mscale_all_dim)
            : yarn_get_mscale(factor, 1.0);
  }
  auto correction_dim = [&](double n_rot) {
    return (static_cast<double>(dim) *
            std::log(static_cast<double>(original_max) / (n_rot * 2.0 * M_PI))) /
           (2.0 * std::log(p.rope_theta));
  };
  double low = correction_dim(p.beta_fast), high = correction_dim(p.beta_slow);
  if (p.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // transformers: prevent singularity
  const float f_factor = static_cast<float>(factor);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float pos_freq = pow_freq(p.rope_theta, 2 * i, dim);
    const float extrapolation = 1.0f / pos_freq;
    const float interpolation = 1.0f / (f_factor * pos_freq);
    // linear_ramp_factor in FP32: (i - min) / (max - min), clamped to [0, 1].
    float ramp = (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low);
    ramp = std::min(1.0f, std::max(0.0f, ramp));
    const float extrapolation_factor = 1.0f - ramp;
    t.inv_freq[i] =
        interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  t.attention_scaling = static_cast<float>(attention_factor);
  return t;
}

void rope_cos_sin(const RopeTable& t, int64_t position, float* cos_out, float* sin_out) {
  const float pos = static_cast<float>(position);
  for (size_t i = 0; i < t.inv_freq.size(); ++i) {
    const float freq = t.inv_freq[i] * pos;
    cos_out[i] = static_cast<float>(std::cos(static_cast<double>(freq))) * t.attention_scaling;
    sin_out[i] = static_cast<float>(std::sin(static_cast<double>(freq))) * t.attention_scaling;
  }
}

void apply_rope_trailing(float* x, int64_t dim, int64_t rope_dim, const float* cos_half,
                         const float* sin_half, bool inverse) {
  float* r = x + (dim - rope_dim);
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    const float c = cos_half[i];
    const float s = inverse ? -sin_half[i] : sin_half[i];
    const float x0 = r[2 * i], x1 = r[2 * i + 1];
    r[2 * i] = x0 * c + (-x1) * s;
    r[2 * i + 1] = x1 * c + x0 * s;
  }
}

void apply_rope_trailing_n(float* x, int64_t n_vecs, int64_t dim, const RopeTable& table,
                           int64_t position, bool inverse) {
  std::vector<float> c(table.rope_dim / 2), s(table.rope_dim / 2);
  rope_cos_sin(table, position, c.data(), s.data());
  for (int64_t v = 0; v < n_vecs; ++v) {
    apply_rope_trailing(x + v * dim, dim, table.rope_dim, c.data(), s.data(), inverse);
  }
}

}  // namespace qf::ops
