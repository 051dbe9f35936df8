// Derived stored tensors (see source_derived.hpp).
#include "formats/source_derived.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <iterator>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "formats/checksum.hpp"
#include "formats/tensor_spec.hpp"
#include "numerics/mxfp4_to_nvfp4.hpp"

namespace qf::formats {
namespace {

// Pieces of at most 1 MiB, and never the whole tensor in one read: a whole-tensor read notes
// the tensor's XXH64 for the source's content digest (SafetensorsReader::digest_whole_reads),
// which the job's first read already did and which must stay the digest of those bytes.
constexpr uint64_t kPieceBytes = 1ull << 20;

constexpr int64_t kMaxMarkThreads = 4;

constexpr DerivationRule kRules[] = {DerivationRule::kIdentity,
                                     DerivationRule::kFp4NegativeZeroCleared,
                                     DerivationRule::kE8m0BlockScaleAsE4m3};

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
  buffer.resize(static_cast<size_t>(n_bytes > 1 ? std::min(kPieceBytes, (n_bytes + 1) / 2) : 1));
  for (uint64_t done = 0; done < n_bytes;) {
    const uint64_t n = std::min<uint64_t>(buffer.size(), n_bytes - done);
    shard->read(info, done, n, buffer.data());
    if (!visit(done, buffer.data(), n)) return;
    done += n;
  }
}

// The block-scale rule's E4M3 byte for an E8M0 byte under `shift`: the in-range block scale of
// the lossless cast (numerics::mxfp4_nvfp4_block_scale of amax 6 * 2^k, scale_2 = 2^shift).
uint8_t e8m0_block_scale_as_e4m3(uint8_t e8m0, int32_t shift) {
  const float amax = numerics::kE2m1Max * numerics::exp2_int(numerics::mxfp4_exponent(e8m0));
  return numerics::mxfp4_nvfp4_block_scale(amax, numerics::exp2_int(shift));
}

// The shift of a weight_scale_2 scalar (4 bytes, FP32 2^shift), if it is an exact power of two.
std::optional<int32_t> shift_of(const StoredTensor* tensor) {
  if (tensor == nullptr || tensor->dtype != DType::kF32 || tensor->bytes.size() != 4) {
    return std::nullopt;
  }
  float value = 0;
  std::memcpy(&value, tensor->bytes.data(), 4);
  if (!(value > 0) || !std::isfinite(value)) return std::nullopt;
  const int32_t shift = std::ilogb(value);
  if (numerics::exp2_int(shift) != value) return std::nullopt;
  return shift;
}

// The first rule (in kRules order) that turns the source tensor into exactly `bytes`, trying
// every rule the byte counts allow in one pass over the source: each piece is read once, and the
// pass ends as soon as no rule still matches. False when none does.
bool first_matching_rule(const CheckpointDir& source, const std::string& source_name,
                         std::optional<int32_t> shift, const std::vector<uint8_t>& bytes,
                         std::vector<uint8_t>& buffer, std::vector<uint8_t>& scratch,
                         DerivationRule* matched) {
  constexpr size_t kNRules = std::size(kRules);
  const uint64_t n_source = source.tensor(source_name).n_bytes();
  std::array<bool, kNRules> alive;
  bool any_alive = false;
  for (size_t r = 0; r < kNRules; ++r) {
    alive[r] = n_source * uint64_t(derivation_expansion(kRules[r])) == bytes.size() &&
               (!derivation_takes_shift(kRules[r]) || shift.has_value());
    any_alive = any_alive || alive[r];
  }
  if (!any_alive) return false;
  for_each_source_piece(
      source, source_name, buffer, [&](uint64_t offset, uint8_t* piece, uint64_t n) {
        bool any = false;
        for (size_t r = 0; r < kNRules; ++r) {
          if (!alive[r]) continue;
          const uint64_t e = uint64_t(derivation_expansion(kRules[r]));
          const uint8_t* derived = piece;  // identity: the piece itself
          if (kRules[r] != DerivationRule::kIdentity) {
            scratch.resize(static_cast<size_t>(n * e));
            apply_derivation_rule(kRules[r], shift.value_or(0), piece, n, scratch.data());
            derived = scratch.data();
          }
          alive[r] = std::memcmp(derived, bytes.data() + offset * e, n * e) == 0;
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

int derivation_expansion(DerivationRule rule) {
  return rule == DerivationRule::kE8m0BlockScaleAsE4m3 ? 2 : 1;
}

void apply_derivation_rule(DerivationRule rule, int32_t shift, const uint8_t* in, size_t n_in,
                           uint8_t* out) {
  switch (rule) {
    case DerivationRule::kIdentity:
      if (out != in) std::memcpy(out, in, n_in);
      return;
    case DerivationRule::kFp4NegativeZeroCleared:
      for (size_t i = 0; i < n_in; ++i) out[i] = kNegativeZeroCleared[in[i]];
      return;
    case DerivationRule::kE8m0BlockScaleAsE4m3: {
      std::array<uint8_t, 256> table;
      for (int b = 0; b < 256; ++b) table[b] = e8m0_block_scale_as_e4m3(uint8_t(b), shift);
      for (size_t i = 0; i < n_in; ++i) out[2 * i] = out[2 * i + 1] = table[in[i]];
      return;
    }
  }
  QF_FAIL("internal: unknown derivation rule", static_cast<int>(rule));
}

uint64_t mark_source_derived(LayerRecord& record, const CheckpointDir& source,
                             const std::map<std::string, DerivationCandidate>& candidates) {
  struct Work {
    StoredTensor* tensor;
    const std::string* source_name;
    std::optional<int32_t> shift;
  };
  std::vector<Work> work;
  // The shifts' tensors by name, indexed once (a V4-Pro layer has ~1.2k block scales among
  // ~4.6k tensors: a scan per scale would be quadratic).
  std::unordered_map<std::string_view, const StoredTensor*> by_name;
  const auto find = [&](const std::string& name) -> const StoredTensor* {
    if (by_name.empty()) {
      for (const StoredTensor& t : record.tensors) by_name.emplace(t.name, &t);
    }
    const auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  };
  for (StoredTensor& tensor : record.tensors) {
    const auto candidate = candidates.find(tensor.name);
    if (tensor.derived || tensor.bytes.empty() || candidate == candidates.end()) continue;
    const DerivationCandidate& from = candidate->second;
    if (!source.has_tensor(from.source)) continue;
    std::optional<int32_t> shift;
    if (!from.shift_from.empty()) shift = shift_of(find(from.shift_from));
    work.push_back({&tensor, &from.source, shift});
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
    const Work& item = work[static_cast<size_t>(i)];
    StoredTensor& tensor = *item.tensor;
    DerivationRule rule{};
    if (!first_matching_rule(source, *item.source_name, item.shift, tensor.bytes, buffers[worker],
                             scratch[worker], &rule)) {
      return;
    }
    const int32_t shift = derivation_takes_shift(rule) ? *item.shift : 0;
    tensor.derived = SourceDerivation{*item.source_name, rule,
                                      checksum64(tensor.bytes.data(), tensor.bytes.size()), shift};
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
    const uint64_t e = uint64_t(derivation_expansion(derived.rule));
    QF_CHECK(n_source * e == n_bytes, what + ":", "the source tensor in", shard->path(), "has",
             n_source, "bytes, the stored tensor", n_bytes,
             "(the source changed since this layer was committed)");
    tensor.bytes.resize(static_cast<size_t>(n_bytes));
    for_each_source_piece(source, derived.source, buffer,
                          [&](uint64_t offset, uint8_t* piece, uint64_t n) {
                            apply_derivation_rule(derived.rule, derived.shift, piece, n,
                                                  tensor.bytes.data() + offset * e);
                            return true;
                          });
    const uint64_t digest = checksum64(tensor.bytes.data(), tensor.bytes.size());
    QF_CHECK(digest == derived.xxh64, what + ":", "rebuilt from", shard->path(), "it has xxh64",
             checksum_hex(digest), "but the store recorded", checksum_hex(derived.xxh64) + ":",
             "the source changed since this layer was committed; restore it, or quantize again "
             "without --resume into a new work directory");
  }
}

}  // namespace qf::formats
