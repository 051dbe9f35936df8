// Calibrator (layer loop, observer, all-reduce, calib record) and run_calibration (store, resume).
#include "calibrate/calibrate.hpp"

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <set>

#include "calibrate/act_histogram.hpp"
#include "calibrate/hessian_recorder.hpp"
#include "core/check.hpp"
#include "core/elapsed.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "core/progress.hpp"
#include "core/strings.hpp"
#include "dist/collective_step.hpp"
#ifdef QF_HAVE_CUDA
#include "gpu/hidden_states.hpp"
#endif
#include "model/forward_decoder_layer.hpp"
#include "model/linear_observer.hpp"
#include "model/model_forward.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {
namespace {

std::string join_lines(const std::vector<std::string>& names) {
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) text += (i ? "\n" : "") + names[i];
  return text;
}

std::string hex64(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016" PRIx64, v);
  return text;
}

// First difference between a stored and a recomputed calib record, for the resume error.
std::string first_difference(const formats::LayerRecord& stored,
                             const formats::LayerRecord& fresh) {
  if (stored.attrs != fresh.attrs) return "attributes (linear names, token counts or set) differ";
  const auto& a = stored.f32.at("input_amax");
  const auto& b = fresh.f32.at("input_amax");
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      return str_cat("input_amax[", i, "] stored ", a[i], " recomputed ", b[i]);
    }
  }
  if (stored.i64.count("expert_tokens") && fresh.i64.count("expert_tokens") &&
      stored.i64.at("expert_tokens") != fresh.i64.at("expert_tokens")) {
    return "expert_tokens differ";
  }
  if (stored.i64 != fresh.i64) return "input_hist differs";
  return "record contents differ";
}

// Both recorders on one forward: amax and histograms, and the Hessians when recorded.
class TeeObserver final : public model::LinearInputObserver {
 public:
  TeeObserver(model::LinearInputObserver* a, model::LinearInputObserver* b) : a_(a), b_(b) {}
  void observe(const std::string& name, const float* x, int64_t n_rows, int64_t n_cols) override {
    a_->observe(name, x, n_rows, n_cols);
    if (b_) b_->observe(name, x, n_rows, n_cols);
  }
  void observe_expert_tokens(int layer, int expert, int64_t n_tokens) override {
    a_->observe_expert_tokens(layer, expert, n_tokens);
    if (b_) b_->observe_expert_tokens(layer, expert, n_tokens);
  }

 private:
  model::LinearInputObserver* a_;
  model::LinearInputObserver* b_;
};

}  // namespace

std::vector<std::string> calib_linear_names(const model::ModelConfig& config, int layer) {
  QF_CHECK(layer >= 0 && layer < config.num_hidden_layers, "calibration: layer", layer,
           "is not a regular layer");
  std::vector<std::string> names;
  for (const auto& t : model::checkpoint_tensors(config, model::WeightFormat::kNative)) {
    if (t.layer != layer || t.is_mtp || t.spec.shape.size() != 2) continue;
    if (!ends_with(t.spec.name, model::kWeightSuffix)) continue;
    names.push_back(strip_suffix(t.spec.name, model::kWeightSuffix));
  }
  return names;
}

