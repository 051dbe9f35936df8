// The CUDA calibration engine (calibration_engine.hpp): device-resident hidden states, layer
// weights streamed in source precision with a one-layer read-ahead (over MPI, or broadcast on
// the device by NCCL into the layer_arena.hpp layout), gpu::GpuDecoderLayer. Owns the
// calibration side of it (which bytes, which rank, which collective, the statistics); the device
// staging and uploads are gpu/layer_upload.hpp's.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <future>
#include <map>
#include <set>

#include "calibrate/calibration_engine.hpp"
#include "calibrate/layer_arena.hpp"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "core/elapsed.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "core/strings.hpp"
#include "dist/collective_step.hpp"
#include "dist/nccl_communicator.hpp"
#include "gpu/device_layer.hpp"
#include "gpu/gpu_decoder_layer.hpp"
#include "gpu/hidden_states.hpp"
#include "gpu/layer_upload.hpp"
#include "numerics/act_hist_bins.hpp"
#include "source/native_weight_loader.hpp"

namespace qf::pipeline {
namespace {

gpu::LinearStorage storage_of(const NativeTensor& t) {
  switch (t.kind) {
    case StorageKind::kFp8Block:
      return gpu::LinearStorage::kFp8Block;
    case StorageKind::kFp4Block:
      return gpu::LinearStorage::kFp4Block;
    case StorageKind::kPlain:
      return gpu::LinearStorage::kBf16;  // layer_arena_layout checked BF16 2-D
  }
  QF_FAIL("tensor", t.name, ": unknown storage kind");
}

// A linear's source bytes kept on the host after the upload (for the layer-bytes hook).
struct HostLinear {
  std::vector<uint8_t> bytes;  // stored bytes, then the scale's (read_source_bytes' layout)
  uint64_t n_stored = 0;
};
// Every arena linear of the layer (MPI exchange) or only this rank's own (NCCL exchange: the
// others never reach the host). The hook asks for this rank's targets, their `.scale`s and
// their w1/w3 siblings: one owner group (ownership_plan.hpp), so owned in both cases.
struct HostLayer {
  std::map<std::string, HostLinear> by_weight;         // checkpoint weight name -> bytes
  std::map<std::string, std::string> weight_of_scale;  // `.scale` name -> its weight's name
  std::vector<uint8_t> bytes_of(const std::string& name) const {
    const auto s = weight_of_scale.find(name);
    if (s != weight_of_scale.end()) {
      const HostLinear& h = by_weight.at(s->second);
      return {h.bytes.begin() + static_cast<int64_t>(h.n_stored), h.bytes.end()};
    }
    const auto it = by_weight.find(name);
    QF_CHECK(it != by_weight.end(), "tensor", name,
             "is not a linear of the exchanged layer held on this rank's host (with --comm "
             "nccl only the linears this rank owns are)");
    return {it->second.bytes.begin(),
            it->second.bytes.begin() + static_cast<int64_t>(it->second.n_stored)};
  }
};

// A small tensor (norm, bias, router, ape, mHC, tid2eid) decoded to FP32 on the host and
// uploaded.
void upload_small(gpu::DeviceLayerWeights& w, const std::string& key, const NativeTensor& t,
                  const std::vector<uint8_t>& bytes) {
  const std::vector<float> values =
      decode_source_tensor(t, bytes.data(), bytes.size(), logical_shape(t));
  if (ends_with(key, "gate.tid2eid")) {
    gpu::upload_tid2eid(w, std::vector<int32_t>(values.begin(), values.end()), t.name);
    return;
  }
  gpu::upload_small_tensor(w, key, logical_shape(t), values, t.name);
}

// Receives layer `owned.layer` through the exchange (collective): small tensors are uploaded as
// they arrive; the arena linears' bytes this rank holds (all of them with the MPI exchange, its
// own with NCCL: device_exchange) are returned by checkpoint name. A sink error is kept in
// *sink_error, to be raised on every rank: the host broadcasts must go on meanwhile.
std::map<std::string, std::vector<uint8_t>> receive_layer(
    LayerWeightExchange& exchange, OwnedLayerBytes owned, const ArenaLayout& layout,
    bool device_exchange, gpu::DeviceLayerWeights& w, std::exception_ptr* sink_error) {
  const std::string prefix = "layers." + std::to_string(owned.layer) + ".";
  std::set<std::string> in_arena, on_device;  // on_device (NCCL): not broadcast on the host
  for (const ArenaSlot& s : layout.slots) {
    in_arena.insert(s.tensor->name);
    if (device_exchange) on_device.insert(s.tensor->name);
  }
  std::map<std::string, std::vector<uint8_t>> linear_bytes;
  exchange.fetch_layer_source(
      std::move(owned),
      [&](const std::string& forward_name, const NativeTensor& t, std::vector<uint8_t> bytes) {
        if (*sink_error) return;
        try {
          if (in_arena.count(t.name)) {
            linear_bytes[t.name] = std::move(bytes);
            return;
          }
          QF_CHECK(forward_name.compare(0, prefix.size(), prefix) == 0, "tensor", forward_name,
                   "is not in layer", w.layer);
          upload_small(w, forward_name.substr(prefix.size()), t, bytes);
        } catch (...) {
          *sink_error = std::current_exception();
        }
      },
      device_exchange ? &on_device : nullptr);
  return linear_bytes;
}

// Stages the arena bytes this rank fills from its host (the whole arena with MPI, its own runs
// with NCCL) in read_source_bytes' layout (the stored bytes, then the block kinds' scale bytes)
// and enqueues their upload into w.arena.
void stage_arena(const ArenaLayout& layout,
                 const std::map<std::string, std::vector<uint8_t>>& linear_bytes,
                 bool device_exchange, int rank, gpu::ArenaStaging& staging,
                 gpu::DeviceLayerWeights& w, cudaStream_t stream, const std::string& what) {
  std::vector<gpu::ArenaByteRange> local;
  if (!device_exchange) {
    if (layout.n_bytes > 0) local.push_back({0, layout.n_bytes});
  } else {
    for (const ArenaRun& run : layout.runs) {
      if (run.owner == rank) local.push_back({run.begin, run.end});
    }
  }
  staging.begin(w, layout.n_bytes, std::move(local));
  for (const ArenaSlot& s : layout.slots) {
    if (device_exchange && s.owner != rank) continue;
    const auto it = linear_bytes.find(s.tensor->name);
    QF_CHECK(it != linear_bytes.end(), what + ": no bytes of", s.tensor->name, "on rank", rank);
    const std::vector<uint8_t>& bytes = it->second;
    QF_CHECK(bytes.size() == s.n_stored + s.n_scale, "tensor", s.tensor->name, "has", bytes.size(),
             "source bytes, expected", s.n_stored + s.n_scale);
    staging.place(s.offset, bytes.data(), s.n_stored, what + ": " + s.tensor->name);
    if (s.n_scale) {
      staging.place(s.scale_offset, bytes.data() + s.n_stored, s.n_scale,
                    what + ": " + s.tensor->name);
    }
  }
  staging.upload(w, stream, what);
}

// Binds every arena linear of w, and moves the linears' host bytes this rank holds into *host
// (for the layer-bytes hook).
void bind_linears(const ArenaLayout& layout, gpu::DeviceLayerWeights& w,
                  std::map<std::string, std::vector<uint8_t>>& linear_bytes, HostLayer* host) {
  host->by_weight.clear();
  host->weight_of_scale.clear();
  for (const ArenaSlot& s : layout.slots) {
    gpu::ArenaLinear a;
    a.storage = storage_of(*s.tensor);
    a.scale_dtype = s.tensor->scale.dtype;
    a.n_rows = s.tensor->n_rows;
    a.n_cols = s.tensor->n_cols;
    a.offset = s.offset;
    a.n_stored = s.n_stored;
    a.scale_offset = s.scale_offset;
    a.n_scale = s.n_scale;
    gpu::bind_arena_linear(w, s.key, a);
    auto it = linear_bytes.find(s.tensor->name);
    if (it == linear_bytes.end()) continue;
    if (!s.tensor->scale_name.empty()) host->weight_of_scale[s.tensor->scale_name] = s.tensor->name;
    host->by_weight[s.tensor->name] = HostLinear{std::move(it->second), s.n_stored};
  }
}

// Exchanges layer `owned.layer` (collective) into device weights laid out as `layout`. Small
// tensors: broadcast over the exchange's host communicator, decoded, uploaded. Arena linears:
//   - MPI (device_comm null): broadcast on the host too, staged whole through pinned memory,
//     one H2D copy;
//   - NCCL: this rank stages and uploads only its own runs, then one grouped broadcast per
//     layer fills every rank's arena from the owners, device to device.
// Everything that may fail on one rank runs inside run_on_all_ranks steps BEFORE the device
// collective, so no rank enters NCCL while another has stopped. The linears' host bytes this
// rank holds are moved into *host.
gpu::DeviceLayerWeights upload_layer(LayerWeightExchange& exchange, OwnedLayerBytes owned,
                                     const ArenaLayout& layout, dist::Communicator* device_comm,
                                     gpu::ArenaStaging& staging, cudaStream_t stream,
                                     HostLayer* host) {
  static std::atomic<uint64_t> next_id{1};
  gpu::DeviceLayerWeights w;
  w.layer = owned.layer;
  w.id = next_id++;
  dist::Communicator& comm = exchange.comm();
  const std::string what = "layer " + std::to_string(owned.layer) + " weights";
  std::exception_ptr sink_error;
  std::map<std::string, std::vector<uint8_t>> linear_bytes =
      receive_layer(exchange, std::move(owned), layout, device_comm != nullptr, w, &sink_error);
  run_on_all_ranks(comm, (what + " upload").c_str(), [&] {
    QF_NVTX_RANGE(what + " upload");
    if (sink_error) std::rethrow_exception(sink_error);
    stage_arena(layout, linear_bytes, device_comm != nullptr, comm.rank(), staging, w, stream,
                what);
  });
  if (device_comm) {
    // Every rank got here (the step above succeeded everywhere): safe to enter NCCL. Ordered
    // after the uploads on `stream` and before the forward by the communicator's events.
    QF_NVTX_RANGE(what + " broadcast");
    std::vector<dist::Communicator::BroadcastPart> parts;
    for (const ArenaRun& run : layout.runs) {
      parts.push_back({w.arena.get() + run.begin, run.end - run.begin, run.owner});
    }
    device_comm->broadcast_many(parts, what.c_str());
  }
  // The staging buffer is reused by the next layer: wait for the copies (and broadcasts).
  run_on_all_ranks(comm, what.c_str(),
                   [&] { QF_CUDA_CHECK(cudaStreamSynchronize(stream), what, "upload"); });
  bind_linears(layout, w, linear_bytes, host);
  return w;
}

class CudaCalibrationEngine final : public CalibrationEngine {
 public:
  CudaCalibrationEngine(const model::ModelConfig& config, LayerWeightExchange& exchange,
                        InitialHiddenStates initial, std::vector<int64_t> token_ids, int seq_len,
                        int batch_seqs, dist::Communicator* device_comm,
                        gpu::DecoderLayerPolicy layer_policy, LayerReadAhead read_ahead)
      : config_(config),
        exchange_(exchange),
        layer_(config, stream_.get(), layer_policy),
        seq_len_(seq_len),
        batch_seqs_(batch_seqs),
        n_local_tokens_(static_cast<int64_t>(token_ids.size())),
        reads_(read_ahead.has_reader() ? std::move(read_ahead)
                                       : LayerReadAhead(owned_layer_reader(exchange))) {
    QF_CHECK(seq_len > 0 && batch_seqs > 0, "CUDA calibration: bad batch", batch_seqs, "x",
             seq_len);
    if (device_comm) {
      auto* nccl = dynamic_cast<dist::NcclCommunicator*>(device_comm);
      QF_CHECK(nccl, "CUDA calibration: the device communicator must be NCCL, got",
               dist::backend_name(device_comm->backend()));
      int device = -1;
      QF_CUDA_CHECK(cudaGetDevice(&device), "cudaGetDevice");
      QF_CHECK(nccl->device() == device, "CUDA calibration runs on device", device,
               "but its NCCL communicator on device", nccl->device());
      QF_CHECK(device_comm->world_size() == exchange.comm().world_size() &&
                   device_comm->rank() == exchange.comm().rank(),
               "CUDA calibration: NCCL rank", device_comm->rank(), "/", device_comm->world_size(),
               "differs from MPI rank", exchange.comm().rank(), "/", exchange.comm().world_size());
      nccl->set_compute_stream(stream_.get());
      nccl_ = nccl;
    }
    const int64_t token_floats = int64_t{config.hc_mult} * config.hidden_size;
    const bool embed_here = !initial.embed_bf16.empty();
    QF_CHECK(
        embed_here || static_cast<int64_t>(initial.hidden.size()) == n_local_tokens_ * token_floats,
        "CUDA calibration: hidden states do not match the token count");
    QF_CHECK(!embed_here ||
                 initial.embed_bf16.size() == uint64_t(config.vocab_size) * config.hidden_size * 2,
             "CUDA calibration: the BF16 embedding table has", initial.embed_bf16.size(),
             "bytes, expected", config.vocab_size, "x", config.hidden_size, "x 2");
    if (n_local_tokens_ > 0) {
      tokens_dev_.grow(token_ids.size());
      QF_CUDA_CHECK(cudaMemcpy(tokens_dev_.get(), token_ids.data(), token_ids.size() * 8,
                               cudaMemcpyHostToDevice),
                    "token ids upload");
    }
    if (embed_here) {
      hidden_ = std::make_unique<gpu::DeviceHiddenStates>(
          reinterpret_cast<const uint16_t*>(initial.embed_bf16.data()), config.vocab_size,
          config.hidden_size, config.hc_mult, tokens_dev_.get(), n_local_tokens_);
    } else {
      hidden_ = std::make_unique<gpu::DeviceHiddenStates>(std::move(initial.hidden), token_floats);
    }
  }

