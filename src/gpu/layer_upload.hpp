// Filling a DeviceLayerWeights from host bytes, in device terms: small tensors as FP32 values,
// the hash-routing table as expert ids, and the arena of linears through pinned staging
// (byte ranges of the arena packed back to back, one H2D copy per range), then each linear bound
// to its bytes in the arena. Owns: the pinned staging and the host-to-device copies. Does not
// own: where the bytes come from (reading, the MPI/NCCL exchange and decoding are the calibrate
// and source modules'), the arena layout rule (calibrate/layer_arena.hpp) or any collective.
#pragma once
#ifdef QF_HAVE_CUDA
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/cuda_raii.hpp"
#include "core/dtype.hpp"
#include "gpu/device_layer.hpp"

namespace qf::gpu {

// w.small[key] = FP32 `values` of `shape` (synchronous copy). `what` names the tensor in errors.
void upload_small_tensor(DeviceLayerWeights& w, const std::string& key,
                         const std::vector<int64_t>& shape, const std::vector<float>& values,
                         const std::string& what);
// w.tid2eid = the hash-routing table [vocab, top_k] of expert ids (synchronous copy).
void upload_tid2eid(DeviceLayerWeights& w, const std::vector<int32_t>& expert_ids,
                    const std::string& what);

// Bytes [begin, end) of a layer arena.
struct ArenaByteRange {
  uint64_t begin = 0;
  uint64_t end = 0;
};

// One linear's bytes in the arena: the stored codes / packed values / BF16 at
// [offset, offset + n_stored), and for the block kinds its scales at [scale_offset, + n_scale).
struct ArenaLinear {
  LinearStorage storage = LinearStorage::kBf16;
  DType scale_dtype = DType::kF8E8M0;  // kFp8Block: kF8E8M0 or kF32
  int64_t n_rows = 0, n_cols = 0;
  uint64_t offset = 0, n_stored = 0;
  uint64_t scale_offset = 0, n_scale = 0;  // n_scale 0: no scale (BF16)
};

// w.linears[key] pointing at `a`'s bytes in w.arena (checked to lie inside w.arena_bytes).
void bind_arena_linear(DeviceLayerWeights& w, const std::string& key, const ArenaLinear& a);

// Pinned host staging of the byte ranges of one layer's arena that this process fills, packed
// back to back, and their copies into the arena. Kept across layers (pinning is slow); a layer's
// copies must have completed (the caller synchronizes the stream) before the next begin().
class ArenaStaging {
 public:
  // Starts a layer: w.arena sized to n_arena_bytes, the staging to the sum of `ranges` (sorted,
  // disjoint, inside [0, n_arena_bytes)).
  void begin(DeviceLayerWeights& w, uint64_t n_arena_bytes, std::vector<ArenaByteRange> ranges);
  // Copies bytes [0, n_bytes) to arena offset `offset` of the staging; the bytes must lie inside
  // one range (else throws naming `what`).
  void place(uint64_t offset, const uint8_t* bytes, uint64_t n_bytes, const std::string& what);
  // Enqueues the host-to-device copy of every range into w.arena on `stream`.
  void upload(DeviceLayerWeights& w, cudaStream_t stream, const std::string& what) const;

 private:
  PinnedBuffer pinned_;
  std::vector<ArenaByteRange> ranges_;
  std::vector<uint64_t> staged_at_;  // staging offset of each range
};

}  // namespace qf::gpu
#endif  // QF_HAVE_CUDA