Calibrator::Calibrator(const model::ModelConfig& config, const formats::CheckpointDir& source,
                       dist::Communicator& comm, const dist::OwnershipPlan& plan,
                       CalibrationSet set, CalibrationOptions options)
    : config_(config),
      comm_(comm),
      set_(std::move(set)),
      options_(options),
      exchange_(source, config_, comm, plan) {
  config_.require_reference_forward();
  QF_CHECK(set_.n_samples >= 1 && set_.seq_len >= 1 &&
               static_cast<int64_t>(set_.token_ids.size()) == set_.n_tokens(),
           "calibration set", set_.source, "is malformed:", set_.n_samples, "x", set_.seq_len,
           "with", set_.token_ids.size(), "ids");
  QF_CHECK(options_.batch_seqs >= 1, "calibration batch must be >= 1 sequence");
  QF_CHECK(!options_.hessian_wanted || options_.backend == dist::ComputeBackend::kCpu,
           "X^T X of the calibration inputs (--weight-scale gptq | hessian) is recorded by the cpu",
           "calibration engine only; use --backend cpu");
  QF_CHECK(!options_.cpu_bf16_linear_inputs || options_.backend == dist::ComputeBackend::kCpu,
           "BF16 linear inputs are an option of the CPU reference (the CUDA backend always uses "
           "them)");
  local_ = samples_of_rank(set_.n_samples, comm.rank(), comm.world_size());
  local_tokens_ = set_.tokens_of(local_.begin, local_.end);
  const auto setup_start = std::chrono::steady_clock::now();
  LayerReadAhead read_ahead(owned_layer_reader(exchange_));
  const int first = options_.read_ahead_layer;
  if (options_.backend == dist::ComputeBackend::kCuda && first >= 0 &&
      first < config_.num_hidden_layers) {
    // Reading is not collective and the reads keep their errors (fetch_layer raises them on
    // every rank): safe beside the embedding's broadcast below. The setup (embedding, hidden
    // states, engine start) outlasts the first layer's read, so the next layer's read follows
    // it rather than leave the disk idle (issue 19: 1.5-2 s on benchmark 1's H100); one more
    // layer of owned bytes in host memory until the engine takes it.
    read_ahead.queue(first);
    if (first + 1 < config_.num_hidden_layers) read_ahead.queue(first + 1);
  }
  LayerWeightExchange::SourceBytes embedding = exchange_.fetch_embedding_source();
  const double embedding_seconds = seconds_since(setup_start);
  const auto tokens_start = std::chrono::steady_clock::now();
  bool on_gpu = false;
  InitialHiddenStates initial;
  dist::run_on_all_ranks(comm_, "embedding the calibration tokens", [&] {
    model::check_token_ids(local_tokens_, config_.vocab_size);
    on_gpu = embeds_on_gpu(*embedding.tensor);  // asks the device: inside the step
    if (on_gpu) {
      initial.embed_bf16 = std::move(embedding.bytes);
      return;
    }
    model::GlobalWeights globals;
    globals.embed.n_rows = config_.vocab_size;
    globals.embed.n_cols = config_.hidden_size;
    globals.embed.data =
        decode_source_tensor(*embedding.tensor, embedding.bytes.data(), embedding.bytes.size(),
                             {globals.embed.n_rows, globals.embed.n_cols});
    embedding.bytes = {};
    hidden_ = model::embed_tokens(config_, globals, local_tokens_);
  });
  const double tokens_seconds = seconds_since(tokens_start);
  const auto engine_start = std::chrono::steady_clock::now();
  if (options_.backend == dist::ComputeBackend::kCuda) {
#ifdef QF_HAVE_CUDA
    initial.hidden = std::move(hidden_);
    hidden_.clear();
    dist::run_on_all_ranks(comm_, "starting the CUDA calibration engine", [&] {
      engine_ = make_cuda_calibration_engine(
          config_, exchange_, std::move(initial), local_tokens_, set_.seq_len, options_.batch_seqs,
          options_.device_comm, options_.layer_policy, std::move(read_ahead));
      engine_->set_record_histograms(options_.record_histograms);
    });
#else
    QF_FAIL("calibration: this build has no CUDA backend");
#endif
  }
  // The setup before layer 0 (plan's phase model has it as a constant).
  log_info("calibration setup (rank ", comm.rank(), "): embedding read + decode ",
           str_printf("%.2f", embedding_seconds), " s, ", local_tokens_.size(), " tokens embedded ",
           on_gpu ? "(on the GPU, in the engine start) " : "", str_printf("%.2f", tokens_seconds),
           " s, engine start ", str_printf("%.2f", seconds_since(engine_start)), " s");
}

