// The recipes: which weights of a DeepSeek V4 checkpoint become NVFP4 linears, which of them
// share scales (w1/w3 of one expert), and what an NVFP4 linear becomes on disk. One table
// (names, help) behind --recipe's parser and help. Owns: that rule. Does not own: the
// arithmetic (quantize/), the output layout (quantize/quantize_plan) or the configs (export/).
#pragma once
#include <cstdint>
#include <string>

#include "core/enum_table.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {

// Which weights become NVFP4 (DESIGN.md "Numerics and recipes").
enum class Recipe {
  kExperts,  // routed experts of the main layers -> NVFP4, everything else copied
  kFull,     // every linear stored in FP8/FP4 by DeepSeek (main layers) -> NVFP4
};
const EnumTable<Recipe>& recipes();  // parse, name and --help of --recipe

// What the target rule reads about one tensor; the tensor table and a checkpoint's names both
// supply it (quantize plans from the former, validate checks an export with the latter).
struct TargetFacts {
  bool low_precision = false;  // stored (or natively stored) as FP8 or FP4
  bool mtp = false;            // in an MTP layer (left as is, as ModelOpt's DS-V4 exporter)
  int64_t n_rows = 0, n_cols = 0;
  bool routed_expert = false;  // layers.N.ffn.experts.E.w{1,2,3}.weight
};
// A weight whose native role is FP8 or FP4, not MTP, with an input dim that is a multiple of
// 16; kExperts additionally needs a routed expert.
bool is_nvfp4_target(const TargetFacts& facts, Recipe recipe);
bool is_nvfp4_target(const model::ModelTensor& t, Recipe recipe);
// `layers.N.ffn.experts.E.w{1,2,3}.weight` exactly (N, E decimal): TargetFacts::routed_expert
// of a name alone.
bool is_routed_expert_weight_name(const std::string& name);

// The w1 <-> w3 sibling of a routed or shared expert weight (`...w1.weight` <-> `...w3.weight`):
// a fused GEMM1 needs one weight_scale_2 and one input_scale for both. "" for any other name.
std::string nvfp4_sibling(const std::string& weight_name);

// Suffixes of the four tensors a quantized linear `<p>` becomes (FORMATS.md §2).
inline constexpr const char* kNvfp4Suffixes[] = {".weight", ".weight_scale", ".weight_scale_2",
                                                 ".input_scale"};
// Output bytes of one NVFP4 linear [n_rows, n_cols]: packed E2M1 codes n_rows*n_cols/2 +
// E4M3 block scales n_rows*n_cols/16 + F32 weight_scale_2 + F32 input_scale (FORMATS.md §2).
uint64_t nvfp4_n_bytes(int64_t n_rows, int64_t n_cols);
// Of those, the E4M3 block scales: n_rows*n_cols/16.
uint64_t nvfp4_block_scale_bytes(int64_t n_rows, int64_t n_cols);

}  // namespace qf::pipeline
