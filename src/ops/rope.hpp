// RoPE of the reference forward: transformers DeepseekV4RotaryEmbedding (default and YaRN
// inverse frequencies) and apply_rotary_pos_emb (INTERLEAVED pairs on the TRAILING rope dims).
// Does not own: which positions a tensor is rotated at (attention / compressor decide).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qf::ops {

// One entry of config.rope_parameters ("main" or "compress").
struct RopeParams {
  std::string rope_type = "default";  // "default" | "yarn"
  double rope_theta = 10000.0;
  double partial_rotary_factor = 1.0;
  // YaRN only (absent keys keep transformers' defaults).
  double factor = 1.0;
  bool has_attention_factor = false;
  double attention_factor = 1.0;
  double beta_fast = 32.0, beta_slow = 1.0;
  bool has_original_max_position_embeddings = false;
  int64_t original_max_position_embeddings = 0;
  double mscale = 0.0, mscale_all_dim = 0.0;
  bool truncate = true;
};

struct RopeTable {
  int64_t rope_dim = 0;            // rotated channels: the last rope_dim of each head
  std::vector<float> inv_freq;     // [rope_dim / 2]: one theta per interleaved pair
  float attention_scaling = 1.0f;  // multiplies cos and sin (YaRN attention_factor; else 1)
};

// inv_freq exactly as transformers computes it (FP32 tensors, Python-double scalars):
// default: 1 / theta^(2i/dim); yarn: _compute_yarn_parameters (factor, beta_fast/slow,
// original_max_position_embeddings, truncate, mscale/mscale_all_dim, attention_factor).
// dim = int(head_dim * partial_rotary_factor).
RopeTable make_rope_table(const RopeParams& params, int64_t head_dim,
                          int64_t max_position_embeddings);

// cos/sin[rope_dim / 2] at one position (FP32: freq = position * inv_freq, then cos/sin,
// then * attention_scaling).
void rope_cos_sin(const RopeTable& table, int64_t position, float* cos_out, float* sin_out);

// Rotates x[dim - rope_dim, dim) in place, pairs (2i, 2i+1) of that slice by angle i:
//   y[2i]   = x[2i]   * cos_i - x[2i+1] * sin_i
//   y[2i+1] = x[2i+1] * cos_i + x[2i]   * sin_i
// `inverse` uses -sin (the de-rotation applied to the attention output).
void apply_rope_trailing(float* x, int64_t dim, int64_t rope_dim, const float* cos_half,
                         const float* sin_half, bool inverse);

// The same for n_vecs vectors of `dim` that all sit at one position.
void apply_rope_trailing_n(float* x, int64_t n_vecs, int64_t dim, const RopeTable& table,
                           int64_t position, bool inverse);

}  // namespace qf::ops