// The CUDA engine embeds the tokens itself (on the GPU: the host never builds, zero-fills or
// uploads the FP32 states, 1-2 s of benchmark 1's setup, issue 19) where the states stay
// resident there and the source embedding is plain BF16 [vocab, hidden]; the states are the
// same bits either way (a BF16 value widens to FP32 exactly).
bool Calibrator::embeds_on_gpu(const NativeTensor& embedding) const {
#ifdef QF_HAVE_CUDA
  const uint64_t n_bytes =
      uint64_t(local_tokens_.size()) * config_.hc_mult * config_.hidden_size * sizeof(float);
  return options_.backend == dist::ComputeBackend::kCuda && !local_tokens_.empty() &&
         embedding.kind == StorageKind::kPlain && embedding.stored.dtype == DType::kBF16 &&
         embedding.stored.shape == std::vector<int64_t>{config_.vocab_size, config_.hidden_size} &&
         gpu::DeviceHiddenStates::fit_on_device(n_bytes);
#else
  (void)embedding;
  return false;
#endif
}

LayerStatistics Calibrator::forward_layer_cuda(int layer, const std::vector<std::string>& names,
                                               const std::string& tag, bool with_hist) {
  LayerStatistics stats;
  engine_->fetch_layer(layer, names);
  const std::string what = tag + " forward (cuda)";
  dist::run_on_all_ranks(comm_, what.c_str(), [&] {
    stats = engine_->compute_layer(layer, names);
    for (size_t i = 0; i < stats.amax.size(); ++i) {  // empty when reduced on the device
      QF_CHECK(std::isfinite(stats.amax[i]), tag + ": input amax of", names[i], "is", stats.amax[i],
               "(NaN/Inf activations)");
    }
    QF_CHECK(stats.hist.size() == (with_hist ? names.size() * kActHistBins : 0), tag + ": the CUDA",
             "engine returned", stats.hist.size(), "histogram counts for", names.size(), "linears");
  });
  // NCCL: all-reduced on the device, outside the step above (it succeeded on every rank).
  if (engine_->amax_on_device()) stats.amax = engine_->reduce_amax(layer, names);
  return stats;
}

LayerStatistics Calibrator::forward_layer_cpu(int layer, const std::vector<std::string>& names,
                                              const std::string& tag, HessianRecorder* hessians) {
  HistogramRecorder recorder;
  TeeObserver observer(&recorder, hessians);
  const model::LayerWeights weights = exchange_.fetch_layer(layer);
  const std::string what = tag + " forward";
  dist::run_on_all_ranks(comm_, what.c_str(), [&] {
    const int seq_len = set_.seq_len;
    const int64_t token_floats = config_.hc_mult * config_.hidden_size;
    for (int b = 0; b < local_.n_samples(); b += options_.batch_seqs) {
      const int n_seqs = std::min(options_.batch_seqs, local_.n_samples() - b);
      const int64_t first = int64_t{b} * seq_len, n_tokens = int64_t{n_seqs} * seq_len;
      const std::vector<int64_t> ids(local_tokens_.begin() + first,
                                     local_tokens_.begin() + first + n_tokens);
      std::vector<float> h(hidden_.begin() + first * token_floats,
                           hidden_.begin() + (first + n_tokens) * token_floats);
      if (hessians) hessians->begin_batch(n_seqs);
      model::decoder_layer_forward(config_, layer, weights, ids, n_seqs, seq_len, h, &observer,
                                   options_.cpu_bf16_linear_inputs);
      std::copy(h.begin(), h.end(), hidden_.begin() + first * token_floats);
    }
    // Checked here, inside the shared step, so that allreduce_amax never fails on one rank.
    const std::set<std::string> known(names.begin(), names.end());
    for (const auto& [name, amax] : recorder.amax_by_name()) {
      QF_CHECK(known.count(name), tag + ": the forward observed", name,
               "which is not a linear of the checkpoint table");
      QF_CHECK(std::isfinite(amax), tag + ": input amax of", name, "is", amax,
               "(NaN/Inf activations)");
    }
  });
  LayerStatistics stats;
  stats.amax.resize(names.size());
  stats.expert_tokens.resize(static_cast<size_t>(config_.n_routed_experts));
  for (size_t i = 0; i < names.size(); ++i) stats.amax[i] = recorder.amax(names[i]);
  for (int e = 0; e < config_.n_routed_experts; ++e) {
    stats.expert_tokens[e] = recorder.expert_tokens(layer, e);
  }
  stats.hist.reserve(names.size() * kActHistBins);
  for (const auto& name : names) {
    const auto h = recorder.histogram(name);
    stats.hist.insert(stats.hist.end(), h.begin(), h.end());
  }
  return stats;
}

