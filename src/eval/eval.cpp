// The eval loop: both models layer by layer on this rank's samples, then logits metrics; sums
// all-reduced over the ranks.
#include "eval/eval.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "core/check.hpp"
#include "core/elapsed.hpp"
#include "core/log.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "core/strings.hpp"
#include "formats/checkpoint_dir.hpp"
#include "model/config.hpp"
#include "model/forward_decoder_layer.hpp"
#include "model/forward_linear.hpp"
#include "model/model_forward.hpp"
#include "model/tensor_table.hpp"
#include "calibrate/calibration_data.hpp"
#include "dist/collective_step.hpp"
#include "eval/eval_model.hpp"
#include "source/native_tensors.hpp"
#include "source/native_weight_loader.hpp"

namespace qf::pipeline {

double EvalModuleResult::rel_l2() const {
  if (n_rows == 0) return std::numeric_limits<double>::quiet_NaN();
  if (sq_ref == 0) return sq_err == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(sq_err / sq_ref);
}

double EvalReport::perplexity_source() const { return std::exp(nll_source_sum / n_predicted); }
double EvalReport::perplexity_quantized() const {
  return std::exp(nll_quantized_sum / n_predicted);
}

double EvalReport::layer_rel_l2(int layer) const {
  const double ref = layer_sq_ref.at(layer), err = layer_sq_err.at(layer);
  if (ref == 0) return err == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(err / ref);
}

std::vector<size_t> EvalReport::modules_by_error() const {
  std::vector<size_t> order(modules.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const double ea = modules[a].rel_l2(), eb = modules[b].rel_l2();
    if (std::isnan(ea) != std::isnan(eb)) return std::isnan(eb);  // unseen modules last
    return ea > eb;
  });
  return order;
}

namespace {

// log_softmax of one row of logits, in double.
void log_softmax(const float* logits, int64_t vocab, std::vector<double>& out) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t v = 0; v < vocab; ++v) m = std::max(m, double(logits[v]));
  double sum = 0;
  for (int64_t v = 0; v < vocab; ++v) sum += std::exp(double(logits[v]) - m);
  const double lse = m + std::log(sum);
  for (int64_t v = 0; v < vocab; ++v) out[v] = double(logits[v]) - lse;
}

int64_t argmax(const float* x, int64_t n) {
  return std::max_element(x, x + n) - x;  // first maximum
}

struct LogitSums {
  double n_positions = 0, n_predicted = 0, kl = 0, top1 = 0, nll_source = 0, nll_quantized = 0;
};

// Next-token metrics of n_seqs sequences: KL(source || quantized) and top-1 agreement at every
// position, NLL of token t+1 at positions t < seq_len - 1.
void add_logit_metrics(const std::vector<float>& ls, const std::vector<float>& lq, int64_t vocab,
                       const std::vector<int64_t>& tokens, int seq_len, LogitSums& sums) {
  const int64_t n_tokens = static_cast<int64_t>(tokens.size());
  // Per token in parallel, then summed in token order: the same sums as one thread.
  std::vector<double> kl(n_tokens), top1(n_tokens), nll_s(n_tokens), nll_q(n_tokens);
  parallel_for(n_tokens, [&](int64_t begin, int64_t end) {
    std::vector<double> ps(vocab), pq(vocab);
    for (int64_t t = begin; t < end; ++t) {
      const float* rs = ls.data() + t * vocab;
      const float* rq = lq.data() + t * vocab;
      log_softmax(rs, vocab, ps);
      log_softmax(rq, vocab, pq);
      double k = 0;
      for (int64_t v = 0; v < vocab; ++v) k += std::exp(ps[v]) * (ps[v] - pq[v]);
      kl[t] = std::max(k, 0.0);  // rounding can make an exact match a hair negative
      top1[t] = argmax(rs, vocab) == argmax(rq, vocab) ? 1 : 0;
      if ((t % seq_len) + 1 < seq_len) {
        const int64_t next = tokens[t + 1];
        nll_s[t] = -ps[next];
        nll_q[t] = -pq[next];
      }
    }
  });
  for (int64_t t = 0; t < n_tokens; ++t) {
    sums.kl += kl[t];
    sums.top1 += top1[t];
    sums.n_positions += 1;
    if ((t % seq_len) + 1 < seq_len) {
      sums.nll_source += nll_s[t];
      sums.nll_quantized += nll_q[t];
      sums.n_predicted += 1;
    }
  }
}

