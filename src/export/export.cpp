// export_checkpoint / export_one_shard (see export.hpp).
#include "export/export.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

#include "core/check.hpp"
#include "core/elapsed.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "core/stop_signal.hpp"
#include "core/strings.hpp"
#include "dist/collective_step.hpp"
#include "export/export_jobs.hpp"
#include "export/output_streamer.hpp"
#include "formats/async_writer.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checksum.hpp"
#include "formats/posix_file.hpp"
#include "formats/rank_store.hpp"
#include "formats/shard_digest.hpp"
#include "formats/shard_index.hpp"
#include "formats/source_derived.hpp"
#include "formats/staged_output.hpp"
#include "model/forward_linear.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {
namespace {

constexpr uint64_t kCopyChunkBytes = 64ull << 20;  // also the write buffers' size
constexpr int kWriteBuffers = 4;

// Quantized records, read on a background thread one record ahead of their use, in the order
// given: the next record's read (checksum + HDF5) overlaps copying and writing the current one.
// At most two records are held. Only this reader calls HDF5 during an export, one read at a time
// (HDF5 is not thread-safe): each read starts after the previous one was collected.
class QuantRecordReader {
 public:
  QuantRecordReader(const std::string& work_dir, const formats::CheckpointDir& source,
                    std::vector<std::pair<int, int>> order)
      : work_dir_(work_dir), source_(source), order_(std::move(order)) {
    start_next();
  }
  ~QuantRecordReader() {
    if (next_.valid()) next_.wait();
  }
  QuantRecordReader(const QuantRecordReader&) = delete;
  QuantRecordReader& operator=(const QuantRecordReader&) = delete;

  const formats::StoredTensor& tensor(int owner, int layer, const std::string& name) {
    const auto key = std::make_pair(owner, layer);
    if (key != loaded_) {
      QF_CHECK(next_.valid() && order_[next_index_ - 1] == key, "export: record of layer", layer,
               "of rank", owner, "needed out of the planned order");
      record_ = formats::LayerRecord{};  // free it before the next one arrives
      by_name_.clear();
      record_ = next_.get();  // rethrows the read's error here, on the calling thread
      loaded_ = key;
      for (size_t i = 0; i < record_.tensors.size(); ++i) by_name_[record_.tensors[i].name] = i;
      start_next();
    }
    const auto it = by_name_.find(name);
    QF_CHECK(it != by_name_.end(), "the quantized record of layer", layer, "in",
             formats::RankStore::rank_dir(work_dir_, owner), "lacks", name);
    return record_.tensors[it->second];
  }