formats::LayerRecord Calibrator::calibrate_layer(int layer, formats::LayerRecord* hessian) {
  QF_CHECK(layer == next_layer_, "calibrate_layer(", layer, "): layers run in order; next is",
           next_layer_);
  QF_CHECK(layer < config_.num_hidden_layers, "calibrate_layer(", layer,
           "): only regular layers are calibrated (", config_.num_hidden_layers, ")");
  const std::string tag = "layer " + std::to_string(layer);
  const std::vector<std::string> names = calib_linear_names(config_, layer);
  // [n linears, kActHistBins]: the CPU backend always records it, the CUDA engine on request.
  const bool with_hist = !engine_ || options_.record_histograms;
  QF_CHECK(!records_hessians() || hessian != nullptr, "calibrate_layer: Hessians are recorded",
           "but no hessian record was passed");
  std::unique_ptr<HessianRecorder> hessians;
  if (records_hessians()) {
    std::vector<bool> wanted(names.size());
    for (size_t i = 0; i < names.size(); ++i) wanted[i] = options_.hessian_wanted(names[i]);
    hessians = std::make_unique<HessianRecorder>(hessian_slots(config_, layer, names, wanted));
  }
  LayerStatistics stats = engine_ ? forward_layer_cuda(layer, names, tag, with_hist)
                                  : forward_layer_cpu(layer, names, tag, hessians.get());
  // Already MAX over ranks when the engine reduced them on the device (a second MAX would be
  // harmless, just a wasted round trip).
  if (!(engine_ && engine_->amax_on_device())) {
    comm_.allreduce_amax(stats.amax.data(), stats.amax.size(), (tag + " input amax").c_str());
  }
  comm_.allreduce_counts(stats.expert_tokens.data(), stats.expert_tokens.size(),
                         (tag + " expert tokens").c_str());
  if (with_hist) {
    comm_.allreduce_counts(stats.hist.data(), stats.hist.size(),
                           (tag + " input histograms").c_str());
  }

  if (hessians) *hessian = reduce_hessians(layer, *hessians);

  formats::LayerRecord record;
  record.layer = layer;
  record.attrs["linear_names"] = join_lines(names);
  record.attrs["n_tokens"] = std::to_string(set_.n_tokens());
  record.attrs["n_samples"] = std::to_string(set_.n_samples);
  record.attrs["seq_len"] = std::to_string(set_.seq_len);
  record.attrs["calib_set"] = hex64(calibration_fingerprint(set_));
  record.f32["input_amax"] = std::move(stats.amax);
  record.i64["expert_tokens"] = std::move(stats.expert_tokens);
  if (with_hist) {
    record.attrs["input_hist_bins"] = kActHistBinning;
    record.i64["input_hist"] = std::move(stats.hist);
  }
  ++next_layer_;
  return record;
}

