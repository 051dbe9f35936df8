// The recipe table and the NVFP4 target rule.
#include "recipe/recipe.hpp"

#include "core/strings.hpp"

namespace qf::pipeline {

const EnumTable<Recipe>& recipes() {
  static const EnumTable<Recipe> table(
      "--recipe",
      {{"experts", Recipe::kExperts,
        "routed experts -> NVFP4 W4A4, everything else copied (the published V4 NVFP4 layout)"},
       {"full", Recipe::kFull, "every FP8/FP4 linear of the main layers -> NVFP4 W4A4"}});
  return table;
}

bool is_nvfp4_target(const TargetFacts& f, Recipe recipe) {
  if (!f.low_precision || f.mtp) return false;
  if (f.n_rows <= 0 || f.n_cols <= 0 || f.n_cols % 16 != 0) return false;
  return recipe == Recipe::kFull || f.routed_expert;
}

bool is_nvfp4_target(const model::ModelTensor& t, Recipe recipe) {
  TargetFacts f;
  f.low_precision = t.native_role == model::TensorRole::kFp8Weight ||
                    t.native_role == model::TensorRole::kFp4Weight;
  f.mtp = t.is_mtp;
  f.n_rows = t.n_rows;
  f.n_cols = t.n_cols;
  f.routed_expert = t.expert >= 0;
  return is_nvfp4_target(f, recipe);
}

namespace {

// Consumes `text` at `at`; false (at unchanged) when it is not there.
bool eat(const std::string& name, size_t& at, const char* text) {
  const std::string t(text);
  if (name.compare(at, t.size(), t) != 0) return false;
  at += t.size();
  return true;
}

bool eat_digits(const std::string& name, size_t& at) {
  const size_t begin = at;
  while (at < name.size() && name[at] >= '0' && name[at] <= '9') ++at;
  return at > begin;
}

}  // namespace

bool is_routed_expert_weight_name(const std::string& name) {
  size_t at = 0;
  if (!eat(name, at, "layers.") || !eat_digits(name, at) || !eat(name, at, ".ffn.experts.") ||
      !eat_digits(name, at) || !eat(name, at, ".w")) {
    return false;
  }
  if (at >= name.size() || name[at] < '1' || name[at] > '3') return false;
  ++at;
  return eat(name, at, ".weight") && at == name.size();
}

std::string nvfp4_sibling(const std::string& weight_name) {
  for (const auto& [from, to] :
       {std::pair{".w1.weight", ".w3.weight"}, std::pair{".w3.weight", ".w1.weight"}}) {
    if (ends_with(weight_name, from)) {
      return strip_suffix(weight_name, from) + to;
    }
  }
  return "";
}

uint64_t nvfp4_block_scale_bytes(int64_t n_rows, int64_t n_cols) {
  return static_cast<uint64_t>(n_rows) * static_cast<uint64_t>(n_cols) / 16;
}

uint64_t nvfp4_n_bytes(int64_t n_rows, int64_t n_cols) {
  const uint64_t n_elems = static_cast<uint64_t>(n_rows) * static_cast<uint64_t>(n_cols);
  return n_elems / 2 + nvfp4_block_scale_bytes(n_rows, n_cols) + 2 * sizeof(float);
}

}  // namespace qf::pipeline