  ~CudaCalibrationEngine() override {
    if (nccl_) nccl_->set_compute_stream(nullptr);  // stream_ dies with this engine
  }

  void fetch_layer(int layer, const std::vector<std::string>& linear_names) override {
    QF_NVTX_RANGE("layer " + std::to_string(layer) + " fetch");
    const auto start = std::chrono::steady_clock::now();
    weights_.reset();  // one layer of weights on the GPU at a time
    OwnedLayerBytes owned = read_owned(layer);
    times_.read_wait_seconds += seconds_since(start);
    const ArenaLayout layout = layer_arena_layout(
        layer, model::layer_weight_names(config_, layer), exchange_.tensors(),
        config_.tie_word_embeddings, arena_weight_names(linear_names), exchange_.plan());
    weights_ = std::make_unique<gpu::DeviceLayerWeights>(upload_layer(
        exchange_, std::move(owned), layout, nccl_, staging_, stream_.get(), &host_layer_));
    if (layer + 1 < config_.num_hidden_layers) reads_.queue(layer + 1);  // no-op if queued
    times_.weights_seconds += seconds_since(start);
  }

  LayerStatistics compute_layer(int layer, const std::vector<std::string>& linear_names) override {
    QF_CHECK(weights_ && weights_->layer == layer, "compute_layer(", layer,
             "): the layer's weights were not fetched");
    // The hook (NVFP4 of this rank's targets from the host copy, on its own streams) runs
    // beside the forward and is joined before returning, so its errors still surface inside
    // this step; if the forward throws, the future's destructor waits for the hook first.
    std::future<void> hook_done;
    if (hook_) {
      hook_done = std::async(std::launch::async, [this, layer, host = std::move(host_layer_)] {
        hook_(layer, [&host](const std::string& name) { return host.bytes_of(name); });
      });
    }
    host_layer_ = HostLayer{};
    const auto compute_start = std::chrono::steady_clock::now();
    LayerStatistics stats;
    {
      QF_NVTX_RANGE("layer " + std::to_string(layer) + " forward");
      stats = forward_samples(layer, linear_names);
    }
    size_t free_bytes = 0, total_bytes = 0;
    QF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    times_.peak_device_bytes =
        std::max<uint64_t>(times_.peak_device_bytes, total_bytes - free_bytes);
    times_.compute_seconds += seconds_since(compute_start);
    layer_.report_profile("layer " + std::to_string(layer) + " forward");
    if (hook_done.valid()) {
      QF_NVTX_RANGE("layer " + std::to_string(layer) + " hook wait");
      const auto hook_wait_start = std::chrono::steady_clock::now();
      hook_done.get();
      times_.hook_seconds += seconds_since(hook_wait_start);
    }
    return stats;
  }

