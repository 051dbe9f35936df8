// validate_export: opens both checkpoints, runs the checks in order, gathers the report. Also the
// small shared pieces (CheckRecorder, OutputDir, parallel_for). The checks live in
// validate_{inventory,tensors,config,files}.cpp; the printing in validate_report.cpp.
#include "validate/validate.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/nvtx.hpp"
#include "core/parallel.hpp"
#include "core/progress.hpp"
#include "core/strings.hpp"
#include "model/tensor_table.hpp"
#include "validate/validate_context.hpp"

namespace qf::pipeline {
namespace validate_detail {

// ---- CheckRecorder ------------------------------------------------------------------------------

CheckRecorder::CheckRecorder(std::string name, std::string description, int max_listed)
    : max_listed_(max_listed) {
  result_.name = std::move(name);
  result_.description = std::move(description);
}

void CheckRecorder::pass(uint64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  result_.n_pass += n;
}

void CheckRecorder::skip(uint64_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  result_.n_skip += n;
}

void CheckRecorder::fail_text(const std::string& text) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++result_.n_fail;
  if (result_.failures.size() < static_cast<size_t>(std::max(max_listed_, 0))) {
    result_.failures.push_back(text);
  }
}

void CheckRecorder::set_note(const std::string& note) {
  std::lock_guard<std::mutex> lock(mutex_);
  result_.note = note;
}

CheckResult CheckRecorder::result() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return result_;
}

// ---- OutputDir ----------------------------------------------------------------------------------

const formats::TensorInfo* OutputDir::find(const std::string& name,
                                           const formats::SafetensorsReader** shard) const {
  const auto it = shard_of.find(name);
  if (it == shard_of.end()) return nullptr;
  const auto& reader = *shards.at(it->second);
  if (shard) *shard = &reader;
  return reader.find(name);
}

std::vector<uint8_t> OutputDir::read(const std::string& name) const {
  const formats::SafetensorsReader* shard = nullptr;
  const auto* info = find(name, &shard);
  QF_CHECK(info != nullptr, dir + ": tensor", name, "is missing");
  return shard->read_tensor(*info);
}

// ---- helpers ------------------------------------------------------------------------------------

void parallel_for(size_t n_items, int n_threads, const std::function<void(size_t)>& fn,
                  const std::function<void(size_t, const std::string&)>& on_error) {
  qf::parallel_for_each(int64_t(n_items), n_threads, [&](int64_t, int64_t item) {
    const size_t i = size_t(item);
    try {
      fn(i);
    } catch (const Error& e) {
      on_error(i, e.message());
    } catch (const std::exception& e) {
      on_error(i, e.what());
    }
  });
}

uint64_t first_difference(uint64_t n_bytes,
                          const std::function<void(uint64_t, uint64_t, void*)>& read_a,
                          const std::function<void(uint64_t, uint64_t, void*)>& read_b) {
  constexpr uint64_t kChunkBytes = 16ull << 20;
  std::vector<uint8_t> a, b;
  for (uint64_t done = 0; done < n_bytes; done += kChunkBytes) {
    const uint64_t n = std::min(kChunkBytes, n_bytes - done);
    a.resize(n);
    b.resize(n);
    read_a(done, n, a.data());
    read_b(done, n, b.data());
    if (std::memcmp(a.data(), b.data(), n) != 0) {
      for (uint64_t i = 0; i < n; ++i) {
        if (a[i] != b[i]) return done + i;
      }
    }
  }
  return n_bytes;
}

bool is_weight_name(const std::string& name) {
  return ends_with(name, model::kWeightSuffix) && name != model::kWeightSuffix;
}

std::string module_of_weight(const std::string& weight_name) {
  return is_weight_name(weight_name) ? strip_suffix(weight_name, model::kWeightSuffix)
                                     : weight_name;
}

bool wildcard_match(const std::string& pattern, const std::string& text) {
  // Iterative glob with backtracking to the last '*'.
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] != '*' && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// ---- Context ------------------------------------------------------------------------------------