// A loader that adds the seconds it spends to *seconds (eval's phase times, --log-level debug).
model::WeightLoader timed_loader(const model::WeightLoader& loader, double* seconds) {
  return [&loader, seconds](const std::string& name, std::vector<int64_t> shape) {
    const auto start = std::chrono::steady_clock::now();
    std::vector<float> v = loader(name, std::move(shape));
    *seconds += seconds_since(start);
    return v;
  };
}

double sum_sq_diff(const std::vector<float>& a, const std::vector<float>& b, double* sum_sq_b) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    err += d * d;
    ref += double(b[i]) * double(b[i]);
  }
  *sum_sq_b = ref;
  return err;
}

// The config numbers the two checkpoints must share for the export to be this source's.
void check_same_model(const formats::CheckpointDir& source, const formats::CheckpointDir& out) {
  const nlohmann::json a = source.read_json("config.json"), b = out.read_json("config.json");
  for (const char* key : {"num_hidden_layers", "hidden_size", "vocab_size", "n_routed_experts",
                          "moe_intermediate_size", "num_attention_heads", "head_dim"}) {
    QF_CHECK(a.value(key, nlohmann::json()) == b.value(key, nlohmann::json()), "eval:", out.dir(),
             "is not an export of", source.dir(), "(config.json", key,
             "differs:", a.value(key, nlohmann::json()).dump(), "vs",
             b.value(key, nlohmann::json()).dump(), ")");
  }
}

}  // namespace