  bool amax_on_device() const override { return nccl_ != nullptr; }

  std::vector<float> reduce_amax(int layer, const std::vector<std::string>& linear_names) override {
    QF_CHECK(nccl_, "reduce_amax: this engine has no device communicator");
    const int n_slots = gpu::ObservationSlots::count(config_.n_routed_experts);
    const std::string what = "layer " + std::to_string(layer) + " input amax";
    QF_NVTX_RANGE(what + " all-reduce");
    // The slots hold non-negative float bit patterns (every NaN made positive, forward_ops.cuh),
    // which order as int32 exactly as the floats do: MAX of the bits is the float MAX, and a
    // NaN/Inf on any rank survives to the check below on every rank.
    nccl_->allreduce(amax_dev_.get(), n_slots, dist::ElemType::kI32, dist::ReduceOp::kMax,
                     what.c_str());
    std::vector<float> amax;
    run_on_all_ranks(exchange_.comm(), what.c_str(), [&] {
      std::vector<uint32_t> bits(n_slots);
      QF_CUDA_CHECK(cudaMemcpyAsync(bits.data(), amax_dev_.get(), n_slots * 4,
                                    cudaMemcpyDeviceToHost, stream_.get()),
                    what, "download");
      QF_CUDA_CHECK(cudaStreamSynchronize(stream_.get()), what, "download");
      amax = amax_of(bits, linear_names, layer);
      for (size_t i = 0; i < amax.size(); ++i) {
        QF_CHECK(std::isfinite(amax[i]), "layer " + std::to_string(layer) + ": input amax of",
                 linear_names[i], "is", amax[i], "(NaN/Inf activations)");
      }
    });
    return amax;
  }

