// Fuzz target: a calibration token file (JSONL when the first byte is '[' or '{' or blank, else
// safetensors) through load_calibration_set; the first two bytes pick samples and seq_len so
// that short and exact-size inputs are both reached.
#include "calibrate/calibration_data.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int samples = 1 + data[0] % 4, seq_len = 1 + data[1] % 8;
  data += 2;
  size -= 2;
  const bool jsonl = size == 0 || data[0] == '[' || data[0] == '{' || data[0] == ' ';
  const std::string path = qf::fuzz::write_input(data, size, jsonl ? ".jsonl" : ".safetensors");
  qf::fuzz::expect_ok_or_error(
      [&] { (void)qf::pipeline::load_calibration_set(path, samples, seq_len, 1000); });
  return 0;
}
