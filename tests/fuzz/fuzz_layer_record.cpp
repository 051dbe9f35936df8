// Fuzz target: a rank-store layer file (HDF5) through read_layer_file. In a run the manifest's
// XXH64 stops a damaged file before HDF5 sees it; this target checks the reader's own
// validation (format attributes, dtypes, shapes vs byte counts, unexpected objects) behind it.
#include "formats/layer_file.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = qf::fuzz::write_input(data, size, ".h5");
  qf::fuzz::expect_ok_or_error([&] { (void)qf::formats::read_layer_file(path); });
  return 0;
}
