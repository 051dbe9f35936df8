// Fuzz target: config.json text through the validating ModelConfig parser and, when accepted,
// the tensor table it implies (sizes must have been range-checked before anything is allocated).
#include "formats/atomic_file.hpp"
#include "fuzz_util.hpp"
#include "model/config.hpp"
#include "model/tensor_table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  qf::fuzz::expect_ok_or_error([&] {
    const auto json = qf::formats::parse_json_strict(text, "config.json");
    const auto config = qf::model::ModelConfig::from_json(json, "config.json");
    (void)qf::model::checkpoint_tensors(config, qf::model::config_weight_format(config));
  });
  return 0;
}