 private:
  void start_next() {
    if (next_index_ >= order_.size()) return;
    const auto [owner, layer] = order_[next_index_++];
    next_ = std::async(std::launch::async, [this, owner = owner, layer = layer] {
      formats::LayerRecord record = store_of(owner).read_layer(layer, formats::kStageQuant);
      // The tensors the store left in the source come back from it here, on this thread.
      formats::materialize_source_derived(
          record, source_,
          str_cat(formats::RankStore::rank_dir(work_dir_, owner), " layer ", layer, " (quant)"));
      return record;
    });
  }
  // Only the reading thread calls this (one read at a time).
  formats::RankStore& store_of(int rank) {
    auto it = stores_.find(rank);
    if (it == stores_.end()) {
      it = stores_
               .emplace(rank, std::make_unique<formats::RankStore>(formats::RankStore::open(
                                  work_dir_, rank, formats::StoreVerify::kSizes)))
               .first;
    }
    return *it->second;
  }
  std::string work_dir_;
  const formats::CheckpointDir& source_;
  std::vector<std::pair<int, int>> order_;  // (owner, layer) in the order of use
  size_t next_index_ = 0;                   // order_ index after the one next_ reads
  std::future<formats::LayerRecord> next_;
  std::map<int, std::unique_ptr<formats::RankStore>> stores_;
  std::pair<int, int> loaded_{-1, -1};  // (owner, layer) of record_; none yet
  formats::LayerRecord record_;
  std::map<std::string, size_t> by_name_;
};

// Copies [src, src + n_bytes) to `offset` of `fd` through the writer's buffers.
void submit_bytes(formats::AsyncWriter& writer, const formats::FileDescriptor& fd, uint64_t offset,
                  const uint8_t* src, uint64_t n_bytes) {
  for (uint64_t done = 0; done < n_bytes; done += kCopyChunkBytes) {
    const uint64_t n = std::min(kCopyChunkBytes, n_bytes - done);
    auto buffer = writer.acquire();
    buffer.resize(n);
    std::memcpy(buffer.data(), src + done, n);
    writer.submit(fd, offset + done, std::move(buffer), n);
  }
}

// Writes `jobs` into `files`. Sorted by (layer, owner), so each record is read once; the calling
// thread reads (source chunks, records from the reader above) while AsyncWriter writes.
ExportReport write_jobs(const QuantizePlan& plan, const formats::CheckpointDir& source,
                        const InputScales& scales, const std::string& work_dir,
                        std::vector<ExportJob> jobs,
                        std::map<size_t, formats::FileDescriptor>& files,
                        const char* progress_label) {
  std::stable_sort(jobs.begin(), jobs.end(), [](const ExportJob& a, const ExportJob& b) {
    return std::tie(a.layer, a.owner) < std::tie(b.layer, b.owner);
  });
  uint64_t total = 0;
  std::vector<std::pair<int, int>> record_order;
  for (const auto& job : jobs) {
    total += job.out->spec.n_bytes();
    const std::pair<int, int> key{job.owner, job.layer};
    if (is_stored(*job.out) && (record_order.empty() || record_order.back() != key)) {
      record_order.push_back(key);
    }
  }
  ProgressMeter progress(progress_label, total, "B");
  QuantRecordReader records(work_dir, source, std::move(record_order));
  ExportReport report;
  formats::AsyncWriter writer(kWriteBuffers);
  SourceTensorCopier copier(source);
  for (const auto& job : jobs) {
    check_stop_requested("between export chunks");
    const auto& out = *job.out;
    const auto& fd = files.at(job.shard);
    const uint64_t offset = plan.shards[job.shard].layout.file_offset.at(out.spec.name);
    const uint64_t n_bytes = out.spec.n_bytes();
    uint64_t& digest = report.tensor_digests[out.spec.name];  // hashed while written
    if (out.kind == OutputKind::kCopy) {
      // In the kernel (copy_file_range), beside the writer's buffered writes of other ranges.
      digest = copier.copy(out.source_name, fd, offset, n_bytes).digest;
    } else if (out.kind == OutputKind::kInputScale) {
      const float value = scales.of_module.at(QuantizePlan::module_of(out.source_name));
      submit_bytes(writer, fd, offset, reinterpret_cast<const uint8_t*>(&value), sizeof(value));
      digest = formats::checksum64(&value, sizeof(value));
    } else {
      const auto& stored = records.tensor(job.owner, job.layer, out.spec.name);
      check_stored_matches(out, stored);
      submit_bytes(writer, fd, offset, stored.bytes.data(), n_bytes);
      digest = formats::checksum64(stored.bytes.data(), n_bytes);
    }
    report.bytes_written += n_bytes;
    ++report.n_tensors;
    progress.advance(n_bytes);
  }
  writer.drain();
  return report;
}

formats::ShardIndex output_index(const QuantizePlan& plan) {
  formats::ShardIndex index;
  uint64_t total = 0;
  for (const auto& shard : plan.shards) {
    for (const auto& out : shard.tensors) {
      index.weight_map[out.spec.name] = shard.file;
      total += out.spec.n_bytes();
    }
  }
  index.metadata = nlohmann::json::object();
  index.metadata["total_size"] = total;
  return index;
}

// The version-2 digest of `shard` (formats/shard_digest.hpp) from the digests of its tensors,
// which the writers computed while writing: no byte of the output is read back.
uint64_t shard_digest(const OutputShard& shard, const std::map<std::string, uint64_t>& digests) {
  std::vector<std::pair<uint64_t, uint64_t>> by_offset;  // (file offset, digest)
  by_offset.reserve(shard.tensors.size());
  for (const auto& out : shard.tensors) {
    const auto it = digests.find(out.spec.name);
    QF_CHECK(it != digests.end(), "internal: no checksum of", out.spec.name, "written to",
             shard.file);
    by_offset.emplace_back(shard.layout.file_offset.at(out.spec.name), it->second);
  }
  std::sort(by_offset.begin(), by_offset.end());
  std::vector<uint64_t> tensors;
  tensors.reserve(by_offset.size());
  for (const auto& entry : by_offset) tensors.push_back(entry.second);
  const std::string& header = shard.layout.header_bytes;
  return formats::combine_shard_digest(formats::checksum64(header.data(), header.size()), tensors);
}

// Collective: every output tensor's digest on every rank (each tensor has one writer; the others
// contribute 0 to a sum over the plan's output order).
std::map<std::string, uint64_t> gather_tensor_digests(const QuantizePlan& plan,
                                                      const std::map<std::string, uint64_t>& mine,
                                                      dist::Communicator& comm) {
  std::vector<uint64_t> all;
  for (const auto& shard : plan.shards) {
    for (const auto& out : shard.tensors) {
      const auto it = mine.find(out.spec.name);
      all.push_back(it == mine.end() ? 0 : it->second);
    }
  }
  comm.allreduce(all.data(), all.size(), dist::ElemType::kU64, dist::ReduceOp::kSum,
                 "output tensor checksums");
  std::map<std::string, uint64_t> digests;
  size_t i = 0;
  for (const auto& shard : plan.shards) {
    for (const auto& out : shard.tensors) digests[out.spec.name] = all[i++];
  }
  return digests;
}

// formats::kChecksumsFileName, version 2: {shard file: digest} (verified by `validate`).
void write_checksums(const QuantizePlan& plan, const std::map<std::string, uint64_t>& digests,
                     const std::string& dir) {
  std::map<std::string, uint64_t> files;
  for (const auto& shard : plan.shards) files[shard.file] = shard_digest(shard, digests);
  formats::write_file_atomic(dir + "/" + formats::kChecksumsFileName,
                             formats::checksums_manifest_json(files).dump(2) + "\n");
}

void finish(const QuantizePlan& plan, const formats::CheckpointDir& source,
            const ExportOptions& options, formats::StagedOutput& staged) {
  QF_NVTX_RANGE("quantize job: commit");
  const std::string& staging = staged.staging_dir();
  output_index(plan).write(staging + "/" + formats::kShardIndexFileName);
  for (const auto& file : plan.other_files) {
    if (file == "config.json" || file == "hf_quant_config.json" ||
        file == formats::kChecksumsFileName) {
      continue;
    }
    formats::copy_file_into(source.dir() + "/" + file, staging, file);
  }
  formats::write_file_atomic(
      staging + "/config.json",
      export_config_json(source.read_json("config.json"), plan, options.kv).dump(2) + "\n");
  formats::write_file_atomic(staging + "/hf_quant_config.json",
                             hf_quant_config_json(plan, options.kv).dump(2) + "\n");
  formats::CheckpointDir check(staging);  // every header parses, index matches the shards
  staged.commit();
}

}  // namespace

