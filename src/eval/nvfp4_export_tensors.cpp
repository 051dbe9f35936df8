// Decoding an export's NVFP4 tensor groups back to FP32 (shared by eval and the parity dump).
#include "eval/nvfp4_export_tensors.hpp"

#include <cstring>

#include "core/check.hpp"
#include "core/dtype.hpp"
#include "core/strings.hpp"
#include "formats/tensor_spec.hpp"
#include "model/tensor_table.hpp"
#include "source/fast_decode.hpp"

namespace qf::pipeline {
namespace {

const std::string kScale2 = ".weight_scale_2";

float read_f32_scalar(const formats::CheckpointDir& ckpt, const std::string& name) {
  const formats::TensorInfo* info = &ckpt.tensor(name);
  const std::vector<uint8_t> bytes = ckpt.read_tensor(name);
  QF_CHECK(info->dtype == DType::kF32 && info->n_elems() == 1 && bytes.size() == sizeof(float),
           ckpt.dir() + ":", name, ": want one F32, got", dtype_name(info->dtype),
           formats::shape_str(info->shape));
  float v = 0;
  std::memcpy(&v, bytes.data(), sizeof(float));  // little-endian host
  return v;
}

}  // namespace

std::vector<std::string> nvfp4_export_prefixes(const formats::CheckpointDir& out) {
  std::vector<std::string> prefixes;
  for (const std::string& name : out.tensor_names()) {  // sorted
    if (name.size() > kScale2.size() && ends_with(name, kScale2)) {
      prefixes.push_back(strip_suffix(name, kScale2));
    }
  }
  return prefixes;
}

Nvfp4DecodedWeight decode_nvfp4_export_weight(const formats::CheckpointDir& out,
                                              const std::string& prefix) {
  const std::string wname = prefix + model::kWeightSuffix;
  const formats::TensorInfo* w = &out.tensor(wname);
  const formats::TensorInfo* s = &out.tensor(prefix + ".weight_scale");
  const std::vector<uint8_t> packed = out.read_tensor(wname);
  const std::vector<uint8_t> scale = out.read_tensor(prefix + ".weight_scale");
  QF_CHECK(w->dtype == DType::kU8 && w->shape.size() == 2, out.dir() + ":", wname,
           ": want U8 [out, in/2], got", dtype_name(w->dtype), formats::shape_str(w->shape));
  Nvfp4DecodedWeight d;
  d.n_rows = w->shape[0];
  d.n_cols = w->shape[1] * 2;
  const std::vector<int64_t> scale_shape = {d.n_rows, d.n_cols / 16};
  QF_CHECK(d.n_cols % 16 == 0 && s->dtype == DType::kF8E4M3 && s->shape == scale_shape,
           out.dir() + ":", prefix, ".weight_scale: want F8_E4M3", formats::shape_str(scale_shape),
           "got", dtype_name(s->dtype), formats::shape_str(s->shape));
  d.weight_scale_2 = read_f32_scalar(out, prefix + kScale2);

  d.values.resize(static_cast<size_t>(d.n_rows * d.n_cols));
  decode_nvfp4_to_float(packed.data(), scale.data(), d.weight_scale_2, d.n_rows, d.n_cols,
                        d.values.data());
  return d;
}

float read_nvfp4_input_scale(const formats::CheckpointDir& out, const std::string& prefix) {
  return read_f32_scalar(out, prefix + ".input_scale");
}

}  // namespace qf::pipeline
