// The ownership plan: which rank reads, quantizes and writes each tensor. A pure function of
// (items, world size): no dependence on input order, hash-map order, pointers or time, so
// every rank computes the same plan on its own. Owns: grouping and the balancing rule. Does not
// own: where the items come from (model tensor table, checkpoint index) or any I/O.
//
// Rule (documented, tested in tests/unit/test_ownership_plan.cpp):
//   1. Items are grouped by owner key (owner_key below): a weight and its `.scale`, and
//      w1/w2/w3 of one expert (or of the shared experts), always go to one rank.
//   2. Groups are balanced by bytes *within each layer*, because calibration runs layer by
//      layer and the owners of layer l broadcast its weights: each rank then reads ~1/R of
//      every layer, so disk reads and broadcasts stay spread over all ranks at every step.
//   3. Per layer (ascending; -1 = global tensors first), groups in order (bytes desc, key asc)
//      go to the rank with the smallest  bytes in this layer - credit,  ties -> least bytes in
//      total -> lowest rank. credit = (mean total - the rank's total) before this layer,
//      clamped to +-g (g = the layer's largest group): each layer evens out up to one group of
//      the excess that earlier layers (and the big global tensors) left, so totals balance too
//      without giving up the per-layer balance.
// Bound (list scheduling with credits in [-g, g]): per layer, max rank bytes <= layer bytes / R
// + 3g. Without credits it would be + g, but the per-layer excess could pile up on one rank.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qf::dist {

// One tensor as the plan sees it. layer: -1 for global tensors (embed, head, norm, hc_head),
// else the layer index (MTP layers after the main ones). expert: routed expert index or -1.
struct PlanItem {
  std::string name;
  uint64_t n_bytes = 0;
  int layer = -1;
  int expert = -1;
};

// The grouping key: strips the last suffix among .weight/.scale/.bias/.weight_scale/
// .weight_scale_2/.input_scale, then a trailing .w1/.w2/.w3. "layers.3.ffn.experts.7.w2.scale"
// -> "layers.3.ffn.experts.7"; "layers.3.attn.wq_a.weight" -> "layers.3.attn.wq_a".
std::string owner_key(const std::string& name);

struct PlanBalance {
  uint64_t total_bytes = 0;
  uint64_t max_rank_bytes = 0;
  uint64_t min_rank_bytes = 0;
  double mean_rank_bytes = 0.0;
  double imbalance = 0.0;  // max_rank_bytes / mean - 1 (0 = perfect); 0 when total is 0
  // Over layers >= 0 with bytes: the worst max/mean - 1 of one layer's bytes across ranks
  // (-1 when there is no such layer; global tensors are excluded: a few big items).
  int worst_layer = -1;
  double worst_layer_imbalance = 0.0;
  uint64_t max_group_bytes = 0;  // largest indivisible group: the granularity of balance
  size_t n_groups = 0;
};

class OwnershipPlan {
 public:
  int world_size() const { return world_size_; }
  // All items, sorted by name (the plan's canonical order).
  const std::vector<PlanItem>& items() const { return items_; }
  int owner_of_item(size_t index) const { return owners_[index]; }
  // Throws qf::Error naming the tensor if it is not in the plan.
  int owner_of(const std::string& name) const;
  bool contains(const std::string& name) const;
  // The items rank `rank` owns, sorted by name (indices into items()).
  std::vector<size_t> items_of(int rank) const;
  uint64_t bytes_of(int rank) const;
  // Bytes `rank` owns in `layer` (0 for a layer with no items).
  uint64_t bytes_of(int rank, int layer) const;
  // Distinct layers, ascending (-1 first when there are global items).
  const std::vector<int>& layers() const { return layers_; }
  PlanBalance balance() const;
  // FNV-1a over (world size, item names, bytes, owners): ranks can all-gather it to prove they
  // built the same plan.
  uint64_t fingerprint() const;

 private:
  friend OwnershipPlan build_ownership_plan(const std::vector<PlanItem>& items, int world_size);
  size_t layer_slot(int layer) const;  // index into layers_, or layers_.size() if absent

  int world_size_ = 1;
  std::vector<PlanItem> items_;  // sorted by name
  std::vector<int> owners_;      // parallel to items_
  std::vector<int> layers_;
  // [layer slot][rank] bytes, and [rank] totals.
  std::vector<std::vector<uint64_t>> layer_bytes_;
  std::vector<uint64_t> rank_bytes_;
  uint64_t max_group_bytes_ = 0;
  size_t n_groups_ = 0;
};

// Builds the plan. Throws qf::Error for world_size < 1, duplicate names, an empty name, or one
// owner group whose items disagree on the layer. Any world size >= 1 works, including more ranks
// than items (the extra ranks own nothing).
OwnershipPlan build_ownership_plan(const std::vector<PlanItem>& items, int world_size);

}  // namespace qf::dist
