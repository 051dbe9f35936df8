// The eval loop: both models layer by layer on this rank's samples, then logits metrics; sums
// all-reduced over the ranks.
#include "eval/eval.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "calibrate/calibration_data.hpp"
#include "core/check.hpp"
#include "core/elapsed.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "core/strings.hpp"
#include "dist/collective_step.hpp"
#include "eval/eval_model.hpp"
#include "formats/checkpoint_dir.hpp"
#include "model/config.hpp"
#include "model/forward_decoder_layer.hpp"
#include "model/forward_linear.hpp"
#include "model/model_forward.hpp"
#include "model/tensor_table.hpp"
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

// One eval pass on this rank: the source and the quantized model side by side over this rank's
// samples, the model ends, then layer by layer, then the heads. Owns both models' hidden states,
// the per-module error probe and the phase times; run_eval drives it and reduces its sums.
class EvalPass {
 public:
  EvalPass(const EvalOptions& options, dist::Communicator& comm, const model::ModelConfig& config,
           const CalibrationSet& set, SampleRange local, const std::vector<int64_t>& tokens,
           const Nvfp4ExportModules& modules, const model::WeightLoader& native_loader,
           const model::WeightLoader& export_loader)
      : options_(options),
        comm_(comm),
        config_(config),
        set_(set),
        local_(local),
        tokens_(tokens),
        modules_(modules),
        source_loader_(timed_loader(native_loader, &t_decode_source_)),
        quant_loader_(timed_loader(export_loader, &t_decode_quant_)),
        recorder_(config, modules, options.quantize_activations),
        quantizer_(modules, options.quantize_activations) {}

  // Model ends: the quantized model shares the source's unless one of them is an NVFP4 module.
  // Embeds this rank's tokens into both hidden states.
  void load_ends(std::chrono::steady_clock::time_point start) {
    const bool tie = config_.tie_word_embeddings;
    dist::run_on_all_ranks(comm_, "eval: loading the embedding, head and norms", [&] {
      g_source_ = model::load_global_weights(config_, source_loader_);
      bool ends_quantized = false;
      for (const std::string& name : model::global_weight_names()) {
        const std::string native = native_weight_name(name, tie);
        if (native != model::kWeightSuffix && ends_with(native, model::kWeightSuffix) &&
            modules_.contains(strip_suffix(native, model::kWeightSuffix))) {
          ends_quantized = true;
        }
      }
      if (ends_quantized) {
        g_quant_own_ = model::load_global_weights(config_, quant_loader_);
        g_quant_ = &g_quant_own_;
      }
      hidden_source_ = model::embed_tokens(config_, g_source_, tokens_);
      hidden_quant_ = model::embed_tokens(config_, *g_quant_, tokens_);
      g_source_.embed = model::Tensor2D();  // 2 GB at V4 dimensions, not needed any more
      g_quant_own_.embed = model::Tensor2D();
    });
    log_debug("eval: model ends loaded in ", seconds_since(start), " s (decoding: source ",
              t_decode_source_, " s, quantized ", t_decode_quant_, " s)");
    t_decode_ends_ = t_decode_source_ + t_decode_quant_;
    t_decode_source_ = t_decode_quant_ = 0;
  }

  // Both models through `layer`; *sq_err / *sq_ref: the hidden states' squared difference and
  // the source's squared norm, summed over the ranks.
  void run_layer(int layer, double* sq_err, double* sq_ref) {
    double sums[2] = {0, 0};
    const std::string what = "eval: layer " + std::to_string(layer);
    dist::run_on_all_ranks(comm_, what.c_str(), [&] {
      // Routed experts decoded on use, one at a time per model: a layer of V4-Flash holds 26 GB
      // of FP32 experts per model; an expert no token reached is never decoded.
      const model::LayerWeights ws =
          model::load_layer_weights(config_, layer, source_loader_, /*lazy_experts=*/true);
      const model::LayerWeights wq =
          model::load_layer_weights(config_, layer, quant_loader_, /*lazy_experts=*/true);
      recorder_.set_layer(&ws, &wq);
      for (int b = 0; b < local_.n_samples(); b += options_.batch) {
        const int n_seqs = std::min(options_.batch, local_.n_samples() - b);
        const int64_t first = int64_t{b} * set_.seq_len, n = int64_t{n_seqs} * set_.seq_len;
        const std::vector<int64_t> ids(tokens_.begin() + first, tokens_.begin() + first + n);
        for (int which = 0; which < 2; ++which) {
          std::vector<float>& hidden = which == 0 ? hidden_source_ : hidden_quant_;
          std::vector<float> slice(hidden.begin() + first * token_floats(),
                                   hidden.begin() + (first + n) * token_floats());
          const auto forward_start = std::chrono::steady_clock::now();
          model::decoder_layer_forward(config_, layer, which == 0 ? ws : wq, ids, n_seqs,
                                       set_.seq_len, slice, observer(which));
          t_forward_[which] += seconds_since(forward_start);
          std::copy(slice.begin(), slice.end(), hidden.begin() + first * token_floats());
        }
      }
      recorder_.set_layer(nullptr, nullptr);
      log_debug("eval: layer ", layer, ": experts decoded: source ", ws.ffn.lazy->n_loads(),
                ", quantized ", wq.ffn.lazy->n_loads(), " (of ", config_.n_routed_experts, ")");
      sums[0] = sum_sq_diff(hidden_quant_, hidden_source_, &sums[1]);
    });
    comm_.allreduce(sums, 2, dist::ElemType::kF64, dist::ReduceOp::kSum, what.c_str());
    *sq_err = sums[0];
    *sq_ref = sums[1];
  }

