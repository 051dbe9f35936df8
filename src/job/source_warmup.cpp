// SourceWarmup (see source_warmup.hpp).
#include "job/source_warmup.hpp"

#include <algorithm>
#include <exception>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/log.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/posix_file.hpp"
#include "quantize/quantize_plan.hpp"
#include "source/native_weight_loader.hpp"

namespace qf::pipeline {
namespace {

// One request at a time, so a stop is noticed soon and the first bytes are asked for first.
constexpr uint64_t kRequestBytes = 64ull << 20;

struct FileRange {
  std::string path;
  uint64_t offset = 0, n_bytes = 0;
  bool operator<(const FileRange& other) const {
    return std::tie(path, offset) < std::tie(other.path, other.offset);
  }
};

// The source ranges of this rank's first reads: the embedding if it owns it, then its layer-0
// tensors (weights and their scales), each group in file order.
std::vector<FileRange> first_reads(const formats::CheckpointDir& source, const QuantizePlan& plan,
                                   int rank) {
  std::vector<FileRange> embedding, layer0;
  // The calibration setup reads the embedding first (LayerWeightExchange::fetch_embedding).
  const std::string embedding_name =
      native_weight_name("embed_tokens.weight", plan.config.tie_word_embeddings);
  const auto add = [&](const std::string& name, std::vector<FileRange>& to) {
    if (name.empty() || !source.has_tensor(name)) return;
    const formats::SafetensorsReader* shard = nullptr;
    const formats::TensorInfo& info = source.tensor(name, &shard);
    to.push_back({shard->path(), shard->data_offset() + info.begin, info.n_bytes()});
  };
  for (const auto& t : plan.tensors) {
    if (plan.ownership.owner_of(t.name) != rank) continue;
    if (t.name == embedding_name) add(t.name, embedding);
    if (t.layer != 0) continue;
    add(t.name, layer0);
    add(t.scale_name, layer0);
  }
  std::sort(layer0.begin(), layer0.end());
  embedding.insert(embedding.end(), layer0.begin(), layer0.end());
  return embedding;
}

}  // namespace

SourceWarmup::SourceWarmup(const QuantizeOptions& options, int rank, int world_size) {
  if (options.resume || options.export_only || !options.shard.empty()) return;
  thread_ = std::thread([this, options, rank, world_size] { run(options, rank, world_size); });
}

SourceWarmup::~SourceWarmup() {
  stop_ = true;
  join();
}

void SourceWarmup::join() {
  if (thread_.joinable()) thread_.join();
}

void SourceWarmup::run(const QuantizeOptions& options, int rank, int world_size) {
  try {
    const formats::CheckpointDir source(options.in_dir);
    const QuantizePlan plan =
        build_quantize_plan(source, options.recipe, world_size, options.expert_weights);
    std::map<std::string, formats::FileDescriptor> files;
    for (const FileRange& range : first_reads(source, plan, rank)) {
      auto it = files.find(range.path);
      if (it == files.end())
        it = files.emplace(range.path, formats::open_for_read(range.path)).first;
      for (uint64_t done = 0; done < range.n_bytes && !stop_; done += kRequestBytes) {
        const uint64_t n = std::min(kRequestBytes, range.n_bytes - done);
        formats::advise_will_need(it->second, range.offset + done, n);
        n_advised_ += n;
      }
      if (stop_) return;
    }
  } catch (const std::exception& e) {
    log_debug("source warm-up stopped: ", e.what());  // the job reports the real error
  }
}

}  // namespace qf::pipeline
