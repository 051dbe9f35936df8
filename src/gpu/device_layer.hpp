// One decoder layer's weights on the GPU for the CUDA forward: the linear weights in source
// precision (FP8 128x128-tile, FP4 per-32 or BF16 bytes in one device arena, dequantized to BF16
// scratch right before their GEMM) and the small tensors (norms, biases, sinks, ape, mHC, router)
// decoded to FP32. Owns: that storage and the per-linear dequant. Does not own: reading or
// exchanging source bytes (pipeline/) or the forward itself (gpu_decoder_layer).
#pragma once
#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/cuda_raii.hpp"
#include "core/dtype.hpp"

namespace qf::gpu {

enum class LinearStorage { kBf16, kFp8Block, kFp4Block };

// A linear weight [n_rows, n_cols] (out, in) in the arena.
struct DeviceLinear {
  LinearStorage storage = LinearStorage::kBf16;
  DType scale_dtype = DType::kF8E8M0;  // kFp8Block: kF8E8M0 or kF32
  const uint8_t* data = nullptr;       // codes / packed / BF16
  const uint8_t* scale = nullptr;      // block kinds
  int64_t n_rows = 0, n_cols = 0;
};

struct DeviceSmallTensor {
  DeviceBuffer<float> values;
  std::vector<int64_t> shape;
};

class DeviceLayerWeights {
 public:
  int layer = -1;
  uint64_t id = 0;  // unique per upload (caches keyed on it; device addresses get reused)
  // Keys are forward names without the "layers.<L>." prefix, e.g. "attn.wq_a.weight",
  // "ffn.experts.5.w1.weight", "attn_norm.weight", "ffn.gate.weight" (the router weight is a
  // small tensor: it runs in FP32).
  std::map<std::string, DeviceLinear> linears;
  std::map<std::string, DeviceSmallTensor> small;
  DeviceBuffer<int32_t> tid2eid;  // [vocab, top_k] on hash layers, else empty
  DeviceBuffer<uint8_t> arena;    // storage of every DeviceLinear
  uint64_t arena_bytes = 0;

  const DeviceLinear& linear(const std::string& name) const;  // throws naming the layer/name
  const float* f32(const std::string& name, int64_t n_values) const;  // checks the size
  bool has(const std::string& name) const { return linears.count(name) || small.count(name); }
};

// BF16 [n_rows, n_cols] of a linear into `out` (16-byte aligned, n_rows*n_cols elements), on
// stream: the exact dequantization of kernels/dequant.cuh (the CPU reference forward's weights).
// For BF16 storage, returns the stored pointer without copying; otherwise returns out.
const uint16_t* linear_as_bf16(const DeviceLinear& w, uint16_t* out, cudaStream_t stream);

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
