// The FP32 dot product and row matmul of the reference forward. Every output element is one
// dot_ref (8 partial sums); the matmul only blocks the loops (four x rows per pair of weight
// rows, x tiles) so that the weights are not re-read per token.
#include "ops/matmul.hpp"

#include <algorithm>
#include <cstring>

#include "core/parallel.hpp"

namespace qf::ops {

float dot_ref(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

namespace {

// dot_ref of four x rows with each of two weight rows (w0 -> out0[4], w1 -> out1[4]): per pair
// exactly dot_ref's operations in dot_ref's order (lane k of an 8-float vector is dot_ref's
// partial sum k; then the tail and the same pairwise combination), so the results are
// bit-identical to eight dot_ref calls; each weight vector is loaded once for four x rows and
// each x vector once for both weight rows (8 accumulators). Lane-wise multiply then add: GCC
// contracts to FMA only with -mfma, which neither the default build nor the AVX2 clone enables.
typedef float V8 __attribute__((vector_size(32)));

// dot_ref's final combination of its 8 partial sums and the tail.
inline float fold(const float* a, float tail) {
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) + tail;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
void dot4x2_ref(const float* x0, const float* x1, const float* x2, const float* x3,
                const float* w0, const float* w1, int64_t n, float* out0, float* out1) {
  V8 acc0[4] = {}, acc1[4] = {};  // V8 only inside this function: no vector crosses a call (ABI)
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    V8 wv0, wv1, xv[4];
    std::memcpy(&wv0, w0 + i, sizeof(V8));
    std::memcpy(&wv1, w1 + i, sizeof(V8));
    std::memcpy(&xv[0], x0 + i, sizeof(V8));
    std::memcpy(&xv[1], x1 + i, sizeof(V8));
    std::memcpy(&xv[2], x2 + i, sizeof(V8));
    std::memcpy(&xv[3], x3 + i, sizeof(V8));
    for (int r = 0; r < 4; ++r) {
      acc0[r] += xv[r] * wv0;
      acc1[r] += xv[r] * wv1;
    }
  }
  float tail0[4] = {0.0f, 0.0f, 0.0f, 0.0f}, tail1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  const float* xs[4] = {x0, x1, x2, x3};
  for (; i < n; ++i) {
    for (int r = 0; r < 4; ++r) {
      tail0[r] += xs[r][i] * w0[i];
      tail1[r] += xs[r][i] * w1[i];
    }
  }
  for (int r = 0; r < 4; ++r) {
    float lanes[8];
    std::memcpy(lanes, &acc0[r], sizeof(lanes));
    out0[r] = fold(lanes, tail0[r]);
    std::memcpy(lanes, &acc1[r], sizeof(lanes));
    out1[r] = fold(lanes, tail1[r]);
  }
}

}  // namespace

void matmul_rows_ref(const float* x, int64_t x_stride, int64_t n_rows, const float* w,
                     int64_t w_rows, int64_t n_cols, float* y, int64_t y_stride) {
  if (n_rows <= 0 || w_rows <= 0) return;
  // Threads split the weight rows (outputs): an expert sees a handful of tokens, the head a
  // vocabulary of outputs. Per thread: x in tiles of kTile rows (L2-resident), weight rows in
  // pairs, each pair read once per tile and used for four x rows at a time.
  constexpr int64_t kTile = 32, kWBlock = 16;
  const int64_t n_wblocks = (w_rows + kWBlock - 1) / kWBlock;
  parallel_for(n_wblocks, [&](int64_t wb_begin, int64_t wb_end) {
    const int64_t o_begin = wb_begin * kWBlock, o_end = std::min(w_rows, wb_end * kWBlock);
    float out0[4], out1[4];
    for (int64_t r0 = 0; r0 < n_rows; r0 += kTile) {
      const int64_t r1 = std::min(n_rows, r0 + kTile);
      for (int64_t o = o_begin; o < o_end; o += 2) {
        const int64_t n_w = std::min<int64_t>(2, o_end - o);  // an odd last row goes alone
        const float* wo = w + o * n_cols;
        int64_t r = r0;
        for (; n_w == 2 && r + 4 <= r1; r += 4) {
          const float* xr = x + r * x_stride;
          dot4x2_ref(xr, xr + x_stride, xr + 2 * x_stride, xr + 3 * x_stride, wo, wo + n_cols,
                     n_cols, out0, out1);
          for (int k = 0; k < 4; ++k) {
            y[(r + k) * y_stride + o] = out0[k];
            y[(r + k) * y_stride + o + 1] = out1[k];
          }
        }
        for (; r < r1; ++r) {
          for (int64_t k = 0; k < n_w; ++k) {
            y[r * y_stride + o + k] = dot_ref(x + r * x_stride, wo + k * n_cols, n_cols);
          }
        }
      }
    }
  });
}

}  // namespace qf::ops
