// GPU vs CPU reference for the attention family (kernels/forward/attention.cuh): sink attention
// (window only, random / causal visibility, window > seq_len, window 0 and 1, odd head counts,
// head_dim 64..512, a reduced V4-Flash shape), compressor pooling (CSA / HCA, partial trailing
// window), HCA visibility (exact) and the indexer top-k (exact up to near-ties). Needs a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "core/cuda_raii.hpp"
#include "gpu_test_util.hpp"
#include "kernels/forward/attention.cuh"
#include "model/forward_linear.hpp"
#include "ops/matmul.hpp"

using namespace qf;
using qf::test::download;
using qf::test::Mismatches;
using qf::test::to_device;
using qf::test::upload;
using namespace qf::kernels;

namespace {

constexpr double kRelTol = 1e-5;  // FP32 with another summation order than the reference

std::vector<float> randn(size_t n, std::mt19937& rng, float std = 1.0f) {
  std::normal_distribution<float> d(0.0f, std);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Counts elements with |gpu - ref| > kRelTol * (max |ref| of their row of n_cols), or not finite.
size_t count_far_in_row(const std::vector<float>& gpu, const std::vector<float>& ref,
                        int64_t n_cols, const char* what) {
  Mismatches m(what, n_cols);
  for (size_t r0 = 0; r0 < ref.size(); r0 += n_cols) {
    double row_max = 0;
    for (int64_t c = 0; c < n_cols; ++c)
      row_max = std::max(row_max, std::fabs(double(ref[r0 + c])));
    for (int64_t c = 0; c < n_cols; ++c) {
      const size_t i = r0 + c;
      const double err = std::fabs(double(gpu[i]) - double(ref[i]));
      m.check(err <= kRelTol * row_max && std::isfinite(gpu[i]), i, gpu[i], ref[i]);
    }
  }
  return m.count();
}

// ---- sink attention
// -------------------------------------------------------------------------------
enum class Vis { kNone, kRandom, kCausal };

struct SinkCase {
  int64_t n_seqs, seq_len, n_heads, head_dim, window, n_entries;
  Vis vis;
  float q_std;  // larger -> peakier softmax
};

void run_sink_case(const SinkCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t T = c.n_seqs * c.seq_len, H = c.n_heads, D = c.head_dim, E = c.n_entries;
  const std::vector<float> q = randn(T * H * D, rng, c.q_std);
  const std::vector<float> kv = randn(T * D, rng);
  const std::vector<float> sinks = randn(H, rng);
  const std::vector<float> comp = randn(c.n_seqs * E * D, rng);
  std::vector<uint8_t> vis(T * E, 0);
  std::uniform_int_distribution<int> coin(0, 1);
  for (int64_t tok = 0; tok < T; ++tok) {
    const int64_t t = tok % c.seq_len;
    for (int64_t e = 0; e < E; ++e) {
      if (c.vis == Vis::kRandom) vis[tok * E + e] = static_cast<uint8_t>(coin(rng));
      // CSA-like: causal (rate 4) and about half of those.
      if (c.vis == Vis::kCausal) vis[tok * E + e] = e < (t + 1) / 4 && coin(rng);
    }
  }

  SinkAttentionParams p;
  p.n_seqs = c.n_seqs;
  p.seq_len = c.seq_len;
  p.n_heads = H;
  p.head_dim = D;
  p.window = c.window;
  p.n_entries = E;
  p.scale = static_cast<float>(std::pow(static_cast<double>(D), -0.5));
  std::vector<float> ref(T * H * D, -1.0f);
  p.q = q.data();
  p.kv = kv.data();
  p.sinks = sinks.data();
  p.compressed = E > 0 ? comp.data() : nullptr;
  p.visible = E > 0 ? vis.data() : nullptr;
  p.out = ref.data();
  sink_attention_ref(p);

  const auto d_q = to_device(q);
  const auto d_kv = to_device(kv);
  const auto d_sinks = to_device(sinks);
  const auto d_comp = to_device(comp);
  const auto d_vis = to_device(vis);
  DeviceBuffer<float> d_out(std::max<int64_t>(T * H * D, 1));
  QF_CUDA_CHECK(cudaMemset(d_out.get(), 0xFF, std::max<int64_t>(T * H * D, 1) * sizeof(float)),
                "poison");
  p.q = d_q.get();
  p.kv = d_kv.get();
  p.sinks = d_sinks.get();
  p.compressed = E > 0 ? d_comp.get() : nullptr;
  p.visible = E > 0 ? d_vis.get() : nullptr;
  p.out = d_out.get();
  launch_sink_attention(p, nullptr);
  const std::vector<float> gpu = download(d_out, T * H * D);
  INFO("seqs " << c.n_seqs << " seq_len " << c.seq_len << " heads " << H << " hd " << D
               << " window " << c.window << " entries " << E);
  CHECK(count_far_in_row(gpu, ref, D, "out [row, col]") == 0);
}

// ---- compressor pooling
// --------------------------------------------------------------------------
struct PoolCase {
  int64_t n_seqs, seq_len, rate, head_dim;
  bool overlapping;
  int64_t rope_dim;
  float attention_scaling;
};

void run_pool_case(const PoolCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t T = c.n_seqs * c.seq_len, hd = c.head_dim;
  const int64_t width = c.overlapping ? 2 * hd : hd, n_win = c.seq_len / c.rate;
  const std::vector<float> kv = randn(T * width, rng);
  const std::vector<float> gate = randn(T * width, rng, 2.0f);
  const std::vector<float> ape = randn(c.rate * width, rng, 0.5f);
  std::vector<float> norm = randn(hd, rng, 0.1f);
  for (float& w : norm) w += 1.0f;
  std::vector<float> inv_freq(c.rope_dim / 2);
  for (int64_t i = 0; i < c.rope_dim / 2; ++i) {
    inv_freq[i] = 1.0f / std::pow(160000.0f, static_cast<float>(2 * i) / c.rope_dim);
  }

  CompressPoolParams p;
  p.n_seqs = c.n_seqs;
  p.seq_len = c.seq_len;
  p.rate = c.rate;
  p.head_dim = hd;
  p.overlapping = c.overlapping;
  p.rope_dim = c.rope_dim;
  p.attention_scaling = c.attention_scaling;
  p.eps = 1e-6f;
  std::vector<float> ref(c.n_seqs * n_win * hd, -1.0f);
  p.kv = kv.data();
  p.gate = gate.data();
  p.ape = ape.data();
  p.norm = norm.data();
  p.inv_freq = inv_freq.data();
  p.out = ref.data();
  compress_pool_ref(p);

  const auto d_kv = to_device(kv);
  const auto d_gate = to_device(gate);
  const auto d_ape = to_device(ape);
  const auto d_norm = to_device(norm);
  const auto d_freq = to_device(inv_freq);
  DeviceBuffer<float> d_out(std::max<size_t>(ref.size(), 1));
  p.kv = d_kv.get();
  p.gate = d_gate.get();
  p.ape = d_ape.get();
  p.norm = d_norm.get();
  p.inv_freq = d_freq.get();
  p.out = d_out.get();
  launch_compress_pool(p, nullptr);
  const std::vector<float> gpu = download(d_out, ref.size());
  INFO("seqs " << c.n_seqs << " seq_len " << c.seq_len << " rate " << c.rate << " hd " << hd
               << (c.overlapping ? " CSA" : " HCA"));
  CHECK(count_far_in_row(gpu, ref, hd, "out [row, col]") == 0);
}

// ---- indexer
// --------------------------------------------------------------------------------------
struct IndexerCase {
  int64_t n_seqs, seq_len, n_heads, head_dim, rate, top_k;
  int64_t n_distinct_keys;  // > 0: keys repeat with this period (exact score ties)
};

void run_indexer_case(const IndexerCase& c, uint32_t seed) {
  std::mt19937 rng(seed);
  const int64_t T = c.n_seqs * c.seq_len, H = c.n_heads, D = c.head_dim;
  const int64_t E = c.seq_len / c.rate;
  const std::vector<float> q = randn(T * H * D, rng);
  std::vector<float> weights = randn(T * H, rng, 0.125f);
  std::vector<float> keys = randn(c.n_seqs * E * D, rng);
  if (c.n_distinct_keys > 0) {
    for (int64_t row = 0; row < c.n_seqs * E; ++row) {
      const int64_t src = (row / E) * E + (row % E) % c.n_distinct_keys;
      std::copy(keys.begin() + src * D, keys.begin() + (src + 1) * D, keys.begin() + row * D);
    }
  }

  IndexerSelectParams p;
  p.n_seqs = c.n_seqs;
  p.seq_len = c.seq_len;
  p.n_entries = E;
  p.n_heads = H;
  p.head_dim = D;
  p.rate = c.rate;
  p.top_k = c.top_k;
  std::vector<uint8_t> ref(T * E, 7);
  p.q = q.data();
  p.weights = weights.data();
  p.keys = keys.data();
  p.visible = ref.data();
  indexer_select_ref(p);

  const auto d_q = to_device(q);
  const auto d_w = to_device(weights);
  const auto d_keys = to_device(keys);
  DeviceBuffer<uint8_t> d_vis(std::max<int64_t>(T * E, 1));
  QF_CUDA_CHECK(cudaMemset(d_vis.get(), 7, std::max<int64_t>(T * E, 1)), "poison");
  DeviceBuffer<uint8_t> d_ws(std::max<size_t>(indexer_select_workspace_bytes(p), 1));
  p.q = d_q.get();
  p.weights = d_w.get();
  p.keys = d_keys.get();
  p.visible = d_vis.get();
  p.workspace = d_ws.get();
  launch_indexer_select(p, nullptr);
  const std::vector<uint8_t> gpu = download(d_vis, T * E);

  // Where the masks differ, every swapped entry must be a near-tie of the k-th CPU score.
  const float scale = static_cast<float>(std::pow(static_cast<double>(D), -0.5));
  size_t n_near_tie = 0;
  // A row that differs and is no near-tie: got / want are the entries each side picked.
  Mismatches bad("visible rows [seq, t]", c.seq_len, 3);
  std::vector<float> score(E);
  for (int64_t tok = 0; tok < T; ++tok) {
    const int64_t b = tok / c.seq_len, t = tok % c.seq_len;
    const uint8_t* g = gpu.data() + tok * E;
    const uint8_t* r = ref.data() + tok * E;
    if (std::equal(g, g + E, r)) continue;
    const int64_t n_causal = std::min(E, (t + 1) / c.rate);
    for (int64_t e = 0; e < n_causal; ++e) {
      float s = 0.0f;
      for (int64_t h = 0; h < H; ++h) {
        const float dot =
            ops::dot_ref(q.data() + (tok * H + h) * D, keys.data() + (b * E + e) * D, D);
        s += (std::max(dot, 0.0f) * scale) * weights[tok * H + h];
      }
      score[e] = s;
    }
    std::vector<float> sorted(score.begin(), score.begin() + n_causal);
    std::sort(sorted.begin(), sorted.end(), std::greater<float>());
    const int64_t k = std::min(c.top_k, n_causal);
    const float kth = k > 0 ? sorted[k - 1] : 0.0f;
    int64_t n_gpu = 0, n_ref = 0;
    bool row_ok = true;
    for (int64_t e = 0; e < E; ++e) {
      n_gpu += g[e] == 1;
      n_ref += r[e] == 1;
      if (g[e] > 1 || (e >= n_causal && g[e] != 0)) row_ok = false;
      if (g[e] != r[e] && e < n_causal &&
          std::fabs(double(score[e]) - kth) > kRelTol * std::fabs(double(kth)) + 1e-30) {
        row_ok = false;
      }
    }
    if (n_gpu != n_ref) row_ok = false;
    if (bad.check(row_ok, uint64_t(tok), n_gpu, n_ref)) ++n_near_tie;
  }
  INFO("seqs " << c.n_seqs << " seq_len " << c.seq_len << " heads " << H << " hd " << D << " top_k "
               << c.top_k << " entries " << E << ": " << n_near_tie
               << " rows differ only at near-ties");
  CHECK(bad.count() == 0);
}

}  // namespace

TEST_CASE("attention gpu: sink attention matches the reference", "[gpu][attention]") {
  const SinkCase c =
      GENERATE(SinkCase{1, 37, 4, 64, 16, 0, Vis::kNone, 1.0f},          // tiles not filled
               SinkCase{2, 100, 8, 64, 200, 0, Vis::kNone, 1.0f},        // window > seq_len
               SinkCase{1, 50, 4, 64, 0, 12, Vis::kRandom, 1.0f},        // entries only
               SinkCase{1, 40, 3, 64, 1, 0, Vis::kNone, 1.0f},           // self only, 3 heads
               SinkCase{3, 70, 5, 64, 32, 17, Vis::kRandom, 3.0f},       // peaky softmax, odd heads
               SinkCase{2, 130, 4, 128, 64, 32, Vis::kCausal, 1.0f},     // small-config-like
               SinkCase{1, 300, 48, 96, 128, 75, Vis::kRandom, 1.0f},    // 2 head groups of 24
               SinkCase{2, 200, 64, 512, 128, 0, Vis::kNone, 1.0f},      // V4-Flash sliding
               SinkCase{2, 512, 64, 512, 128, 128, Vis::kCausal, 1.0f},  // reduced V4-Flash CSA
               SinkCase{1, 640, 64, 512, 128, 5, Vis::kCausal, 2.0f});   // HCA-like (rate 128)
  run_sink_case(c, 1234u + static_cast<uint32_t>(c.seq_len * 7 + c.n_heads));
}

TEST_CASE("attention gpu: compressor pooling matches the reference", "[gpu][attention]") {
  const PoolCase c = GENERATE(PoolCase{2, 37, 4, 64, true, 16, 1.0f},      // partial window
                              PoolCase{1, 300, 128, 64, false, 16, 1.0f},  // HCA
                              PoolCase{3, 515, 128, 512, false, 64, 1.25f},
                              PoolCase{2, 64, 4, 512, true, 64, 1.0f},   // CSA V4-Flash
                              PoolCase{2, 130, 4, 128, true, 64, 1.0f},  // indexer keys
                              PoolCase{1, 3, 4, 64, true, 16, 1.0f});    // no entries
  run_pool_case(c, 99u + static_cast<uint32_t>(c.seq_len));
}

TEST_CASE("attention gpu: causal visibility is exact", "[gpu][attention]") {
  const auto shape =
      GENERATE(std::vector<int64_t>{1, 7, 1, 4}, std::vector<int64_t>{3, 300, 2, 128},
               std::vector<int64_t>{2, 130, 32, 4}, std::vector<int64_t>{2, 10, 0, 4});
  CausalVisibilityParams p;
  p.n_seqs = shape[0];
  p.seq_len = shape[1];
  p.n_entries = shape[2];
  p.rate = shape[3];
  const size_t n = p.n_seqs * p.seq_len * p.n_entries;
  std::vector<uint8_t> ref(n, 9);
  p.visible = ref.data();
  causal_visibility_ref(p);
  DeviceBuffer<uint8_t> d(std::max<size_t>(n, 1));
  QF_CUDA_CHECK(cudaMemset(d.get(), 9, std::max<size_t>(n, 1)), "poison");
  p.visible = d.get();
  launch_causal_visibility(p, nullptr);
  CHECK(download(d, n) == ref);
}

TEST_CASE("attention gpu: indexer top-k matches the reference", "[gpu][attention]") {
  const IndexerCase c = GENERATE(
      IndexerCase{2, 130, 4, 64, 4, 8, 0}, IndexerCase{3, 70, 8, 64, 4, 100, 0},  // top_k > entries
      IndexerCase{1, 517, 64, 128, 4, 64, 0}, IndexerCase{2, 300, 8, 64, 4, 16, 5},  // exact ties
      IndexerCase{1, 2048, 64, 128, 4, 256, 0}, IndexerCase{1, 3, 4, 64, 4, 8, 0});  // no entries
  run_indexer_case(c, 7u + static_cast<uint32_t>(c.seq_len));
}

TEST_CASE("attention gpu: launchers reject bad shapes", "[gpu][attention]") {
  SinkAttentionParams p;
  p.n_seqs = 1;
  p.seq_len = 4;
  p.n_heads = 2;
  p.head_dim = 514;  // not a multiple of 4
  CHECK_THROWS_AS(launch_sink_attention(p, nullptr), qf::Error);
  p.head_dim = 64;
  p.n_entries = 3;  // entries without compressed / visible
  CHECK_THROWS_AS(launch_sink_attention(p, nullptr), qf::Error);
  IndexerSelectParams ip;
  ip.n_seqs = 1;
  ip.seq_len = 8;
  ip.n_entries = 2;
  ip.n_heads = 2;
  ip.head_dim = 64;
  ip.rate = 4;
  ip.top_k = 1;  // no workspace
  CHECK_THROWS_AS(launch_indexer_select(ip, nullptr), qf::Error);
}
