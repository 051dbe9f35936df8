// CPU references of GPTQ for NVFP4 (kernels/nvfp4_gptq.cuh): the damped inverse factor and the
// column loop. Plain loops in double, no SIMD, no threads.
#include <cmath>
#include <vector>

#include "core/check.hpp"
#include "kernels/nvfp4_gptq.cuh"
#include "kernels/nvfp4_quantize.cuh"

namespace qf::kernels {
namespace {

using namespace qf::numerics;

// Lower Cholesky factor of the symmetric positive definite a [n, n] (row-major) into l; false
// on a pivot <= 0 (or NaN).
bool cholesky_lower(const std::vector<double>& a, int64_t n, std::vector<double>& l) {
  l.assign(size_t(n * n), 0.0);
  for (int64_t j = 0; j < n; ++j) {
    double s = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) s -= l[j * n + k] * l[j * n + k];
    if (!(s > 0.0)) return false;
    const double d = std::sqrt(s);
    l[j * n + j] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double t = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) t -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = t / d;
    }
  }
  return true;
}

// (L L^T)^-1 = L^-T L^-1 for lower-triangular l: the inverse of the matrix l factors.
std::vector<double> inverse_from_cholesky(const std::vector<double>& l, int64_t n) {
  std::vector<double> li(size_t(n * n), 0.0);  // L^-1, lower triangular
  for (int64_t j = 0; j < n; ++j) {
    li[j * n + j] = 1.0 / l[j * n + j];
    for (int64_t i = j + 1; i < n; ++i) {
      double t = 0.0;
      for (int64_t k = j; k < i; ++k) t += l[i * n + k] * li[k * n + j];
      li[i * n + j] = -t / l[i * n + i];
    }
  }
  std::vector<double> inv(size_t(n * n), 0.0);  // sum over k of li[k][i] * li[k][j], k ascending
  for (int64_t k = 0; k < n; ++k) {
    for (int64_t i = 0; i <= k; ++i) {
      const double a = li[k * n + i];
      if (a == 0.0) continue;
      for (int64_t j = i; j <= k; ++j) inv[i * n + j] += a * li[k * n + j];
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < i; ++j) inv[i * n + j] = inv[j * n + i];
  }
  return inv;
}

}  // namespace

void gptq_inverse_factor_ref(const GptqFactorParams& p) {
  QF_CHECK(p.n >= 0 && p.u && (p.n == 0 || p.hessian), "gptq factor: bad params, n", p.n);
  QF_CHECK(p.damp_fraction >= 0 && std::isfinite(p.damp_fraction), "gptq factor: damp",
           p.damp_fraction, "must be finite and >= 0");
  const int64_t n = p.n;
  std::vector<double> a(p.hessian, p.hessian + n * n);
  double mean_diag = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    QF_CHECK(std::isfinite(a[i * n + i]) && a[i * n + i] >= 0, "gptq factor: H[", i, "][", i,
             "] =", a[i * n + i], "is not a finite non-negative number");
    if (a[i * n + i] == 0.0) a[i * n + i] = 1.0;  // dead input
    mean_diag += a[i * n + i];
  }
  mean_diag = n > 0 ? mean_diag / double(n) : 0.0;
  std::vector<double> l, damped;
  bool ok = false;
  int retries = 0;
  for (double damp = p.damp_fraction * mean_diag; retries <= kGptqMaxDampRetries;
       damp *= 10.0, ++retries) {
    damped = a;
    for (int64_t i = 0; i < n; ++i) damped[i * n + i] += damp;
    if (cholesky_lower(damped, n, l)) {
      const std::vector<double> inv = inverse_from_cholesky(l, n);
      if (cholesky_lower(inv, n, l)) {  // inv = M M^T, U = M^T
        ok = true;
        break;
      }
    }
    if (damp == 0.0) damp = mean_diag > 0 ? mean_diag * 1e-3 : 1.0;  // a zero damping can't grow
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      p.u[i * n + j] = ok ? (j >= i ? l[j * n + i] : 0.0) : (i == j ? 1.0 : 0.0);
    }
  }
  if (p.n_retries) *p.n_retries = ok ? retries : kGptqMaxDampRetries;
  if (p.identity) *p.identity = !ok;
}

void nvfp4_gptq_quantize_ref(const Nvfp4GptqParams& p) {
  nvfp4_check_shape(p.n_rows, p.n_cols, Nvfp4ScaleLayout::kLinear);
  QF_CHECK(p.n_rows * p.n_cols == 0 || (p.w && p.u && p.packed && p.scale),
           "nvfp4 gptq: null pointer");
  QF_CHECK(is_finite_float(p.scale_2) && p.scale_2 > 0, "nvfp4 gptq: weight_scale_2", p.scale_2,
           "must be finite and > 0");
  QF_CHECK(p.search != Nvfp4BlockSearch::kHessian, "nvfp4 gptq: the block scales are chosen by",
           "max, 4over6 or mse (the Hessian already steers the rounding)");
  const int64_t n = p.n_cols, n_blocks_per_row = n / kNvfp4BlockSize;
  std::vector<double> w(static_cast<size_t>(n));
  double sq_error = 0.0;
  for (int64_t row = 0; row < p.n_rows; ++row) {
    const float* w_row = p.w + row * n;
    for (int64_t c = 0; c < n; ++c) w[c] = w_row[c];
    uint8_t* out = p.packed + row * n / 2;
    for (int64_t blk = 0; blk < n_blocks_per_row; ++blk) {
      const int64_t c0 = blk * kNvfp4BlockSize;
      float block[kNvfp4BlockSize];
      for (int i = 0; i < kNvfp4BlockSize; ++i) block[i] = static_cast<float>(w[c0 + i]);
      const uint8_t code = nvfp4_choose_block_scale(block, p.scale_2, p.search, nullptr, nullptr);
      p.scale[row * n_blocks_per_row + blk] = code;
      const float divisor = nvfp4_block_divisor(code, p.scale_2);
      for (int i = 0; i < kNvfp4BlockSize; ++i) {
        const int64_t c = c0 + i;
        const uint8_t e2m1 = nvfp4_encode(static_cast<float>(w[c]), divisor);
        const double q = static_cast<double>(e2m1_to_float(e2m1) * divisor);
        out[c / 2] = (c % 2 == 0) ? static_cast<uint8_t>((out[c / 2] & 0xF0u) | e2m1)
                                  : static_cast<uint8_t>((out[c / 2] & 0x0Fu) | (e2m1 << 4));
        const double diff = double(w_row[c]) - q;
        sq_error += diff * diff;
        const double* u_row = p.u + c * n;
        const double e = (w[c] - q) / u_row[c];
        for (int64_t j = c + 1; j < n; ++j) w[j] -= e * u_row[j];
      }
    }
  }
  if (p.sq_error) *p.sq_error = sq_error;
}

}  // namespace qf::kernels
