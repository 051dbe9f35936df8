// The CUDA calibration engine (calibration_engine.hpp): device-resident hidden states, layer
// weights streamed in source precision with a one-layer read-ahead, gpu::GpuDecoderLayer.
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <set>

#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "core/log.hpp"
#include "gpu/device_layer.hpp"
#include "gpu/gpu_decoder_layer.hpp"
#include "pipeline/calibration_engine.hpp"
#include "pipeline/native_weight_loader.hpp"

namespace qf::pipeline {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Linears whose bytes go to the GPU arena: every 2-D `.weight` of the layer's calib list except
// the router (it runs in FP32 from the small tensors).
std::set<std::string> arena_linears(const std::vector<std::string>& linear_names) {
  std::set<std::string> out;
  for (const auto& n : linear_names) {
    if (!ends_with(n, ".ffn.gate")) out.insert(n + ".weight");
  }
  return out;
}

constexpr uint64_t kArenaAlign = 256;
uint64_t aligned(uint64_t n) { return (n + kArenaAlign - 1) / kArenaAlign * kArenaAlign; }

// A linear's source bytes kept on the host after the upload (for the layer-bytes hook).
struct HostLinear {
  std::vector<uint8_t> bytes;  // stored bytes, then the scale's (read_source_bytes' layout)
  uint64_t n_stored = 0;
};
struct HostLayer {
  std::map<std::string, HostLinear> by_weight;      // checkpoint weight name -> bytes
  std::map<std::string, std::string> weight_of_scale;  // `.scale` name -> its weight's name
  std::vector<uint8_t> bytes_of(const std::string& name) const {
    const auto s = weight_of_scale.find(name);
    if (s != weight_of_scale.end()) {
      const HostLinear& h = by_weight.at(s->second);
      return {h.bytes.begin() + static_cast<int64_t>(h.n_stored), h.bytes.end()};
    }
    const auto it = by_weight.find(name);
    QF_CHECK(it != by_weight.end(), "tensor", name, "is not a linear of the exchanged layer");
    return {it->second.bytes.begin(), it->second.bytes.begin() + static_cast<int64_t>(it->second.n_stored)};
  }
};

// Exchanges layer `owned.layer` (collective) into device weights: arena linears staged through
// pinned memory in one H2D copy, small tensors decoded to FP32 on the host and uploaded. The
// linears' host bytes are moved into *host.
gpu::DeviceLayerWeights upload_layer(LayerWeightExchange& exchange, OwnedLayerBytes owned,
                                     const std::set<std::string>& linears, PinnedBuffer& staging,
                                     cudaStream_t stream, HostLayer* host) {
  static std::atomic<uint64_t> next_id{1};
  gpu::DeviceLayerWeights w;
  w.layer = owned.layer;
  w.id = next_id++;
  const std::string prefix = "layers." + std::to_string(owned.layer) + ".";
  struct Pending {
    std::string key, native, scale_name;
    gpu::DeviceLinear linear;
    uint64_t offset = 0, scale_offset = 0, n_stored = 0;
  };
  uint64_t total = 0;
  // The arena's size is known only after the last tensor: keep the linears' bytes until then.
  std::vector<std::pair<Pending, std::vector<uint8_t>>> arena_parts;
  exchange.fetch_layer_source(std::move(owned), [&](const std::string& forward_name,
                                                     const NativeTensor& t,
                                                     std::vector<uint8_t> bytes) {
    QF_CHECK(forward_name.compare(0, prefix.size(), prefix) == 0, "tensor", forward_name,
             "is not in layer", w.layer);
    const std::string key = forward_name.substr(prefix.size());
    if (linears.count(t.name)) {
      Pending p;
      p.key = key;
      p.native = t.name;
      p.scale_name = t.scale_name;
      p.linear.n_rows = t.n_rows;
      p.linear.n_cols = t.n_cols;
      const uint64_t n_stored = t.stored.n_bytes();
      switch (t.kind) {
        case StorageKind::kFp8Block:
          p.linear.storage = gpu::LinearStorage::kFp8Block;
          p.linear.scale_dtype = t.scale.dtype;
          break;
        case StorageKind::kFp4Block:
          p.linear.storage = gpu::LinearStorage::kFp4Block;
          break;
        case StorageKind::kPlain:
          QF_CHECK(t.stored.dtype == DType::kBF16 && t.stored.shape.size() == 2, "tensor", t.name,
                   "is", dtype_name(t.stored.dtype),
                   "; the CUDA forward takes linear weights in FP8, FP4 or BF16");
          p.linear.storage = gpu::LinearStorage::kBf16;
          break;
      }
      p.offset = total;
      p.n_stored = n_stored;
      total = aligned(total + n_stored);
      if (t.kind != StorageKind::kPlain) {
        p.scale_offset = total;
        total = aligned(total + (bytes.size() - n_stored));
      }
      arena_parts.emplace_back(std::move(p), std::move(bytes));
      return;
    }
    const std::vector<float> values = decode_source_tensor(t, bytes.data(), bytes.size(),
                                                           logical_shape(t));
    if (ends_with(key, "gate.tid2eid")) {
      std::vector<int32_t> ids(values.begin(), values.end());
      w.tid2eid.grow(ids.size());
      QF_CUDA_CHECK(cudaMemcpy(w.tid2eid.get(), ids.data(), ids.size() * 4,
                               cudaMemcpyHostToDevice),
                    "upload of", t.name);
      return;
    }
    gpu::DeviceSmallTensor& small = w.small[key];
    small.shape = logical_shape(t);
    small.values.grow(values.size());
    QF_CUDA_CHECK(cudaMemcpy(small.values.get(), values.data(), values.size() * 4,
                             cudaMemcpyHostToDevice),
                  "upload of", t.name);
  });
  staging.grow(total);
  for (const auto& [p, bytes] : arena_parts) {
    // read_source_bytes' layout: the stored bytes, then (block kinds) the scale bytes.
    std::memcpy(staging.get() + p.offset, bytes.data(), p.n_stored);
    if (p.linear.storage != gpu::LinearStorage::kBf16) {
      std::memcpy(staging.get() + p.scale_offset, bytes.data() + p.n_stored,
                  bytes.size() - p.n_stored);
    }
  }
  w.arena.grow(total);
  w.arena_bytes = total;
  QF_CUDA_CHECK(cudaMemcpyAsync(w.arena.get(), staging.get(), total, cudaMemcpyHostToDevice, stream),
                "layer", w.layer, "weights upload (", total, "bytes)");
  host->by_weight.clear();
  host->weight_of_scale.clear();
  for (auto& [p, bytes] : arena_parts) {
    gpu::DeviceLinear lin = p.linear;
    lin.data = w.arena.get() + p.offset;
    lin.scale = lin.storage == gpu::LinearStorage::kBf16 ? nullptr : w.arena.get() + p.scale_offset;
    w.linears[p.key] = lin;
    if (!p.scale_name.empty()) host->weight_of_scale[p.scale_name] = p.native;
    host->by_weight[p.native] = HostLinear{std::move(bytes), p.n_stored};
  }
  QF_CUDA_CHECK(cudaStreamSynchronize(stream), "layer", w.layer, "weights upload");
  return w;
}

class CudaCalibrationEngine final : public CalibrationEngine {
 public:
  CudaCalibrationEngine(const model::ModelConfig& config, const model::ForwardConfig& fc,
                        LayerWeightExchange& exchange, std::vector<float> hidden,
                        std::vector<int64_t> token_ids, int seq_len, int batch_seqs)
      : config_(config),
        fc_(fc),
        exchange_(exchange),
        layer_(fc, stream_.get()),
        seq_len_(seq_len),
        batch_seqs_(batch_seqs),
        n_local_tokens_(static_cast<int64_t>(token_ids.size())) {
    QF_CHECK(seq_len > 0 && batch_seqs > 0, "CUDA calibration: bad batch", batch_seqs, "x",
             seq_len);
    token_floats_ = fc.hc_mult * fc.hidden_size;
    QF_CHECK(static_cast<int64_t>(hidden.size()) == n_local_tokens_ * token_floats_,
             "CUDA calibration: hidden states do not match the token count");
    size_t free_bytes = 0, total_bytes = 0;
    QF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    const uint64_t hidden_bytes = hidden.size() * sizeof(float);
    // Resident when the hidden states take at most a quarter of the GPU; otherwise they stay
    // on the host and each batch is copied in and out.
    resident_ = hidden_bytes <= total_bytes / 4;
    if (n_local_tokens_ > 0) {
      tokens_dev_.grow(token_ids.size());
      QF_CUDA_CHECK(cudaMemcpy(tokens_dev_.get(), token_ids.data(), token_ids.size() * 8,
                               cudaMemcpyHostToDevice),
                    "token ids upload");
      if (resident_) {
        hidden_dev_.grow(hidden.size());
        QF_CUDA_CHECK(cudaMemcpy(hidden_dev_.get(), hidden.data(), hidden_bytes,
                                 cudaMemcpyHostToDevice),
                      "hidden states upload (", hidden_bytes, "bytes)");
      } else {
        hidden_host_ = std::move(hidden);
        log_info("calibrate (cuda): hidden states (", hidden_bytes >> 20,
                 " MiB) stay on the host; each batch is copied to the GPU");
      }
    }
  }