namespace {
struct CheckInfo {
  const char* name;
  const char* description;
};
// Report order.
const CheckInfo kChecks[] = {
    {kCheckIndex, "shard files, index weight_map = shard contents, total_size"},
    {kCheckInventory, "every source tensor copied or quantized per recipe, nothing else"},
    {kCheckLayout, "each output shard: its source shard's outputs, in source order"},
    {kCheckCopies, "copied tensors byte-identical to the source"},
    {kCheckScales, "weight_scale / weight_scale_2 / input_scale finite and > 0"},
    {kCheckGlobalScale,
     "weight_scale_2 = amax/2688 (FP8/BF16, requantized FP4) or 2^(k_max-8) (FP4 cast)"},
    {kCheckPairScales, "w1/w3 pairs: equal weight_scale_2 and input_scale"},
    {kCheckAccuracy, "every element within the NVFP4 error bound of the source"},
    {kCheckLossless, "lossless-cast MXFP4 blocks decode bit-exactly"},
    {kCheckConfig, "config.json = source + quantization_config per recipe"},
    {kCheckHfQuantConfig, "hf_quant_config.json consistent with config.json"},
    {kCheckOtherFiles, "non-shard source files identical; no file the export does not write"},
    {kCheckChecksums, "quantforge_checksums.json digests match (if present)"},
};
}  // namespace

Context::Context(const ValidateOptions& opts) : options(opts), source(opts.source_dir) {
  out.dir = opts.out_dir;
  for (const auto& info : kChecks) {
    checks[info.name] =
        std::make_unique<CheckRecorder>(info.name, info.description, opts.max_listed_failures);
  }
  source_config = source.read_json("config.json");
  config = model::ModelConfig::from_json(source_config, source.dir() + "/config.json");
  source_tensors = classify_native_tensors(source);
  for (const auto& t : source_tensors) source_by_name[t.name] = &t;
}

}  // namespace validate_detail

ValidateReport validate_export(const ValidateOptions& options) {
  QF_NVTX_RANGE("validate");
  using namespace validate_detail;
  QF_CHECK(!options.source_dir.empty() && !options.out_dir.empty(),
           "validate needs a source and an output directory");
  QF_CHECK(options.n_threads >= 1 && options.n_threads <= 256, "validate: --threads must be in",
           "[1, 256], got", options.n_threads);
  const auto start = std::chrono::steady_clock::now();
  Context ctx(options);
  open_output_dir(ctx);
  detect_recipe(ctx);
  detect_expert_weights(ctx);
  plan_expected_outputs(ctx);
  log_info("validate: ", ctx.source_tensors.size(), " source tensors, ", ctx.targets.size(),
           " NVFP4 targets (recipe ", ctx.recipe_text, "), ", ctx.out.shards.size(),
           " output shards");

  check_index(ctx);
  check_inventory(ctx);
  uint64_t total_bytes = 0;
  for (const auto& [file, list] : ctx.expected) {
    for (const auto& e : list) {
      if (e.kind == ExpectedKind::kCopy) total_bytes += e.spec.n_bytes();
    }
  }
  for (const auto& [name, target] : ctx.targets) total_bytes += target.source->stored.n_bytes();
  ProgressMeter progress("validate", total_bytes, "B");
  const auto advance = [&progress](uint64_t n) { progress.advance(n); };
  check_copies(ctx, advance);
  auto tensors = check_quantized(ctx, advance);
  progress.finish();
  check_configs(ctx);
  check_other_files(ctx);
  check_extra_files(ctx);
  check_checksums(ctx);

  ValidateReport report;
  report.source_dir = options.source_dir;
  report.out_dir = options.out_dir;
  report.recipe = ctx.recipe_text;
  report.expert_weights = ctx.expert_weights_text;
  for (const auto& info : kChecks) report.checks.push_back(ctx.check(info.name).result());
  std::sort(tensors.begin(), tensors.end(),
            [](const TensorAccuracy& a, const TensorAccuracy& b) { return a.name < b.name; });
  report.tensors = std::move(tensors);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace qf::pipeline
