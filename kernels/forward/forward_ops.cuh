// Elementwise and per-row kernels of the CUDA calibration forward: RMSNorm, partial interleaved
// RoPE, amax observation (+ BF16 cast for the next GEMM), clamped SwiGLU, and the mHC pre/post
// mixing with Sinkhorn. FP32 activations. Declares params, CPU references (*_ref, always built,
// calling the model/ reference forward so both paths share one spec) and launchers (CUDA
// builds). Does not own: GEMMs (cuBLAS, src/gpu) or attention / MoE routing.
//
// Amax slots: `uint32_t` words holding the float bits of max |x|. Non-negative floats order like
// their bit patterns and every NaN (made positive) compares above +Inf, so atomicMax on the bits
// keeps the max and lets a NaN win (it is never hidden). 0 = nothing observed.
#pragma once
#include <cstdint>

#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace qf::kernels {

// ---- RMSNorm over rows: out = x * rsqrt(mean(x^2) + eps) [* weight] (in place if out == x) --
struct RmsNormParams {
  const float* x = nullptr;       // [n_rows, n_cols]
  float* out = nullptr;           // [n_rows, n_cols]
  const float* weight = nullptr;  // [n_cols] or null (unweighted)
  int64_t n_rows = 0, n_cols = 0;
  float eps = 1e-6f;
};

// ---- RoPE on the trailing rope_dim channels of each vector, interleaved pairs -----------------
// x is [n_rows, n_vecs, dim]; row r sits at position (r % period) * position_step, i.e.
// period = seq_len, step = 1 for token rows; period = n_entries, step = rate for compressed
// entries. cos/sin as ops::rope_cos_sin: freq = float(inv_freq[i] * float(pos)), then
// cos/sin in double, cast to float, times attention_scaling. inverse: -sin.
struct RopeParams {
  float* x = nullptr;
  int64_t n_rows = 0, n_vecs = 1, dim = 0;
  const float* inv_freq = nullptr;  // device [rope_dim / 2]
  int64_t rope_dim = 0;
  float attention_scaling = 1.0f;
  int64_t period = 1, position_step = 1;
  bool inverse = false;
};

// ---- amax of a linear's input (+ optional BF16 copy for the GEMM) -----------------------------
// amax_bits[slot(r)] = max(amax_bits[slot(r)], bits(|x[r, :]|)) with slot(r) = row_slot[r]
// (row_slot null: slot 0 for every row; a negative slot skips the row's amax).
// out_bf16 (optional) = round-to-nearest-even BF16 of x, NaN written as 0x7FC0.
struct AmaxCastParams {
  const float* x = nullptr;  // [n_rows, n_cols]
  int64_t n_rows = 0, n_cols = 0;
  const int32_t* row_slot = nullptr;
  uint32_t* amax_bits = nullptr;  // null: no amax
  uint16_t* out_bf16 = nullptr;   // null: no copy
};

// ---- clamped SwiGLU on a fused [gate | up] GEMM output -----------------------------------------
// h[r, i] = silu(min(g, limit)) * clamp(u, -limit, limit) with g = gate_up[r, i],
// u = gate_up[r, inter + i] (ops::swiglu_clamped's formula: g / (1 + exp(-g)) * u).
// Then amax per row slot (as AmaxCastParams) and an optional BF16 copy.
struct SwigluParams {
  const float* gate_up = nullptr;  // [n_rows, 2 * inter]
  int64_t n_rows = 0, inter = 0;
  float limit = 10.0f;
  float* out = nullptr;               // [n_rows, inter] FP32 (may be null if out_bf16 is set)
  uint16_t* out_bf16 = nullptr;       // [n_rows, inter] or null
  const int32_t* row_slot = nullptr;  // as AmaxCastParams
  uint32_t* amax_bits = nullptr;      // null: no amax
};

// ---- mHC "pre" after the mixes GEMM (model::hc_pre from `mixes` on) ---------------------------
// mixes [n_tokens, (2+hc)*hc] = rms(hidden[t] flattened, no weight) * fn^T (computed by the
// caller). Per token: pre = sigmoid(m[h]*scale[0] + base[h]) + hc_eps; post = 2*sigmoid(
// m[hc+h]*scale[1] + base[hc+h]); comb = sinkhorn(m[2hc+k]*scale[2] + base[2hc+k]) (model::
// sinkhorn_comb); collapsed[t, :] = sum_h pre[h] * hidden[t, h, :].
struct HcPreParams {
  const float* mixes = nullptr;   // [n_tokens, (2+hc)*hc]
  const float* hidden = nullptr;  // [n_tokens, hc, dim]
  const float* base = nullptr;    // device [(2+hc)*hc]
  const float* scale = nullptr;   // device [3]
  int64_t n_tokens = 0, hc = 0, dim = 0, sinkhorn_iters = 1;
  float hc_eps = 1e-6f;
  float* pre = nullptr;        // [n_tokens, hc]
  float* post = nullptr;       // [n_tokens, hc]
  float* comb = nullptr;       // [n_tokens, hc, hc]
  float* collapsed = nullptr;  // [n_tokens, dim]
};

// ---- mHC "post" (ops::hc_post) ----------------------------------------------------------------
// hidden[t,k,:] = post[t,k] * block_out[t,:] + sum_j comb[t,j,k] * hidden_old[t,j,:], in place.
struct HcPostParams {
  const float* post = nullptr;       // [n_tokens, hc]
  const float* comb = nullptr;       // [n_tokens, hc, hc]
  const float* block_out = nullptr;  // [n_tokens, dim]
  float* hidden = nullptr;           // [n_tokens, hc, dim]
  int64_t n_tokens = 0, hc = 0, dim = 0;
};

// ---- CPU references (forward_ops_ref.cpp): host pointers, the model/ functions -------------
void rms_norm_ref(const RmsNormParams& p);
void rope_ref(const RopeParams& p);  // p.inv_freq on the host here
void amax_cast_ref(const AmaxCastParams& p);
void swiglu_ref(const SwigluParams& p);
void hc_pre_ref(const HcPreParams& p);
void hc_post_ref(const HcPostParams& p);

#ifdef QF_HAVE_CUDA
// ---- launchers: device pointers, validate shapes (QF_CHECK), launch on stream; no sync ------
void launch_rms_norm(const RmsNormParams& p, cudaStream_t stream);
void launch_rope(const RopeParams& p, cudaStream_t stream);
void launch_amax_cast(const AmaxCastParams& p, cudaStream_t stream);
void launch_swiglu(const SwigluParams& p, cudaStream_t stream);
void launch_hc_pre(const HcPreParams& p, cudaStream_t stream);
void launch_hc_post(const HcPostParams& p, cudaStream_t stream);
#endif

}  // namespace qf::kernels
