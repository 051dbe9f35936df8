// The exact tensor list (names, dtypes, shapes) of a DeepSeek V4 checkpoint for a config, in
// the native mixed format or in BF16. Used by plan (no weights needed), make-tiny and tests.
// Owns: naming and storage rules per layer type. Does not own: values or shard placement.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/enum_table.hpp"
#include "formats/tensor_spec.hpp"
#include "model/config.hpp"

namespace qf::model {

enum class WeightFormat {
  kNative,  // FP8 E4M3 + 128x128 scales, FP4 E2M1 experts + per-32 UE8M0 scales, BF16/F32 rest
  kBf16,    // same names; FP8/FP4 weights as BF16 [out, in]; no `.scale`; the rest unchanged
};

const EnumTable<WeightFormat>& weight_formats();  // parse, name and --help of --format

enum class TensorRole {
  kFp8Weight,  // F8_E4M3 [out, in]
  kFp8Scale,   // [ceil(out/128), ceil(in/128)]; F8_E8M0 (fp4 experts) or F32 (fp8 experts)
  kFp4Weight,  // I8 [out, in/2], two E2M1 codes per byte, low nibble = even element
  kFp4Scale,   // F8_E8M0 [out, in/32]
  kPlain,      // anything without a scale companion (BF16, F32, I64)
};
const char* tensor_role_name(TensorRole role);

struct ModelTensor {
  formats::TensorSpec spec;
  TensorRole role = TensorRole::kPlain;
  // The role this tensor has in the native format (equal to `role` there); in the BF16 format
  // it tells which BF16 weights were FP8/FP4 in the source.
  TensorRole native_role = TensorRole::kPlain;
  int layer = -1;   // -1 global (embed/head/norm/hc_head_*); num_hidden_layers + m for mtp.m
  int expert = -1;  // routed expert index, -1 otherwise
  bool is_mtp = false;
  std::string scale_name;  // weights with a `.scale` sibling (native format); else empty
  int64_t n_rows = 0;      // logical [out, in] of a linear weight (FP8/FP4 or their BF16 form)
  int64_t n_cols = 0;
};

// Name suffixes of the native format: a linear `<p>` is stored as `<p>.weight` and, when FP8 or
// FP4, its block scales as `<p>.scale` (FORMATS.md §4). strip_suffix (core/strings.hpp) turns
// one into the other: `strip_suffix(name, kScaleSuffix) + kWeightSuffix`.
inline constexpr const char* kWeightSuffix = ".weight";
inline constexpr const char* kScaleSuffix = ".scale";

// FP8 tile and FP4 block sizes of the native format (FORMATS.md §4; model.py block_size = 128,
// fp4_block_size = 32).
constexpr int64_t kFp8Tile = 128;
constexpr int64_t kFp4Block = 32;

// Every tensor of the checkpoint, in file order: embed, layers 0..L-1, norm, head, hc_head_*,
// then mtp.0...; within a layer: attention, norms, MoE, hyper-connections; each FP8/FP4 weight
// directly followed by its `.scale`. Exact: names, dtypes and shapes as the real checkpoint.
std::vector<ModelTensor> checkpoint_tensors(const ModelConfig& config, WeightFormat format);

// The format a config.json describes: native when it carries quantization_config, else BF16.
WeightFormat config_weight_format(const ModelConfig& config);
// config.json for a checkpoint in `format`: the BF16 form drops quantization_config (as
// DeepSeek's fp8_cast_bf16.py does); expert_dtype is kept as part of the model description.
nlohmann::json config_json_for_format(const ModelConfig& config, WeightFormat format);

// --- totals over a table
uint64_t total_bytes(const std::vector<ModelTensor>& tensors);
uint64_t total_elems(const std::vector<ModelTensor>& tensors);
// Logical parameters: F4/I8-packed FP4 weights count 2 per byte, scales count 0.
uint64_t total_params(const std::vector<ModelTensor>& tensors);
// Parameters of routed experts of the main layers (MTP excluded).
uint64_t routed_expert_params(const std::vector<ModelTensor>& tensors);

struct DTypeTotal {
  uint64_t n_tensors = 0;
  uint64_t n_bytes = 0;
};
std::map<DType, DTypeTotal> totals_by_dtype(const std::vector<ModelTensor>& tensors);

}  // namespace qf::model
