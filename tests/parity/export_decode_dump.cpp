// Usage: export_decode_dump EXPORT_DIR OUT_DIR. Decodes every NVFP4 weight of an export
// (`<p>.weight` with a `<p>.weight_scale_2` sibling) with qf::kernels::nvfp4_dequantize_ref (via
// pipeline::decode_nvfp4_export_weight, which eval uses too) into OUT_DIR/<p>.weight.f32 (raw
// little-endian float32) + manifest.json, for check_export_loader.py.
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
#include "eval/nvfp4_export_tensors.hpp"
#include "formats/checkpoint_dir.hpp"

using namespace qf;
using json = nlohmann::json;

namespace {

// Decodes <p>.weight (pipeline::decode_nvfp4_export_weight); returns its manifest entry.
json dump_one(const formats::CheckpointDir& ckpt, const std::string& prefix,
              const std::string& out_dir) {
  const pipeline::Nvfp4DecodedWeight d = pipeline::decode_nvfp4_export_weight(ckpt, prefix);
  const std::string wname = prefix + ".weight";
  const std::string file = wname + ".f32";
  const std::string path = out_dir + "/" + file;
  std::ofstream out(path, std::ios::binary);
  QF_CHECK(out.good(), "cannot open", path);
  out.write(reinterpret_cast<const char*>(d.values.data()),
            static_cast<std::streamsize>(d.values.size() * sizeof(float)));  // little-endian host
  QF_CHECK(out.good(), "cannot write", path);
  return json{{"name", wname}, {"file", file}, {"shape", {d.n_rows, d.n_cols}}, {"dtype", "F32"}};
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
    for (const std::string& prefix : pipeline::nvfp4_export_prefixes(ckpt)) {
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
