// Times the NVFP4 kernel family (amax, quantize, dequantize, lossless MXFP4 cast) on DeepSeek
// V4-Flash expert shapes and prints GB/s (bytes read + written) against a device-to-device
// cudaMemcpy measured in the same run. Usage: bench_nvfp4_quantize [iterations=20]
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_util.cuh"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "core/int_math.hpp"
#include "kernels/nvfp4_quantize.cuh"

using namespace qf;
using namespace qf::kernels;

namespace {

// Typed views of one device allocation (core/cuda_raii.hpp owns it).
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t n_bytes) : buffer_(n_bytes ? n_bytes : 1) {}
  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(buffer_.get());
  }

 private:
  DeviceBuffer<uint8_t> buffer_;
};

using bench::hash32;

// BF16 weights of magnitude ~0.02 with both signs (a sum of uniforms, roughly normal).
__global__ void fill_weights_kernel(uint16_t* x, int64_t n, uint32_t seed) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint32_t h = hash32(i, seed);
  const float u = ((h & 0xFFFF) + (h >> 16)) * (1.0f / 65536.0f) - 1.0f;
  x[i] = static_cast<uint16_t>(__float_as_uint(0.02f * u) >> 16);
}

// Random bytes; for E8M0 scales lo + (h % span).
__global__ void fill_bytes_kernel(uint8_t* p, int64_t n, uint32_t seed, uint32_t lo,
                                  uint32_t span) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = static_cast<uint8_t>(lo + hash32(i, seed) % span);
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(qf::ceil_div(n, 256)); }

// Mean seconds per call over `iterations` after one warm-up (default stream).
double time_op(const std::function<void()>& op, int iterations) {
  return bench::time_on_stream(op, nullptr, iterations, 1);
}

struct Shape {
  const char* name;
  int64_t n_mats, n_rows, n_cols;  // n_mats matrices stacked along rows
};

double g_memcpy_gbps = 0;

void print_row(const char* op, const Shape& s, double seconds, double n_bytes) {
  const double gbps = n_bytes / seconds * 1e-9;
  char dims[64];
  std::snprintf(dims, sizeof(dims), "%lldx%lldx%lld", static_cast<long long>(s.n_mats),
                static_cast<long long>(s.n_rows), static_cast<long long>(s.n_cols));
  std::printf("%-12s %-22s %-18s %10.1f %9.3f %9.1f %7.1f%%\n", op, s.name, dims, seconds * 1e6,
              n_bytes * 1e-9, gbps, 100.0 * gbps / g_memcpy_gbps);
}

