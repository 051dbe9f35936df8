// Small-tensor uploads, arena linear binding and the pinned arena staging (layer_upload.hpp).
#include <algorithm>
#include <cstring>
#include <utility>

#include "core/check.hpp"
#include "core/nvtx.hpp"
#include "gpu/layer_upload.hpp"

namespace qf::gpu {

void upload_small_tensor(DeviceLayerWeights& w, const std::string& key,
                         const std::vector<int64_t>& shape, const std::vector<float>& values,
                         const std::string& what) {
  DeviceSmallTensor& small = w.small[key];
  small.shape = shape;
  small.values.grow(values.size());
  QF_CUDA_CHECK(
      cudaMemcpy(small.values.get(), values.data(), values.size() * 4, cudaMemcpyHostToDevice),
      "upload of", what);
}

void upload_tid2eid(DeviceLayerWeights& w, const std::vector<int32_t>& expert_ids,
                    const std::string& what) {
  w.tid2eid.grow(expert_ids.size());
  QF_CUDA_CHECK(
      cudaMemcpy(w.tid2eid.get(), expert_ids.data(), expert_ids.size() * 4, cudaMemcpyHostToDevice),
      "upload of", what);
}

void bind_arena_linear(DeviceLayerWeights& w, const std::string& key, const ArenaLinear& a) {
  QF_CHECK(a.offset + a.n_stored <= w.arena_bytes &&
               (a.n_scale == 0 || a.scale_offset + a.n_scale <= w.arena_bytes),
           "layer", w.layer, ": linear", key, "lies outside the arena of", w.arena_bytes, "bytes");
  DeviceLinear lin;
  lin.storage = a.storage;
  if (a.storage == LinearStorage::kFp8Block) lin.scale_dtype = a.scale_dtype;
  lin.n_rows = a.n_rows;
  lin.n_cols = a.n_cols;
  lin.data = w.arena.get() + a.offset;
  lin.scale = a.n_scale ? w.arena.get() + a.scale_offset : nullptr;
  w.linears[key] = lin;
}

void ArenaStaging::begin(DeviceLayerWeights& w, uint64_t n_arena_bytes,
                         std::vector<ArenaByteRange> ranges) {
  ranges_ = std::move(ranges);
  staged_at_.clear();
  uint64_t n_staged = 0;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    const ArenaByteRange& r = ranges_[i];
    QF_CHECK(
        r.begin <= r.end && r.end <= n_arena_bytes && (i == 0 || r.begin >= ranges_[i - 1].end),
        "arena staging: ranges must be sorted, disjoint and inside the arena of", n_arena_bytes,
        "bytes");
    staged_at_.push_back(n_staged);
    n_staged += r.end - r.begin;
  }
  pinned_.grow(n_staged);
  w.arena.grow(n_arena_bytes);
  w.arena_bytes = n_arena_bytes;
}

void ArenaStaging::place(uint64_t offset, const uint8_t* bytes, uint64_t n_bytes,
                         const std::string& what) {
  // The last range starting at or before `offset`.
  const auto after =
      std::upper_bound(ranges_.begin(), ranges_.end(), offset,
                       [](uint64_t o, const ArenaByteRange& r) { return o < r.begin; });
  const size_t i = static_cast<size_t>(after - ranges_.begin());
  QF_CHECK(i > 0 && offset + n_bytes <= ranges_[i - 1].end, what,
           "lies outside this rank's arena runs");
  const ArenaByteRange& r = ranges_[i - 1];
  std::memcpy(pinned_.get() + staged_at_[i - 1] + (offset - r.begin), bytes, n_bytes);
}

void ArenaStaging::upload(DeviceLayerWeights& w, cudaStream_t stream,
                          const std::string& what) const {
  QF_NVTX_RANGE("arena upload (H2D)");
  for (size_t i = 0; i < ranges_.size(); ++i) {
    const ArenaByteRange& r = ranges_[i];
    QF_CUDA_CHECK(cudaMemcpyAsync(w.arena.get() + r.begin, pinned_.get() + staged_at_[i],
                                  r.end - r.begin, cudaMemcpyHostToDevice, stream),
                  what, "upload (", r.end - r.begin, "bytes)");
  }
}

}  // namespace qf::gpu
