// The ceiling of the MoE GEMMs of the CUDA calibration forward (benchmark 2a of issue 7): routed
// experts of V4-Flash (hidden 4096, moe_inter 2048), each with `rows` tokens, run as the forward
// runs them — per expert w13 GEMM [rows x 4096] x [4096 x 4096]^T then w2 [rows x 2048] x
// [2048 x 4096]^T, BF16 inputs, FP32 accumulation — round-robin on S concurrent streams, with
// FP32 outputs (what the forward uses: the SwiGLU amax is taken in FP32) or BF16 outputs; and one
// dense GEMM of all experts' rows at once (the same FLOPs without the per-expert split) as the
// reference. Prints TFLOP/s. Usage: bench_expert_gemm [experts=256] [iterations=3]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "bench/bench_util.cuh"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "gpu/cublas_handle.hpp"

using namespace qf;

namespace {

__global__ void fill_bf16_kernel(uint16_t* p, int64_t n, uint32_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    // BF16 in [-1, 1): sign, exponent 126 or 125, 7 mantissa bits from the hash.
    const uint32_t h = bench::hash32(i, seed);
    p[i] = static_cast<uint16_t>((h & 0x8000u) | ((125u + (h >> 16 & 1u)) << 7) | (h & 0x7Fu));
  }
}

void fill(DeviceBuffer<uint16_t>& b, uint32_t seed) {
  fill_bf16_kernel<<<1024, 256>>>(b.get(), static_cast<int64_t>(b.n_elems()), seed);
  QF_CUDA_CHECK(cudaGetLastError(), "fill");
}

// y[m x n] = x[m x k] w[n x k]^T, row-major, BF16 in, FP32 accumulation, out_type output.
void gemm(cublasHandle_t h, const uint16_t* x, const uint16_t* w, void* y, cudaDataType out_type,
          int m, int n, int k) {
  const float one = 1.0f, zero = 0.0f;
  QF_CUBLAS_CHECK(
      cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, CUDA_R_16BF, k, x, CUDA_R_16BF, k,
                   &zero, y, out_type, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
      "GEMM", m, "x", n, "x", k);
}

}  // namespace

