// Derived stored tensors (see source_derived.hpp).
#include "formats/source_derived.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <utility>
#include <vector>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "formats/checksum.hpp"
#include "formats/tensor_spec.hpp"

namespace qf::formats {
namespace {

// Pieces small enough that no read covers a whole multi-MiB tensor: a whole-tensor read would
// hash it again for the source digests, which the job's first read already did.
constexpr uint64_t kPieceBytes = 1ull << 20;

constexpr int64_t kMaxMarkThreads = 4;

constexpr DerivationRule kRules[] = {DerivationRule::kIdentity,
                                     DerivationRule::kFp4NegativeZeroCleared};

// Byte -> byte with each nibble 8 (E2M1 -0) made 0; every other nibble kept.
constexpr std::array<uint8_t, 256> negative_zero_cleared_table() {
  std::array<uint8_t, 256> table{};
  for (int b = 0; b < 256; ++b) {
    const int lo = (b & 0x0F) == 0x08 ? 0 : (b & 0x0F);
    const int hi = (b & 0xF0) == 0x80 ? 0 : (b & 0xF0);
    table[b] = static_cast<uint8_t>(hi | lo);
  }
  return table;
}
constexpr std::array<uint8_t, 256> kNegativeZeroCleared = negative_zero_cleared_table();

// Calls visit(offset, piece, n) for each piece of the source tensor, read in order.
template <typename Visit>
void for_each_source_piece(const CheckpointDir& source, const std::string& name,
                           std::vector<uint8_t>& buffer, Visit visit) {
  const SafetensorsReader* shard = nullptr;
  const TensorInfo& info = source.tensor(name, &shard);
  const uint64_t n_bytes = info.n_bytes();
  buffer.resize(static_cast<size_t>(std::min(kPieceBytes, n_bytes)));
  for (uint64_t done = 0; done < n_bytes;) {
    const uint64_t n = std::min<uint64_t>(buffer.size(), n_bytes - done);
    shard->read(info, done, n, buffer.data());
    if (!visit(done, buffer.data(), n)) return;
    done += n;
  }
}

// The first rule (in kRules order) that turns the source tensor into exactly `bytes`, trying
// them all in one pass over the source: each piece is read once, and the pass ends as soon as no
// rule still matches. False when none does.
bool first_matching_rule(const CheckpointDir& source, const std::string& source_name,
                         const std::vector<uint8_t>& bytes, std::vector<uint8_t>& buffer,
                         std::vector<uint8_t>& scratch, DerivationRule* matched) {
  constexpr size_t kNRules = std::size(kRules);
  std::array<bool, kNRules> alive;
  alive.fill(true);
  for_each_source_piece(source, source_name, buffer,
                        [&](uint64_t offset, uint8_t* piece, uint64_t n) {
                          bool any = false;
                          scratch.resize(static_cast<size_t>(n));
                          for (size_t r = 0; r < kNRules; ++r) {
                            if (!alive[r]) continue;
                            const uint8_t* derived = piece;  // identity: the piece itself
                            if (kRules[r] != DerivationRule::kIdentity) {
                              std::memcpy(scratch.data(), piece, static_cast<size_t>(n));
                              apply_derivation_rule(kRules[r], scratch.data(), n);
                              derived = scratch.data();
                            }
                            alive[r] = std::memcmp(derived, bytes.data() + offset, n) == 0;
                            any = any || alive[r];
                          }
                          return any;
                        });
  for (size_t r = 0; r < kNRules; ++r) {
    if (alive[r]) {
      *matched = kRules[r];
      return true;
    }
  }
  return false;
}

}  // namespace

void apply_derivation_rule(DerivationRule rule, uint8_t* bytes, size_t n_bytes) {
  switch (rule) {
    case DerivationRule::kIdentity:
      return;
    case DerivationRule::kFp4NegativeZeroCleared:
      for (size_t i = 0; i < n_bytes; ++i) bytes[i] = kNegativeZeroCleared[bytes[i]];
      return;
  }
  QF_FAIL("internal: unknown derivation rule", static_cast<int>(rule));
}

uint64_t mark_source_derived(LayerRecord& record, const CheckpointDir& source,
                             const std::map<std::string, std::string>& candidates) {
  std::vector<std::pair<StoredTensor*, const std::string*>> work;  // (tensor, source name)
  for (StoredTensor& tensor : record.tensors) {
    const auto candidate = candidates.find(tensor.name);
    if (tensor.derived || tensor.bytes.empty() || candidate == candidates.end()) continue;
    const std::string& source_name = candidate->second;
    if (source.has_tensor(source_name) &&
        source.tensor(source_name).n_bytes() == tensor.bytes.size()) {
      work.emplace_back(&tensor, &source_name);
    }
  }
  if (work.empty()) return 0;
  // A few threads: reading the page cache, comparing and hashing 3.2 GB per V4-Flash layer on
  // one thread would hold back the commit and the output writes behind it.
  const int64_t n_workers =
      std::min<int64_t>({kMaxMarkThreads, thread_count(), static_cast<int64_t>(work.size())});
  const size_t n_slots = static_cast<size_t>(std::max<int64_t>(n_workers, 1));
  std::vector<std::vector<uint8_t>> buffers(n_slots), scratch(n_slots);
  std::vector<uint64_t> n_marked(n_slots, 0);
  parallel_for_each(static_cast<int64_t>(work.size()), n_workers, [&](int64_t worker, int64_t i) {
    StoredTensor& tensor = *work[static_cast<size_t>(i)].first;
    const std::string& source_name = *work[static_cast<size_t>(i)].second;
    DerivationRule rule{};
    if (!first_matching_rule(source, source_name, tensor.bytes, buffers[worker], scratch[worker],
                             &rule)) {
      return;
    }
    tensor.derived =
        SourceDerivation{source_name, rule, checksum64(tensor.bytes.data(), tensor.bytes.size())};
    n_marked[worker] += tensor.bytes.size();
  });
  uint64_t total = 0;
  for (const uint64_t n : n_marked) total += n;
  return total;
}

void materialize_source_derived(LayerRecord& record, const CheckpointDir& source,
                                const std::string& label) {
  std::vector<uint8_t> buffer;
  for (StoredTensor& tensor : record.tensors) {
    if (!tensor.derived || !tensor.bytes.empty()) continue;
    const SourceDerivation& derived = *tensor.derived;
    const std::string what = label + ": tensor " + tensor.name + " (derived from source tensor " +
                             derived.source + " by " + derivation_rules().name(derived.rule) + ")";
    QF_CHECK(source.has_tensor(derived.source), what + ":", "the source", source.dir(),
             "no longer has", derived.source);
    const SafetensorsReader* shard = nullptr;
    const uint64_t n_source = source.tensor(derived.source, &shard).n_bytes();
    const uint64_t n_bytes = tensor_n_bytes(tensor.dtype, shape_n_elems(tensor.shape, what), what);
    QF_CHECK(n_source == n_bytes, what + ":", "the source tensor in", shard->path(), "has",
             n_source, "bytes, the stored tensor", n_bytes,
             "(the source changed since this layer was committed)");
    tensor.bytes.resize(static_cast<size_t>(n_bytes));
    Checksum64 sum;
    for_each_source_piece(source, derived.source, buffer,
                          [&](uint64_t offset, uint8_t* piece, uint64_t n) {
                            apply_derivation_rule(derived.rule, piece, n);
                            std::memcpy(tensor.bytes.data() + offset, piece, n);
                            sum.update(piece, n);
                            return true;
                          });
    QF_CHECK(sum.digest() == derived.xxh64, what + ":", "rebuilt from", shard->path(),
             "it has xxh64", checksum_hex(sum.digest()), "but the store recorded",
             checksum_hex(derived.xxh64) + ":",
             "the source changed since this layer was committed; restore it, or quantize again "
             "without --resume into a new work directory");
  }
}

}  // namespace qf::formats