EvalReport run_eval(const EvalOptions& options, dist::Communicator& comm) {
  const auto start = std::chrono::steady_clock::now();
  QF_CHECK(options.seq_len >= 2, "eval: --seq-len must be >= 2 (perplexity needs a next token)");
  QF_CHECK(options.batch >= 1, "eval: --batch must be >= 1");
  QF_CHECK(options.tokens_path.empty() ? options.samples >= 1 : true,
           "eval: --samples must be >= 1");
  const formats::CheckpointDir source(options.source_dir);
  const formats::CheckpointDir out(options.out_dir);
  check_same_model(source, out);
  const model::ModelConfig config = model::ModelConfig::from_json(
      source.read_json("config.json"), options.source_dir + "/config.json");
  config.require_reference_forward();
  const bool tie = config.tie_word_embeddings;

  const Nvfp4ExportModules modules = read_nvfp4_export_modules(out);
  if (modules.names.empty()) log_warn("eval: ", out.dir(), " has no NVFP4 module");
  const CalibrationSet set =
      options.tokens_path.empty()
          ? synthetic_calibration_set(config, options.samples, options.seq_len, options.seed)
          : load_calibration_set(options.tokens_path, options.samples, options.seq_len,
                                 config.vocab_size);
  const SampleRange local = samples_of_rank(set.n_samples, comm.rank(), comm.world_size());
  const std::vector<int64_t> tokens = set.tokens_of(local.begin, local.end);
  log_info("eval: ", set.n_samples, " samples x ", set.seq_len, " tokens (", set.source, ") on ",
           comm.world_size(), " rank(s); ", modules.names.size(), " NVFP4 modules simulated as ",
           options.quantize_activations
               ? "W4A4 (weights from the export, inputs quantized with input_scale)"
               : "W4A16 (weights from the export, inputs unquantized: --weights-only)");

  const NativeTensorIndex tensors = index_native_tensors(classify_native_tensors(source));
  // Phase times (log_debug), decoding counted through the loaders: the quantized model's
  // includes what it reads from the source (every tensor that is not NVFP4).
  double t_decode_source = 0, t_decode_quant = 0, t_forward[2] = {0, 0}, t_head = 0,
         t_metrics = 0;
  const model::WeightLoader native_loader = make_native_weight_loader(source, tensors, tie);
  const model::WeightLoader source_loader = timed_loader(native_loader, &t_decode_source);
  const model::WeightLoader export_loader =
      make_export_weight_loader(out, modules, native_loader, tie);
  const model::WeightLoader quant_loader = timed_loader(export_loader, &t_decode_quant);

  EvalReport report;
  report.options = options;
  report.token_source = set.source;
  report.token_fingerprint = calibration_fingerprint(set);
  report.n_samples = set.n_samples;
  report.seq_len = set.seq_len;
  report.world_size = comm.world_size();
  report.layer_sq_err.assign(config.num_hidden_layers, 0.0);
  report.layer_sq_ref.assign(config.num_hidden_layers, 0.0);

  // Model ends: the quantized model shares the source's unless one of them is an NVFP4 module.
  model::GlobalWeights g_source, g_quant_own;
  const model::GlobalWeights* g_quant = &g_source;
  std::vector<float> hidden_source, hidden_quant;
  ModuleErrorRecorder recorder(config, modules, options.quantize_activations);
  ActivationQuantizer quantizer(modules, options.quantize_activations);
  dist::run_on_all_ranks(comm, "eval: loading the embedding, head and norms", [&] {
    g_source = model::load_global_weights(config, source_loader);
    bool ends_quantized = false;
    for (const std::string& name : model::global_weight_names()) {
      const std::string native = native_weight_name(name, tie);
      if (native != model::kWeightSuffix && ends_with(native, model::kWeightSuffix) &&
          modules.contains(strip_suffix(native, model::kWeightSuffix))) {
        ends_quantized = true;
      }
    }
    if (ends_quantized) {
      g_quant_own = model::load_global_weights(config, quant_loader);
      g_quant = &g_quant_own;
    }
    hidden_source = model::embed_tokens(config, g_source, tokens);
    hidden_quant = model::embed_tokens(config, *g_quant, tokens);
    g_source.embed = model::Tensor2D();  // 2 GB at V4 dimensions, not needed any more
    g_quant_own.embed = model::Tensor2D();
  });
  log_debug("eval: model ends loaded in ", seconds_since(start), " s (decoding: source ",
            t_decode_source, " s, quantized ", t_decode_quant, " s)");
  const double t_decode_ends = t_decode_source + t_decode_quant;
  t_decode_source = t_decode_quant = 0;

  const int64_t token_floats = config.hc_mult * config.hidden_size;
  const auto layers_start = std::chrono::steady_clock::now();
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    const auto layer_start = std::chrono::steady_clock::now();
    double sums[2] = {0, 0};
    const std::string what = "eval: layer " + std::to_string(layer);
    dist::run_on_all_ranks(comm, what.c_str(), [&] {
      // Routed experts decoded on use, one at a time per model: a layer of V4-Flash holds 26 GB
      // of FP32 experts per model; an expert no token reached is never decoded.
      const model::LayerWeights ws =
          model::load_layer_weights(config, layer, source_loader, /*lazy_experts=*/true);
      const model::LayerWeights wq =
          model::load_layer_weights(config, layer, quant_loader, /*lazy_experts=*/true);
      recorder.set_layer(&ws, &wq);
      for (int b = 0; b < local.n_samples(); b += options.batch) {
        const int n_seqs = std::min(options.batch, local.n_samples() - b);
        const int64_t first = int64_t{b} * set.seq_len, n = int64_t{n_seqs} * set.seq_len;
        const std::vector<int64_t> ids(tokens.begin() + first, tokens.begin() + first + n);
        for (int which = 0; which < 2; ++which) {
          std::vector<float>& hidden = which == 0 ? hidden_source : hidden_quant;
          std::vector<float> slice(hidden.begin() + first * token_floats,
                                   hidden.begin() + (first + n) * token_floats);
          const auto forward_start = std::chrono::steady_clock::now();
          model::decoder_layer_forward(
              config, layer, which == 0 ? ws : wq, ids, n_seqs, set.seq_len, slice,
              which == 0 ? static_cast<model::LinearInputObserver*>(&recorder) : &quantizer);
          t_forward[which] += seconds_since(forward_start);
          std::copy(slice.begin(), slice.end(), hidden.begin() + first * token_floats);
        }
      }
      recorder.set_layer(nullptr, nullptr);
      log_debug("eval: layer ", layer, ": experts decoded: source ", ws.ffn.lazy->n_loads(),
                ", quantized ", wq.ffn.lazy->n_loads(), " (of ", config.n_routed_experts, ")");
      sums[0] = sum_sq_diff(hidden_quant, hidden_source, &sums[1]);
    });
    comm.allreduce(sums, 2, dist::ElemType::kF64, dist::ReduceOp::kSum, what.c_str());
    report.layer_sq_err[layer] = sums[0];
    report.layer_sq_ref[layer] = sums[1];
    // Layers cost about the same (same tokens, same shapes): ETA from the mean so far.
    const double eta =
        seconds_since(layers_start) / (layer + 1) * (config.num_hidden_layers - layer - 1);
    log_info("[", layer + 1, "/", config.num_hidden_layers, "] layer ", layer,
             ": hidden rel L2 (quantized vs source) ", report.layer_rel_l2(layer), " (",
             seconds_since(layer_start), " s; ETA ", ProgressMeter::format_seconds(eta),
             " + head)");
  }

  LogitSums logit_sums;
  dist::run_on_all_ranks(comm, "eval: final norm, head and next-token metrics", [&] {
    recorder.set_globals(&g_source, g_quant);
    for (int b = 0; b < local.n_samples(); b += options.batch) {
      const int n_seqs = std::min(options.batch, local.n_samples() - b);
      const int64_t first = int64_t{b} * set.seq_len, n = int64_t{n_seqs} * set.seq_len;
      const std::vector<int64_t> ids(tokens.begin() + first, tokens.begin() + first + n);
      std::vector<float> logits[2];
      for (int which = 0; which < 2; ++which) {
        const std::vector<float>& hidden = which == 0 ? hidden_source : hidden_quant;
        const model::GlobalWeights& g = which == 0 ? g_source : *g_quant;
        const std::vector<float> slice(hidden.begin() + first * token_floats,
                                       hidden.begin() + (first + n) * token_floats);
        const auto head_start = std::chrono::steady_clock::now();
        const std::vector<float> fh = model::final_hidden(config, g, slice);
        logits[which] = model::final_logits(
            config, g, fh,
            which == 0 ? static_cast<model::LinearInputObserver*>(&recorder) : &quantizer);
        t_head += seconds_since(head_start);
      }
      const auto metrics_start = std::chrono::steady_clock::now();
      add_logit_metrics(logits[0], logits[1], config.vocab_size, ids, set.seq_len, logit_sums);
      t_metrics += seconds_since(metrics_start);
    }
  });
  log_debug("eval: phase times (rank ", comm.rank(), ", ", thread_count(),
            " threads): model ends decoding ", t_decode_ends, " s; layers: source decoding ",
            t_decode_source, " s, quantized decoding ", t_decode_quant,
            " s, source forward ", t_forward[0], " s (incl. its expert decoding and the",
            " per-module error probe ", recorder.seconds(), " s), quantized forward ",
            t_forward[1], " s (incl. its expert decoding); head ", t_head,
            " s (incl. probe); logit metrics ", t_metrics, " s");

  // One reduction for everything else: 6 logit sums, then 3 per module.
  std::vector<double> all = {logit_sums.n_positions, logit_sums.n_predicted,
                             logit_sums.kl,          logit_sums.top1,
                             logit_sums.nll_source,  logit_sums.nll_quantized};
  for (const ModuleErrorSums& s : recorder.sums()) {
    all.insert(all.end(), {s.sq_err, s.sq_ref, double(s.n_rows)});
  }
  comm.allreduce(all.data(), all.size(), dist::ElemType::kF64, dist::ReduceOp::kSum,
                 "eval: metric sums");
  report.n_positions = all[0];
  report.n_predicted = all[1];
  report.kl_sum = all[2];
  report.top1_sum = all[3];
  report.nll_source_sum = all[4];
  report.nll_quantized_sum = all[5];
  for (size_t i = 0; i < modules.names.size(); ++i) {
    EvalModuleResult m;
    m.name = modules.names[i];
    m.sq_err = all[6 + 3 * i];
    m.sq_ref = all[6 + 3 * i + 1];
    m.n_rows = static_cast<int64_t>(all[6 + 3 * i + 2]);
    report.modules.push_back(std::move(m));
  }
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace qf::pipeline
