// Internals shared by the validate_*.cpp files: the thread-safe check recorder, the opened
// output directory, the expected output tensors and the context one run passes around.
// Owns: those types. Does not own any check (validate_{inventory,tensors,config,files}.cpp).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "core/parallel.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/safetensors_reader.hpp"
#include "formats/shard_index.hpp"
#include "model/config.hpp"
#include "quantize/expert_weights.hpp"
#include "quantize/weight_scale.hpp"
#include "recipe/recipe.hpp"
#include "source/native_tensors.hpp"
#include "validate/validate.hpp"

namespace qf::pipeline::validate_detail {

// One check's counts and first failures; pass/fail/skip may be called from several threads.
class CheckRecorder {
 public:
  CheckRecorder(std::string name, std::string description, int max_listed);
  void pass(uint64_t n = 1);
  void skip(uint64_t n = 1);
  template <typename... Args>
  void fail(const Args&... args) {
    fail_text(join_message(args...));
  }
  void fail_text(const std::string& text);
  void set_note(const std::string& note);
  CheckResult result() const;

 private:
  mutable std::mutex mutex_;
  CheckResult result_;
  int max_listed_;
};

// One output tensor the rules expect, in the source order of its shard.
enum class ExpectedKind { kCopy, kWeight, kWeightScale, kWeightScale2, kInputScale };
struct ExpectedTensor {
  formats::TensorSpec spec;
  ExpectedKind kind = ExpectedKind::kCopy;
  std::string source_name;  // kCopy: the same name; else the source weight `<p>.weight`
};

// A quantized linear: the source weight and its w1/w3 sibling target (if any).
struct Target {
  const NativeTensor* source = nullptr;
  std::string module;       // `<p>`
  std::string pair_weight;  // sibling `<q>.weight` that shares scales, or empty
};

// OUT as found on disk, read without trusting its index: every *.safetensors file that opens
// is listed, each tensor with its shard.
struct OutputDir {
  std::string dir;
  std::map<std::string, std::unique_ptr<formats::SafetensorsReader>> shards;  // opened files
  std::map<std::string, std::string> shard_of;  // tensor name -> shard file (first seen)
  std::vector<std::pair<std::string, std::string>> duplicates;  // (name, second shard)

  const formats::TensorInfo* find(const std::string& name,
                                  const formats::SafetensorsReader** shard = nullptr) const;
  std::vector<uint8_t> read(const std::string& name) const;  // whole tensor; throws if absent
};

struct Context {
  ValidateOptions options;
  formats::CheckpointDir source;
  nlohmann::json source_config;
  model::ModelConfig config;
  std::vector<NativeTensor> source_tensors;
  std::map<std::string, const NativeTensor*> source_by_name;
  bool recipe_known = false;  // from OUT's config.json; else inferred from OUT's tensors
  std::string recipe_text = "unknown";
  Recipe recipe = Recipe::kExperts;
  // How OUT declares its FP4 expert weights were made: hf_quant_config.json's quantforge block
  // ("expert_weights", absent = cast); unknown (no quantforge block, e.g. ModelOpt's own export)
  // leaves it to check_quantized to infer from the weight_scale_2 values.
  bool expert_weights_known = false;
  ExpertWeights expert_weights = ExpertWeights::kCast;
  std::string expert_weights_text;  // for the report; "" when OUT has no FP4-source target
  // hf_quant_config.json's quantforge "weight_scale" (absent = max): with another method the
  // requantized targets' scales are searched (or GPTQ's), so validate checks weight_scale_2
  // against the search's candidates and does not hold their blocks to max's scale (nor, for
  // gptq, their elements to nearest rounding).
  WeightScale weight_scale = WeightScale::kMax;
  std::map<std::string, Target> targets;                        // by source weight name
  std::map<std::string, std::vector<ExpectedTensor>> expected;  // by shard file, source order
  OutputDir out;
  std::map<std::string, std::unique_ptr<CheckRecorder>> checks;

  explicit Context(const ValidateOptions& opts);
  CheckRecorder& check(const char* name) { return *checks.at(name); }
};

// ---- steps (each in its own file) ------------------------------------------------------------
void open_output_dir(Context& ctx);        // validate_inventory.cpp
void detect_recipe(Context& ctx);          // validate_config.cpp: from OUT's config.json
void detect_expert_weights(Context& ctx);  // validate_config.cpp: from hf_quant_config.json
                                           // (and the weight_scale method)
void plan_expected_outputs(Context& ctx);  // validate_inventory.cpp: targets and outputs
void check_index(Context& ctx);            // validate_inventory.cpp
void check_inventory(Context& ctx);        // validate_inventory.cpp (inventory + layout)
void check_copies(Context& ctx, const std::function<void(uint64_t)>& progress);
std::vector<TensorAccuracy> check_quantized(Context& ctx,
                                            const std::function<void(uint64_t)>& progress);
void check_configs(Context& ctx);      // validate_config.cpp
void check_other_files(Context& ctx);  // validate_files.cpp
void check_extra_files(Context& ctx);  // validate_files.cpp: files the export does not write
void check_checksums(Context& ctx);    // validate_files.cpp

// Runs fn(i) for i in [0, n_items) on up to n_threads threads; an exception from fn(i) is passed
// to on_error(i, message) (which records it) and does not stop the other items.
void parallel_for(size_t n_items, int n_threads, const std::function<void(size_t)>& fn,
                  const std::function<void(size_t, const std::string&)>& on_error);

// Streams two byte ranges of `n_bytes` through `read_a`/`read_b` (offset, n, dst) and returns the
// first differing offset, or n_bytes when equal. Memory: two chunks.
uint64_t first_difference(uint64_t n_bytes,
                          const std::function<void(uint64_t, uint64_t, void*)>& read_a,
                          const std::function<void(uint64_t, uint64_t, void*)>& read_b);

bool is_weight_name(const std::string& name);
std::string module_of_weight(const std::string& weight_name);  // `<p>.weight` -> `<p>`
// fnmatch-style `*` wildcard (the only wildcard ModelOpt's exclude lists use).
bool wildcard_match(const std::string& pattern, const std::string& text);

}  // namespace qf::pipeline::validate_detail