  EngineTimes times() const override { return times_; }
  void set_layer_bytes_hook(LayerBytesHook hook) override { hook_ = std::move(hook); }
  void set_record_histograms(bool on) override { record_histograms_ = on; }

 private:
  // This rank's bytes of `layer`: the read-ahead's if it read this layer, else read now.
  OwnedLayerBytes read_owned(int layer) {
    QF_NVTX_RANGE("layer " + std::to_string(layer) + " read wait");
    return reads_.take(layer);
  }

  // The fetched layer over this rank's samples, batch by batch (hidden states updated in place),
  // and its statistics: the amax (unless they stay on the device for reduce_amax), the expert
  // token counts and, when recording, the histograms.
  LayerStatistics forward_samples(int layer, const std::vector<std::string>& linear_names) {
    const int n_exp = config_.n_routed_experts;
    const int n_slots = gpu::ObservationSlots::count(n_exp);
    amax_dev_.grow(n_slots);
    QF_CUDA_CHECK(cudaMemsetAsync(amax_dev_.get(), 0, n_slots * 4, stream_.get()), "amax clear");
    const int64_t n_hist = record_histograms_ ? int64_t{n_slots} * numerics::kActHistBins : 0;
    if (record_histograms_) {
      hist_dev_.grow(n_hist);
      QF_CUDA_CHECK(cudaMemsetAsync(hist_dev_.get(), 0, n_hist * 8, stream_.get()),
                    "histogram clear");
    }
    LayerStatistics stats;
    stats.expert_tokens.assign(n_exp, 0);
    const int64_t n_samples = n_local_tokens_ / seq_len_;
    for (int64_t b = 0; b < n_samples; b += batch_seqs_) {
      const int n_seqs = static_cast<int>(std::min<int64_t>(batch_seqs_, n_samples - b));
      forward_batch(layer, b * seq_len_, n_seqs, &stats.expert_tokens);
    }
    std::vector<uint32_t> bits(n_slots);
    if (!nccl_) {  // NCCL: they stay on the device for reduce_amax
      QF_CUDA_CHECK(cudaMemcpyAsync(bits.data(), amax_dev_.get(), n_slots * 4,
                                    cudaMemcpyDeviceToHost, stream_.get()),
                    "amax download");
    }
    QF_CUDA_CHECK(cudaStreamSynchronize(stream_.get()), "layer", layer, "forward");
    if (!nccl_) stats.amax = amax_of(bits, linear_names, layer);
    if (record_histograms_) stats.hist = download_histograms(layer, linear_names, n_hist);
    return stats;
  }