int main(int argc, char** argv) {
  const int n_experts = argc > 1 ? std::atoi(argv[1]) : 256;
  const int iterations = argc > 2 ? std::atoi(argv[2]) : 3;
  const int dim = 4096, inter = 2048;
  const std::vector<int> rows_list = {192, 384, 768, 1536, 3072};
  const std::vector<int> lanes_list = {1, 3, 6};
  const int max_rows = rows_list.back() + 32;  // + the varied case's spread
  DeviceBuffer<uint16_t> w13, w2, x, h;
  w13.grow(size_t(n_experts) * 2 * inter * dim);
  w2.grow(size_t(n_experts) * dim * inter);
  x.grow(size_t(n_experts) * max_rows * dim);
  h.grow(size_t(n_experts) * max_rows * inter);
  fill(w13, 1);
  fill(w2, 2);
  fill(x, 3);
  fill(h, 4);
  DeviceBuffer<float> out_f32;  // gate_up [rows, 2 inter] and y [rows, dim] share the size
  out_f32.grow(size_t(n_experts) * max_rows * dim);
  QF_CUDA_CHECK(cudaDeviceSynchronize(), "fill");
  CudaStream main_stream;
  std::vector<std::unique_ptr<CudaStream>> streams;
  std::vector<std::unique_ptr<gpu::CublasHandle>> handles;
  for (int s = 0; s < lanes_list.back(); ++s) {
    streams.push_back(std::make_unique<CudaStream>());
    handles.push_back(std::make_unique<gpu::CublasHandle>(streams.back()->get()));
  }
  gpu::CublasHandle main_handle(main_stream.get());
  CudaEvent fork, join;
  std::vector<std::unique_ptr<CudaEvent>> done(lanes_list.back());
  for (auto& d : done) d = std::make_unique<CudaEvent>();

  std::printf("%-7s %-9s %-6s %-6s %10s %12s\n", "rows", "experts", "lanes", "out", "ms",
              "TFLOP/s");
  for (const int rows : rows_list) {
    const double flops = 2.0 * n_experts * rows * (double(dim) * 2 * inter + double(inter) * dim);
    for (const cudaDataType out : {CUDA_R_32F, CUDA_R_16BF}) {
      for (const int lanes : lanes_list) {
        auto op = [&] {
          QF_CUDA_CHECK(cudaEventRecord(fork.get(), main_stream.get()), "fork");
          for (int s = 0; s < lanes; ++s) {
            QF_CUDA_CHECK(cudaStreamWaitEvent(streams[s]->get(), fork.get(), 0), "fork");
          }
          for (int e = 0; e < n_experts; ++e) {
            const int s = e % lanes;
            cublasHandle_t hd = handles[s]->get();
            const size_t row0 = size_t(e) * rows;
            char* y =
                reinterpret_cast<char*>(out_f32.get()) + row0 * dim * (out == CUDA_R_32F ? 4 : 2);
            gemm(hd, x.get() + row0 * dim, w13.get() + size_t(e) * 2 * inter * dim, y, out, rows,
                 2 * inter, dim);
            gemm(hd, h.get() + row0 * inter, w2.get() + size_t(e) * dim * inter, y, out, rows, dim,
                 inter);
          }
          for (int s = 0; s < lanes; ++s) {
            QF_CUDA_CHECK(cudaEventRecord(done[s]->get(), streams[s]->get()), "join");
            QF_CUDA_CHECK(cudaStreamWaitEvent(main_stream.get(), done[s]->get(), 0), "join");
          }
        };
        const double s = bench::time_on_stream(op, main_stream.get(), iterations, 1);
        std::printf("%-7d %-9d %-6d %-6s %10.2f %12.1f\n", rows, n_experts, lanes,
                    out == CUDA_R_32F ? "f32" : "bf16", s * 1e3, flops / s * 1e-12);
      }
      // The forward's case: every expert has a different row count (rows - 32 .. rows + 31 here,
      // same mean), so each GEMM shape is new to cuBLAS' per-shape heuristic cache.
      if (out == CUDA_R_32F) {
        const int lanes = 3;
        std::vector<int> m_of(n_experts);
        std::vector<size_t> row0_of(n_experts);
        size_t total_rows = 0;
        for (int e = 0; e < n_experts; ++e) {
          m_of[e] = rows - 32 + (e * 53 + rows) % 64;
          row0_of[e] = total_rows;
          total_rows += m_of[e];
        }
        const double varied_flops =
            2.0 * double(total_rows) * (double(dim) * 2 * inter + double(inter) * dim);
        auto varied = [&] {
          QF_CUDA_CHECK(cudaEventRecord(fork.get(), main_stream.get()), "fork");
          for (int s = 0; s < lanes; ++s) {
            QF_CUDA_CHECK(cudaStreamWaitEvent(streams[s]->get(), fork.get(), 0), "fork");
          }
          for (int e = 0; e < n_experts; ++e) {
            cublasHandle_t hd = handles[e % lanes]->get();
            float* y = out_f32.get() + row0_of[e] * dim;
            gemm(hd, x.get() + row0_of[e] * dim, w13.get() + size_t(e) * 2 * inter * dim, y,
                 CUDA_R_32F, m_of[e], 2 * inter, dim);
            gemm(hd, h.get() + row0_of[e] * inter, w2.get() + size_t(e) * dim * inter, y,
                 CUDA_R_32F, m_of[e], dim, inter);
          }
          for (int s = 0; s < lanes; ++s) {
            QF_CUDA_CHECK(cudaEventRecord(done[s]->get(), streams[s]->get()), "join");
            QF_CUDA_CHECK(cudaStreamWaitEvent(main_stream.get(), done[s]->get(), 0), "join");
          }
        };
        // One call, no warm-up: like the forward, which meets each expert's shape once.
        const double s = bench::time_on_stream(varied, main_stream.get(), 1, 0);
        std::printf("%-7d %-9s %-6d %-6s %10.2f %12.1f\n", rows, "varied", lanes, "f32", s * 1e3,
                    varied_flops / s * 1e-12);
      }
      // Reference: the same FLOPs as two dense GEMMs over every expert's rows (one weight).
      auto dense = [&] {
        const int m = n_experts * rows;
        gemm(main_handle.get(), x.get(), w13.get(), out_f32.get(), out, m, 2 * inter, dim);
        gemm(main_handle.get(), h.get(), w2.get(), out_f32.get(), out, m, dim, inter);
      };
      const double s = bench::time_on_stream(dense, main_stream.get(), iterations, 1);
      std::printf("%-7d %-9s %-6s %-6s %10.2f %12.1f\n", rows, "dense", "1",
                  out == CUDA_R_32F ? "f32" : "bf16", s * 1e3, flops / s * 1e-12);
    }
  }
  return 0;
}
