// launch_embed_rows against embed_rows_ref, bit for bit (random BF16 bits including NaN, -0 and
// subnormals; several copies; odd sizes), and gpu::DeviceHiddenStates embedded on the GPU equal
// to the same states uploaded from the host. [gpu]
#include <cstring>
#include <random>
#include <vector>

#include "catch_compat.hpp"
#include "gpu/hidden_states.hpp"
#include "gpu_test_util.hpp"
#include "kernels/forward/embed_rows.cuh"

using namespace qf;

namespace {
struct Case {
  int64_t vocab, dim, n_tokens;
  int copies;
};
}  // namespace

TEST_CASE("embed rows: CUDA equals the reference bit for bit", "[gpu][embed_rows]") {
  for (const Case k : {Case{37, 129, 53, 4}, Case{5, 8, 1, 1}, Case{1000, 64, 300, 2}}) {
    std::mt19937 rng(static_cast<uint32_t>(k.vocab + k.dim));
    std::uniform_int_distribution<int> bits(0, 0xFFFF);
    std::vector<uint16_t> table(k.vocab * k.dim);
    for (auto& b : table) b = static_cast<uint16_t>(bits(rng));
    table[0] = 0x7FC1;
    table[1] = 0x8000;
    table[2] = 0x0001;
    std::uniform_int_distribution<int64_t> id(0, k.vocab - 1);
    std::vector<int64_t> ids(k.n_tokens);
    for (auto& i : ids) i = id(rng);
    ids[0] = 0;
    const int64_t n_out = k.n_tokens * k.copies * k.dim;
    std::vector<float> ref(n_out);
    kernels::EmbedRowsParams p;
    p.table_bf16 = table.data();
    p.vocab = k.vocab;
    p.dim = k.dim;
    p.token_ids = ids.data();
    p.n_tokens = k.n_tokens;
    p.copies = k.copies;
    p.out = ref.data();
    kernels::embed_rows_ref(p);

    auto table_dev = test::to_device(table);
    auto ids_dev = test::to_device(ids);
    DeviceBuffer<float> out_dev(n_out);
    QF_CUDA_CHECK(cudaMemset(out_dev.get(), 0xFF, n_out * 4), "memset");
    p.table_bf16 = table_dev.get();
    p.token_ids = ids_dev.get();
    p.out = out_dev.get();
    kernels::launch_embed_rows(p, nullptr);
    const std::vector<float> got = test::download(out_dev, n_out);
    REQUIRE(std::memcmp(got.data(), ref.data(), n_out * 4) == 0);

    // The engine's two ways of starting: the same resident states.
    gpu::DeviceHiddenStates on_gpu(table.data(), k.vocab, k.dim, k.copies, ids_dev.get(),
                                   k.n_tokens);
    gpu::DeviceHiddenStates uploaded(ref, k.copies * k.dim);
    REQUIRE(on_gpu.resident());
    const float* a = on_gpu.batch_in(0, k.n_tokens, nullptr);
    const float* b = uploaded.batch_in(0, k.n_tokens, nullptr);
    REQUIRE(std::memcmp(test::download(a, n_out).data(), test::download(b, n_out).data(),
                        n_out * 4) == 0);
  }
}