formats::LayerRecord Calibrator::reduce_hessians(int layer, HessianRecorder& hessians) {
  const std::string tag = "layer " + std::to_string(layer) + " hessian";
  const auto& slots = hessians.slots();
  // Which slots read which input: the same on every rank that ran a sample (a rank without
  // samples saw nothing: -1), so MAX agrees with each rank's own view.
  std::vector<int64_t> input_of(slots.size());
  for (size_t s = 0; s < slots.size(); ++s) input_of[s] = hessians.input_of()[s];
  comm_.allreduce(input_of.data(), input_of.size(), dist::ElemType::kI64, dist::ReduceOp::kMax,
                  (tag + " inputs").c_str());
  dist::run_on_all_ranks(comm_, (tag + " inputs check").c_str(), [&] {
    for (size_t s = 0; s < slots.size(); ++s) {
      const int mine = hessians.input_of()[s];
      QF_CHECK(mine < 0 || mine == input_of[s], tag + ":", slots[s].name, "reads the input of",
               slots[mine].name, "here but of slot", input_of[s], "on another rank");
    }
    hessians.set_input_of(std::vector<int>(input_of.begin(), input_of.end()));
  });
  std::vector<double> sums;
  for (size_t s = 0; s < slots.size(); ++s) {
    if (input_of[s] != int64_t(s)) continue;
    std::vector<double>& own = hessians.sums(s);
    const int64_t nn = slots[s].n * slots[s].n;
    for (int g = 0; g < slots[s].n_groups; ++g) mirror_upper(own.data() + g * nn, slots[s].n);
    sums.insert(sums.end(), own.begin(), own.end());
  }
  comm_.allreduce(sums.data(), sums.size(), dist::ElemType::kF64, dist::ReduceOp::kSum,
                  (tag + " X^T X").c_str());
  size_t at = 0;
  std::vector<bool> keep(slots.size());
  for (size_t s = 0; s < slots.size(); ++s) {
    keep[s] = !options_.hessian_kept || options_.hessian_kept(slots[s].name);
    if (input_of[s] != int64_t(s)) continue;
    std::vector<double>& own = hessians.sums(s);
    std::copy(sums.begin() + at, sums.begin() + at + own.size(), own.begin());
    at += own.size();
  }
  return hessian_record(layer, hessians, keep, set_.n_tokens());
}

namespace {

// Whether every rank holds every layer's record (and Hessian when recorded): then nothing is to
// be done, not even rebuilding hidden states. Collective.
bool every_rank_has_every_layer(formats::StoreCommitter& store, int n_layers, bool with_hessian,
                                dist::Communicator& comm) {
  int64_t n_complete = 1;
  for (int l = 0; l < n_layers && n_complete; ++l) {
    n_complete = store.has_layer(l, formats::kStageCalib) &&
                         (!with_hessian || store.has_layer(l, kStageHessian))
                     ? 1
                     : 0;
  }
  comm.allreduce(&n_complete, 1, dist::ElemType::kI64, dist::ReduceOp::kSum, "calib resume");
  return n_complete == comm.world_size();
}

// Queues the layer's record for the background commit, or, when the store already holds it
// (a resume), checks the recomputed one equals it. A failed earlier commit is rethrown here,
// inside the collective step. The hessian record goes after the calib record: a crash between
// them recomputes the layer. Returns whether the layer was recomputed.
bool commit_or_check(formats::StoreCommitter& store, int layer, formats::LayerRecord record,
                     formats::LayerRecord hessian, bool with_hessian, dist::Communicator& comm) {
  bool recomputed = false;
  const std::string what = "layer " + std::to_string(layer) + " calib commit";
  dist::run_on_all_ranks(comm, what.c_str(), [&] {
    const auto submit_hessian = [&] {
      if (with_hessian && !store.has_layer(layer, kStageHessian)) {
        store.submit(std::move(hessian), kStageHessian);
      }
    };
    if (!store.has_layer(layer, formats::kStageCalib)) {
      store.submit(std::move(record), formats::kStageCalib);
      submit_hessian();
      return;
    }
    recomputed = true;
    formats::LayerRecord stored = store.read_layer(layer, formats::kStageCalib);
    // Records written before histograms existed: compare what they hold (enough for
    // --act-scale max, the only method such a run can have: the method is in the provenance).
    if (!stored.i64.count("input_hist") && record.i64.count("input_hist")) {
      stored.i64["input_hist"] = record.i64.at("input_hist");
      stored.attrs["input_hist_bins"] = record.attrs.at("input_hist_bins");
    }
    QF_CHECK(stored == record, "layer", layer, ": the recomputed calibration differs from the",
             "one committed in", store.dir(), "(", first_difference(stored, record),
             "): other inputs or a nondeterministic forward; remove the store to start over");
    submit_hessian();
  });
  return recomputed;
}

// The CUDA engine's split of one layer's time (rank 0), from the totals before and after it.
void log_engine_times(const EngineTimes& t, const EngineTimes& before,
                      const formats::StoreCommitter::Stats& commits,
                      const formats::StoreCommitter::Stats& commits_before) {
  const double forward = t.compute_seconds - before.compute_seconds;
  char line[320];
  std::snprintf(line, sizeof(line),
                "    rank 0: weights %.2fs (waiting for reads %.2fs), NVFP4 + commit beyond "
                "the forward %.2fs, forward %.2fs = %.0f tokens/s; background commits %.2fs",
                t.weights_seconds - before.weights_seconds,
                t.read_wait_seconds - before.read_wait_seconds,
                t.hook_seconds - before.hook_seconds, forward,
                forward > 0 ? double(t.n_tokens - before.n_tokens) / forward : 0.0,
                commits.write_seconds - commits_before.write_seconds);
  log_info(line);
}

}  // namespace

