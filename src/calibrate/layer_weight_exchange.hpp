// Layer-at-a-time weight exchange for calibration: the owners (ownership plan) of layer l's
// tensors read their source bytes and broadcast them in source precision; every rank decodes
// them to FP32 for the forward. Owns: the collective order and the read/broadcast/decode loop.
// Does not own: name mapping and decoding (native_weight_loader), the forward, the plan rule.
#pragma once
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "dist/communicator.hpp"
#include "dist/ownership_plan.hpp"
#include "formats/checkpoint_dir.hpp"
#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "source/native_weight_loader.hpp"

namespace qf::pipeline {

// The plan quantize builds over the source weights (scales folded into their weight, items
// weighted by stored + scale bytes), for callers that have no QuantizePlan (tests, tools).
dist::OwnershipPlan source_ownership_plan(const std::vector<NativeTensor>& tensors, int world_size);

struct ExchangeStats {
  uint64_t n_bytes_read = 0;       // source bytes this rank read (its owned tensors)
  uint64_t n_bytes_broadcast = 0;  // source bytes of every tensor exchanged (same on all ranks)
  double seconds = 0.0;            // reading + broadcasting + decoding, this rank
};

// The owned source bytes of one layer, read ahead of the broadcast (possibly on another thread:
// reading is not collective). A read error is kept in `error` and raised on every rank by
// fetch_layer_source, so a prefetch thread never throws across threads.
struct OwnedLayerBytes {
  int layer = -1;
  std::map<std::string, std::vector<uint8_t>> by_native;  // native name -> source bytes
  uint64_t n_bytes = 0;
  double read_seconds = 0.0;
  std::exception_ptr error;
};

// The stored bytes of a source tensor by checkpoint name (a weight or its `.scale`), from
// wherever the caller has them (files, or a layer already in memory).
using TensorBytes = std::function<std::vector<uint8_t>(const std::string& name)>;

// One exchanged tensor, in source precision: `forward_name` as model::layer_weight_names says it,
// `bytes` as read_source_bytes lays them out (stored bytes, then the `.scale` bytes).
using SourceBytesSink = std::function<void(const std::string& forward_name, const NativeTensor& t,
                                           std::vector<uint8_t> bytes)>;

// Collective: every rank calls fetch_layer / fetch_embedding_source in the same order. Each call:
//   1. every rank reads the source bytes (weight + `.scale`) of the tensors of the call it owns
//      (one run_on_all_ranks step: a read error on any rank stops every rank cleanly);
//   2. tensor by tensor, in load_layer_weights' request order (identical on every rank), the
//      owner broadcasts them (root = owner) and every rank decodes them to FP32.
// Peak memory per rank: the FP32 weights of one layer plus this rank's owned source bytes of it.
// Host buffers only: needs a communicator with device_buffers() == false (the MPI backend).
class LayerWeightExchange {
 public:
  // source, config, communicator and plan must outlive this object. The plan must contain
  // every native tensor the forward needs (the weights, not their `.scale`s).
  LayerWeightExchange(const formats::CheckpointDir& source, const model::ModelConfig& config,
                      dist::Communicator& comm, const dist::OwnershipPlan& plan);

  // FP32 weights of regular layer `layer`.
  model::LayerWeights fetch_layer(int layer);
  // The same exchange in source precision (the CUDA backend decodes on the GPU), split so that
  // reading can run ahead on a prefetch thread: read_owned_layer (not collective, thread-safe
  // against the calling thread's collectives; errors captured) then fetch_layer_source
  // (collective: raises any read error on every rank, broadcasts, calls sink per tensor in
  // layer_weight_names order).
  // device_exchanged (optional): native names the caller exchanges itself (the CUDA engine's
  // NCCL broadcast of the arena linears): not broadcast here; the sink gets each of them only
  // on its owner, with the owner's bytes.
  OwnedLayerBytes read_owned_layer(int layer) const;
  void fetch_layer_source(OwnedLayerBytes owned, const SourceBytesSink& sink,
                          const std::set<std::string>* device_exchanged = nullptr);

  // The embedding (the only model end calibration needs: the final norm, hyper-head and head
  // come after the last regular layer and are never observed), undecoded: its source bytes
  // (read by its owner, broadcast to every rank) and how the source stores them. Collective.
  struct SourceBytes {
    const NativeTensor* tensor = nullptr;
    std::vector<uint8_t> bytes;
  };
  SourceBytes fetch_embedding_source();

  const ExchangeStats& stats() const { return stats_; }
  const NativeTensorIndex& tensors() const { return tensors_; }
  const dist::OwnershipPlan& plan() const { return plan_; }
  // The host communicator of the exchange (run_on_all_ranks steps of callers).
  dist::Communicator& comm() const { return comm_; }

 private:
  // Runs steps 1-2 for the forward names `names` (what `use` will ask for): `use` gets each
  // tensor's broadcast source bytes by forward name, in its own request order.
  using BroadcastBytes = std::function<std::vector<uint8_t>(const std::string& forward_name)>;
  void exchange_source(const std::vector<std::string>& names, const char* what,
                       const std::function<void(const BroadcastBytes&)>& use);
  // exchange_source with each tensor decoded to FP32 by the loader `load` calls.
  void exchange(const std::vector<std::string>& names, const char* what,
                const std::function<void(const model::WeightLoader&)>& load);
  // Step 1 for `names`: the bytes of the tensors this rank owns (throws on a lookup/read error).
  std::map<std::string, std::vector<uint8_t>> read_owned(const std::vector<std::string>& names,
                                                         uint64_t* n_bytes) const;
  // Step 2 for one tensor: the owner's bytes (taken out of `owned`) broadcast to every rank.
  std::vector<uint8_t> broadcast_one(const std::string& forward_name, const std::string& what,
                                     std::map<std::string, std::vector<uint8_t>>& owned);

  const formats::CheckpointDir& source_;
  const model::ModelConfig& config_;
  dist::Communicator& comm_;
  const dist::OwnershipPlan& plan_;
  NativeTensorIndex tensors_;
  ExchangeStats stats_;
};

}  // namespace qf::pipeline
