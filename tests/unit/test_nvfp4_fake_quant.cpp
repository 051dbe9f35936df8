// eval's simulated NVFP4 activation quantization (pipeline/nvfp4_fake_quant) against hand-computed
// blocks and bit-exactly against the weight quantizer's round trip; the forward's input-transform
// hook (LinearInputObserver::transform_input) and the export module helpers.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "eval/eval_model.hpp"
#include "eval/nvfp4_fake_quant.hpp"
#include "kernels/nvfp4_quantize.cuh"
#include "model/forward_linear.hpp"
#include "model/linear_observer.hpp"
#include "numerics/bf16.hpp"

using namespace qf;

TEST_CASE("nvfp4 activation fake-quant: hand-computed blocks", "[eval]") {
  const float input_scale = 0.5f;  // global scale: block scale = block amax / (6 * 0.5)
  std::vector<float> x(4 * 16, 0.0f);
  // Block 0: amax 3 -> scale 3/3 = 1.0 (exact E4M3) -> divisor 0.5; x/0.5 rounds to E2M1.
  const float b0[16] = {3.0f, -1.5f, 0.7f,  0.2f, 0.1f, 0.125f, 2.5f,  -0.3f,
                        0.0f, 1.0f,  -3.0f, 0.9f, 0.6f, 1.2f,   -1.2f, 2.0f};
  const float b0_want[16] = {3.0f, -1.5f, 0.75f, 0.25f, 0.0f, 0.0f, 2.0f,  -0.25f,
                             0.0f, 1.0f,  -3.0f, 1.0f,  0.5f, 1.0f, -1.0f, 2.0f};
  // 0.7/0.5 = 1.4 -> 1.5; 0.2 -> 0.4 -> 0.5; 0.1 -> 0.2 -> 0; 0.125 -> 0.25, a tie -> 0 (even);
  // 2.5 -> 5, a tie between 4 and 6 -> 4 (even code); 0.9 -> 1.8 -> 2; 0.6 -> 1.2 -> 1;
  // 1.2 -> 2.4 -> 2.
  // Block 1: beyond the calibrated range: amax 3000 -> scale 1000 clamps to 448 -> divisor 224;
  // 3000/224 saturates at 6 (1344), 100/224 = 0.446 -> 0.5 (112).
  // Block 2: all zero -> scale 1, zeros.
  // Block 3: amax 1.3 -> scale 0.4333 -> E4M3 0.4375 (1.75 * 2^-2) -> divisor 0.21875;
  // 1.3/d = 5.94 -> 6 (1.3125); -0.5/d = -2.29 -> -2 (-0.4375); 0.05/d = 0.229 -> 0.
  std::memcpy(x.data(), b0, sizeof(b0));
  x[16] = 3000.0f;
  x[17] = 100.0f;
  x[18] = -3000.0f;
  x[48] = 1.3f;
  x[49] = -0.5f;
  x[50] = 0.05f;
  pipeline::nvfp4_fake_quantize_rows(x.data(), 2, 32, input_scale);  // 2 rows x 2 blocks
  for (int i = 0; i < 16; ++i) {
    INFO("block 0 element " << i);
    CHECK(x[i] == b0_want[i]);
  }
  CHECK(x[16] == 1344.0f);
  CHECK(x[17] == 112.0f);
  CHECK(x[18] == -1344.0f);
  for (int i = 19; i < 48; ++i) CHECK(x[i] == 0.0f);
  CHECK(x[48] == 1.3125f);
  CHECK(x[49] == -0.4375f);
  CHECK(x[50] == 0.0f);
}

TEST_CASE("nvfp4 activation fake-quant equals the weight quantizer's round trip", "[eval]") {
  // On BF16-representable input the activation path must be exactly quantize_ref + dequantize_ref
  // with scale_2 = input_scale: the same arithmetic as the weights.
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t n_rows = 8, n_cols = 64;
  std::vector<uint16_t> bf(n_rows * n_cols);
  std::vector<float> x(bf.size());
  for (size_t i = 0; i < bf.size(); ++i) {
    float v = normal(rng) * (i % 37 == 0 ? 40.0f : 1.0f);  // outliers beyond the calibrated amax
    bf[i] = numerics::float_to_bf16(v);
    x[i] = numerics::bf16_to_float(bf[i]);
  }
  const float input_scale = 8.0f / 2688.0f;  // calibrated amax 8
  std::vector<uint8_t> packed(bf.size() / 2), scale(bf.size() / 16);
  uint64_t n_nonfinite = 0;
  kernels::Nvfp4QuantizeParams q;
  q.x = bf.data();
  q.n_rows = n_rows;
  q.n_cols = n_cols;
  q.scale_2 = &input_scale;
  q.packed = packed.data();
  q.scale = scale.data();
  q.n_nonfinite = &n_nonfinite;
  kernels::nvfp4_quantize_ref(q);
  std::vector<float> want(bf.size());
  kernels::Nvfp4DequantizeParams d;
  d.packed = packed.data();
  d.scale = scale.data();
  d.scale_2 = &input_scale;
  d.n_rows = n_rows;
  d.n_cols = n_cols;
  d.y = want.data();
  kernels::nvfp4_dequantize_ref(d);
  pipeline::nvfp4_fake_quantize_rows(x.data(), n_rows, n_cols, input_scale);
  CHECK(qf::test::count_mismatches(x, want, "fake-quantized") == 0);
}

