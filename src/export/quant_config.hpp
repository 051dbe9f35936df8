// config.json `quantization_config` and hf_quant_config.json of an export, per recipe
// (docs/EXPORT_FORMAT.md, FORMATS.md §2-§3). Owns: those JSON documents. Does not own tensors.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/enum_table.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

enum class KvCache { kNone, kFp8Cast };
const EnumTable<KvCache>& kv_caches();  // parse, name and --help of --kv-cache

// The source config.json with its quantization_config amended for the export.
nlohmann::json export_config_json(const nlohmann::json& source_config, const QuantizePlan& plan,
                                  KvCache kv);
// hf_quant_config.json (ModelOpt's nested form).
nlohmann::json hf_quant_config_json(const QuantizePlan& plan, KvCache kv);

}  // namespace qf::pipeline