  ~CudaCalibrationEngine() override {
    if (prefetch_.valid()) prefetch_.wait();
  }

  void fetch_layer(int layer, const std::vector<std::string>& linear_names) override {
    const auto start = std::chrono::steady_clock::now();
    weights_.reset();  // one layer of weights on the GPU at a time
    OwnedLayerBytes owned = (prefetch_.valid() && prefetch_layer_ == layer)
                                ? prefetch_.get()
                                : exchange_.read_owned_layer(layer);
    times_.read_wait_seconds += seconds_since(start);
    if (prefetch_.valid()) prefetch_.wait();  // a stale read-ahead (resume jumped): drop it
    weights_ = std::make_unique<gpu::DeviceLayerWeights>(upload_layer(
        exchange_, std::move(owned), arena_linears(linear_names), staging_, stream_.get(),
        &host_layer_));
    if (layer + 1 < config_.num_hidden_layers) {
      prefetch_layer_ = layer + 1;
      prefetch_ = std::async(std::launch::async,
                             [this, next = layer + 1] { return exchange_.read_owned_layer(next); });
    }
    times_.weights_seconds += seconds_since(start);
  }

  LayerStatistics compute_layer(int layer, const std::vector<std::string>& linear_names) override {
    QF_CHECK(weights_ && weights_->layer == layer, "compute_layer(", layer,
             "): the layer's weights were not fetched");
    const gpu::DeviceLayerWeights& w = *weights_;
    if (hook_) {
      const auto hook_start = std::chrono::steady_clock::now();
      hook_(layer, [this](const std::string& name) { return host_layer_.bytes_of(name); });
      times_.hook_seconds += seconds_since(hook_start);
    }
    host_layer_ = HostLayer{};  // the layer's host copy is no longer needed
    const auto compute_start = std::chrono::steady_clock::now();
    const int n_exp = fc_.n_routed_experts;
    const int n_slots = gpu::ObservationSlots::count(n_exp);
    amax_dev_.grow(n_slots);
    QF_CUDA_CHECK(cudaMemsetAsync(amax_dev_.get(), 0, n_slots * 4, stream_.get()), "amax clear");
    LayerStatistics stats;
    stats.expert_tokens.assign(n_exp, 0);
    const int64_t n_samples = n_local_tokens_ / seq_len_;
    for (int64_t b = 0; b < n_samples; b += batch_seqs_) {
      const int n_seqs = static_cast<int>(std::min<int64_t>(batch_seqs_, n_samples - b));
      const int64_t first = b * seq_len_, n_tokens = int64_t{n_seqs} * seq_len_;
      float* hidden = nullptr;
      if (resident_) {
        hidden = hidden_dev_.get() + first * token_floats_;
      } else {
        batch_dev_.grow(n_tokens * token_floats_);
        hidden = batch_dev_.get();
        QF_CUDA_CHECK(cudaMemcpyAsync(hidden, hidden_host_.data() + first * token_floats_,
                                      n_tokens * token_floats_ * 4, cudaMemcpyHostToDevice,
                                      stream_.get()),
                      "hidden batch upload");
      }
      layer_.forward(w, layer, hidden, tokens_dev_.get() + first, n_seqs, seq_len_,
                     amax_dev_.get(), &stats.expert_tokens);
      if (!resident_) {
        QF_CUDA_CHECK(cudaMemcpyAsync(hidden_host_.data() + first * token_floats_, hidden,
                                      n_tokens * token_floats_ * 4, cudaMemcpyDeviceToHost,
                                      stream_.get()),
                      "hidden batch download");
      }
      times_.n_tokens += n_tokens;
    }
    std::vector<uint32_t> bits(n_slots);
    QF_CUDA_CHECK(cudaMemcpyAsync(bits.data(), amax_dev_.get(), n_slots * 4,
                                  cudaMemcpyDeviceToHost, stream_.get()),
                  "amax download");
    QF_CUDA_CHECK(cudaStreamSynchronize(stream_.get()), "layer", layer, "forward");
    stats.amax.resize(linear_names.size());
    for (size_t i = 0; i < linear_names.size(); ++i) {
      const int slot = gpu::ObservationSlots::of(linear_names[i], layer, n_exp);
      std::memcpy(&stats.amax[i], &bits[slot], 4);
    }
    size_t free_bytes = 0, total_bytes = 0;
    QF_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    times_.peak_device_bytes = std::max<uint64_t>(times_.peak_device_bytes, total_bytes - free_bytes);
    times_.compute_seconds += seconds_since(compute_start);
    layer_.report_profile("layer " + std::to_string(layer) + " forward");
    return stats;
  }