ExportReport export_checkpoint(const QuantizePlan& plan, const formats::CheckpointDir& source,
                               const InputScales& scales, const ExportOptions& options,
                               formats::StagedOutput* staged, dist::Communicator& comm,
                               OutputStreamer* streamer) {
  QF_NVTX_RANGE("quantize job: export");
  QF_CHECK(comm.world_size() == options.store_world_size, "export with", comm.world_size(),
           "ranks, but", options.work_dir, "was written by", options.store_world_size,
           "ranks; use the same count, or rebuild shards one by one with --shard K");
  dist::run_on_root(comm, 0, "preparing the output directory", [&] {
    QF_CHECK(staged != nullptr, "internal: rank 0 exports without the claimed output");
    if (!streamer) prepare_staged_output(plan, *staged);  // else made before calibration
  });
  ExportReport report;
  double write_seconds = 0, fsync_seconds = 0;  // this rank's, for the breakdown line
  try {
    dist::run_on_all_ranks(comm, "writing output tensors", [&] {
      const auto write_start = std::chrono::steady_clock::now();
      // What no streamed layer carried (input scales always: they come from every layer).
      auto jobs = export_jobs_where(plan, [&](const ExportJob& job) {
        return job.owner == comm.rank() && !(streamer && job.out->kind != OutputKind::kInputScale &&
                                             streamer->streamed(job.layer));
      });
      std::map<size_t, formats::FileDescriptor> files;
      const std::string staging = formats::StagedOutput::staging_dir_for(options.out_dir);
      for (const auto& job : jobs) {
        if (files.count(job.shard)) continue;
        files.emplace(job.shard,
                      formats::open_for_pwrite(staging + "/" + plan.shards[job.shard].file));
      }
      report = write_jobs(plan, source, scales, options.work_dir, std::move(jobs), files,
                          "export (rank 0's share)");
      write_seconds = seconds_since(write_start);
      const auto fsync_start = std::chrono::steady_clock::now();
      for (auto& [shard, fd] : files) {
        formats::fsync_file(fd);
        fd.close();
      }
      if (streamer) streamer->finish();
      fsync_seconds = seconds_since(fsync_start);
    });
    // Integrity record for `validate`, from the digests taken while writing (issue 19).
    const auto checksum_start = std::chrono::steady_clock::now();
    if (streamer) {
      for (const auto& [name, digest] : streamer->tensor_digests()) {
        report.tensor_digests[name] = digest;
      }
    }
    const auto digests = gather_tensor_digests(plan, report.tensor_digests, comm);
    if (comm.rank() == 0) {
      char line[384];
      std::snprintf(line, sizeof(line),
                    "export (rank 0): wrote %s in %.2fs, then fsync %.2fs; shard checksums %.2fs",
                    ProgressMeter::format_bytes(double(report.bytes_written)).c_str(),
                    write_seconds, fsync_seconds, seconds_since(checksum_start));
      std::string text = line;
      if (streamer) {
        const OutputStreamer::Stats streamed = streamer->stats();
        std::snprintf(line, sizeof(line),
                      "; before that, %s of %llu layer(s) streamed beside calibration in %.2fs "
                      "(%s copied in the kernel)",
                      ProgressMeter::format_bytes(double(streamed.bytes_written)).c_str(),
                      static_cast<unsigned long long>(streamed.n_layers), streamed.seconds,
                      ProgressMeter::format_bytes(double(streamed.bytes_copied_in_kernel)).c_str());
        text += line;
      }
      log_info(text);
    }
    if (streamer) report.bytes_written += streamer->stats().bytes_written;
    dist::run_on_root(comm, 0, "writing index and configs", [&] {
      write_checksums(plan, digests, staged->staging_dir());
      finish(plan, source, options, *staged);
    });
  } catch (const CollectiveError&) {
    if (staged) staged->discard();
    throw;
  }
  return report;
}

