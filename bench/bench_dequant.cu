// Times the dequant kernels (DeepSeek V4 native FP8 block / FP4 expert -> BF16) on V4-Flash
// shapes and prints GB/s (bytes read + written) next to a device-to-device cudaMemcpy moving the
// same number of bytes, measured in the same run. Usage: bench_dequant [iterations=20]
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "bench/bench_util.cuh"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "kernels/dequant.cuh"

using namespace qf;
using namespace qf::kernels;

namespace {

using bench::hash32;

// Bytes lo + hash % span: random codes (lo 0, span 256) or realistic UE8M0 scales.
__global__ void fill_bytes_kernel(uint8_t* p, int64_t n, uint32_t seed, uint32_t lo,
                                  uint32_t span) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    p[i] = static_cast<uint8_t>(lo + hash32(i, seed) % span);
  }
}

__global__ void fill_f32_scales_kernel(float* p, int64_t n, uint32_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    p[i] = 1e-4f * (1.0f + (hash32(i, seed) & 0xFFFF) * (1.0f / 65536.0f));
  }
}

void fill_bytes(uint8_t* p, int64_t n, uint32_t seed, uint32_t lo, uint32_t span) {
  fill_bytes_kernel<<<1024, 256>>>(p, n, seed, lo, span);
  QF_KERNEL_CHECK();
}

struct Case {
  const char* name;
  bool fp4;
  DType scale_dtype;  // FP8 only
  int64_t n_rows;     // experts are stacked along rows
  int64_t n_cols;
};

// One table row: the kernel, then a D2D memcpy of half its traffic (so it moves as many bytes).
void run_case(const Case& c, int iterations, cudaStream_t stream) {
  const int64_t n_elems = c.n_rows * c.n_cols;
  int64_t n_in_bytes = 0;
  DeviceBuffer<uint8_t> codes, scale_bytes;
  DeviceBuffer<float> scale_f32;
  DeviceBuffer<uint16_t> out(static_cast<size_t>(n_elems));
  std::function<void()> launch;
  if (c.fp4) {
    const int64_t n_scales = n_elems / numerics::kFp4GroupCols;
    codes.grow(n_elems / 2);
    scale_bytes.grow(n_scales);
    fill_bytes(codes.get(), n_elems / 2, 1, 0, 256);
    fill_bytes(scale_bytes.get(), n_scales, 2, 110, 20);
    n_in_bytes = n_elems / 2 + n_scales;
    Fp4BlockDequantParams p;
    p.packed = codes.get();
    p.scale = scale_bytes.get();
    p.n_rows = c.n_rows;
    p.n_cols = c.n_cols;
    p.out = out.get();
    launch = [p, stream] { launch_fp4_block_dequant(p, stream); };
  } else {
    const int64_t n_scales = fp8_block_scale_rows(c.n_rows) * fp8_block_scale_cols(c.n_cols);
    codes.grow(n_elems);
    fill_bytes(codes.get(), n_elems, 3, 0, 256);
    Fp8BlockDequantParams p;
    p.codes = codes.get();
    p.scale_dtype = c.scale_dtype;
    p.n_rows = c.n_rows;
    p.n_cols = c.n_cols;
    p.out = out.get();
    if (c.scale_dtype == DType::kF8E8M0) {
      scale_bytes.grow(n_scales);
      fill_bytes(scale_bytes.get(), n_scales, 4, 110, 20);
      p.scale = scale_bytes.get();
      n_in_bytes = n_elems + n_scales;
    } else {
      scale_f32.grow(n_scales);
      fill_f32_scales_kernel<<<256, 256>>>(scale_f32.get(), n_scales, 5);
      QF_KERNEL_CHECK();
      p.scale = scale_f32.get();
      n_in_bytes = n_elems + 4 * n_scales;
    }
    launch = [p, stream] { launch_fp8_block_dequant(p, stream); };
  }
  QF_CUDA_CHECK(cudaDeviceSynchronize(), "bench fill");
  const int64_t n_bytes = n_in_bytes + 2 * n_elems;  // read + written

  const double t_kernel = bench::time_on_stream(launch, stream, iterations, 3);
  const size_t n_copy = static_cast<size_t>(n_bytes / 2);
  double t_copy = 0;
  {
    DeviceBuffer<uint8_t> src(n_copy), dst(n_copy);
    t_copy = bench::time_on_stream(
        [&] {
          QF_CUDA_CHECK(
              cudaMemcpyAsync(dst.get(), src.get(), n_copy, cudaMemcpyDeviceToDevice, stream),
              "memcpy");
        },
        stream, iterations, 3);
  }
  const double gbps = n_bytes / t_kernel * 1e-9;
  const double copy_gbps = 2.0 * n_copy / t_copy * 1e-9;
  char shape[48];
  std::snprintf(shape, sizeof(shape), "%lldx%lld", static_cast<long long>(c.n_rows),
                static_cast<long long>(c.n_cols));
  std::printf("%-26s %-16s %-7s %9.3f %10.1f %9.1f %11.1f %6.1f%%\n", c.name, shape,
              c.fp4 ? "E8M0/32" : (c.scale_dtype == DType::kF32 ? "F32" : "E8M0"), n_bytes * 1e-9,
              t_kernel * 1e6, gbps, copy_gbps, 100.0 * gbps / copy_gbps);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int iterations = argc > 1 ? std::atoi(argv[1]) : 20;
    QF_CHECK(iterations > 0, "iterations must be positive, got", argv[1]);
    int device = 0;
    cudaDeviceProp prop{};
    QF_CUDA_CHECK(cudaGetDevice(&device), "device");
    QF_CUDA_CHECK(cudaGetDeviceProperties(&prop, device), "device properties");
    CudaStream stream;
    // V4-Flash: hidden 4096, moe_intermediate 2048, 256 routed experts (FORMATS.md section 6).
    const std::vector<Case> cases = {
        {"fp8 attn 4096x4096", false, DType::kF8E8M0, 4096, 4096},
        {"fp8 base 4096x4096", false, DType::kF32, 4096, 4096},
        {"fp8 shared w1 2048x4096", false, DType::kF8E8M0, 2048, 4096},
        {"fp8 base 256 experts w1", false, DType::kF32, 256 * 2048, 4096},
        {"fp4 expert w1 2048x4096", true, DType::kF8E8M0, 2048, 4096},
        {"fp4 expert w2 4096x2048", true, DType::kF8E8M0, 4096, 2048},
        {"fp4 256 experts w1", true, DType::kF8E8M0, 256 * 2048, 4096},
    };
    std::printf(
        "# %s, %d SMs; %d iterations; GB/s = (bytes read + written) / time; peak = a\n"
        "# cudaMemcpy D2D moving the same bytes (read + write), timed in this run\n",
        prop.name, prop.multiProcessorCount, iterations);
    std::printf("%-26s %-16s %-7s %9s %10s %9s %11s %7s\n", "case", "rows x cols", "scale",
                "GB moved", "time us", "GB/s", "memcpy GB/s", "of peak");
    for (const Case& c : cases) run_case(c, iterations, stream.get());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
