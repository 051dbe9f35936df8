// HessianRecorder, the X^T X accumulation and the hessian record (see hessian_recorder.hpp).
#include "calibrate/hessian_recorder.hpp"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "core/strings.hpp"
#include "formats/checksum.hpp"
#include "model/forward_attention.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {
namespace {

constexpr int64_t kChunkRows = 64;

std::string join_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (size_t i = 0; i < lines.size(); ++i) text += (i ? "\n" : "") + lines[i];
  return text;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin <= text.size() && !text.empty()) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

}  // namespace

std::vector<HessianSlot> hessian_slots(const model::ModelConfig& config, int layer,
                                       const std::vector<std::string>& linear_names,
                                       const std::vector<bool>& wanted) {
  QF_CHECK(wanted.size() == linear_names.size(), "hessian slots: one flag per linear");
  std::map<std::string, int64_t> in_features;
  for (const auto& t : model::checkpoint_tensors(config, model::WeightFormat::kNative)) {
    if (t.layer == layer && !t.is_mtp && t.spec.shape.size() == 2 &&
        ends_with(t.spec.name, ".weight")) {
      in_features[t.spec.name.substr(0, t.spec.name.size() - 7)] = t.spec.shape[1];
    }
  }
  std::vector<HessianSlot> slots;
  for (size_t i = 0; i < linear_names.size(); ++i) {
    if (!wanted[i]) continue;
    const auto it = in_features.find(linear_names[i]);
    QF_CHECK(it != in_features.end(), "hessian slots: no weight for", linear_names[i]);
    slots.push_back(
        {linear_names[i], it->second, model::linear_input_groups(config, linear_names[i])});
  }
  return slots;
}

HessianRecorder::HessianRecorder(std::vector<HessianSlot> slots)
    : slots_(std::move(slots)),
      input_of_(slots_.size(), -1),
      sums_(slots_.size()),
      batch_hash_(slots_.size(), 0),
      batch_of_(slots_.size(), -1) {}

void HessianRecorder::begin_batch(int n_seqs) {
  QF_CHECK(n_seqs >= 1, "hessian recorder: a batch needs >= 1 sequence");
  ++batch_;
  n_seqs_ = n_seqs;
}

void HessianRecorder::observe(const std::string& linear_name, const float* x, int64_t n_rows,
                              int64_t n_cols) {
  size_t s = 0;
  while (s < slots_.size() && slots_[s].name != linear_name) ++s;
  if (s == slots_.size()) return;
  const HessianSlot& slot = slots_[s];
  QF_CHECK(batch_ >= 0, "hessian recorder: observe before begin_batch");
  QF_CHECK(n_cols == slot.n && n_rows % (int64_t(n_seqs_) * slot.n_groups) == 0,
           "hessian recorder:", linear_name, "input is", n_rows, "x", n_cols, "; expected", slot.n,
           "columns and rows a multiple of", n_seqs_, "sequences x", slot.n_groups, "groups");
  const uint64_t hash = formats::checksum64(x, size_t(n_rows * n_cols) * sizeof(float));
  // The slot of an earlier linear with this very input in this batch (same shape and bytes).
  const auto same_input_as = [&]() -> int {
    for (size_t o = 0; o < s; ++o) {
      if (input_of_[o] == int(o) && batch_of_[o] == batch_ && batch_hash_[o] == hash &&
          slots_[o].n == slot.n && slots_[o].n_groups == slot.n_groups) {
        return int(o);
      }
    }
    return -1;
  };
  if (input_of_[s] < 0) {  // first sight: an alias, or a new input
    const int other = same_input_as();
    input_of_[s] = other >= 0 ? other : int(s);
    if (other < 0) sums_[s].assign(size_t(slot.n_groups * slot.n * slot.n), 0.0);
  }
  if (input_of_[s] != int(s)) {
    const int c = input_of_[s];
    QF_CHECK(batch_of_[c] == batch_ && batch_hash_[c] == hash, "hessian recorder:", linear_name,
             "read the same input as", slots_[c].name, "in an earlier batch but not in this one");
    return;
  }
  batch_hash_[s] = hash;
  batch_of_[s] = batch_;
  const int64_t nn = slot.n * slot.n;
  for (int g = 0; g < slot.n_groups; ++g) {
    accumulate_xtx(x, n_rows, n_cols, n_seqs_, slot.n_groups, g, sums_[s].data() + g * nn);
  }
}

void HessianRecorder::set_input_of(std::vector<int> input_of) {
  QF_CHECK(input_of.size() == slots_.size(), "hessian recorder: one entry per slot");
  for (size_t s = 0; s < slots_.size(); ++s) {
    const int c = input_of[s];
    QF_CHECK(c < int(s + 1) && (c < 0 || input_of[c] == c), "hessian recorder: slot", s, "maps to",
             c, ", not an earlier input");
    if (c == int(s) && sums_[s].empty()) {
      sums_[s].assign(size_t(slots_[s].n_groups * slots_[s].n * slots_[s].n), 0.0);
    }
    if (c != int(s)) sums_[s].clear();
  }
  input_of_ = std::move(input_of);
}

