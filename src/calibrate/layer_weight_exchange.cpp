// Owners read, broadcast in source precision, every rank decodes: one layer at a time.
#include "calibrate/layer_weight_exchange.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string>
#include <tuple>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "dist/collective_step.hpp"

namespace qf::pipeline {
namespace {
// Source reads one rank keeps in flight (threads blocked in pread, not cores: independent of
// thread_count(), which a rank bound to one core would make 1).
constexpr int64_t kReadsInFlight = 8;
}  // namespace

dist::OwnershipPlan source_ownership_plan(const std::vector<NativeTensor>& tensors,
                                          int world_size) {
  std::vector<dist::PlanItem> items;
  items.reserve(tensors.size());
  for (const auto& t : tensors) items.push_back({t.name, source_n_bytes(t), t.layer, t.expert});
  return dist::build_ownership_plan(items, world_size);
}

LayerWeightExchange::LayerWeightExchange(const formats::CheckpointDir& source,
                                         const model::ModelConfig& config, dist::Communicator& comm,
                                         const dist::OwnershipPlan& plan)
    : source_(source),
      config_(config),
      comm_(comm),
      plan_(plan),
      tensors_(index_native_tensors(classify_native_tensors(source))) {
  QF_CHECK(!comm.device_buffers(), "calibration (CPU backend) needs a host-buffer communicator,",
           "got", dist::backend_name(comm.backend()));
  QF_CHECK(plan.world_size() == comm.world_size(), "ownership plan for", plan.world_size(),
           "ranks used with", comm.world_size(), "ranks");
}

std::map<std::string, std::vector<uint8_t>> LayerWeightExchange::read_owned(
    const std::vector<std::string>& names, uint64_t* n_bytes) const {
  const bool tie = config_.tie_word_embeddings;
  // Read in file order (shard, offset), not request order: sequential on disk.
  std::vector<std::tuple<std::string, uint64_t, const NativeTensor*>> to_read;
  std::set<std::string> seen;
  for (const auto& name : names) {
    const std::string native = native_weight_name(name, tie);
    const auto it = tensors_.find(native);
    QF_CHECK(it != tensors_.end(), source_.dir() + ": no tensor", native, "(needed as", name, ")");
    if (plan_.owner_of(native) != comm_.rank() || !seen.insert(native).second) continue;
    to_read.emplace_back(it->second.shard, source_.tensor(native).begin, &it->second);
  }
  std::sort(to_read.begin(), to_read.end(), [](const auto& a, const auto& b) {
    return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(b), std::get<1>(b));
  });
  // Several reads in flight, taken in file order: one sequential pread stream leaves an NVMe
  // drive at a fraction of its bandwidth (issue 19: 0.63 GB/s against `cat`'s 1.5 GB/s).
  std::vector<std::vector<uint8_t>> bytes(to_read.size());
  const auto n_items = static_cast<int64_t>(to_read.size());
  if (n_items > 0) {
    parallel_for_each(n_items, std::min(n_items, kReadsInFlight), [&](int64_t, int64_t i) {
      bytes[size_t(i)] = read_source_bytes(source_, *std::get<2>(to_read[size_t(i)]));
    });
  }
  std::map<std::string, std::vector<uint8_t>> owned;
  for (size_t i = 0; i < to_read.size(); ++i) {
    *n_bytes += bytes[i].size();
    owned[std::get<2>(to_read[i])->name] = std::move(bytes[i]);
  }
  return owned;
}

std::vector<uint8_t> LayerWeightExchange::broadcast_one(
    const std::string& forward_name, const std::string& what,
    std::map<std::string, std::vector<uint8_t>>& owned) {
  const std::string native = native_weight_name(forward_name, config_.tie_word_embeddings);
  const NativeTensor& t = tensors_.at(native);
  const int owner = plan_.owner_of(native);
  std::vector<uint8_t> bytes;
  if (owner == comm_.rank()) {
    const auto it = owned.find(native);
    QF_CHECK(it != owned.end(), "tensor", native, "asked for twice or not announced");
    bytes = std::move(it->second);
    owned.erase(it);
  } else {
    bytes.resize(source_n_bytes(t));
  }
  const std::string label = what + " " + native;
  comm_.broadcast(bytes.data(), bytes.size(), owner, label.c_str());
  stats_.n_bytes_broadcast += bytes.size();
  return bytes;
}

