// export_checkpoint / export_one_shard (see export.hpp).
#include "pipeline/export.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checksum.hpp"
#include "formats/posix_file.hpp"
#include "formats/rank_store.hpp"
#include "formats/shard_index.hpp"
#include "pipeline/collective_step.hpp"
#include "pipeline/staged_output.hpp"

namespace qf::pipeline {
namespace {

constexpr uint64_t kCopyChunkBytes = 64ull << 20;

// Quantized tensors of one layer, read from the store of the rank that owns them.
class QuantRecordCache {
 public:
  explicit QuantRecordCache(const std::string& work_dir) : work_dir_(work_dir) {}

  const formats::StoredTensor& tensor(int owner, int layer, const std::string& name) {
    const auto key = std::make_pair(owner, layer);
    if (key != loaded_) {
      auto& store = store_of(owner);
      record_ = store.read_layer(layer, formats::kStageQuant);
      loaded_ = key;
      by_name_.clear();
      for (size_t i = 0; i < record_.tensors.size(); ++i) by_name_[record_.tensors[i].name] = i;
    }
    const auto it = by_name_.find(name);
    QF_CHECK(it != by_name_.end(), "the quantized record of layer", layer, "in",
             formats::RankStore::rank_dir(work_dir_, owner), "lacks", name);
    return record_.tensors[it->second];
  }

 private:
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
  std::map<int, std::unique_ptr<formats::RankStore>> stores_;
  std::pair<int, int> loaded_{-1, -1};  // (owner, layer) of record_; none yet
  formats::LayerRecord record_;
  std::map<std::string, size_t> by_name_;
};

struct Job {
  const OutputTensor* out;
  size_t shard;
  int layer;
};

// Writes `jobs` (sorted by layer, so each layer's record is read once) into `files`.
ExportReport write_jobs(const QuantizePlan& plan, const formats::CheckpointDir& source,
                        const InputScales& scales, const std::string& work_dir,
                        std::vector<Job> jobs, std::map<size_t, formats::FileDescriptor>& files,
                        const char* progress_label) {
  std::stable_sort(jobs.begin(), jobs.end(),
                   [](const Job& a, const Job& b) { return a.layer < b.layer; });
  uint64_t total = 0;
  for (const auto& job : jobs) total += job.out->spec.n_bytes();
  ProgressMeter progress(progress_label, total, "B");
  QuantRecordCache records(work_dir);
  ExportReport report;
  std::vector<uint8_t> buffer;
  for (const auto& job : jobs) {
    const auto& out = *job.out;
    const auto& fd = files.at(job.shard);
    const uint64_t offset = plan.shards[job.shard].layout.file_offset.at(out.spec.name);
    const uint64_t n_bytes = out.spec.n_bytes();
    if (out.kind == OutputKind::kCopy) {
      const formats::SafetensorsReader* shard = nullptr;
      const auto& info = source.tensor(out.source_name, &shard);
      for (uint64_t done = 0; done < n_bytes; done += kCopyChunkBytes) {
        const uint64_t n = std::min(kCopyChunkBytes, n_bytes - done);
        buffer.resize(n);
        shard->read(info, done, n, buffer.data());
        formats::pwrite_full(fd, buffer.data(), n, offset + done);
      }
    } else if (out.kind == OutputKind::kInputScale) {
      const float value = scales.of_module.at(QuantizePlan::module_of(out.source_name));
      formats::pwrite_full(fd, &value, sizeof(value), offset);
    } else {
      const int owner = plan.ownership.owner_of(out.source_name);
      const auto& stored = records.tensor(owner, job.layer, out.spec.name);
      QF_CHECK(stored.dtype == out.spec.dtype && stored.shape == out.spec.shape &&
                   stored.bytes.size() == n_bytes,
               "stored", out.spec.name, "does not match the export layout");
      formats::pwrite_full(fd, stored.bytes.data(), n_bytes, offset);
    }
    report.bytes_written += n_bytes;
    ++report.n_tensors;
    progress.advance(n_bytes);
  }
  return report;
}

// The source tensor whose owner writes `out` (a copied `.scale` belongs to its weight).
std::string owning_tensor(const QuantizePlan& plan, const OutputTensor& out) {
  if (plan.tensor_index.count(out.source_name)) return out.source_name;
  return out.source_name.substr(0, out.source_name.size() - 6) + ".weight";
}

std::vector<Job> jobs_where(const QuantizePlan& plan, const std::function<bool(const Job&)>& keep) {
  std::vector<Job> jobs;
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    for (const auto& out : plan.shards[s].tensors) {
      const Job job{&out, s, plan.tensor(owning_tensor(plan, out)).layer};
      if (keep(job)) jobs.push_back(job);
    }
  }
  return jobs;
}

void stage_files(const QuantizePlan& plan, const std::string& out_dir) {
  StagedOutput::check_final_dir(out_dir);
  StagedOutput::create_staging(out_dir);
  const std::string staging = StagedOutput::staging_dir_for(out_dir);
  for (const auto& shard : plan.shards)
    create_presized_shard(staging + "/" + shard.file, shard.layout);
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

// quantforge_checksums.json: {shard file: XXH64 hex} (verified by `validate`).
void write_checksums(const QuantizePlan& plan, const std::vector<uint64_t>& digests,
                     const std::string& dir) {
  nlohmann::json sums = nlohmann::json::object();
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    sums[plan.shards[s].file] = formats::checksum_hex(digests[s]);
  }
  formats::write_file_atomic(dir + "/quantforge_checksums.json", sums.dump(2) + "\n");
}

void finish(const QuantizePlan& plan, const formats::CheckpointDir& source,
            const ExportOptions& options) {
  const std::string staging = StagedOutput::staging_dir_for(options.out_dir);
  output_index(plan).write(staging + "/" + formats::kShardIndexFileName);
  for (const auto& file : plan.other_files) {
    if (file == "config.json" || file == "hf_quant_config.json" ||
        file == "quantforge_checksums.json") {
      continue;
    }
    copy_file_into(source.dir() + "/" + file, staging, file);
  }
  formats::write_file_atomic(
      staging + "/config.json",
      export_config_json(source.read_json("config.json"), plan, options.kv).dump(2) + "\n");
  formats::write_file_atomic(staging + "/hf_quant_config.json",
                             hf_quant_config_json(plan, options.kv).dump(2) + "\n");
  formats::CheckpointDir check(staging);  // every header parses, index matches the shards
  StagedOutput::commit(options.out_dir);
}

}  // namespace

