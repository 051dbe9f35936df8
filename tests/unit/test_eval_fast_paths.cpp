// The fast paths eval runs on (its results must not move by a bit): table-driven decoders
// against the scalar references, the blocked matmul against one dot_ref per element (strides,
// ragged tiles, any thread count), and lazily decoded routed experts against eagerly loaded
// ones through a whole layer (same hidden bits, only experts with tokens decoded).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "forward_test_util.hpp"
#include "kernels/dequant.cuh"
#include "kernels/nvfp4_quantize.cuh"
#include "model/forward_decoder_layer.hpp"
#include "model/forward_linear.hpp"
#include "model/model_forward.hpp"
#include "numerics/bf16.hpp"
#include "ops/matmul.hpp"
#include "source/fast_decode.hpp"

using namespace qf;

namespace {

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<float> widen(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = numerics::bf16_to_float(bits[i]);
  return out;
}

// QF_THREADS for one scope (the split must not matter).
struct ThreadsEnv {
  explicit ThreadsEnv(const char* n) { setenv("QF_THREADS", n, 1); }
  ~ThreadsEnv() { unsetenv("QF_THREADS"); }
};

}  // namespace

TEST_CASE("fast decode: FP8 block equals the reference, E8M0 and F32 scales, edge tiles",
          "[eval][decode]") {
  const int64_t n_rows = 130, n_cols = 260;  // partial last tile row and column
  const int64_t n_scales =
      kernels::fp8_block_scale_rows(n_rows) * kernels::fp8_block_scale_cols(n_cols);
  const std::vector<uint8_t> codes = random_bytes(n_rows * n_cols, 1);
  std::vector<uint8_t> e8m0 = random_bytes(n_scales, 2);  // every byte incl. 0 and 0xFF (NaN)
  e8m0[0] = 0xFF;
  e8m0[1] = 0;
  std::vector<float> f32(n_scales);
  for (int64_t i = 0; i < n_scales; ++i) f32[i] = std::ldexp(1.1f + 0.1f * i, int(i) % 40 - 20);
  for (DType dt : {DType::kF8E8M0, DType::kF32}) {
    for (const char* threads : {"1", "3"}) {
      ThreadsEnv env(threads);
      const void* scale = dt == DType::kF32 ? static_cast<const void*>(f32.data()) : e8m0.data();
      std::vector<uint16_t> bits(n_rows * n_cols);
      kernels::Fp8BlockDequantParams p;
      p.codes = codes.data();
      p.scale = scale;
      p.scale_dtype = dt;
      p.n_rows = n_rows;
      p.n_cols = n_cols;
      p.out = bits.data();
      kernels::fp8_block_dequant_ref(p);
      std::vector<float> got(n_rows * n_cols);
      pipeline::decode_fp8_block_to_float(codes.data(), scale, dt, n_rows, n_cols, got.data());
      CHECK(same_bits(got, widen(bits)));
    }
  }
}

TEST_CASE("fast decode: FP4 block equals the reference for every scale byte", "[eval][decode]") {
  const int64_t n_rows = 256, n_cols = 64;  // 512 groups: every scale byte twice
  const std::vector<uint8_t> packed = random_bytes(n_rows * n_cols / 2, 3);
  std::vector<uint8_t> scale(n_rows * n_cols / 32);
  for (size_t i = 0; i < scale.size(); ++i) scale[i] = static_cast<uint8_t>(i);
  std::vector<uint16_t> bits(n_rows * n_cols);
  kernels::Fp4BlockDequantParams p;
  p.packed = packed.data();
  p.scale = scale.data();
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.out = bits.data();
  kernels::fp4_block_dequant_ref(p);
  std::vector<float> got(n_rows * n_cols);
  pipeline::decode_fp4_block_to_float(packed.data(), scale.data(), n_rows, n_cols, got.data());
  CHECK(same_bits(got, widen(bits)));
}