void LayerWeightExchange::exchange_source(const std::vector<std::string>& names, const char* what,
                                          const std::function<void(const BroadcastBytes&)>& use) {
  const auto start = std::chrono::steady_clock::now();
  // Step 1: read what this rank owns (every lookup error is the same on every rank).
  std::map<std::string, std::vector<uint8_t>> owned;
  dist::run_on_all_ranks(comm_, what, [&] { owned = read_owned(names, &stats_.n_bytes_read); });
  // Step 2: broadcast in the caller's request order.
  use([&](const std::string& name) { return broadcast_one(name, what, owned); });
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void LayerWeightExchange::exchange(const std::vector<std::string>& names, const char* what,
                                   const std::function<void(const model::WeightLoader&)>& load) {
  exchange_source(names, what, [&](const BroadcastBytes& bytes_of) {
    load([&](const std::string& name, std::vector<int64_t> expected_shape) {
      const NativeTensor& t = tensors_.at(native_weight_name(name, config_.tie_word_embeddings));
      const std::vector<uint8_t> bytes = bytes_of(name);
      return decode_source_tensor(t, bytes.data(), bytes.size(), expected_shape);
    });
  });
}

OwnedLayerBytes LayerWeightExchange::read_owned_layer(int layer) const {
  OwnedLayerBytes out;
  out.layer = layer;
  const auto start = std::chrono::steady_clock::now();
  try {
    QF_CHECK(layer >= 0 && layer < config_.num_hidden_layers, "read_owned_layer: layer", layer,
             "is not a regular layer");
    out.by_native = read_owned(model::layer_weight_names(config_, layer), &out.n_bytes);
  } catch (...) {
    out.error = std::current_exception();
  }
  out.read_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

void LayerWeightExchange::fetch_layer_source(OwnedLayerBytes owned, const SourceBytesSink& sink,
                                             const std::set<std::string>* device_exchanged) {
  const auto start = std::chrono::steady_clock::now();
  const std::string what = "layer " + std::to_string(owned.layer) + " weights";
  dist::run_on_all_ranks(comm_, what.c_str(), [&] {
    if (owned.error) std::rethrow_exception(owned.error);
  });
  stats_.n_bytes_read += owned.n_bytes;
  for (const auto& name : model::layer_weight_names(config_, owned.layer)) {
    const NativeTensor& t = tensors_.at(native_weight_name(name, config_.tie_word_embeddings));
    if (device_exchanged && device_exchanged->count(t.name)) {
      if (plan_.owner_of(t.name) != comm_.rank()) continue;
      auto it = owned.by_native.find(t.name);
      QF_CHECK(it != owned.by_native.end(), "tensor", t.name, "asked for twice or not announced");
      std::vector<uint8_t> bytes = std::move(it->second);
      owned.by_native.erase(it);
      sink(name, t, std::move(bytes));
      continue;
    }
    sink(name, t, broadcast_one(name, what, owned.by_native));
  }
  stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

model::LayerWeights LayerWeightExchange::fetch_layer(int layer) {
  QF_CHECK(layer >= 0 && layer < config_.num_hidden_layers, "fetch_layer: layer", layer,
           "is not a regular layer (0 ..", config_.num_hidden_layers - 1, ")");
  const std::vector<std::string> names = model::layer_weight_names(config_, layer);
  const std::string what = "layer " + std::to_string(layer) + " weights";
  model::LayerWeights weights;
  exchange(names, what.c_str(), [&](const model::WeightLoader& loader) {
    weights = model::load_layer_weights(config_, layer, loader);
  });
  return weights;
}

LayerWeightExchange::SourceBytes LayerWeightExchange::fetch_embedding_source() {
  const std::string name = "embed_tokens.weight";
  SourceBytes out;
  // Looked up after the exchange, whose first step names a missing tensor on every rank.
  exchange_source({name}, "embedding weights",
                  [&](const BroadcastBytes& bytes_of) { out.bytes = bytes_of(name); });
  out.tensor = &tensors_.at(native_weight_name(name, config_.tie_word_embeddings));
  return out;
}

}  // namespace qf::pipeline