ExportReport export_checkpoint(const QuantizePlan& plan, const formats::CheckpointDir& source,
                               const InputScales& scales, const ExportOptions& options,
                               dist::Communicator& comm) {
  QF_CHECK(comm.world_size() == options.store_world_size, "export with", comm.world_size(),
           "ranks, but", options.work_dir, "was written by", options.store_world_size,
           "ranks; use the same count, or rebuild shards one by one with --shard K");
  run_on_root(comm, 0, "preparing the output directory",
              [&] { stage_files(plan, options.out_dir); });
  ExportReport report;
  try {
    run_on_all_ranks(comm, "writing output tensors", [&] {
      auto jobs = jobs_where(plan, [&](const Job& job) {
        return plan.ownership.owner_of(owning_tensor(plan, *job.out)) == comm.rank();
      });
      std::map<size_t, formats::FileDescriptor> files;
      const std::string staging = StagedOutput::staging_dir_for(options.out_dir);
      for (const auto& job : jobs) {
        if (files.count(job.shard)) continue;
        files.emplace(job.shard, open_for_pwrite(staging + "/" + plan.shards[job.shard].file));
      }
      report = write_jobs(plan, source, scales, options.work_dir, std::move(jobs), files,
                          "export (rank 0's share)");
      for (auto& [shard, fd] : files) {
        formats::fsync_file(fd);
        fd.close();
      }
    });
    // Integrity record for `validate`: each rank checksums every world_size-th shard (all
    // writers have fsynced), rank 0 gathers them.
    std::vector<uint64_t> digests(plan.shards.size(), 0);
    run_on_all_ranks(comm, "checksumming output shards", [&] {
      const std::string staging = StagedOutput::staging_dir_for(options.out_dir);
      for (size_t s = size_t(comm.rank()); s < plan.shards.size(); s += size_t(comm.world_size())) {
        digests[s] = formats::checksum_file(staging + "/" + plan.shards[s].file).digest;
      }
    });
    comm.allreduce(digests.data(), digests.size(), dist::ElemType::kU64, dist::ReduceOp::kSum,
                   "shard checksums");
    run_on_root(comm, 0, "writing index and configs", [&] {
      write_checksums(plan, digests, StagedOutput::staging_dir_for(options.out_dir));
      finish(plan, source, options);
    });
  } catch (const CollectiveError&) {
    if (comm.rank() == 0) StagedOutput::discard(options.out_dir);
    throw;
  }
  return report;
}

ExportReport export_one_shard(const QuantizePlan& plan, const formats::CheckpointDir& source,
                              const InputScales& scales, const ExportOptions& options,
                              const std::string& shard_file, dist::Communicator& comm) {
  size_t shard = plan.shards.size();
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    if (plan.shards[s].file == shard_file) shard = s;
  }
  QF_CHECK(shard < plan.shards.size(), "--shard: no output shard named", shard_file);
  ExportReport report;
  run_on_root(comm, 0, "rebuilding one shard", [&] {
    const std::string final_path = options.out_dir + "/" + shard_file;
    QF_CHECK(formats::ShardIndex::read(options.out_dir + "/" + formats::kShardIndexFileName)
                     .weight_map.size() == output_index(plan).weight_map.size(),
             "--shard needs a complete earlier export in", options.out_dir);
    const std::string temp = formats::temp_path_for(final_path);
    std::map<size_t, formats::FileDescriptor> files;
    create_presized_shard(temp, plan.shards[shard].layout);
    files.emplace(shard, open_for_pwrite(temp));
    try {
      report = write_jobs(plan, source, scales, options.work_dir,
                          jobs_where(plan, [&](const Job& job) { return job.shard == shard; }),
                          files, "export (one shard)");
      formats::fsync_file(files.at(shard));
      files.at(shard).close();
      const uint64_t digest = formats::checksum_file(temp).digest;
      formats::rename_file(temp, final_path);
      formats::fsync_parent_dir(final_path);
      const std::string sums_path = options.out_dir + "/quantforge_checksums.json";
      auto sums = formats::read_json_file(sums_path);
      sums[shard_file] = formats::checksum_hex(digest);
      formats::write_file_atomic(sums_path, sums.dump(2) + "\n");
    } catch (...) {
      formats::remove_file_noexcept(temp);
      throw;
    }
  });
  return report;
}

}  // namespace qf::pipeline