CalibrationRunStats run_calibration(Calibrator& calibrator, formats::RankStore& store,
                                    dist::Communicator& comm) {
  formats::StoreCommitter committer(store);
  const CalibrationRunStats stats = run_calibration(calibrator, committer, comm);
  dist::run_on_all_ranks(comm, "committing calibration records", [&] { committer.drain(); });
  return stats;
}

CalibrationRunStats run_calibration(Calibrator& calibrator, formats::StoreCommitter& store,
                                    dist::Communicator& comm,
                                    const CalibrationLayerHook& on_layer) {
  QF_NVTX_RANGE("calibrate");
  const auto start = std::chrono::steady_clock::now();
  const int n_layers = calibrator.n_layers();
  CalibrationRunStats stats;
  const bool with_hessian = calibrator.records_hessians();
  if (every_rank_has_every_layer(store, n_layers, with_hessian, comm)) {
    log_info("calibrate: all ", n_layers, " layers already committed on every rank");
    return stats;
  }
  const int first = calibrator.next_layer();
  const uint64_t n_tokens = static_cast<uint64_t>(calibrator.calibration_set().n_tokens());
  for (int layer = first; layer < n_layers; ++layer) {
    const auto layer_start = std::chrono::steady_clock::now();
    const uint64_t read_before = calibrator.exchange_stats().n_bytes_read;
    const EngineTimes times_before = calibrator.engine_times();
    const formats::StoreCommitter::Stats commits_before = store.stats();
    formats::LayerRecord hessian;
    formats::LayerRecord record =
        calibrator.calibrate_layer(layer, with_hessian ? &hessian : nullptr);
    const bool recomputed =
        commit_or_check(store, layer, std::move(record), std::move(hessian), with_hessian, comm);
    ++(recomputed ? stats.n_layers_recomputed : stats.n_layers_committed);
    const double elapsed = seconds_since(start);
    const double eta = elapsed / (layer - first + 1) * (n_layers - layer - 1);
    char counter[32];
    std::snprintf(counter, sizeof(counter), "[%*d/%d]",
                  static_cast<int>(std::to_string(n_layers).size()), layer + 1, n_layers);
    const double layer_seconds = std::max(seconds_since(layer_start), 1e-9);
    const double read_rate =
        double(calibrator.exchange_stats().n_bytes_read - read_before) / layer_seconds;
    log_info(counter, " calib layer ", layer, " (",
             calibrator.backend() == dist::ComputeBackend::kCuda ? "cuda" : "cpu", "): ", n_tokens,
             " tokens, ", ProgressMeter::format_seconds(layer_seconds), ", ",
             static_cast<uint64_t>(double(n_tokens) / layer_seconds), " tokens/s, read ",
             ProgressMeter::format_bytes(read_rate), "/s (rank 0), ETA ",
             ProgressMeter::format_seconds(eta),
             recomputed ? " (resumed: recomputed, equal to the stored record)" : "");
    if (calibrator.backend() == dist::ComputeBackend::kCuda) {
      log_engine_times(calibrator.engine_times(), times_before, store.stats(), commits_before);
    }
    if (on_layer) {
      CalibrationLayerDone done;
      done.layer = layer;
      done.n_layers = n_layers;
      done.layer_seconds = layer_seconds;
      done.layers_per_second = double(layer - first + 1) / std::max(elapsed, 1e-9);
      done.eta_seconds = eta;
      done.tokens_per_second = double(n_tokens) / layer_seconds;
      done.recomputed = recomputed;
      on_layer(done);
    }
  }
  stats.seconds = seconds_since(start);
  return stats;
}

}  // namespace qf::pipeline
