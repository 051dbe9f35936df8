// OutputStreamer (see output_streamer.hpp).
#include "export/output_streamer.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <utility>

#include "core/check.hpp"
#include "core/elapsed.hpp"
#include "core/nvtx.hpp"
#include "formats/checksum.hpp"

namespace qf::pipeline {

void prepare_staged_output(const QuantizePlan& plan, formats::StagedOutput& staged) {
  staged.create_staging();
  for (const auto& shard : plan.shards) {
    formats::create_presized_shard(staged.staging_dir() + "/" + shard.file, shard.layout);
  }
}

OutputStreamer::OutputStreamer(const QuantizePlan& plan, const formats::CheckpointDir& source,
                               std::string staging_dir, int rank)
    : plan_(plan), staging_dir_(std::move(staging_dir)), copier_(source), outside_copier_(source) {
  // Input scales wait for the export: they need every layer's calibration.
  for (const auto& job : export_jobs_where(plan, [rank](const ExportJob& job) {
         return job.owner == rank && job.out->kind != OutputKind::kInputScale;
       })) {
    jobs_by_layer_[job.layer].push_back(job);
  }
  // Outside the layers only copies are streamed (a recipe that quantizes such a tensor leaves
  // them all to the export).
  const auto outside = jobs_by_layer_.find(-1);
  if (outside != jobs_by_layer_.end()) {
    const bool copies_only =
        std::all_of(outside->second.begin(), outside->second.end(),
                    [](const ExportJob& job) { return job.out->kind == OutputKind::kCopy; });
    if (copies_only) outside_jobs_ = std::move(outside->second);
    jobs_by_layer_.erase(outside);
  }
}

OutputStreamer::~OutputStreamer() {
  stopping_ = true;
  if (outside_thread_.joinable()) outside_thread_.join();
}

void OutputStreamer::start_outside_layers() {
  if (outside_started_ || outside_jobs_.empty()) return;
  outside_started_ = true;  // once: a second finish_outside_layers must not copy again
  outside_thread_ = std::thread([this] {
    try {
      copy_outside_layers();
    } catch (...) {
      outside_error_ = std::current_exception();
    }
  });
}

void OutputStreamer::copy_outside_layers() {
  QF_NVTX_RANGE("stream the tensors outside the layers to the output");
  const auto start = std::chrono::steady_clock::now();
  std::map<size_t, formats::FileDescriptor> files;
  uint64_t n_written = 0, n_in_kernel = 0;
  std::vector<std::pair<std::string, uint64_t>> digests;
  for (const ExportJob& job : outside_jobs_) {
    if (stopping_) return;
    const OutputTensor& out = *job.out;
    auto it = files.find(job.shard);
    if (it == files.end()) {
      it = files
               .emplace(job.shard, formats::open_for_pwrite(staging_dir_ + "/" +
                                                            plan_.shards.at(job.shard).file))
               .first;
    }
    const uint64_t offset = plan_.shards[job.shard].layout.file_offset.at(out.spec.name);
    const auto copied =
        outside_copier_.copy(out.source_name, it->second, offset, out.spec.n_bytes());
    formats::start_writeback(it->second, offset, out.spec.n_bytes());
    n_in_kernel += copied.n_bytes_in_kernel;
    n_written += out.spec.n_bytes();
    digests.emplace_back(out.spec.name, copied.digest);
  }
  for (auto& [shard, fd] : files) formats::fsync_file(fd);
  const double seconds = seconds_since(start);
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.bytes_written += n_written;
  stats_.bytes_copied_in_kernel += n_in_kernel;
  stats_.seconds += seconds;
  for (const auto& [name, digest] : digests) digests_[name] = digest;
}

void OutputStreamer::finish_outside_layers() {
  start_outside_layers();
  if (outside_thread_.joinable()) outside_thread_.join();
  if (outside_error_) std::rethrow_exception(std::exchange(outside_error_, nullptr));
  if (outside_jobs_.empty() || stopping_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  streamed_.insert(-1);
}

const formats::FileDescriptor& OutputStreamer::output_file(size_t shard) {
  auto it = output_files_.find(shard);
  if (it == output_files_.end()) {
    it = output_files_
             .emplace(shard,
                      formats::open_for_pwrite(staging_dir_ + "/" + plan_.shards.at(shard).file))
             .first;
  }
  return it->second;
}

void OutputStreamer::write_layer(const formats::LayerRecord& quant) {
  QF_NVTX_RANGE("stream layer " + std::to_string(quant.layer) + " to the output");
  // The first layer's source reads are done: the copies outside the layers go beside the rest.
  start_outside_layers();
  const auto start = std::chrono::steady_clock::now();
  std::map<std::string, const formats::StoredTensor*> stored;
  for (const auto& t : quant.tensors) stored[t.name] = &t;
  uint64_t n_written = 0, n_in_kernel = 0;
  std::vector<std::pair<std::string, uint64_t>> digests;  // hashed while written
  const auto jobs = jobs_by_layer_.find(quant.layer);
  if (jobs != jobs_by_layer_.end()) {
    for (const ExportJob& job : jobs->second) {
      const OutputTensor& out = *job.out;
      const auto& fd = output_file(job.shard);
      const uint64_t offset = plan_.shards[job.shard].layout.file_offset.at(out.spec.name);
      const uint64_t n_bytes = out.spec.n_bytes();
      if (out.kind == OutputKind::kCopy) {
        const auto copied = copier_.copy(out.source_name, fd, offset, n_bytes);
        n_in_kernel += copied.n_bytes_in_kernel;
        digests.emplace_back(out.spec.name, copied.digest);
      } else {
        const auto it = stored.find(out.spec.name);
        QF_CHECK(it != stored.end(), "streaming layer", quant.layer, "to", staging_dir_ + ":",
                 "its NVFP4 record lacks", out.spec.name);
        const formats::StoredTensor& t = *it->second;
        check_stored_matches(out, t);
        formats::pwrite_full(fd, t.bytes.data(), n_bytes, offset);
        // A derived tensor's digest was taken from these bytes before its commit.
        digests.emplace_back(out.spec.name, t.derived
                                                ? t.derived->xxh64
                                                : formats::checksum64(t.bytes.data(), n_bytes));
      }
      // The disk starts on it now, so the job's final fsync finds little left to write.
      formats::start_writeback(fd, offset, n_bytes);
      n_written += n_bytes;
    }
  }
  const double seconds = seconds_since(start);
  std::lock_guard<std::mutex> lock(mutex_);
  streamed_.insert(quant.layer);
  ++stats_.n_layers;
  stats_.bytes_written += n_written;
  stats_.bytes_copied_in_kernel += n_in_kernel;
  stats_.seconds += seconds;
  for (const auto& [name, digest] : digests) digests_[name] = digest;
}

bool OutputStreamer::streamed(int layer) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return streamed_.count(layer) > 0;
}

OutputStreamer::Stats OutputStreamer::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

std::map<std::string, uint64_t> OutputStreamer::tensor_digests() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return digests_;
}

void OutputStreamer::finish() {
  for (auto& [shard, fd] : output_files_) {
    formats::fsync_file(fd);
    fd.close();
  }
  output_files_.clear();
}

}  // namespace qf::pipeline
