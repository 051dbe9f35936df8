// Calibration engine under mpirun -np 1..4 on a make-tiny `tiny` checkpoint: the records of
// every layer equal, bit for bit, a single-process reference (all samples in one batch, no
// communicator) for every rank count; record layout invariants; unseen experts; resume.
// Only CHECK before a collective: a REQUIRE failing on one rank would leave the others waiting.
#include <mpi.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "calibrate/act_histogram.hpp"
#include "calibrate/calibrate.hpp"
#include "catch_compat.hpp"
#include "compare_test_util.hpp"
#include "core/check.hpp"
#include "core/strings.hpp"
#include "dist/collective_step.hpp"
#include "dist/mpi_communicator.hpp"
#include "dist/mpi_env.hpp"
#include "formats/rank_store.hpp"
#include "model/forward_decoder_layer.hpp"
#include "model/model_forward.hpp"
#include "model/presets.hpp"
#include "model/tensor_table.hpp"
#include "plan/plan_report.hpp"
#include "synthetic/make_tiny.hpp"

using namespace qf;
using qf::test::same_bits;

namespace {

// MPI is initialised by catch_main_mpi.cpp; this MpiEnv only reads rank and host facts.
const dist::MpiEnv& env() {
  static const dist::MpiEnv instance(nullptr, nullptr);
  return instance;
}

dist::MpiCommunicator& comm() {
  static dist::MpiCommunicator instance(env(), {});
  return instance;
}

// A directory made by rank 0 and known to every rank; removed by rank 0 at exit.
class SharedTempDir {
 public:
  SharedTempDir() {
    char path[256] = "/tmp/qf_calibrate_test_XXXXXX";
    if (comm().rank() == 0 && ::mkdtemp(path) == nullptr) path[0] = '\0';
    comm().broadcast(path, sizeof(path), 0, "temp dir path");
    path_ = path;
  }
  ~SharedTempDir() {
    std::error_code error;
    if (env().rank() == 0 && !path_.empty()) std::filesystem::remove_all(path_, error);
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  bool ok() const { return !path_.empty(); }

 private:
  std::string path_;
};

SharedTempDir& temp_dir() {
  static SharedTempDir instance;
  return instance;
}

// A tiny checkpoint in `format`, written once by rank 0.
std::string tiny_checkpoint(model::WeightFormat format) {
  const std::string dir = temp_dir().file(model::weight_formats().name(format));
  dist::run_on_root(comm(), 0, "make-tiny", [&] {
    if (std::filesystem::exists(dir)) return;
    pipeline::MakeTinyOptions options;
    options.config = model::preset_config("tiny");
    options.format = format;
    options.seed = 11;
    options.n_shards = 3;
    options.out_dir = dir;
    pipeline::make_tiny(options);
  });
  return dir;
}

struct Source {
  model::ModelConfig config;
  formats::CheckpointDir dir;
  std::vector<pipeline::NativeTensor> tensors;
  dist::OwnershipPlan plan;