void accumulate_xtx(const float* x, int64_t n_rows, int64_t n, int n_seqs, int64_t stride,
                    int64_t offset, double* sum) {
  QF_CHECK(n_seqs >= 1 && stride >= 1 && offset >= 0 && offset < stride &&
               n_rows % (int64_t(n_seqs) * stride) == 0,
           "accumulate_xtx: bad split of", n_rows, "rows into", n_seqs, "sequences, stride",
           stride);
  const int64_t seq_rows = n_rows / n_seqs, seq_picked = seq_rows / stride;
  std::vector<double> cols(size_t(n * kChunkRows));  // column-major chunk: cols[i * K + k]
  for (int seq = 0; seq < n_seqs; ++seq) {
    for (int64_t k0 = 0; k0 < seq_picked; k0 += kChunkRows) {
      const int64_t k_n = std::min(kChunkRows, seq_picked - k0);
      for (int64_t k = 0; k < k_n; ++k) {
        const float* row = x + (seq * seq_rows + offset + (k0 + k) * stride) * n;
        for (int64_t i = 0; i < n; ++i) cols[i * kChunkRows + k] = row[i];
      }
      // Rows i and n-1-i together keep the triangle's work even between threads.
      parallel_for((n + 1) / 2, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
          const int64_t pair[2] = {p, n - 1 - p};
          for (int r = 0; r < (pair[0] == pair[1] ? 1 : 2); ++r) {
            const int64_t i = pair[r];
            const double* a = cols.data() + i * kChunkRows;
            double* out = sum + i * n;
            for (int64_t j = i; j < n; ++j) {
              const double* b = cols.data() + j * kChunkRows;
              // Four fixed partial sums: the order depends on k_n only.
              double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
              int64_t k = 0;
              for (; k + 4 <= k_n; k += 4) {
                s0 += a[k] * b[k];
                s1 += a[k + 1] * b[k + 1];
                s2 += a[k + 2] * b[k + 2];
                s3 += a[k + 3] * b[k + 3];
              }
              for (; k < k_n; ++k) s0 += a[k] * b[k];
              out[j] += (s0 + s1) + (s2 + s3);
            }
          }
        }
      });
    }
  }
}

void mirror_upper(double* sum, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i + 1; j < n; ++j) sum[j * n + i] = sum[i * n + j];
  }
}

formats::LayerRecord hessian_record(int layer, const HessianRecorder& recorder,
                                    const std::vector<bool>& keep, int64_t n_tokens) {
  const auto& slots = recorder.slots();
  const auto& input_of = recorder.input_of();
  QF_CHECK(keep.size() == slots.size(), "hessian record: one keep flag per slot");
  formats::LayerRecord record;
  record.layer = layer;
  std::vector<std::string> lines;
  std::vector<bool> stored(slots.size(), false);
  for (size_t s = 0; s < slots.size(); ++s) {
    if (!keep[s] || input_of[s] < 0) continue;
    const int c = input_of[s];
    lines.push_back(slots[s].name + "=" + slots[c].name);
    if (stored[c]) continue;
    stored[c] = true;
    const auto& sums = const_cast<HessianRecorder&>(recorder).sums(size_t(c));
    std::vector<uint8_t> bytes(sums.size() * sizeof(double));
    std::memcpy(bytes.data(), sums.data(), bytes.size());
    record.tensors.push_back({slots[c].name + ".xtx",
                              DType::kF64,
                              {int64_t(slots[c].n_groups), slots[c].n, slots[c].n},
                              std::move(bytes)});
  }
  record.attrs["input_of"] = join_lines(lines);
  record.attrs["n_tokens"] = std::to_string(n_tokens);
  return record;
}

bool find_hessian(const formats::LayerRecord& record, const std::string& linear, Hessian* out) {
  const auto it = record.attrs.find("input_of");
  if (it == record.attrs.end()) return false;
  const std::string key = linear + "=";
  for (const std::string& line : split_lines(it->second)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    const std::string name = line.substr(key.size()) + ".xtx";
    const formats::StoredTensor* t = record.find_tensor(name);
    QF_CHECK(t && t->dtype == DType::kF64 && t->shape.size() == 3 && t->shape[1] == t->shape[2],
             "hessian record of layer", record.layer, ": no F64 [groups, n, n] tensor", name, "for",
             linear);
    out->n_groups = int(t->shape[0]);
    out->n = t->shape[1];
    out->data.resize(t->bytes.size() / sizeof(double));
    std::memcpy(out->data.data(), t->bytes.data(), t->bytes.size());
    return true;
  }
  return false;
}

}  // namespace qf::pipeline