  // One batch of n_seqs samples starting at token `first` through the layer.
  void forward_batch(int layer, int64_t first, int n_seqs, std::vector<int64_t>* expert_tokens) {
    const int64_t n_tokens = int64_t{n_seqs} * seq_len_;
    float* hidden = hidden_->batch_in(first, n_tokens, stream_.get());
    layer_.forward(*weights_, layer, hidden, tokens_dev_.get() + first, n_seqs, seq_len_,
                   amax_dev_.get(), expert_tokens, record_histograms_ ? hist_dev_.get() : nullptr);
    hidden_->batch_out(first, n_tokens, stream_.get());
    times_.n_tokens += n_tokens;
  }

  // The histograms of `linear_names` (calib order, [n linears, kActHistBins]) from the slots.
  std::vector<int64_t> download_histograms(int layer, const std::vector<std::string>& linear_names,
                                           int64_t n_hist) {
    std::vector<int64_t> slots(static_cast<size_t>(n_hist));
    QF_CUDA_CHECK(cudaMemcpyAsync(slots.data(), hist_dev_.get(), n_hist * 8, cudaMemcpyDeviceToHost,
                                  stream_.get()),
                  "histogram download");
    QF_CUDA_CHECK(cudaStreamSynchronize(stream_.get()), "layer", layer, "histogram download");
    constexpr int64_t kBins = numerics::kActHistBins;
    std::vector<int64_t> hist(linear_names.size() * kBins);
    for (size_t i = 0; i < linear_names.size(); ++i) {
      const int slot = gpu::ObservationSlots::of(linear_names[i], layer, config_.n_routed_experts);
      std::copy(slots.begin() + slot * kBins, slots.begin() + (slot + 1) * kBins,
                hist.begin() + static_cast<int64_t>(i) * kBins);
    }
    return hist;
  }