TEST_CASE("fast decode: NVFP4 equals the reference for every E4M3 scale byte", "[eval][decode]") {
  const int64_t n_rows = 128, n_cols = 32;  // 256 blocks: every scale byte once
  const std::vector<uint8_t> packed = random_bytes(n_rows * n_cols / 2, 4);
  std::vector<uint8_t> scale(n_rows * n_cols / 16);
  for (size_t i = 0; i < scale.size(); ++i) scale[i] = static_cast<uint8_t>(i);
  for (float scale_2 : {1.0f, 3.7e-4f, 1.5e30f}) {
    std::vector<float> want(n_rows * n_cols), got(n_rows * n_cols);
    kernels::Nvfp4DequantizeParams p;
    p.packed = packed.data();
    p.scale = scale.data();
    p.scale_2 = &scale_2;
    p.n_rows = n_rows;
    p.n_cols = n_cols;
    p.y = want.data();
    kernels::nvfp4_dequantize_ref(p);
    pipeline::decode_nvfp4_to_float(packed.data(), scale.data(), scale_2, n_rows, n_cols,
                                    got.data());
    // Bit for bit, except a NaN block scale (E4M3 0x7F/0xFF, never written by the quantizer):
    // NaN either way, the NaN's sign bit may differ (x86 keeps the sign of the NaN operand, and
    // the two loops need not present the operands in the same order).
    bool equal = true;
    for (size_t i = 0; i < got.size(); ++i) {
      const bool nan_scale = (scale[i / 16] & 0x7F) == 0x7F;
      equal = equal && (nan_scale ? std::isnan(got[i]) && std::isnan(want[i])
                                  : std::memcmp(&got[i], &want[i], 4) == 0);
    }
    CHECK(equal);
  }
}

TEST_CASE("blocked matmul: every element is its dot_ref, strided rows, any thread count",
          "[eval][matmul]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Row counts around the 4-row kernel and the 32-row tile; widths with and without a tail.
  for (int64_t n_rows : {1, 3, 4, 7, 33, 70}) {
    for (int64_t n_cols : {8, 21, 64}) {
      const int64_t w_rows = 37, x_stride = n_cols + 5, y_stride = w_rows + 2;
      std::vector<float> x(n_rows * x_stride), w(w_rows * n_cols);
      for (auto& v : x) v = normal(rng);
      for (auto& v : w) v = normal(rng);
      for (const char* threads : {"1", "4"}) {
        ThreadsEnv env(threads);
        std::vector<float> y(n_rows * y_stride, -1.0f);
        ops::matmul_rows_ref(x.data(), x_stride, n_rows, w.data(), w_rows, n_cols, y.data(),
                             y_stride);
        bool all_equal = true;
        for (int64_t r = 0; r < n_rows; ++r) {
          for (int64_t o = 0; o < y_stride; ++o) {
            const float want =
                o < w_rows ? ops::dot_ref(x.data() + r * x_stride, w.data() + o * n_cols, n_cols)
                           : -1.0f;  // outside the outputs: untouched
            all_equal = all_equal && std::memcmp(&want, &y[r * y_stride + o], 4) == 0;
          }
        }
        CAPTURE(n_rows, n_cols, threads);
        CHECK(all_equal);
      }
    }
  }
}

TEST_CASE(
    "lazy experts: a layer gives the same bits as eager loading, decoding routed experts "
    "only",
    "[eval][forward]") {
  const model::ModelConfig c = model::test::small_config();
  const int unused = 5;  // the hash layer 0 never routes to expert 5
  const model::WeightLoader loader = model::test::random_loader(42, c.n_routed_experts, unused);
  const model::GlobalWeights g = model::load_global_weights(c, loader);
  std::mt19937 rng(9);
  std::uniform_int_distribution<int64_t> pick(0, c.vocab_size - 1);
  std::vector<int64_t> ids(2 * 16);
  for (auto& t : ids) t = pick(rng);
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const model::LayerWeights eager = model::load_layer_weights(c, layer, loader);
    const model::LayerWeights lazy = model::load_layer_weights(c, layer, loader, true);
    REQUIRE(lazy.ffn.experts.empty());
    REQUIRE(lazy.ffn.n_experts() == c.n_routed_experts);
    CHECK(lazy.ffn.lazy->n_loads() == 0);
    std::vector<float> h_eager = model::embed_tokens(c, g, ids), h_lazy = h_eager;
    model::decoder_layer_forward(c, layer, eager, ids, 2, 16, h_eager, nullptr);
    model::decoder_layer_forward(c, layer, lazy, ids, 2, 16, h_lazy, nullptr);
    CHECK(same_bits(h_eager, h_lazy));
    CHECK(lazy.ffn.lazy->n_loads() <= c.n_routed_experts);
    if (layer == 0) CHECK(lazy.ffn.lazy->n_loads() <= c.n_routed_experts - 1);  // not expert 5
    // The held expert is the last one asked for; asking again decodes nothing.
    const int64_t loads = lazy.ffn.lazy->n_loads();
    const model::ExpertWeights& e7 = lazy.ffn.expert(7);
    CHECK(&lazy.ffn.expert(7) == &e7);
    CHECK(lazy.ffn.lazy->n_loads() <= loads + 1);
    CHECK(e7.w2.data == eager.ffn.experts[7].w2.data);
    CHECK_THROWS(lazy.ffn.expert(c.n_routed_experts));
  }
}
