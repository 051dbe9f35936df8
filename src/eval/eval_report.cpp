// eval's outputs: the JSON report (quantization_report.json) and the table on stdout.
#include <cmath>
#include <cstdio>
#include <string>

#include "eval/eval.hpp"

namespace qf::pipeline {
namespace {

// JSON has no NaN/Inf: those become null.
nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

}  // namespace

nlohmann::json eval_report_json(const EvalReport& r) {
  using json = nlohmann::json;
  const EvalOptions& o = r.options;
  json layers = json::array();
  for (size_t l = 0; l < r.layer_sq_err.size(); ++l) {
    layers.push_back({{"layer", l}, {"rel_l2", number(r.layer_rel_l2(static_cast<int>(l)))}});
  }
  json modules = json::array(), worst = json::array();
  const std::vector<size_t> order = r.modules_by_error();
  for (size_t i : order) {
    const EvalModuleResult& m = r.modules[i];
    modules.push_back({{"name", m.name}, {"rel_l2", number(m.rel_l2())}, {"tokens", m.n_rows}});
  }
  for (size_t k = 0; k < order.size() && static_cast<int>(k) < o.n_worst; ++k) {
    if (r.modules[order[k]].n_rows > 0) worst.push_back(r.modules[order[k]].name);
  }
  int64_t unseen = 0;
  for (const EvalModuleResult& m : r.modules) unseen += m.n_rows == 0 ? 1 : 0;
  return json{
      {"format", "quantforge-eval-report/1"},
      {"source", o.source_dir},
      {"out", o.out_dir},
      {"options",
       {{"tokens", o.tokens_path.empty() ? json() : json(o.tokens_path)},
        {"samples", r.n_samples},
        {"seq_len", r.seq_len},
        {"seed", o.tokens_path.empty() ? json(o.seed) : json()},
        {"batch", o.batch},
        {"weights_only", !o.quantize_activations},
        {"world_size", r.world_size}}},
      {"tokens",
       {{"source", r.token_source},
        {"fingerprint", r.token_fingerprint},
        {"positions", r.n_positions},
        {"predicted", r.n_predicted}}},
      {"simulation",
       o.quantize_activations
           ? "NVFP4 W4A4: every module with a weight_scale_2 in the export uses its decoded "
             "weight and its input quantized per 16-element block (E4M3 block scale, E2M1 codes) "
             "with input_scale as the global scale; every other tensor is the source's; FP32 "
             "reference forward"
           : "NVFP4 W4A16 (--weights-only): decoded weights of every module with a "
             "weight_scale_2 in the export, inputs not quantized; every other tensor is the "
             "source's; FP32 reference forward"},
      {"kl_mean", number(r.kl_mean())},
      {"top1_agreement", number(r.top1_agreement())},
      {"perplexity",
       {{"source", number(r.perplexity_source())},
        {"quantized", number(r.perplexity_quantized())}}},
      {"nll_mean",
       {{"source", number(r.nll_source_sum / r.n_predicted)},
        {"quantized", number(r.nll_quantized_sum / r.n_predicted)}}},
      {"layers", layers},
      {"modules", modules},
      {"worst_modules", worst},
      {"modules_without_tokens", unseen},
      {"seconds", r.seconds}};
}

void print_eval_table(const EvalReport& r) {
  std::printf("eval: %s vs its export %s\n", r.options.source_dir.c_str(),
              r.options.out_dir.c_str());
  std::printf("  tokens           %d x %d (%s), %.0f positions, %d rank(s)\n", r.n_samples,
              r.seq_len, r.token_source.c_str(), r.n_positions, r.world_size);
  std::printf("  KL(src||quant)   %.6g nats/token\n", r.kl_mean());
  std::printf("  top-1 agreement  %.4f\n", r.top1_agreement());
  std::printf("  perplexity       source %.4f, quantized %.4f\n", r.perplexity_source(),
              r.perplexity_quantized());
  std::printf("  %-6s %14s\n", "layer", "hidden rel L2");
  for (size_t l = 0; l < r.layer_sq_err.size(); ++l) {
    std::printf("  %-6zu %14.6g\n", l, r.layer_rel_l2(static_cast<int>(l)));
  }
  const std::vector<size_t> order = r.modules_by_error();
  int64_t unseen = 0;
  for (const EvalModuleResult& m : r.modules) unseen += m.n_rows == 0 ? 1 : 0;
  std::printf(
      "  worst modules (output rel L2 on the source model's input; %zu NVFP4 modules, "
      "%lld without tokens)\n",
      r.modules.size(), static_cast<long long>(unseen));
  std::printf("  %-44s %12s %10s\n", "module", "rel L2", "tokens");
  for (size_t k = 0; k < order.size() && static_cast<int>(k) < r.options.n_worst; ++k) {
    const EvalModuleResult& m = r.modules[order[k]];
    if (m.n_rows == 0) break;
    std::printf("  %-44s %12.6g %10lld\n", m.name.c_str(), m.rel_l2(),
                static_cast<long long>(m.n_rows));
  }
  std::fflush(stdout);
}

}  // namespace qf::pipeline