  EngineTimes times() const override { return times_; }
  void set_layer_bytes_hook(LayerBytesHook hook) override { hook_ = std::move(hook); }

 private:
  const model::ModelConfig& config_;
  const model::ForwardConfig& fc_;
  LayerWeightExchange& exchange_;
  CudaStream stream_;
  gpu::GpuDecoderLayer layer_;
  int seq_len_, batch_seqs_;
  int64_t n_local_tokens_;
  int64_t token_floats_ = 0;
  bool resident_ = true;
  DeviceBuffer<float> hidden_dev_, batch_dev_;
  std::vector<float> hidden_host_;
  DeviceBuffer<int64_t> tokens_dev_;
  DeviceBuffer<uint32_t> amax_dev_;
  PinnedBuffer staging_;
  std::unique_ptr<gpu::DeviceLayerWeights> weights_;
  HostLayer host_layer_;
  LayerBytesHook hook_;
  std::future<OwnedLayerBytes> prefetch_;
  int prefetch_layer_ = -1;
  EngineTimes times_;
};

}  // namespace

std::unique_ptr<CalibrationEngine> make_cuda_calibration_engine(
    const model::ModelConfig& config, const model::ForwardConfig& forward_config,
    LayerWeightExchange& exchange, std::vector<float> hidden, std::vector<int64_t> token_ids,
    int seq_len, int batch_seqs) {
  return std::make_unique<CudaCalibrationEngine>(config, forward_config, exchange,
                                                 std::move(hidden), std::move(token_ids), seq_len,
                                                 batch_seqs);
}

}  // namespace qf::pipeline
