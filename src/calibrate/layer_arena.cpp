// layer_arena_layout: slots in request order, aligned, grouped into owner runs.
#include "calibrate/layer_arena.hpp"

#include "core/check.hpp"
#include "core/strings.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {
namespace {

uint64_t aligned(uint64_t n) { return (n + kArenaAlign - 1) / kArenaAlign * kArenaAlign; }

}  // namespace

std::set<std::string> arena_weight_names(const std::vector<std::string>& linear_names) {
  std::set<std::string> out;
  for (const auto& n : linear_names) {
    if (!ends_with(n, ".ffn.gate")) out.insert(n + model::kWeightSuffix);
  }
  return out;
}

ArenaLayout layer_arena_layout(int layer, const std::vector<std::string>& forward_names,
                               const NativeTensorIndex& tensors, bool tie_word_embeddings,
                               const std::set<std::string>& arena_weights,
                               const dist::OwnershipPlan& plan) {
  ArenaLayout out;
  out.layer = layer;
  const std::string prefix = "layers." + std::to_string(layer) + ".";
  std::set<std::string> placed;
  uint64_t total = 0;
  for (const auto& forward_name : forward_names) {
    const std::string native = native_weight_name(forward_name, tie_word_embeddings);
    if (!arena_weights.count(native)) continue;
    QF_CHECK(starts_with(forward_name, prefix), "tensor", forward_name, "is not in layer", layer);
    QF_CHECK(placed.insert(native).second, "layer", layer, ": the forward asks for", native,
             "twice");
    const auto it = tensors.find(native);
    QF_CHECK(it != tensors.end(), "layer", layer, ": no source tensor", native);
    const NativeTensor& t = it->second;
    QF_CHECK(t.kind != StorageKind::kPlain ||
                 (t.stored.dtype == DType::kBF16 && t.stored.shape.size() == 2),
             "tensor", t.name, "is", dtype_name(t.stored.dtype),
             "; the CUDA forward takes linear weights in FP8, FP4 or BF16");
    ArenaSlot slot;
    slot.key = forward_name.substr(prefix.size());
    slot.tensor = &t;
    slot.owner = plan.owner_of(native);
    slot.offset = total;
    slot.n_stored = t.stored.n_bytes();
    total = aligned(total + slot.n_stored);
    if (t.kind != StorageKind::kPlain) {
      slot.scale_offset = total;
      slot.n_scale = t.scale.n_bytes();
      total = aligned(total + slot.n_scale);
    }
    out.slots.push_back(std::move(slot));
  }
  for (const auto& name : arena_weights) {
    QF_CHECK(placed.count(name), "layer", layer, ": linear", name,
             "is not among the weights the forward loads");
  }
  out.n_bytes = total;
  // A slot's run reaches the next slot's offset: the padding after it goes with it.
  for (size_t i = 0; i < out.slots.size(); ++i) {
    const uint64_t end = i + 1 < out.slots.size() ? out.slots[i + 1].offset : total;
    if (!out.runs.empty() && out.runs.back().owner == out.slots[i].owner) {
      out.runs.back().end = end;
    } else {
      out.runs.push_back({out.slots[i].offset, end, out.slots[i].owner});
    }
  }
  return out;
}

}  // namespace qf::pipeline