ExportReport export_one_shard(const QuantizePlan& plan, const formats::CheckpointDir& source,
                              const InputScales& scales, const ExportOptions& options,
                              const std::string& shard_file, dist::Communicator& comm) {
  QF_NVTX_RANGE("quantize job: export one shard");
  size_t shard = plan.shards.size();
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    if (plan.shards[s].file == shard_file) shard = s;
  }
  QF_CHECK(shard < plan.shards.size(), "--shard: no output shard named", shard_file);
  ExportReport report;
  dist::run_on_root(comm, 0, "rebuilding one shard", [&] {
    const std::string final_path = options.out_dir + "/" + shard_file;
    QF_CHECK(formats::ShardIndex::read(options.out_dir + "/" + formats::kShardIndexFileName)
                     .weight_map.size() == output_index(plan).weight_map.size(),
             "--shard needs a complete earlier export in", options.out_dir);
    const std::string temp = formats::temp_path_for(final_path);
    std::map<size_t, formats::FileDescriptor> files;
    formats::create_presized_shard(temp, plan.shards[shard].layout);
    files.emplace(shard, formats::open_for_pwrite(temp));
    try {
      report = write_jobs(
          plan, source, scales, options.work_dir,
          export_jobs_where(plan, [&](const ExportJob& job) { return job.shard == shard; }), files,
          "export (one shard)");
      formats::fsync_file(files.at(shard));
      files.at(shard).close();
      // The rebuild reproduces the exported bytes; other bytes mean another store or source
      // (issue 18 defect 8), and the shard in OUT stays as it is. Earlier exports' manifests
      // (version 1) hold whole-file digests: then the rebuilt file is read once for it.
      const std::string sums_path = options.out_dir + "/" + formats::kChecksumsFileName;
      const auto sums =
          formats::parse_checksums_manifest(formats::read_json_file(sums_path), sums_path);
      const auto it = sums.files.find(shard_file);
      const std::string recorded = it == sums.files.end() ? "" : formats::checksum_hex(it->second);
      const std::string digest = formats::checksum_hex(
          sums.version == 1 ? formats::checksum_file(temp).digest
                            : shard_digest(plan.shards[shard], report.tensor_digests));
      QF_CHECK(digest == recorded, "--shard", shard_file + ": the rebuilt shard's xxh64", digest,
               "differs from the one", sums_path, "records (" + recorded + "): the work store",
               options.work_dir, "or the source is not what", options.out_dir, "was exported from;",
               options.out_dir, "was not changed");
      formats::rename_file(temp, final_path);
      formats::fsync_parent_dir(final_path);
    } catch (...) {
      formats::remove_file_noexcept(temp);
      throw;
    }
  });
  return report;
}

}  // namespace qf::pipeline
