// The ownership plan: owner-key grouping and per-layer greedy balancing (see the header for the
// rule and its bound). Everything iterates sorted vectors or std::map, never hash maps.
#include "dist/ownership_plan.hpp"

#include <algorithm>
#include <map>

#include "core/check.hpp"
#include "core/strings.hpp"

namespace qf::dist {
namespace {

struct Group {
  std::string key;
  int layer = -1;
  uint64_t n_bytes = 0;
  std::vector<size_t> items;  // indices into the sorted items
};

}  // namespace

std::string owner_key(const std::string& name) {
  // Longest suffixes first so ".weight_scale_2" is not read as ".weight_scale" + "_2".
  static const char* const kSuffixes[] = {".weight_scale_2", ".weight_scale", ".input_scale",
                                          ".weight",         ".scale",        ".bias"};
  std::string key = name;
  for (const char* suffix : kSuffixes) {
    if (ends_with(key, suffix) && key != suffix) {
      key = strip_suffix(key, suffix);
      break;
    }
  }
  for (const char* part : {".w1", ".w2", ".w3"}) {
    if (ends_with(key, part) && key != part) {
      key = strip_suffix(key, part);
      break;
    }
  }
  return key;
}

OwnershipPlan build_ownership_plan(const std::vector<PlanItem>& items, int world_size) {
  QF_CHECK(world_size >= 1, "ownership plan: world size", world_size, "must be >= 1");
  OwnershipPlan plan;
  plan.world_size_ = world_size;
  plan.items_ = items;
  std::sort(plan.items_.begin(), plan.items_.end(),
            [](const PlanItem& a, const PlanItem& b) { return a.name < b.name; });
  for (size_t i = 0; i < plan.items_.size(); ++i) {
    QF_CHECK(!plan.items_[i].name.empty(), "ownership plan: an item has an empty name");
    QF_CHECK(i == 0 || plan.items_[i].name != plan.items_[i - 1].name, "ownership plan: tensor",
             plan.items_[i].name, "listed twice");
  }

  // Owner groups, keyed and ordered by std::map (deterministic).
  std::map<std::string, Group> groups;
  for (size_t i = 0; i < plan.items_.size(); ++i) {
    const PlanItem& item = plan.items_[i];
    const std::string key = owner_key(item.name);
    auto [it, inserted] = groups.try_emplace(key);
    Group& group = it->second;
    if (inserted) {
      group.key = key;
      group.layer = item.layer;
    }
    QF_CHECK(group.layer == item.layer, "ownership plan: tensors of owner group", key,
             "disagree on the layer:", item.name, "is in layer", item.layer, "but the group in",
             group.layer);
    group.n_bytes += item.n_bytes;
    group.items.push_back(i);
  }

  // Layers ascending; per layer the groups in (bytes desc, key asc) order.
  std::map<int, std::vector<const Group*>> by_layer;
  for (const auto& [key, group] : groups) by_layer[group.layer].push_back(&group);
  for (const auto& [layer, layer_groups] : by_layer) plan.layers_.push_back(layer);

  plan.owners_.assign(plan.items_.size(), -1);
  plan.rank_bytes_.assign(world_size, 0);
  plan.layer_bytes_.assign(plan.layers_.size(), std::vector<uint64_t>(world_size, 0));
  plan.n_groups_ = groups.size();
  using Wide = __int128;  // exact: bytes x world size never overflows
  const Wide n_ranks = world_size;
  size_t slot = 0;
  for (auto& [layer, layer_groups] : by_layer) {
    std::sort(layer_groups.begin(), layer_groups.end(), [](const Group* a, const Group* b) {
      return a->n_bytes != b->n_bytes ? a->n_bytes > b->n_bytes : a->key < b->key;
    });
    // Credit (x R, to stay in integers): how far each rank's total is below the mean before this
    // layer, clamped to one largest group of the layer, so a layer never gives up more than that
    // to even out earlier excess.
    const Wide limit = n_ranks * static_cast<Wide>(layer_groups.front()->n_bytes);
    Wide sum_before = 0;
    for (const uint64_t n : plan.rank_bytes_) sum_before += n;
    std::vector<Wide> credit(world_size);
    for (int r = 0; r < world_size; ++r) {
      credit[r] = std::clamp(sum_before - n_ranks * plan.rank_bytes_[r], -limit, limit);
    }
    std::vector<uint64_t>& in_layer = plan.layer_bytes_[slot++];
    auto key = [&](int r) { return n_ranks * static_cast<Wide>(in_layer[r]) - credit[r]; };
    for (const Group* group : layer_groups) {
      int best = 0;
      for (int r = 1; r < world_size; ++r) {
        const Wide key_r = key(r), key_best = key(best);
        if (key_r < key_best ||
            (key_r == key_best && plan.rank_bytes_[r] < plan.rank_bytes_[best])) {
          best = r;
        }
      }
      for (const size_t i : group->items) plan.owners_[i] = best;
      in_layer[best] += group->n_bytes;
      plan.rank_bytes_[best] += group->n_bytes;
      plan.max_group_bytes_ = std::max(plan.max_group_bytes_, group->n_bytes);
    }
  }
  return plan;
}

size_t OwnershipPlan::layer_slot(int layer) const {
  const auto it = std::lower_bound(layers_.begin(), layers_.end(), layer);
  return it != layers_.end() && *it == layer ? static_cast<size_t>(it - layers_.begin())
                                             : layers_.size();
}

bool OwnershipPlan::contains(const std::string& name) const {
  const auto it =
      std::lower_bound(items_.begin(), items_.end(), name,
                       [](const PlanItem& a, const std::string& b) { return a.name < b; });
  return it != items_.end() && it->name == name;
}

int OwnershipPlan::owner_of(const std::string& name) const {
  const auto it =
      std::lower_bound(items_.begin(), items_.end(), name,
                       [](const PlanItem& a, const std::string& b) { return a.name < b; });
  QF_CHECK(it != items_.end() && it->name == name, "ownership plan: tensor", name,
           "is not in the plan (", items_.size(), "tensors)");
  return owners_[it - items_.begin()];
}

std::vector<size_t> OwnershipPlan::items_of(int rank) const {
  QF_CHECK(rank >= 0 && rank < world_size_, "ownership plan: rank", rank, "outside [0,",
           world_size_, ")");
  std::vector<size_t> out;
  for (size_t i = 0; i < items_.size(); ++i) {
    if (owners_[i] == rank) out.push_back(i);
  }
  return out;
}

uint64_t OwnershipPlan::bytes_of(int rank) const {
  QF_CHECK(rank >= 0 && rank < world_size_, "ownership plan: rank", rank, "outside [0,",
           world_size_, ")");
  return rank_bytes_[rank];
}

uint64_t OwnershipPlan::bytes_of(int rank, int layer) const {
  QF_CHECK(rank >= 0 && rank < world_size_, "ownership plan: rank", rank, "outside [0,",
           world_size_, ")");
  const size_t slot = layer_slot(layer);
  return slot < layers_.size() ? layer_bytes_[slot][rank] : 0;
}

PlanBalance OwnershipPlan::balance() const {
  PlanBalance b;
  b.max_group_bytes = max_group_bytes_;
  b.n_groups = n_groups_;
  b.min_rank_bytes = rank_bytes_.empty() ? 0 : rank_bytes_[0];
  for (const uint64_t n : rank_bytes_) {
    b.total_bytes += n;
    b.max_rank_bytes = std::max(b.max_rank_bytes, n);
    b.min_rank_bytes = std::min(b.min_rank_bytes, n);
  }
  b.mean_rank_bytes = static_cast<double>(b.total_bytes) / world_size_;
  if (b.total_bytes > 0) b.imbalance = b.max_rank_bytes / b.mean_rank_bytes - 1.0;
  for (size_t slot = 0; slot < layers_.size(); ++slot) {
    if (layers_[slot] < 0) continue;  // global tensors: a few big items, read once at the ends
    uint64_t total = 0, max_bytes = 0;
    for (const uint64_t n : layer_bytes_[slot]) {
      total += n;
      max_bytes = std::max(max_bytes, n);
    }
    if (total == 0) continue;
    const double imbalance = max_bytes / (static_cast<double>(total) / world_size_) - 1.0;
    if (b.worst_layer < 0 || imbalance > b.worst_layer_imbalance) {
      b.worst_layer_imbalance = imbalance;
      b.worst_layer = layers_[slot];
    }
  }
  return b;
}

uint64_t OwnershipPlan::fingerprint() const {
  uint64_t hash = 1469598103934665603ull;  // FNV-1a 64
  auto mix = [&hash](const void* data, size_t n_bytes) {
    const auto* bytes = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n_bytes; ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  };
  mix(&world_size_, sizeof(world_size_));
  for (size_t i = 0; i < items_.size(); ++i) {
    mix(items_[i].name.data(), items_[i].name.size() + 1);  // + the terminating NUL
    mix(&items_[i].n_bytes, sizeof(items_[i].n_bytes));
    mix(&owners_[i], sizeof(owners_[i]));
  }
  return hash;
}

}  // namespace qf::dist
