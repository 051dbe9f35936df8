// The export's units of work (see export_jobs.hpp).
#include "export/export_jobs.hpp"

#include <algorithm>

#include "core/check.hpp"
#include "core/strings.hpp"
#include "formats/checksum.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {
namespace {
// A hashed copy moves this much per pread/pwrite.
constexpr uint64_t kCopyChunkBytes = 16ull << 20;
}  // namespace

bool is_stored(const OutputTensor& out) {
  return out.kind != OutputKind::kCopy && out.kind != OutputKind::kInputScale;
}

void check_stored_matches(const OutputTensor& out, const formats::StoredTensor& stored) {
  QF_CHECK(stored.dtype == out.spec.dtype && stored.shape == out.spec.shape &&
               stored.bytes.size() == out.spec.n_bytes(),
           "stored", out.spec.name, "does not match the export layout");
}

std::map<std::string, formats::DerivationCandidate> source_derivable_outputs(
    const QuantizePlan& plan) {
  std::map<std::string, formats::DerivationCandidate> candidates;
  if (plan.expert_weights != ExpertWeights::kCast) return candidates;
  for (const auto& shard : plan.shards) {
    for (const auto& out : shard.tensors) {
      if (out.kind == OutputKind::kNvfp4Weight) candidates[out.spec.name] = {out.source_name, ""};
      if (out.kind != OutputKind::kNvfp4Scale) continue;
      const NativeTensor& t = plan.tensor(out.source_name);
      if (t.kind == StorageKind::kFp4Block) {
        candidates[out.spec.name] = {t.scale_name,
                                     QuantizePlan::module_of(t.name) + ".weight_scale_2"};
      }
    }
  }
  return candidates;
}

std::string owning_tensor(const QuantizePlan& plan, const OutputTensor& out) {
  if (plan.tensor_index.count(out.source_name)) return out.source_name;
  return strip_suffix(out.source_name, model::kScaleSuffix) + model::kWeightSuffix;
}

std::vector<ExportJob> export_jobs_where(const QuantizePlan& plan,
                                         const std::function<bool(const ExportJob&)>& keep) {
  std::vector<ExportJob> jobs;
  for (size_t s = 0; s < plan.shards.size(); ++s) {
    for (const auto& out : plan.shards[s].tensors) {
      const std::string owning = owning_tensor(plan, out);
      const ExportJob job{&out, s, plan.tensor(owning).layer, plan.ownership.owner_of(owning)};
      if (keep(job)) jobs.push_back(job);
    }
  }
  return jobs;
}

SourceTensorCopier::Result SourceTensorCopier::copy(const std::string& source_name,
                                                    const formats::FileDescriptor& to,
                                                    uint64_t to_offset, uint64_t n_bytes) {
  const formats::SafetensorsReader* shard = nullptr;
  const auto& info = source_.tensor(source_name, &shard);
  QF_CHECK(info.n_bytes() == n_bytes, "copying", source_name, "from", shard->path() + ":", "it has",
           info.n_bytes(), "bytes, the output layout", n_bytes);
  auto it = files_.find(shard->path());
  if (it == files_.end())
    it = files_.emplace(shard->path(), formats::open_for_read(shard->path())).first;
  const uint64_t from = shard->data_offset() + info.begin;
  Result result;
  // The copy's digest is the source tensor's: known when the job already read it whole.
  if (shard->known_digest(info, &result.digest)) {
    result.n_bytes_in_kernel = formats::copy_file_bytes(it->second, from, to, to_offset, n_bytes);
    return result;
  }
  buffer_.resize(std::min<uint64_t>(n_bytes, kCopyChunkBytes));
  formats::Checksum64 sum;
  for (uint64_t done = 0; done < n_bytes;) {
    const uint64_t n = std::min<uint64_t>(buffer_.size(), n_bytes - done);
    formats::pread_full(it->second, buffer_.data(), n, from + done);
    sum.update(buffer_.data(), n);
    formats::pwrite_full(to, buffer_.data(), n, to_offset + done);
    done += n;
  }
  result.digest = sum.digest();
  shard->note_digest(info, result.digest);
  return result;
}

}  // namespace qf::pipeline
