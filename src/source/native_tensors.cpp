// Pairing of native weights with their `.scale` companions (FORMATS.md §4).
#include "source/native_tensors.hpp"

#include <cctype>
#include <map>
#include <set>

#include "core/check.hpp"
#include "core/int_math.hpp"
#include "core/strings.hpp"
#include "formats/tensor_spec.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {
namespace {

using numerics::kFp4GroupCols;
using numerics::kFp8TileCols;
using numerics::kFp8TileRows;

// `a.b.weight` -> `a.b.scale`; names not ending in `.weight` have no companion.
std::string scale_name_for(const std::string& weight_name) {
  if (!ends_with(weight_name, model::kWeightSuffix)) return "";
  return strip_suffix(weight_name, model::kWeightSuffix) + model::kScaleSuffix;
}

void classify_fp8(const std::string& dir, NativeTensor& t) {
  const auto& shape = t.stored.shape;
  QF_CHECK(shape.size() == 2, dir, "tensor", t.name, "is F8_E4M3 with shape",
           formats::shape_str(shape), "but block-scaled FP8 weights must be 2-D");
  t.kind = StorageKind::kFp8Block;
  t.n_rows = shape[0];
  t.n_cols = shape[1];
  const std::vector<int64_t> want = {ceil_div(t.n_rows, kFp8TileRows),
                                     ceil_div(t.n_cols, kFp8TileCols)};
  QF_CHECK(t.scale.dtype == DType::kF8E8M0 || t.scale.dtype == DType::kF32, dir, "tensor",
           t.scale_name, "has dtype", dtype_name(t.scale.dtype),
           "but FP8 block scales must be F8_E8M0 or F32");
  QF_CHECK(t.scale.shape == want, dir, "tensor", t.scale_name, "has shape",
           formats::shape_str(t.scale.shape), "but", t.name, formats::shape_str(shape),
           "needs one scale per", "128x128 tile:", formats::shape_str(want));
}

void classify_fp4(const std::string& dir, NativeTensor& t) {
  const auto& shape = t.stored.shape;
  QF_CHECK(shape.size() == 2, dir, "tensor", t.name, "is packed FP4 with shape",
           formats::shape_str(shape), "but FP4 expert weights must be 2-D");
  t.kind = StorageKind::kFp4Block;
  t.n_rows = shape[0];
  // I8/U8 store two E2M1 codes per byte; safetensors F4 counts logical elements.
  t.n_cols = t.stored.dtype == DType::kF4 ? shape[1] : shape[1] * 2;
  QF_CHECK(t.n_cols % kFp4GroupCols == 0, dir, "tensor", t.name, "has", t.n_cols,
           "input columns, not a multiple of the FP4 scale block", kFp4GroupCols);
  QF_CHECK(t.scale.dtype == DType::kF8E8M0, dir, "tensor", t.scale_name, "has dtype",
           dtype_name(t.scale.dtype), "but FP4 expert scales must be F8_E8M0");
  const std::vector<int64_t> want = {t.n_rows, t.n_cols / kFp4GroupCols};
  QF_CHECK(t.scale.shape == want, dir, "tensor", t.scale_name, "has shape",
           formats::shape_str(t.scale.shape), "but", t.name,
           "needs one scale per 32 inputs:", formats::shape_str(want));
}

}  // namespace

int layer_of_name(const std::string& name, int num_hidden_layers) {
  for (const char* prefix : {"layers.", "model.layers.", "mtp."}) {
    const std::string p = prefix;
    if (!starts_with(name, p)) continue;
    size_t end = p.size();
    while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
    if (end == p.size()) return -1;
    const int index = std::stoi(name.substr(p.size(), end - p.size()));
    return p == "mtp." ? num_hidden_layers + index : index;
  }
  return -1;
}

int expert_of_name(const std::string& name) {
  const std::string key = ".experts.";
  const size_t at = name.find(key);
  if (at == std::string::npos) return -1;
  size_t end = at + key.size();
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  if (end == at + key.size()) return -1;
  return std::stoi(name.substr(at + key.size(), end - at - key.size()));
}

std::vector<NativeTensor> classify_native_tensors(const formats::CheckpointDir& checkpoint) {
  const std::string& dir = checkpoint.dir();
  int num_hidden_layers = 1 << 20;  // mtp.M indices land after every regular layer
  try {
    const auto config = checkpoint.read_json("config.json");
    if (config.contains("num_hidden_layers")) num_hidden_layers = config["num_hidden_layers"];
  } catch (const Error&) {
    // A checkpoint without config.json is still convertible; layer indices of mtp.* stay large.
  }

  std::set<std::string> used_scales;
  std::vector<NativeTensor> out;
  for (const auto& shard_file : checkpoint.shard_files()) {
    const auto& shard = checkpoint.shard(shard_file);
    for (const auto& info : shard.tensors()) {
      if (ends_with(info.name, model::kScaleSuffix)) continue;  // handled with its weight
      NativeTensor t;
      t.name = info.name;
      t.shard = shard_file;
      t.stored = info.spec();
      t.layer = layer_of_name(info.name, num_hidden_layers);
      t.expert = expert_of_name(info.name);
      const std::string scale = scale_name_for(info.name);
      const bool has_scale = !scale.empty() && checkpoint.has_tensor(scale);
      const bool is_fp8 = info.dtype == DType::kF8E4M3;
      const bool is_fp4 = info.dtype == DType::kF4 ||
                          (has_scale && (info.dtype == DType::kI8 || info.dtype == DType::kU8));
      if (is_fp8 || is_fp4) {
        QF_CHECK(has_scale, dir, "tensor", info.name, "is", dtype_name(info.dtype),
                 "but its scale tensor", scale.empty() ? "(name ends not in .weight)" : scale,
                 "is missing");
        t.scale_name = scale;
        t.scale = checkpoint.tensor(scale).spec();
        used_scales.insert(scale);
        if (is_fp8) {
          classify_fp8(dir, t);
        } else {
          classify_fp4(dir, t);
        }
      } else {
        if (info.shape.size() == 2) {  // a BF16 linear's logical [out, in]
          t.n_rows = info.shape[0];
          t.n_cols = info.shape[1];
        }
        QF_CHECK(!has_scale, dir, "tensor", info.name, "has a scale companion", scale, "but dtype",
                 dtype_name(info.dtype), "is neither F8_E4M3 nor packed FP4 (I8/U8/F4)");
      }
      out.push_back(std::move(t));
    }
  }
  for (const auto& name : checkpoint.tensor_names()) {
    if (ends_with(name, model::kScaleSuffix)) {
      QF_CHECK(used_scales.count(name), dir, "tensor", name, "is a scale without its weight",
               strip_suffix(name, model::kScaleSuffix) + model::kWeightSuffix);
    }
  }
  return out;
}

}  // namespace qf::pipeline