  explicit Source(const std::string& path)
      : config(model::ModelConfig::load(path + "/config.json")),
        dir(path),
        tensors(pipeline::classify_native_tensors(dir)),
        plan(pipeline::source_ownership_plan(tensors, comm().world_size())) {}
};

Source& native_source() {
  static Source instance(tiny_checkpoint(model::WeightFormat::kNative));
  return instance;
}

// 7 samples: 4 ranks get 2, 2, 2, 1. 136 tokens reach the HCA layer's compression (rate 128).
pipeline::CalibrationSet calib_set() {
  return pipeline::synthetic_calibration_set(native_source().config, 7, 136, 5);
}

std::vector<formats::LayerRecord> calibrate_all(Source& source, pipeline::CalibrationSet set,
                                                int batch_seqs) {
  pipeline::CalibrationOptions options;
  options.batch_seqs = batch_seqs;
  pipeline::Calibrator calibrator(source.config, source.dir, comm(), source.plan, std::move(set),
                                  options);
  std::vector<formats::LayerRecord> records;
  for (int l = 0; l < source.config.num_hidden_layers; ++l) {
    records.push_back(calibrator.calibrate_layer(l));
  }
  return records;
}

// Single process, no communicator, every sample in one forward call: per layer, amax by name and
// expert token counts (and |x| histograms) straight from a HistogramRecorder.
struct Reference {
  std::vector<std::map<std::string, float>> amax;
  std::vector<std::map<std::string, std::vector<int64_t>>> hist;
  std::vector<std::vector<int64_t>> expert_tokens;
};

Reference reference_calibration(const Source& source, const pipeline::CalibrationSet& set) {
  const model::ModelConfig& config = source.config;
  const pipeline::NativeTensorIndex index = pipeline::index_native_tensors(source.tensors);
  const model::WeightLoader loader =
      pipeline::make_native_weight_loader(source.dir, index, source.config.tie_word_embeddings);
  model::GlobalWeights globals;
  globals.embed.n_rows = config.vocab_size;
  globals.embed.n_cols = config.hidden_size;
  globals.embed.data = loader("embed_tokens.weight", {config.vocab_size, config.hidden_size});
  std::vector<float> hidden = model::embed_tokens(config, globals, set.token_ids);
  Reference ref;
  for (int l = 0; l < source.config.num_hidden_layers; ++l) {
    const model::LayerWeights w = model::load_layer_weights(config, l, loader);
    pipeline::HistogramRecorder recorder;
    model::decoder_layer_forward(config, l, w, set.token_ids, set.n_samples, set.seq_len, hidden,
                                 &recorder);
    ref.amax.push_back(recorder.amax_by_name());
    ref.hist.emplace_back();
    for (const auto& [name, amax] : recorder.amax_by_name()) {
      ref.hist.back()[name] = recorder.histogram(name);
    }
    std::vector<int64_t> tokens;
    for (int e = 0; e < source.config.n_routed_experts; ++e) {
      tokens.push_back(recorder.expert_tokens(l, e));
    }
    ref.expert_tokens.push_back(tokens);
  }
  return ref;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

// Mismatches between a record and the reference of its layer (0 = bit-identical).
int count_mismatches(const formats::LayerRecord& record, const Reference& ref) {
  const int l = record.layer;
  const std::vector<std::string> names = split_lines(record.attrs.at("linear_names"));
  const std::vector<float>& amax = record.f32.at("input_amax");
  int n_wrong = names.size() == amax.size() ? 0 : 1;
  for (size_t i = 0; i < names.size() && i < amax.size(); ++i) {
    const auto it = ref.amax[l].find(names[i]);
    const float expected = it == ref.amax[l].end() ? 0.0f : it->second;
    if (!same_bits(amax[i], expected)) {
      if (n_wrong < 5)
        WARN("layer " << l << " " << names[i] << ": " << amax[i] << " vs " << expected);
      ++n_wrong;
    }
  }
  for (const auto& [name, value] : ref.amax[l]) {
    if (std::find(names.begin(), names.end(), name) == names.end()) ++n_wrong;
  }
  if (record.i64.at("expert_tokens") != ref.expert_tokens[l]) ++n_wrong;
  // Histograms: integer sums over ranks, so exactly the single-process counts; a linear never
  // observed (unseen expert) has all-zero counts.
  const std::vector<int64_t>& hist = record.i64.at("input_hist");
  if (record.attrs.at("input_hist_bins") != pipeline::kActHistBinning) ++n_wrong;
  if (hist.size() != names.size() * pipeline::kActHistBins) return n_wrong + 1;
  for (size_t i = 0; i < names.size(); ++i) {
    const auto it = ref.hist[l].find(names[i]);
    const std::vector<int64_t> expected =
        it == ref.hist[l].end() ? std::vector<int64_t>(pipeline::kActHistBins, 0) : it->second;
    if (!std::equal(expected.begin(), expected.end(), hist.begin() + i * pipeline::kActHistBins)) {
      if (n_wrong < 5) WARN("layer " << l << " " << names[i] << ": histogram differs");
      ++n_wrong;
    }
  }
  return n_wrong;
}

}  // namespace

TEST_CASE("calibration records equal a single-process reference for every rank count",
          "[mpi][calibrate]") {
  REQUIRE(temp_dir().ok());
  Source& source = native_source();
  const pipeline::CalibrationSet set = calib_set();
  const std::vector<formats::LayerRecord> records = calibrate_all(source, set, 2);
  const Reference ref = reference_calibration(source, set);
  CHECK(records.size() == size_t(source.config.num_hidden_layers));
  for (const auto& record : records) {
    INFO("layer " << record.layer);
    CHECK(count_mismatches(record, ref) == 0);
  }
  // Batching does not change anything either.
  const std::vector<formats::LayerRecord> one_by_one = calibrate_all(source, set, 1);
  for (size_t l = 0; l < records.size() && l < one_by_one.size(); ++l) {
    CHECK(one_by_one[l] == records[l]);
  }
}

TEST_CASE("calib record layout: names, sizes, w1 == w3, token totals", "[mpi][calibrate]") {
  Source& source = native_source();
  const model::ModelConfig& config = source.config;
  const pipeline::CalibrationSet set = calib_set();
  const std::vector<formats::LayerRecord> records = calibrate_all(source, set, 3);
  const auto table = model::checkpoint_tensors(config, model::WeightFormat::kNative);
  for (const auto& record : records) {
    const int l = record.layer;
    INFO("layer " << l);
    const std::vector<std::string> names = split_lines(record.attrs.at("linear_names"));
    CHECK(names == pipeline::calib_linear_names(config, l));
    const std::set<std::string> name_set(names.begin(), names.end());
    CHECK(name_set.size() == names.size());
    // Every NVFP4 target of the `full` recipe (which includes the `experts` one) is there.
    for (const auto& t : table) {
      if (t.layer != l || !pipeline::is_nvfp4_target(t, pipeline::Recipe::kFull)) continue;
      const std::string module = strip_suffix(t.spec.name, model::kWeightSuffix);
      CHECK(name_set.count(module) == 1);
    }
    for (const auto& name : names) CHECK(starts_with(name, "layers." + std::to_string(l) + "."));
    const std::vector<float>& amax = record.f32.at("input_amax");
    CHECK(amax.size() == names.size());
    const std::vector<int64_t>& tokens = record.i64.at("expert_tokens");
    CHECK(tokens.size() == size_t(config.n_routed_experts));
    int64_t n_assigned = 0;
    for (const int64_t n : tokens) n_assigned += n;
    CHECK(n_assigned == set.n_tokens() * config.num_experts_per_tok);
    CHECK(record.attrs.at("n_tokens") == std::to_string(set.n_tokens()));
    for (int e = 0; e < config.n_routed_experts; ++e) {
      const std::string p = "layers." + std::to_string(l) + ".ffn.experts." + std::to_string(e);
      const auto at = [&](const std::string& name) {
        const size_t i = size_t(std::find(names.begin(), names.end(), name) - names.begin());
        return i < amax.size() ? amax[i] : -1.0f;
      };
      CHECK(same_bits(at(p + ".w1"), at(p + ".w3")));
      CHECK((at(p + ".w1") > 0.0f) == (tokens[e] > 0));
      CHECK((at(p + ".w2") > 0.0f) == (tokens[e] > 0));
    }
    for (size_t i = 0; i < amax.size(); ++i) {
      if (names[i].find(".experts.") == std::string::npos) CHECK(amax[i] > 0.0f);
    }
  }
}

TEST_CASE("experts no token reached: amax 0 and count 0; ranks without samples take part",
          "[mpi][calibrate]") {
  Source& source = native_source();
  // One sample of 3 tokens: at most 6 of 8 experts per layer; ranks 1..3 run nothing.
  const pipeline::CalibrationSet set = pipeline::synthetic_calibration_set(source.config, 1, 3, 9);
  const std::vector<formats::LayerRecord> records = calibrate_all(source, set, 4);
  const Reference ref = reference_calibration(source, set);
  for (const auto& record : records) {
    INFO("layer " << record.layer);
    CHECK(count_mismatches(record, ref) == 0);
    const std::vector<int64_t>& tokens = record.i64.at("expert_tokens");
    const std::vector<std::string> names = split_lines(record.attrs.at("linear_names"));
    const std::vector<float>& amax = record.f32.at("input_amax");
    int n_unseen = 0;
    for (size_t e = 0; e < tokens.size(); ++e) {
      if (tokens[e] != 0) continue;
      ++n_unseen;
      const std::string p = ".ffn.experts." + std::to_string(e) + ".";
      for (size_t i = 0; i < names.size(); ++i) {
        if (names[i].find(p) != std::string::npos) CHECK(amax[i] == 0.0f);
      }
    }
    CHECK(n_unseen >= 2);
  }
}

TEST_CASE("a BF16 checkpoint calibrates exactly like its native source", "[mpi][calibrate]") {
  Source bf16(tiny_checkpoint(model::WeightFormat::kBf16));
  const pipeline::CalibrationSet set = pipeline::synthetic_calibration_set(bf16.config, 3, 40, 2);
  const std::vector<formats::LayerRecord> a = calibrate_all(native_source(), set, 2);
  const std::vector<formats::LayerRecord> b = calibrate_all(bf16, set, 2);
  CHECK(a == b);
}

TEST_CASE("layers run in order, MTP layers are refused", "[mpi][calibrate]") {
  Source& source = native_source();
  pipeline::Calibrator calibrator(source.config, source.dir, comm(), source.plan,
                                  pipeline::synthetic_calibration_set(source.config, 2, 8, 1));
  CHECK_THROWS_AS(calibrator.calibrate_layer(1), Error);
  for (int l = 0; l < source.config.num_hidden_layers; ++l) calibrator.calibrate_layer(l);
  CHECK(source.config.num_nextn_predict_layers > 0);
  CHECK_THROWS_AS(calibrator.calibrate_layer(source.config.num_hidden_layers), Error);
}

TEST_CASE("resume recomputes committed layers, checks them and commits the rest",
          "[mpi][calibrate]") {
  Source& source = native_source();
  const pipeline::CalibrationSet set = calib_set();
  const std::vector<formats::LayerRecord> expected = calibrate_all(source, set, 2);
  const int n_layers = source.config.num_hidden_layers, world = comm().world_size();
  const std::string work = temp_dir().file("work_resume");
  const nlohmann::json provenance = {{"test", "resume"}};
  {
    auto store = formats::RankStore::create(work, comm().rank(), world, provenance);
    pipeline::Calibrator first(source.config, source.dir, comm(), source.plan, set);
    for (int l = 0; l < 2; ++l) store.commit_layer(first.calibrate_layer(l), formats::kStageCalib);
  }
  {
    auto store = formats::RankStore::create(work, comm().rank(), world, provenance);
    pipeline::Calibrator second(source.config, source.dir, comm(), source.plan, set);
    const pipeline::CalibrationRunStats stats = pipeline::run_calibration(second, store, comm());
    CHECK(stats.n_layers_recomputed == 2);
    CHECK(stats.n_layers_committed == n_layers - 2);
    for (int l = 0; l < n_layers; ++l) {
      CHECK(store.read_layer(l, formats::kStageCalib) == expected[size_t(l)]);
    }
  }
  {
    auto store = formats::RankStore::create(work, comm().rank(), world, provenance);
    pipeline::Calibrator third(source.config, source.dir, comm(), source.plan, set);
    const pipeline::CalibrationRunStats stats = pipeline::run_calibration(third, store, comm());
    CHECK(stats.n_layers_recomputed + stats.n_layers_committed == 0);
  }
}

TEST_CASE("resume stops every rank when a stored record differs", "[mpi][calibrate]") {
  Source& source = native_source();
  const pipeline::CalibrationSet set = calib_set();
  const std::string work = temp_dir().file("work_tampered");
  auto store = formats::RankStore::create(work, comm().rank(), comm().world_size(),
                                          nlohmann::json::object());
  {
    pipeline::Calibrator first(source.config, source.dir, comm(), source.plan, set);
    formats::LayerRecord record = first.calibrate_layer(0);
    if (comm().rank() == comm().world_size() - 1) record.f32.at("input_amax")[0] *= 2.0f;
    store.commit_layer(record, formats::kStageCalib);
  }
  pipeline::Calibrator second(source.config, source.dir, comm(), source.plan, set);
  CHECK_THROWS_AS(pipeline::run_calibration(second, store, comm()), Error);
}
