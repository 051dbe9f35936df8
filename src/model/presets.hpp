// Named model configs compiled into the binary: tiny, small (tests), v4-flash, v4-pro (real).
// Owns: lookup by name. Does not own: the config schema (config.hpp) or the files in configs/.
#pragma once
#include <string>
#include <vector>

#include "model/config.hpp"

namespace qf::model {

struct Preset {
  const char* name;
  const char* description;
  const char* json_text;  // byte-identical copy of configs/<name>.json
};

const std::vector<Preset>& presets();
// `intro`, then one "  name: description" line per preset (the --help text of --preset).
std::string presets_help(const std::string& intro);
// Throws qf::Error listing the available names.
const Preset& find_preset(const std::string& name);
ModelConfig preset_config(const std::string& name);

}  // namespace qf::model
