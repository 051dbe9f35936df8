// `inspect`: what a safetensors checkpoint holds (tensor table, per-dtype totals, optional
// checksums, config summary) and whether it matches the DeepSeek V4 table of its config, as text
// or JSON. Owns: gathering and presenting that. Does not own reading (formats/) or the expected
// table (model/tensor_table).
#pragma once
#include <ostream>
#include <string>

namespace qf::pipeline {

struct InspectOptions {
  std::string dir;
  bool totals_only = false;  // no per-tensor rows
  bool as_json = false;      // one JSON document instead of text
  bool checksums = false;    // XXH64 of every tensor's bytes (reads all data)
};

struct InspectResult {
  bool config_ok = false;    // config.json is a valid DeepSeek V4 config
  std::string config_error;  // why not
  size_t n_differences = 0;  // tensors missing, unexpected or different from the table
  bool matches() const { return config_ok && n_differences == 0; }
  std::string problem() const;  // "" when matches(), else one line saying why not
};

// Writes the report to `out`. A missing or foreign config is reported, not thrown; unreadable
// shards throw qf::Error.
InspectResult inspect_checkpoint(const InspectOptions& options, std::ostream& out);

}  // namespace qf::pipeline
