// embed_rows_ref (kernels/forward/embed_rows.cuh, the CPU reference of the CUDA engine's
// embedding) against model::embed_tokens on the decoded table: the same states bit for bit, so
// embedding on the GPU changes no calibration result; ids outside the vocabulary refused.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "kernels/forward/embed_rows.cuh"
#include "model/model_forward.hpp"
#include "model/presets.hpp"
#include "numerics/bf16.hpp"

using namespace qf;

TEST_CASE("embed_rows_ref equals model::embed_tokens on the decoded table", "[embed_rows]") {
  model::ModelConfig c = model::preset_config("tiny");
  const int64_t vocab = c.vocab_size, dim = c.hidden_size;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> bits(0, 0xFFFF);
  std::vector<uint16_t> table(vocab * dim);
  for (auto& b : table) b = static_cast<uint16_t>(bits(rng));
  table[0] = 0x7FC1;  // a NaN with payload: widened, not canonicalised
  table[1] = 0x8000;  // -0
  table[2] = 0x0001;  // the smallest subnormal
  model::GlobalWeights g;
  g.embed.n_rows = vocab;
  g.embed.n_cols = dim;
  for (const uint16_t b : table) g.embed.data.push_back(numerics::bf16_to_float(b));
  std::uniform_int_distribution<int64_t> id(0, vocab - 1);
  std::vector<int64_t> ids = {0, vocab - 1, 0};
  for (int i = 0; i < 40; ++i) ids.push_back(id(rng));

  const std::vector<float> expected = model::embed_tokens(c, g, ids);
  std::vector<float> got(expected.size(), -1.0f);
  kernels::EmbedRowsParams p;
  p.table_bf16 = table.data();
  p.vocab = vocab;
  p.dim = dim;
  p.token_ids = ids.data();
  p.n_tokens = static_cast<int64_t>(ids.size());
  p.copies = c.hc_mult;
  p.out = got.data();
  kernels::embed_rows_ref(p);
  REQUIRE(c.hc_mult > 1);
  REQUIRE(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)) == 0);
}

TEST_CASE("embed_rows_ref and embed_tokens refuse an id outside the vocabulary", "[embed_rows]") {
  const std::vector<uint16_t> table(4 * 3, 0x3F80);
  for (const int64_t bad : {int64_t{4}, int64_t{-1}, std::numeric_limits<int64_t>::max()}) {
    const std::vector<int64_t> ids = {1, bad};
    std::vector<float> out(2 * 2 * 3);
    kernels::EmbedRowsParams p;
    p.table_bf16 = table.data();
    p.vocab = 4;
    p.dim = 3;
    p.token_ids = ids.data();
    p.n_tokens = 2;
    p.copies = 2;
    p.out = out.data();
    REQUIRE_THROWS_AS(kernels::embed_rows_ref(p), qf::Error);
    REQUIRE_THROWS_AS(model::check_token_ids(ids, 4), qf::Error);
  }
  REQUIRE_NOTHROW(model::check_token_ids({0, 3}, 4));
}
