// The device arena of one layer's linear weights (CUDA calibration engine): where each linear's
// stored bytes and block scales sit, and which rank owns each byte range. A pure function of
// the tensor specs and the ownership plan, so every rank computes the same layout without
// communicating, and the NCCL exchange broadcasts every range from its owner straight into
// every rank's arena. Owns: the arena rule (which linears, their order, alignment, owner
// runs). Does not own: moving the bytes (cuda_calibration_engine.cu, gpu/layer_upload.hpp), the
// plan, the name mapping.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "dist/ownership_plan.hpp"
#include "source/native_weight_loader.hpp"

namespace qf::pipeline {

// Every slot starts on this boundary (vectorised loads in the GEMM and dequant kernels).
inline constexpr uint64_t kArenaAlign = 256;

// The linears whose bytes go to the arena, as checkpoint weight names (`<linear>.weight`):
// every name of calib_linear_names except the router `.ffn.gate` (the forward runs it in FP32
// from the small tensors).
std::set<std::string> arena_weight_names(const std::vector<std::string>& linear_names);

struct ArenaSlot {
  std::string key;  // the forward name without "layers.L." (DeviceLayerWeights::linears key)
  const NativeTensor* tensor = nullptr;  // into the index the layout was built from
  int owner = -1;                        // rank that reads and broadcasts it
  uint64_t offset = 0;                   // stored bytes at [offset, offset + n_stored)
  uint64_t n_stored = 0;
  uint64_t scale_offset = 0;  // block kinds: the `.scale` bytes at [scale_offset, + n_scale)
  uint64_t n_scale = 0;       // 0 for plain BF16
  // One past the slot's last byte (before padding).
  uint64_t end() const { return n_scale ? scale_offset + n_scale : offset + n_stored; }
};

// Consecutive bytes [begin, end) of one owner: one broadcast each.
struct ArenaRun {
  uint64_t begin = 0;
  uint64_t end = 0;
  int owner = -1;
};

struct ArenaLayout {
  int layer = -1;
  std::vector<ArenaSlot> slots;  // in the forward's request order (layer_weight_names)
  uint64_t n_bytes = 0;          // a multiple of kArenaAlign
  // Maximal runs of consecutive slots with one owner, back to back from 0 to n_bytes (padding
  // included, so each run is one contiguous broadcast).
  std::vector<ArenaRun> runs;
};

// The arena of regular layer `layer`: one slot per name of `forward_names` (the layer's
// layer_weight_names, in that order) whose native name is in `arena_weights`; the stored bytes
// then (block kinds) the scale bytes, each aligned to kArenaAlign. Throws naming the tensor
// for a name outside "layers.<layer>.", an arena weight missing from `tensors`, `plan` or
// `forward_names`, or a plain linear that is not 2-D BF16 (the CUDA forward takes FP8, FP4 or
// BF16 linears).
ArenaLayout layer_arena_layout(int layer, const std::vector<std::string>& forward_names,
                               const NativeTensorIndex& tensors, bool tie_word_embeddings,
                               const std::set<std::string>& arena_weights,
                               const dist::OwnershipPlan& plan);

}  // namespace qf::pipeline
