// X^T X recording for --weight-scale gptq | hessian (calibrate/hessian_recorder.hpp): the sums
// equal a naive double X^T X, linears fed the same tensor share one sum, grouped inputs (wo_a)
// split rows by group, and the hessian record gives each kept linear its matrix back.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "calibrate/hessian_recorder.hpp"
#include "catch_compat.hpp"

using namespace qf;
using namespace qf::pipeline;

namespace {

std::vector<float> random_rows(int64_t n_rows, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(size_t(n_rows * n));
  for (auto& v : x) v = normal(rng);
  return x;
}

// sum over rows offset, offset + stride, ... of x[k][i] * x[k][j], full matrix.
std::vector<double> naive_xtx(const std::vector<float>& x, int64_t n, int64_t stride,
                              int64_t offset) {
  const int64_t n_rows = int64_t(x.size()) / n;
  std::vector<double> h(size_t(n * n), 0.0);
  for (int64_t k = offset; k < n_rows; k += stride) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        h[size_t(i * n + j)] += double(x[size_t(k * n + i)]) * double(x[size_t(k * n + j)]);
      }
    }
  }
  return h;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i] == Approx(want[i]).epsilon(1e-12).margin(1e-9));
  }
}

}  // namespace

TEST_CASE("hessian: accumulate_xtx equals a naive X^T X", "[hessian]") {
  const int64_t n = 40;
  for (int64_t stride : {1, 4}) {
    const auto x = random_rows(2 * 3 * 72, n, 1);  // 2 sequences, 3 x 72 rows (> one chunk)
    for (int64_t offset = 0; offset < stride; ++offset) {
      std::vector<double> sum(size_t(n * n), 0.0);
      accumulate_xtx(x.data(), int64_t(x.size()) / n, n, 2, stride, offset, sum.data());
      mirror_upper(sum.data(), n);
      check_close(sum, naive_xtx(x, n, stride, offset));
    }
  }
}

TEST_CASE("hessian: shared inputs, groups and the record", "[hessian]") {
  const int64_t n = 32, rows = 2 * 16;
  std::vector<HessianSlot> slots = {{"layers.0.attn.wq_a", n, 1},
                                    {"layers.0.attn.wkv", n, 1},
                                    {"layers.0.attn.wo_a", n, 4},
                                    {"layers.0.ffn.shared_experts.w2", n, 1}};
  HessianRecorder rec(slots);
  std::vector<float> all_q, all_o, all_w2;
  for (int batch = 0; batch < 2; ++batch) {
    const auto q = random_rows(rows, n, 10 + batch);
    const auto o = random_rows(rows * 4, n, 20 + batch);
    const auto w2 = random_rows(rows, n, 30 + batch);
    rec.begin_batch(2);
    rec.observe("layers.0.attn.wq_a", q.data(), rows, n);
    rec.observe("layers.0.attn.wkv", q.data(), rows, n);  // the same tensor: an alias
    rec.observe("layers.0.attn.wo_a", o.data(), rows * 4, n);
    rec.observe("layers.0.ffn.shared_experts.w2", w2.data(), rows, n);
    rec.observe("layers.0.ffn.experts.0.w1", w2.data(), rows, n);  // not a slot: ignored
    all_q.insert(all_q.end(), q.begin(), q.end());
    all_o.insert(all_o.end(), o.begin(), o.end());
    all_w2.insert(all_w2.end(), w2.begin(), w2.end());
  }
  CHECK(rec.input_of() == std::vector<int>{0, 0, 2, 3});
  for (size_t s = 0; s < slots.size(); ++s) {
    if (rec.input_of()[s] != int(s)) continue;
    for (int g = 0; g < slots[s].n_groups; ++g) mirror_upper(rec.sums(s).data() + g * n * n, n);
  }
  const auto record = hessian_record(0, rec, {true, true, true, false}, 64);
  CHECK(record.tensors.size() == 2);  // wq_a's (shared with wkv) and wo_a's; w2 not kept
  Hessian h;
  REQUIRE(find_hessian(record, "layers.0.attn.wkv", &h));
  CHECK(h.n == n);
  CHECK(h.n_groups == 1);
  check_close(h.data, naive_xtx(all_q, n, 1, 0));
  REQUIRE(find_hessian(record, "layers.0.attn.wo_a", &h));
  CHECK(h.n_groups == 4);
  for (int g = 0; g < 4; ++g) {
    const std::vector<double> group(h.data.begin() + g * n * n, h.data.begin() + (g + 1) * n * n);
    check_close(group, naive_xtx(all_o, n, 4, g));
  }
  CHECK_FALSE(find_hessian(record, "layers.0.ffn.shared_experts.w2", &h));
}

TEST_CASE("hessian: an alias that stops holding is an error", "[hessian]") {
  const int64_t n = 16, rows = 8;
  HessianRecorder rec({{"a", n, 1}, {"b", n, 1}});
  const auto x = random_rows(rows, n, 1), y = random_rows(rows, n, 2);
  rec.begin_batch(1);
  rec.observe("a", x.data(), rows, n);
  rec.observe("b", x.data(), rows, n);
  rec.begin_batch(1);
  rec.observe("a", x.data(), rows, n);
  CHECK_THROWS(rec.observe("b", y.data(), rows, n));
}
