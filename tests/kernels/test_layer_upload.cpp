// The device side of a layer upload (gpu/layer_upload.hpp: arena staging, linear binding, small
// tensors) and the layer workspace table (gpu/device_workspace.hpp). Needs a GPU ([gpu]).
#include <cuda_runtime.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "gpu/device_workspace.hpp"
#include "gpu/layer_upload.hpp"
#include "gpu_test_util.hpp"

using namespace qf;
using qf::test::download;

TEST_CASE("arena staging: ranges packed in pinned memory land at their arena offsets",
          "[gpu][upload]") {
  gpu::DeviceLayerWeights w;
  w.layer = 3;
  gpu::ArenaStaging staging;
  // Two owned runs of a 1024-byte arena: [0, 256) and [512, 1024).
  staging.begin(w, 1024, {{0, 256}, {512, 1024}});
  REQUIRE(w.arena_bytes == 1024);
  QF_CUDA_CHECK(cudaMemset(w.arena.get(), 0xEE, 1024), "test arena fill");
  std::vector<uint8_t> a(200), b(300), scale(16);
  std::iota(a.begin(), a.end(), uint8_t{1});
  std::iota(b.begin(), b.end(), uint8_t{7});
  std::iota(scale.begin(), scale.end(), uint8_t{100});
  staging.place(0, a.data(), a.size(), "a");
  staging.place(512, b.data(), b.size(), "b");
  staging.place(1024 - 16, scale.data(), scale.size(), "b.scale");
  CHECK_THROWS_AS(staging.place(200, a.data(), 100, "straddles"), qf::Error);  // past 256
  CHECK_THROWS_AS(staging.place(300, a.data(), 8, "outside"), qf::Error);      // in no run
  staging.upload(w, nullptr, "test layer");
  const std::vector<uint8_t> arena = download(w.arena.get(), 1024);
  CHECK(std::vector<uint8_t>(arena.begin(), arena.begin() + 200) == a);
  CHECK(std::vector<uint8_t>(arena.begin() + 512, arena.begin() + 812) == b);
  CHECK(std::vector<uint8_t>(arena.end() - 16, arena.end()) == scale);
  CHECK(arena[300] == 0xEE);  // not a run of this rank: untouched

  gpu::ArenaLinear lin;
  lin.storage = gpu::LinearStorage::kFp8Block;
  lin.scale_dtype = DType::kF32;
  lin.n_rows = 10;
  lin.n_cols = 30;
  lin.offset = 512;
  lin.n_stored = 300;
  lin.scale_offset = 1024 - 16;
  lin.n_scale = 16;
  gpu::bind_arena_linear(w, "attn.wq_a.weight", lin);
  const gpu::DeviceLinear& bound = w.linear("attn.wq_a.weight");
  CHECK(bound.data == w.arena.get() + 512);
  CHECK(bound.scale == w.arena.get() + 1024 - 16);
  CHECK(bound.scale_dtype == DType::kF32);
  lin.offset = 1000;  // past the arena
  CHECK_THROWS_AS(gpu::bind_arena_linear(w, "bad", lin), qf::Error);
  CHECK_THROWS_AS(staging.begin(w, 1024, {{512, 1024}, {0, 256}}), qf::Error);  // unsorted
}

TEST_CASE("layer upload: small tensors and the tid2eid table", "[gpu][upload]") {
  gpu::DeviceLayerWeights w;
  gpu::upload_small_tensor(w, "attn_norm.weight", {4}, {1.0f, 2.0f, 3.0f, 4.0f}, "norm");
  CHECK(download(w.f32("attn_norm.weight", 4), 4) == std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f});
  CHECK(w.small.at("attn_norm.weight").shape == std::vector<int64_t>{4});
  gpu::upload_tid2eid(w, {5, 1, 0, 3}, "tid2eid");
  CHECK(download(w.tid2eid.get(), 4) == std::vector<int32_t>{5, 1, 0, 3});
}

TEST_CASE("device workspace: one table sizes and reports every buffer", "[gpu][workspace]") {
  gpu::DeviceWorkspace ws;
  const int f = ws.declare("f32", sizeof(float));
  const int h = ws.declare("bf16", sizeof(uint16_t));
  CHECK(ws.n_bytes() == 0);
  float* p = ws.sized<float>(f, 100);
  CHECK(p != nullptr);
  CHECK(ws.sized<float>(f, 50) == p);  // never shrinks, no reallocation
  ws.sized<uint16_t>(h, 0);            // empty request: one element
  CHECK(ws.n_elems(f) == 100);
  CHECK(ws.n_elems(h) == 1);
  CHECK(ws.n_bytes() == 100 * 4 + 2);
  const auto entries = ws.entries();
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].name == "f32");
  CHECK(entries[0].n_bytes == 400);
  CHECK(entries[1].n_bytes == 2);
  CHECK_THROWS_AS(ws.sized<uint16_t>(f, 4), qf::Error);  // element size of another type
  CHECK_THROWS_AS(ws.get<float>(7), qf::Error);          // no such buffer
}
