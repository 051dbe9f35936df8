// Usage: export_decode_dump EXPORT_DIR OUT_DIR. Decodes every NVFP4 weight of an export
// (`<p>.weight` with a `<p>.weight_scale_2` sibling) with qf::kernels::nvfp4_dequantize_ref into
// OUT_DIR/<p>.weight.f32 (raw little-endian float32) + manifest.json, for check_export_loader.py.
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/dtype.hpp"
#include "formats/checkpoint_dir.hpp"
#include "kernels/nvfp4_quantize.cuh"

using namespace qf;
using json = nlohmann::json;

namespace {

const std::string kWeight = ".weight";
const std::string kScale2 = ".weight_scale_2";

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

std::vector<uint8_t> read_bytes(const formats::CheckpointDir& ckpt, const std::string& name,
                                const formats::TensorInfo** info_out) {
  const formats::SafetensorsReader* shard = nullptr;
  const formats::TensorInfo& info = ckpt.tensor(name, &shard);
  if (info_out) *info_out = &info;
  return shard->read_tensor(info);
}

// Decodes <p>.weight; returns its manifest entry. Throws on a malformed tensor group.
json dump_one(const formats::CheckpointDir& ckpt, const std::string& prefix,
              const std::string& out_dir) {
  const std::string wname = prefix + kWeight;
  const formats::TensorInfo *w = nullptr, *s = nullptr, *s2 = nullptr;
  std::vector<uint8_t> packed = read_bytes(ckpt, wname, &w);
  std::vector<uint8_t> scale = read_bytes(ckpt, prefix + ".weight_scale", &s);
  std::vector<uint8_t> scale2_bytes = read_bytes(ckpt, prefix + kScale2, &s2);

  QF_CHECK(w->dtype == DType::kU8 && w->shape.size() == 2, wname, ": want U8 [out, in/2], got",
           dtype_name(w->dtype), shape_str(w->shape));
  const int64_t n_rows = w->shape[0], n_cols = w->shape[1] * 2;
  const std::vector<int64_t> scale_shape = {n_rows, n_cols / 16};
  QF_CHECK(s->dtype == DType::kF8E4M3 && s->shape == scale_shape, prefix,
           ".weight_scale: want F8_E4M3", shape_str(scale_shape), "got", dtype_name(s->dtype),
           shape_str(s->shape));
  QF_CHECK(s2->dtype == DType::kF32 && s2->n_elems() == 1, prefix,
           ".weight_scale_2: want one F32, got", dtype_name(s2->dtype), shape_str(s2->shape));
  float scale_2 = 0;
  std::memcpy(&scale_2, scale2_bytes.data(), sizeof(float));

  std::vector<float> y(static_cast<size_t>(n_rows * n_cols));
  kernels::Nvfp4DequantizeParams p;
  p.packed = packed.data();
  p.scale = scale.data();
  p.scale_2 = &scale_2;
  p.n_rows = n_rows;
  p.n_cols = n_cols;
  p.y = y.data();
  kernels::nvfp4_dequantize_ref(p);

  const std::string file = wname + ".f32";
  const std::string path = out_dir + "/" + file;
  std::ofstream out(path, std::ios::binary);
  QF_CHECK(out.good(), "cannot open", path);
  out.write(reinterpret_cast<const char*>(y.data()),
            static_cast<std::streamsize>(y.size() * sizeof(float)));  // little-endian host
  QF_CHECK(out.good(), "cannot write", path);
  return json{{"name", wname}, {"file", file}, {"shape", {n_rows, n_cols}}, {"dtype", "F32"}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: export_decode_dump EXPORT_DIR OUT_DIR\n";
    return 2;
  }
  try {
    const std::string out_dir = argv[2];
    if (mkdir(out_dir.c_str(), 0755) != 0 && errno != EEXIST) {
      std::cerr << "cannot create " << out_dir << ": " << std::strerror(errno) << "\n";
      return 1;
    }
    formats::CheckpointDir ckpt(argv[1]);
    json tensors = json::array();
    for (const std::string& name : ckpt.tensor_names()) {
      if (name.size() <= kScale2.size() ||
          name.compare(name.size() - kScale2.size(), kScale2.size(), kScale2) != 0) {
        continue;
      }
      const std::string prefix = name.substr(0, name.size() - kScale2.size());
      tensors.push_back(dump_one(ckpt, prefix, out_dir));
    }
    json manifest{{"export_dir", argv[1]},
                  {"decoder", "qf::kernels::nvfp4_dequantize_ref: code * (scale * scale_2)"},
                  {"tensors", tensors}};
    std::ofstream mf(out_dir + "/manifest.json");
    mf << manifest.dump(2) << "\n";
    QF_CHECK(mf.good(), "cannot write", out_dir + "/manifest.json");
    std::cout << "export_decode_dump: " << tensors.size() << " NVFP4 weights decoded into "
              << out_dir << "\n";
  } catch (const std::exception& e) {
    std::cerr << "export_decode_dump: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