TEST_CASE("nvfp4 activation fake-quant: bad arguments and NaN", "[eval]") {
  std::vector<float> x(24, 1.0f);
  CHECK_THROWS_AS(pipeline::nvfp4_fake_quantize_rows(x.data(), 1, 24, 0.5f), Error);
  CHECK_THROWS_AS(pipeline::nvfp4_fake_quantize_rows(x.data(), 1, 16, 0.0f), Error);
  std::vector<float> y(16, 1.0f);
  y[3] = std::nanf("");
  pipeline::nvfp4_fake_quantize_rows(y.data(), 1, 16, 0.5f);
  for (float v : y) CHECK(std::isnan(v));  // a NaN block stays visible
}

namespace {
struct Negate : model::LinearInputObserver {
  int n_observed = 0;
  void observe(const std::string&, const float*, int64_t, int64_t) override { ++n_observed; }
  bool transforms_inputs() const override { return true; }
  void transform_input(const std::string& name, float* x, int64_t n_rows, int64_t n_cols) override {
    if (name != "skip") {
      for (int64_t i = 0; i < n_rows * n_cols; ++i) x[i] = -x[i];
    }
  }
};
struct Plain : model::LinearInputObserver {
  void observe(const std::string&, const float*, int64_t, int64_t) override {}
};
}  // namespace

TEST_CASE("linear_forward input transform hook", "[eval]") {
  model::Tensor2D w{2, 3, {1, 2, 3, 4, 5, 6}};
  const std::vector<float> x = {1, 0, 2, -1, 1, 0};  // 2 rows
  Plain plain;
  const auto y0 = model::linear_forward("a", x.data(), 2, w, nullptr);
  const auto y1 = model::linear_forward("a", x.data(), 2, w, &plain);
  CHECK(y0 == std::vector<float>{7, 16, 1, 1});
  CHECK(y1 == y0);  // an observer without a transform changes nothing
  Negate negate;
  const auto y2 = model::linear_forward("a", x.data(), 2, w, &negate);
  CHECK(y2 == std::vector<float>{-7, -16, -1, -1});
  CHECK(x == std::vector<float>{1, 0, 2, -1, 1, 0});  // the caller's input is untouched
  CHECK(model::linear_forward("skip", x.data(), 2, w, &negate) == y0);
  CHECK(negate.n_observed == 2);
}

TEST_CASE("find_linear_weight names the forward's linears", "[eval]") {
  model::LayerWeights w;
  w.layer = 3;
  w.ffn.experts.resize(4);
  w.attn.has_indexer = true;
  CHECK(pipeline::find_linear_weight(w, "layers.3.attn.wq_a") == &w.attn.wq_a);
  CHECK(pipeline::find_linear_weight(w, "layers.3.attn.wo_a") == &w.attn.wo_a);
  CHECK(pipeline::find_linear_weight(w, "layers.3.attn.indexer.wq_b") == &w.attn.indexer.wq_b);
  CHECK(pipeline::find_linear_weight(w, "layers.3.ffn.experts.2.w3") == &w.ffn.experts[2].w3);
  CHECK(pipeline::find_linear_weight(w, "layers.3.ffn.shared_experts.w2") == &w.ffn.shared.w2);
  CHECK(pipeline::find_linear_weight(w, "layers.3.ffn.experts.4.w1") == nullptr);
  CHECK(pipeline::find_linear_weight(w, "layers.2.attn.wq_a") == nullptr);
  CHECK(pipeline::find_linear_weight(w, "layers.3.attn.compressor.wkv") == nullptr);
  model::GlobalWeights g;
  CHECK(pipeline::find_linear_weight(g, "head") == &g.head);
}