  // The amax of `linear_names` (calib order) from the downloaded slot bits.
  std::vector<float> amax_of(const std::vector<uint32_t>& bits,
                             const std::vector<std::string>& linear_names, int layer) const {
    std::vector<float> amax(linear_names.size());
    for (size_t i = 0; i < linear_names.size(); ++i) {
      const int slot = gpu::ObservationSlots::of(linear_names[i], layer, config_.n_routed_experts);
      std::memcpy(&amax[i], &bits[slot], 4);
    }
    return amax;
  }

  const model::ModelConfig& config_;
  LayerWeightExchange& exchange_;
  dist::NcclCommunicator* nccl_ = nullptr;  // --comm nccl: weights and amax on the device
  CudaStream stream_;
  gpu::GpuDecoderLayer layer_;
  int seq_len_, batch_seqs_;
  int64_t n_local_tokens_;
  LayerReadAhead reads_;  // layer l+1's owned bytes while l computes (the setup's first ones)
  std::unique_ptr<gpu::DeviceHiddenStates> hidden_;  // this rank's samples, between layers
  DeviceBuffer<int64_t> tokens_dev_;
  DeviceBuffer<uint32_t> amax_dev_;
  bool record_histograms_ = false;
  DeviceBuffer<int64_t> hist_dev_;  // [ObservationSlots::count, kActHistBins] when recording
  gpu::ArenaStaging staging_;
  std::unique_ptr<gpu::DeviceLayerWeights> weights_;
  HostLayer host_layer_;
  LayerBytesHook hook_;
  EngineTimes times_;
};

}  // namespace

std::unique_ptr<CalibrationEngine> make_cuda_calibration_engine(
    const model::ModelConfig& config, LayerWeightExchange& exchange, InitialHiddenStates initial,
    std::vector<int64_t> token_ids, int seq_len, int batch_seqs, dist::Communicator* device_comm,
    gpu::DecoderLayerPolicy layer_policy, LayerReadAhead read_ahead) {
  return std::make_unique<CudaCalibrationEngine>(config, exchange, std::move(initial),
                                                 std::move(token_ids), seq_len, batch_seqs,
                                                 device_comm, layer_policy, std::move(read_ahead));
}

}  // namespace qf::pipeline
