// quantize_report_section.
#include "job/quantize_report_section.hpp"

#include "core/progress.hpp"
#include "report/quantization_report.hpp"

namespace qf::pipeline {

using json = nlohmann::json;

namespace {

json path_or_null(const std::string& path) { return path.empty() ? json() : json(path); }

}  // namespace

json quantize_report_section(const QuantizeOptions& options, const QuantizeReport& rank0,
                             const QuantizeReportTotals& totals,
                             const std::vector<std::string>& uncalibrated_experts, int world_size,
                             const json& previous) {
  json calibration = {{"samples", options.samples},
                      {"seq_len", options.seq_len},
                      {"seed", options.seed},
                      {"calib", path_or_null(options.calib_path)},
                      {"amax_file", path_or_null(options.amax_file)},
                      {"calib_batch", options.calib_batch},
                      {"cpu_bf16_inputs", options.cpu_bf16_linear_inputs}};
  // cuda only, so that reports of cpu runs stay as they were.
  if (options.backend == dist::ComputeBackend::kCuda) {
    calibration["cuda_linear_inputs"] = options.cuda_bf16_linear_inputs ? "bf16" : "fp32";
  }
  json lossless;
  if (!options.export_only) {
    lossless = {{"tensors_quantized", totals.n_targets},
                {"blocks_lossless", totals.n_blocks_lossless},
                {"blocks_fallback", totals.n_blocks_fallback},
                // A resumed run counts only the layers it quantized itself.
                {"complete", totals.n_targets == totals.n_targets_planned}};
  } else if (previous.contains("quantize") && previous["quantize"].is_object()) {
    lossless = previous["quantize"].value("lossless_cast", json());
  }
  const char* mode = options.export_only
                         ? (options.shard.empty() ? "export-only" : "export-only --shard")
                         : (options.resume ? "resume" : "run");
  json out = {{"tool", std::string("quantforge ") + QF_VERSION},
              {"source", options.in_dir},
              {"out", options.out_dir},
              {"work", options.work_dir},
              {"store_provenance_xxh64", rank0.store_provenance_xxh64},
              {"world_size", world_size},
              {"mode", mode},
              {"options",
               {{"recipe", recipes().name(options.recipe)},
                {"expert_weights", expert_weights_modes().name(options.expert_weights)},
                {"weight_scale", weight_scale_methods().name(options.weight_scale)},
                {"kv_cache", kv_caches().name(options.kv)},
                {"backend", dist::backend_name(options.backend)},
                {"act_scale", act_scale_name(options.act_scale)},
                {"shard", path_or_null(options.shard)},
                {"calibration", calibration}}},
              {"targets", totals.n_targets_planned},
              {"lossless_cast", lossless},
              {"uncalibrated_experts", uncalibrated_experts},
              {"n_uncalibrated_experts", uncalibrated_experts.size()},
              {"bytes_written", totals.bytes_written},
              // Rank 0's clock; every phase ends in a collective.
              {"seconds",
               {{"calibration", rank0.calib_seconds},
                {"quantization", rank0.quant_seconds},
                {"export", rank0.export_seconds},
                {"total", rank0.seconds}}}};
  // 16-blocks of the requantized targets whose E4M3 scale is not the max-mapped one.
  if (options.weight_scale != WeightScale::kMax && !options.export_only) {
    out["weight_scale_blocks_moved"] = totals.n_blocks_moved;
  }
  return out;
}

}  // namespace qf::pipeline
