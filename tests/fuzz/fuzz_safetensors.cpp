// Fuzz target: a whole safetensors file (length prefix, JSON header, data) through the validating
// reader, then every tensor read back (offsets must have been checked against the file).
#include <vector>

#include "formats/safetensors_reader.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qf::fuzz::write_input(data, size, ".safetensors");
  qf::fuzz::expect_ok_or_error([&] {
    qf::formats::SafetensorsReader reader(path);
    std::vector<uint8_t> bytes;
    for (const auto& info : reader.tensors()) {
      bytes.resize(info.n_bytes());
      reader.read(info, 0, info.n_bytes(), bytes.data());
    }
  });
  return 0;
}
