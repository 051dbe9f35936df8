// Source identity rules of a quantize run (see source_check.hpp).
#include "job/source_check.hpp"

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/parallel.hpp"
#include "dist/collective_step.hpp"
#include "formats/checksum.hpp"
#include "formats/shard_index.hpp"

namespace qf::pipeline {
namespace {

using formats::SourceIdentity;

constexpr size_t kListedFiles = 20;

std::string lines(const std::vector<std::string>& items) {
  std::string text;
  for (size_t i = 0; i < items.size() && i < kListedFiles; ++i) text += "\n  " + items[i];
  if (items.size() > kListedFiles) {
    text += "\n  ... and " + std::to_string(items.size() - kListedFiles) + " more";
  }
  return text;
}

std::map<std::string, std::string> digests_of(const SourceIdentity& identity) {
  std::map<std::string, std::string> out;
  for (const auto& f : identity) {
    if (!f.xxh64.empty()) out[f.name] = f.xxh64;
  }
  return out;
}

const std::string kVerifyHint =
    "If the contents are unchanged (a copy, a touch, a restore from backup), pass "
    "--verify-source to re-hash every source file against the digests the store recorded; "
    "else use a new --work directory (its committed layers were computed from the old data, and "
    "going on would mix them with new ones).";

// The recorded identity against `current`; returns `current` with the digests still valid
// (recorded ones of unchanged files, then every verified one). Throws naming changed files.
SourceIdentity compare_source(const std::string& where, const SourceIdentity& recorded,
                              SourceIdentity current, const SourceDigests* verified) {
  const std::vector<std::string> changes = formats::changed_source_files(recorded, current);
  const auto recorded_digests = digests_of(recorded);
  if (!changes.empty() && verified == nullptr) {
    QF_FAIL(where + ":", "the source checkpoint changed since this store's run recorded it;",
            changes.size(), "file(s):" + lines(changes) + "\n" + kVerifyHint);
  }
  if (!changes.empty()) {
    // Every recorded digest was compared by verify_source_contents; a changed file that never
    // got one cannot be proven unchanged.
    std::vector<std::string> unproven;
    for (const auto& f : recorded) {
      const bool changed = std::any_of(changes.begin(), changes.end(), [&](const std::string& l) {
        return l.compare(0, f.name.size() + 1, f.name + ":") == 0;
      });
      if (changed && !verified->matched_recorded.count(f.name)) unproven.push_back(f.name);
    }
    QF_CHECK(unproven.empty(), where + ":", unproven.size(),
             "changed source file(s) have no content digest in the store (its run stopped before "
             "hashing them), so --verify-source cannot prove them unchanged:" +
                 lines(unproven) + "\nUse a new --work directory.");
    log_warn(where, ": ", changes.size(),
             " source file(s) have new dates or inodes, but "
             "--verify-source found their contents unchanged; recording the new identity");
  }
  std::set<std::string> changed_names;
  for (const auto& line : changes) changed_names.insert(line.substr(0, line.find(':')));
  for (auto& f : current) {
    const auto kept = recorded_digests.find(f.name);
    if (kept != recorded_digests.end() && !changed_names.count(f.name)) f.xxh64 = kept->second;
    if (verified && verified->digests.count(f.name)) f.xxh64 = verified->digests.at(f.name);
  }
  return current;
}

}  // namespace

std::vector<std::string> source_identity_files(const formats::CheckpointDir& source) {
  std::set<std::string> files(source.shard_files().begin(), source.shard_files().end());
  for (const auto& file : source.other_files()) files.insert(file);
  if (source.has_index()) files.insert(formats::kShardIndexFileName);
  return {files.begin(), files.end()};
}

SourceDigests verify_source_contents(const formats::CheckpointDir& source,
                                     const std::vector<std::string>& files,
                                     const std::string& work_dir, int n_store_ranks,
                                     dist::Communicator& comm) {
  // Per file: the digest, whether it is a tensor list (the kind the store recorded, else the
  // kind for the file) and whether it matched what was recorded.
  std::vector<uint64_t> digests(files.size(), 0), tensor_list(files.size(), 0),
      matched(files.size(), 0);
  dist::run_on_all_ranks(comm, "--verify-source: hashing the source", [&] {
    std::map<std::string, std::string> recorded;  // from every rank store (each hashed its share)
    for (int r = 0; r < n_store_ranks; ++r) {
      const auto store = formats::RankStore::open(work_dir, r, formats::StoreVerify::kSizes);
      if (store.source_identity().is_null()) continue;
      for (const auto& [file, digest] : digests_of(formats::source_identity_from_json(
               store.source_identity(), store.dir() + "/manifest.json"))) {
        recorded[file] = digest;
      }
    }
    std::vector<std::string> differ;
    for (size_t i = size_t(comm.rank()); i < files.size(); i += size_t(comm.world_size())) {
      const auto it = recorded.find(files[i]);
      const std::string hex = formats::source_file_digest(source.dir() + "/" + files[i],
                                                          it == recorded.end() ? "" : it->second);
      const size_t prefix = hex.rfind(':') + 1;  // npos + 1 = 0: no kind prefix
      tensor_list[i] = prefix > 0 ? 1 : 0;
      QF_CHECK(formats::parse_checksum_hex(hex.substr(prefix), &digests[i]), "internal: bad digest",
               hex);
      if (it != recorded.end() && it->second != hex) {
        differ.push_back(files[i] + ": content xxh64 " + hex + ", the store recorded " +
                         it->second);
      }
      matched[i] = it != recorded.end() && it->second == hex ? 1 : 0;
    }
    QF_CHECK(differ.empty(), source.dir() + ":", differ.size(),
             "source file(s) differ from what the store's run read:" + lines(differ) +
                 "\nIts committed layers were computed from other data: use a new --work "
                 "directory.");
  });
  comm.allreduce(digests.data(), digests.size(), dist::ElemType::kU64, dist::ReduceOp::kSum,
                 "source digests");
  comm.allreduce(tensor_list.data(), tensor_list.size(), dist::ElemType::kU64, dist::ReduceOp::kSum,
                 "source digest kinds");
  comm.allreduce(matched.data(), matched.size(), dist::ElemType::kU64, dist::ReduceOp::kSum,
                 "source digests matched");
  SourceDigests out;
  for (size_t i = 0; i < files.size(); ++i) {
    out.digests[files[i]] = tensor_list[i] ? formats::tensor_list_digest_text(digests[i])
                                           : formats::checksum_hex(digests[i]);
    if (matched[i]) out.matched_recorded.insert(files[i]);
  }
  log_info("--verify-source: ", files.size(), " source file(s) hashed",
           n_store_ranks > 0 ? ", every digest the store recorded matches" : "");
  return out;
}

SourceDigests verify_source_against_stores(const formats::CheckpointDir& source,
                                           const std::string& work_dir, dist::Communicator& comm) {
  int n_store_ranks = 0;
  dist::run_on_all_ranks(comm, "reading the work store's rank count", [&] {
    if (formats::RankStore::n_committed(work_dir, 0) < 0) return;
    n_store_ranks =
        formats::RankStore::open(work_dir, 0, formats::StoreVerify::kSizes).world_size();
  });
  return verify_source_contents(source, source_identity_files(source), work_dir, n_store_ranks,
                                comm);
}

void check_and_record_source(formats::RankStore& store, formats::SourceIdentity current,
                             const SourceDigests* verified) {
  // The work directory: every rank's store recorded the same identity, so every rank's
  // refusal reads the same and is printed once.
  const std::string where = std::filesystem::path(store.dir()).parent_path().string();
  if (store.manifest_format_version() < 2 && store.source_identity().is_null()) {
    log_warn(store.dir(), ": written by an older quantforge (manifest version ",
             store.manifest_format_version(),
             "), which recorded only the sizes and header "
             "checksums of the source files (those match); their data cannot be compared. If the "
             "source changed since that run, remove the store. Recording its identity from now.");
  }
  if (!store.source_identity().is_null()) {
    current = compare_source(
        where,
        formats::source_identity_from_json(store.source_identity(), store.dir() + "/manifest.json"),
        std::move(current), verified);
  } else if (verified) {
    for (auto& f : current) {
      f.xxh64 = verified->digests.count(f.name) ? verified->digests.at(f.name) : "";
    }
  }
  store.set_source_identity(formats::source_identity_to_json(current));
}

void check_source_for_export(const formats::RankStore& store,
                             const formats::SourceIdentity& current,
                             const SourceDigests* verified) {
  if (store.source_identity().is_null()) {
    log_warn(store.dir(), ": written by an older quantforge (manifest version ",
             store.manifest_format_version(),
             "): only the sizes and header checksums of the "
             "source files can be compared (they match)");
    return;
  }
  compare_source(
      store.dir(),
      formats::source_identity_from_json(store.source_identity(), store.dir() + "/manifest.json"),
      current, verified);
}

void check_source_unchanged_since_start(const formats::CheckpointDir& source,
                                        const formats::SourceIdentity& at_start) {
  std::vector<std::string> names;
  for (const auto& f : at_start) names.push_back(f.name);
  const auto changes =
      formats::changed_source_files(at_start, formats::stat_source_files(source.dir(), names));
  QF_CHECK(changes.empty(), source.dir() + ":",
           "the source checkpoint changed while this run "
           "used it;",
           changes.size(),
           "file(s):" + lines(changes) +
               "\nThe committed layers may mix old and new data: use a new --work directory.");
}

std::unique_ptr<formats::SourceHasher> start_source_hasher(const formats::CheckpointDir& source,
                                                           formats::RankStore& store, int rank,
                                                           int world_size) {
  if (store.source_identity().is_null()) return nullptr;
  const SourceIdentity recorded =
      formats::source_identity_from_json(store.source_identity(), store.dir() + "/manifest.json");
  std::vector<std::string> names, paths;
  for (size_t i = size_t(rank); i < recorded.size(); i += size_t(world_size)) {
    if (!recorded[i].xxh64.empty()) continue;
    names.push_back(recorded[i].name);
    paths.push_back(source.dir() + "/" + recorded[i].name);
  }
  if (names.empty()) return nullptr;
  return std::make_unique<formats::SourceHasher>(
      std::move(names), std::move(paths),
      [&store](const std::string& name, const std::string& digest) {
        store.note_source_digests({{name, digest}});
      });
}

namespace {

// Reads in flight while hashing the tensors nothing read (as the calibration's reads).
constexpr int64_t kHashesInFlight = 8;

// Every shard's tensors, flattened in (shard, data offset) order.
struct SourceTensorSlot {
  const formats::SafetensorsReader* shard;
  const formats::TensorInfo* tensor;
};
std::vector<SourceTensorSlot> source_tensor_slots(const formats::CheckpointDir& source) {
  std::vector<SourceTensorSlot> slots;
  for (const auto& file : source.shard_files()) {
    const auto& shard = source.shard(file);
    for (const auto& t : shard.tensors()) slots.push_back({&shard, &t});
  }
  return slots;
}

// Collective: the digest each tensor got on any rank, noted into every rank's readers. A tensor
// two ranks hashed differently (its file changed under the job) stays unknown; its file is
// returned (no digest is recorded for it).
std::set<std::string> pool_tensor_digests(const formats::CheckpointDir& source,
                                          dist::Communicator& comm) {
  const std::vector<SourceTensorSlot> slots = source_tensor_slots(source);
  const size_t n = slots.size();
  // present: how many ranks know it; extremes: max of d, then max of ~d (= ~min d).
  std::vector<uint64_t> present(n, 0), extremes(2 * n, 0);
  for (size_t i = 0; i < n; ++i) {
    uint64_t d = 0;
    if (!slots[i].shard->known_digest(*slots[i].tensor, &d)) continue;
    present[i] = 1;
    extremes[i] = d;
    extremes[n + i] = ~d;
  }
  comm.allreduce(present.data(), n, dist::ElemType::kU64, dist::ReduceOp::kSum,
                 "source tensor digests known");
  comm.allreduce(extremes.data(), 2 * n, dist::ElemType::kU64, dist::ReduceOp::kMax,
                 "source tensor digests");
  std::set<std::string> inconsistent;
  for (size_t i = 0; i < n; ++i) {
    if (present[i] == 0) continue;
    if (extremes[i] != ~extremes[n + i]) {
      inconsistent.insert(slots[i].shard->path());
      continue;
    }
    slots[i].shard->note_digest(*slots[i].tensor, extremes[i]);
  }
  return inconsistent;
}

// Hashes the tensors of `shard` that have no digest yet (several reads in flight); their bytes.
uint64_t hash_unread_tensors(const formats::SafetensorsReader& shard) {
  std::vector<const formats::TensorInfo*> missing;
  uint64_t n_bytes = 0, unused = 0;
  for (const auto& t : shard.tensors()) {
    if (shard.known_digest(t, &unused)) continue;
    missing.push_back(&t);
    n_bytes += t.n_bytes();
  }
  if (missing.empty()) return 0;
  const formats::FileDescriptor fd = formats::open_for_read(shard.path());
  const auto n_items = static_cast<int64_t>(missing.size());
  parallel_for_each(n_items, std::min(n_items, kHashesInFlight), [&](int64_t, int64_t i) {
    const formats::TensorInfo& t = *missing[size_t(i)];
    shard.note_digest(t, formats::checksum_range(fd, shard.data_offset() + t.begin, t.n_bytes()));
  });
  return n_bytes;
}

}  // namespace

void record_source_digests_from_reads(const formats::CheckpointDir& source,
                                      formats::RankStore& store, bool hash_missing,
                                      dist::Communicator& comm) {
  const std::set<std::string> inconsistent = pool_tensor_digests(source, comm);
  dist::run_on_all_ranks(comm, "hashing the source tensors no read covered", [&] {
    const auto recorded = digests_of(formats::source_identity_from_json(
        store.source_identity(), store.dir() + "/manifest.json"));
    const std::set<std::string> shard_files(source.shard_files().begin(),
                                            source.shard_files().end());
    const std::vector<std::string> files = source_identity_files(source);
    std::map<std::string, std::string> digests;
    uint64_t n_bytes_hashed = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      const std::string& file = files[i];
      const std::string path = source.dir() + "/" + file;
      if (recorded.count(file)) continue;
      if (inconsistent.count(path)) {
        log_warn(path,
                 ": two ranks read different bytes for one of its tensors (it changed while "
                 "the job ran?); no content digest recorded for it");
        continue;
      }
      const bool mine = hash_missing && i % size_t(comm.world_size()) == size_t(comm.rank());
      if (!shard_files.count(file)) {
        if (mine) digests[file] = formats::source_file_digest(path);
        continue;
      }
      const auto& shard = source.shard(file);
      if (mine) n_bytes_hashed += hash_unread_tensors(shard);
      uint64_t digest = 0;
      if (shard.content_digest(&digest)) digests[file] = formats::tensor_list_digest_text(digest);
    }
    log_info("source content digests: ", digests.size(), " of ", files.size(),
             " file(s) from this run's reads (rank ", comm.rank(), " hashed ",
             n_bytes_hashed / 1000000, " MB that no read covered)");
    store.note_source_digests(digests);
    store.flush_source_digests();
  });
}

void note_source_digests_read_here(const formats::CheckpointDir& source,
                                   formats::RankStore& store) noexcept {
  try {
    std::map<std::string, std::string> digests;
    for (const auto& file : source.shard_files()) {
      uint64_t digest = 0;
      if (source.shard(file).content_digest(&digest)) {
        digests[file] = formats::tensor_list_digest_text(digest);
      }
    }
    store.note_source_digests(digests);
  } catch (const std::exception& e) {
    log_warn(store.dir(), ": source content digests not noted: ", e.what());
  }
}

void flush_source_digests_noexcept(formats::RankStore& store) noexcept {
  try {
    store.flush_source_digests();
  } catch (const std::exception& e) {
    log_warn(store.dir(), ": source content digests not recorded: ", e.what());
  }
}

}  // namespace qf::pipeline