void bench_shape(const Shape& s, int iterations) {
  const int64_t n_rows = s.n_mats * s.n_rows, n = n_rows * s.n_cols;
  DeviceBytes x(n * 2), packed(n / 2), scale(n / 16), scale_2(4), amax(4), counter(8 * 4);
  DeviceBytes mx_packed(n / 2), mx_e8m0(n / 32), e8m0_max(4);
  fill_weights_kernel<<<blocks_for(n), 256>>>(x.as<uint16_t>(), n, 1);
  fill_bytes_kernel<<<blocks_for(n / 2), 256>>>(mx_packed.as<uint8_t>(), n / 2, 2, 0, 256);
  fill_bytes_kernel<<<blocks_for(n / 32), 256>>>(mx_e8m0.as<uint8_t>(), n / 32, 3, 110, 18);
  QF_CUDA_CHECK(cudaGetLastError(), "fill");

  Nvfp4AmaxParams ap;
  ap.x = x.as<uint16_t>();
  ap.dtype = DType::kBF16;
  ap.n_elems = n;
  ap.amax = amax.as<float>();
  ap.n_nonfinite = counter.as<uint64_t>();
  double t = time_op([&] { launch_nvfp4_amax(ap, nullptr); }, iterations);
  print_row("amax", s, t, n * 2.0);
  launch_nvfp4_scale_2(amax.as<float>(), scale_2.as<float>(),
                       numerics::Nvfp4ScaleDivision::kTrueDivide, nullptr);

  Nvfp4QuantizeParams qp;
  qp.x = x.as<uint16_t>();
  qp.n_rows = n_rows;
  qp.n_cols = s.n_cols;
  qp.scale_2 = scale_2.as<float>();
  qp.packed = packed.as<uint8_t>();
  qp.scale = scale.as<uint8_t>();
  qp.n_nonfinite = counter.as<uint64_t>();
  t = time_op([&] { launch_nvfp4_quantize(qp, nullptr); }, iterations);
  print_row("quantize", s, t, n * 2.0 + n / 2.0 + n / 16.0);

  if (n <= (int64_t{1} << 28)) {  // the float output of a whole expert stack would be 8 GiB
    DeviceBytes y(n * 4);
    Nvfp4DequantizeParams dp;
    dp.packed = packed.as<uint8_t>();
    dp.scale = scale.as<uint8_t>();
    dp.scale_2 = scale_2.as<float>();
    dp.n_rows = n_rows;
    dp.n_cols = s.n_cols;
    dp.y = y.as<float>();
    t = time_op([&] { launch_nvfp4_dequantize(dp, nullptr); }, iterations);
    print_row("dequantize", s, t, n / 2.0 + n / 16.0 + n * 4.0);
  }

  Mxfp4E8m0MaxParams mp;
  mp.e8m0 = mx_e8m0.as<uint8_t>();
  mp.n_scales = n / 32;
  mp.e8m0_max = e8m0_max.as<uint32_t>();
  launch_mxfp4_e8m0_max(mp, nullptr);
  Mxfp4ToNvfp4Params cp;
  cp.packed = mx_packed.as<uint8_t>();
  cp.e8m0 = mx_e8m0.as<uint8_t>();
  cp.n_rows = n_rows;
  cp.n_cols = s.n_cols;
  cp.e8m0_max = e8m0_max.as<uint32_t>();
  cp.out_packed = packed.as<uint8_t>();
  cp.out_scale = scale.as<uint8_t>();
  cp.out_scale_2 = scale_2.as<float>();
  cp.counts = counter.as<uint64_t>();
  t = time_op([&] { launch_mxfp4_to_nvfp4(cp, nullptr); }, iterations);
  print_row("mxfp4_cast", s, t, n / 2.0 + n / 32.0 + n / 2.0 + n / 16.0);
}

}  // namespace

int main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 20;
  try {
    int device = 0;
    cudaDeviceProp prop{};
    QF_CUDA_CHECK(cudaGetDevice(&device), "device");
    QF_CUDA_CHECK(cudaGetDeviceProperties(&prop, device), "device");
    {
      const size_t n_bytes = size_t{2} << 30;
      DeviceBytes a(n_bytes), b(n_bytes);
      const double t = time_op(
          [&] {
            QF_CUDA_CHECK(
                cudaMemcpyAsync(b.as<char>(), a.as<char>(), n_bytes, cudaMemcpyDeviceToDevice),
                "memcpy");
          },
          iterations);
      g_memcpy_gbps = 2.0 * n_bytes / t * 1e-9;
    }
    std::printf("# %s, %d SMs; cudaMemcpy D2D 2 GiB: %.1f GB/s (read + write); %d iterations\n",
                prop.name, prop.multiProcessorCount, g_memcpy_gbps, iterations);
    std::printf("%-12s %-22s %-18s %10s %9s %9s %8s\n", "op", "tensor", "mats x rows x cols",
                "time_us", "GB_moved", "GB/s", "of_copy");
    const Shape shapes[] = {
        {"V4-Flash expert w1/w3", 1, 2048, 4096},
        {"V4-Flash expert w2", 1, 4096, 2048},
        {"V4-Flash 256 x w1", 256, 2048, 4096},
    };
    for (const Shape& s : shapes) bench_shape(s, iterations);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
