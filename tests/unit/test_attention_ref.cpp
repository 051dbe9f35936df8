// CPU checks of the attention references (kernels/forward/attention_ref.cpp): the batch loop over
// sequences (a 2-sequence call equals two 1-sequence calls), the HCA visibility rule and a hand
// value of the pooling. The per-sequence math is tested in test_forward_ops.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "forward_test_util.hpp"
#include "kernels/forward/attention.cuh"

using namespace qf::kernels;

using qf::model::test::randn;

TEST_CASE("attention ref: sink attention of 2 sequences = two single calls", "[attention]") {
  const int64_t S = 9, H = 3, D = 8, E = 2;
  const std::vector<float> q = randn(2 * S * H * D, 1), kv = randn(2 * S * D, 2),
                           sinks = randn(H, 3), comp = randn(2 * E * D, 4);
  std::vector<uint8_t> vis(2 * S * E);
  for (size_t i = 0; i < vis.size(); ++i) vis[i] = (i * 7) % 3 == 0;
  SinkAttentionParams p;
  p.n_seqs = 2;
  p.seq_len = S;
  p.n_heads = H;
  p.head_dim = D;
  p.window = 4;
  p.n_entries = E;
  p.scale = 0.3f;
  p.q = q.data();
  p.kv = kv.data();
  p.sinks = sinks.data();
  p.compressed = comp.data();
  p.visible = vis.data();
  std::vector<float> both(2 * S * H * D), one(2 * S * H * D);
  p.out = both.data();
  sink_attention_ref(p);
  p.n_seqs = 1;
  for (int b = 0; b < 2; ++b) {
    p.q = q.data() + b * S * H * D;
    p.kv = kv.data() + b * S * D;
    p.compressed = comp.data() + b * E * D;
    p.visible = vis.data() + b * S * E;
    p.out = one.data() + b * S * H * D;
    sink_attention_ref(p);
  }
  CHECK(both == one);
  // The two sequences' inputs differ, so their outputs must too (no aliasing of sequence 0).
  CHECK(!std::equal(both.begin(), both.begin() + S * H * D, both.begin() + S * H * D));
}

TEST_CASE("attention ref: compressor pooling of 2 sequences = two single calls", "[attention]") {
  const int64_t S = 11, rate = 4, hd = 8, width = 2 * hd, n_win = S / rate;
  const std::vector<float> kv = randn(2 * S * width, 5), gate = randn(2 * S * width, 6),
                           ape = randn(rate * width, 7), norm = randn(hd, 8);
  const std::vector<float> inv_freq = {1.0f, 0.1f};
  CompressPoolParams p;
  p.n_seqs = 2;
  p.seq_len = S;
  p.rate = rate;
  p.head_dim = hd;
  p.overlapping = true;
  p.ape = ape.data();
  p.norm = norm.data();
  p.inv_freq = inv_freq.data();
  p.rope_dim = 4;
  std::vector<float> both(2 * n_win * hd), one(2 * n_win * hd);
  p.kv = kv.data();
  p.gate = gate.data();
  p.out = both.data();
  compress_pool_ref(p);
  p.n_seqs = 1;
  for (int b = 0; b < 2; ++b) {
    p.kv = kv.data() + b * S * width;
    p.gate = gate.data() + b * S * width;
    p.out = one.data() + b * n_win * hd;
    compress_pool_ref(p);
  }
  CHECK(both == one);
}

TEST_CASE("attention ref: equal gates pool to the mean, then RMSNorm", "[attention]") {
  // HCA, rate 2, head_dim 2, no RoPE: rows (1, 2) and (3, 6) pool to (2, 4); rms = sqrt(10).
  const std::vector<float> kv = {1, 2, 3, 6}, gate(4, 0.5f), ape(4, 0.0f), norm = {1.0f, 2.0f};
  CompressPoolParams p;
  p.n_seqs = 1;
  p.seq_len = 3;  // trailing partial window dropped
  p.rate = 2;
  p.head_dim = 2;
  p.kv = kv.data();
  p.gate = gate.data();
  p.ape = ape.data();
  p.norm = norm.data();
  p.eps = 0.0f;
  std::vector<float> out(2);
  p.out = out.data();
  std::vector<float> kv3 = kv;
  kv3.resize(6, 100.0f);  // the dropped row
  std::vector<float> gate3 = gate;
  gate3.resize(6, 0.5f);
  p.kv = kv3.data();
  p.gate = gate3.data();
  compress_pool_ref(p);
  CHECK(out[0] == Approx(2.0 / std::sqrt(10.0)).epsilon(1e-6));
  CHECK(out[1] == Approx(2.0 * 4.0 / std::sqrt(10.0)).epsilon(1e-6));
}

TEST_CASE("attention ref: HCA visibility is e < (t + 1) / rate per sequence", "[attention]") {
  CausalVisibilityParams p;
  p.n_seqs = 2;
  p.seq_len = 9;
  p.n_entries = 2;
  p.rate = 4;
  std::vector<uint8_t> vis(2 * 9 * 2, 7);
  p.visible = vis.data();
  causal_visibility_ref(p);
  for (int b = 0; b < 2; ++b) {
    const uint8_t* v = vis.data() + b * 9 * 2;
    for (int t = 0; t < 3; ++t) CHECK((v[t * 2] == 0 && v[t * 2 + 1] == 0));
    for (int t = 3; t < 7; ++t) CHECK((v[t * 2] == 1 && v[t * 2 + 1] == 0));
    for (int t = 7; t < 9; ++t) CHECK((v[t * 2] == 1 && v[t * 2 + 1] == 1));
  }
}

TEST_CASE("attention ref: indexer top-k of 2 sequences = two single calls", "[attention]") {
  const int64_t S = 21, H = 3, D = 8, rate = 4, E = S / rate, top_k = 2;
  const std::vector<float> q = randn(2 * S * H * D, 9), w = randn(2 * S * H, 10),
                           keys = randn(2 * E * D, 11);
  IndexerSelectParams p;
  p.n_seqs = 2;
  p.seq_len = S;
  p.n_entries = E;
  p.n_heads = H;
  p.head_dim = D;
  p.rate = rate;
  p.top_k = top_k;
  p.q = q.data();
  p.weights = w.data();
  p.keys = keys.data();
  std::vector<uint8_t> both(2 * S * E), one(2 * S * E);
  p.visible = both.data();
  indexer_select_ref(p);
  p.n_seqs = 1;
  for (int b = 0; b < 2; ++b) {
    p.q = q.data() + b * S * H * D;
    p.weights = w.data() + b * S * H;
    p.keys = keys.data() + b * E * D;
    p.visible = one.data() + b * S * E;
    indexer_select_ref(p);
  }
  CHECK(both == one);
  for (int64_t tok = 0; tok < 2 * S; ++tok) {
    const int64_t t = tok % S, n_causal = std::min(E, (t + 1) / rate);
    int64_t n = 0;
    for (int64_t e = 0; e < E; ++e) {
      n += both[tok * E + e];
      if (e >= n_causal) CHECK(both[tok * E + e] == 0);
    }
    CHECK(n == std::min(top_k, n_causal));
  }
  CHECK(indexer_select_workspace_bytes(p) == static_cast<size_t>(S * E) * sizeof(float));
}