  // Final norm, head and the next-token metrics of this rank's samples.
  LogitSums run_head() {
    LogitSums logit_sums;
    dist::run_on_all_ranks(comm_, "eval: final norm, head and next-token metrics", [&] {
      recorder_.set_globals(&g_source_, g_quant_);
      for (int b = 0; b < local_.n_samples(); b += options_.batch) {
        const int n_seqs = std::min(options_.batch, local_.n_samples() - b);
        const int64_t first = int64_t{b} * set_.seq_len, n = int64_t{n_seqs} * set_.seq_len;
        const std::vector<int64_t> ids(tokens_.begin() + first, tokens_.begin() + first + n);
        std::vector<float> logits[2];
        for (int which = 0; which < 2; ++which) {
          const std::vector<float>& hidden = which == 0 ? hidden_source_ : hidden_quant_;
          const model::GlobalWeights& g = which == 0 ? g_source_ : *g_quant_;
          const std::vector<float> slice(hidden.begin() + first * token_floats(),
                                         hidden.begin() + (first + n) * token_floats());
          const auto head_start = std::chrono::steady_clock::now();
          const std::vector<float> fh = model::final_hidden(config_, g, slice);
          logits[which] = model::final_logits(config_, g, fh, observer(which));
          t_head_ += seconds_since(head_start);
        }
        const auto metrics_start = std::chrono::steady_clock::now();
        add_logit_metrics(logits[0], logits[1], config_.vocab_size, ids, set_.seq_len, logit_sums);
        t_metrics_ += seconds_since(metrics_start);
      }
    });
    return logit_sums;
  }

  void log_phase_times() const {
    log_debug("eval: phase times (rank ", comm_.rank(), ", ", thread_count(),
              " threads): model ends decoding ", t_decode_ends_, " s; layers: source decoding ",
              t_decode_source_, " s, quantized decoding ", t_decode_quant_, " s, source forward ",
              t_forward_[0], " s (incl. its expert decoding and the", " per-module error probe ",
              recorder_.seconds(), " s), quantized forward ", t_forward_[1],
              " s (incl. its expert decoding); head ", t_head_, " s (incl. probe); logit metrics ",
              t_metrics_, " s");
  }

  const ModuleErrorRecorder& recorder() const { return recorder_; }

 private:
  int64_t token_floats() const { return config_.hc_mult * config_.hidden_size; }
  // The source model's forward feeds the error probe, the quantized model's the quantizer.
  model::LinearInputObserver* observer(int which) {
    return which == 0 ? static_cast<model::LinearInputObserver*>(&recorder_) : &quantizer_;
  }

  const EvalOptions& options_;
  dist::Communicator& comm_;
  const model::ModelConfig& config_;
  const CalibrationSet& set_;
  const SampleRange local_;
  const std::vector<int64_t>& tokens_;
  const Nvfp4ExportModules& modules_;
  // Phase times (log_debug), decoding counted through the loaders: the quantized model's
  // includes what it reads from the source (every tensor that is not NVFP4).
  double t_decode_source_ = 0, t_decode_quant_ = 0, t_decode_ends_ = 0, t_forward_[2] = {0, 0},
         t_head_ = 0, t_metrics_ = 0;
  const model::WeightLoader source_loader_, quant_loader_;
  ModuleErrorRecorder recorder_;
  ActivationQuantizer quantizer_;
  model::GlobalWeights g_source_, g_quant_own_;
  const model::GlobalWeights* g_quant_ = &g_source_;
  std::vector<float> hidden_source_, hidden_quant_;
};

// Sums every rank's logit sums and module error sums into `report`: one reduction of 6 logit
// sums, then 3 per module.
void reduce_metrics(const LogitSums& logit_sums, const ModuleErrorRecorder& recorder,
                    const Nvfp4ExportModules& modules, dist::Communicator& comm,
                    EvalReport& report) {
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
}

}  // namespace

EvalReport run_eval(const EvalOptions& options, dist::Communicator& comm) {
  QF_NVTX_RANGE("eval");
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
  const model::WeightLoader native_loader = make_native_weight_loader(source, tensors, tie);
  const model::WeightLoader export_loader =
      make_export_weight_loader(out, modules, native_loader, tie);

  EvalReport report;
  report.options = options;
  report.token_source = set.source;
  report.token_fingerprint = calibration_fingerprint(set);
  report.n_samples = set.n_samples;
  report.seq_len = set.seq_len;
  report.world_size = comm.world_size();
  report.layer_sq_err.assign(config.num_hidden_layers, 0.0);
  report.layer_sq_ref.assign(config.num_hidden_layers, 0.0);

  EvalPass pass(options, comm, config, set, local, tokens, modules, native_loader, export_loader);
  pass.load_ends(start);
  const auto layers_start = std::chrono::steady_clock::now();
  for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
    const auto layer_start = std::chrono::steady_clock::now();
    pass.run_layer(layer, &report.layer_sq_err[layer], &report.layer_sq_ref[layer]);
    // Layers cost about the same (same tokens, same shapes): ETA from the mean so far.
    const double eta =
        seconds_since(layers_start) / (layer + 1) * (config.num_hidden_layers - layer - 1);
    log_info("[", layer + 1, "/", config.num_hidden_layers, "] layer ", layer,
             ": hidden rel L2 (quantized vs source) ", report.layer_rel_l2(layer), " (",
             seconds_since(layer_start), " s; ETA ", ProgressMeter::format_seconds(eta),
             " + head)");
  }
  const LogitSums logit_sums = pass.run_head();
  pass.log_phase_times();
  reduce_metrics(logit_sums, pass.recorder(), modules, comm, report);
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace qf::pipeline
