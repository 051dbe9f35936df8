// DeviceLayerWeights lookups and the per-linear dequant to BF16 scratch.
#include "core/check.hpp"
#include "gpu/device_layer.hpp"
#include "kernels/dequant.cuh"

namespace qf::gpu {

const DeviceLinear& DeviceLayerWeights::linear(const std::string& name) const {
  const auto it = linears.find(name);
  QF_CHECK(it != linears.end(), "layer", layer, ": no linear weight", name, "on the GPU");
  return it->second;
}

const float* DeviceLayerWeights::f32(const std::string& name, int64_t n_values) const {
  const auto it = small.find(name);
  QF_CHECK(it != small.end(), "layer", layer, ": no tensor", name, "on the GPU");
  QF_CHECK(static_cast<int64_t>(it->second.values.n_elems()) >= n_values, "layer", layer, ":", name,
           "has", it->second.values.n_elems(), "values, the forward needs", n_values);
  return it->second.values.get();
}

const uint16_t* linear_as_bf16(const DeviceLinear& w, uint16_t* out, cudaStream_t stream) {
  switch (w.storage) {
    case LinearStorage::kBf16:
      return reinterpret_cast<const uint16_t*>(w.data);
    case LinearStorage::kFp8Block:
      kernels::launch_fp8_block_dequant({w.data, w.scale, w.scale_dtype, w.n_rows, w.n_cols, out},
                                        stream);
      return out;
    case LinearStorage::kFp4Block:
      kernels::launch_fp4_block_dequant({w.data, w.scale, w.n_rows, w.n_cols, out}, stream);
      return out;
  }
  QF_FAIL("unknown linear storage");
}

}  // namespace qf::gpu
