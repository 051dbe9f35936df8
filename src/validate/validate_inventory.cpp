// validate: which outputs the recipe implies (targets, expected tensors per shard) and the checks
// on what OUT holds: index, inventory, layout, byte-identical copies. Does not read values of
// quantized tensors (validate_tensors.cpp) or JSON configs (validate_config.cpp).
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/parallel.hpp"
#include "core/strings.hpp"
#include "model/tensor_table.hpp"
#include "recipe/recipe.hpp"
#include "validate/validate_context.hpp"

namespace qf::pipeline::validate_detail {
namespace {

std::string spec_text(DType dtype, const std::vector<int64_t>& shape) {
  return std::string(dtype_name(dtype)) + " " + formats::shape_str(shape);
}

}  // namespace

void open_output_dir(Context& ctx) {
  namespace fs = std::filesystem;
  auto& index = ctx.check(kCheckIndex);
  std::error_code error;
  if (!fs::is_directory(ctx.out.dir, error)) {
    index.fail("output directory", ctx.out.dir, "does not exist");
    return;
  }
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(ctx.out.dir, error)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && ends_with(name, ".safetensors")) files.push_back(name);
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    try {
      auto reader = std::make_unique<formats::SafetensorsReader>(ctx.out.dir + "/" + file);
      for (const auto& info : reader->tensors()) {
        if (!ctx.out.shard_of.emplace(info.name, file).second) {
          ctx.out.duplicates.emplace_back(info.name, file);
        }
      }
      ctx.out.shards.emplace(file, std::move(reader));
    } catch (const Error& e) {
      index.fail("output shard", file, "is unreadable:", e.message());
    }
  }
}

void plan_expected_outputs(Context& ctx) {
  const int n_layers = ctx.config.num_hidden_layers;
  // A BF16 source says which weights were FP8/FP4 only through the tensor table.
  std::set<std::string> native_low_precision;
  if (model::config_weight_format(ctx.config) == model::WeightFormat::kBf16) {
    for (const auto& t : model::checkpoint_tensors(ctx.config, model::WeightFormat::kBf16)) {
      if (t.native_role == model::TensorRole::kFp8Weight ||
          t.native_role == model::TensorRole::kFp4Weight) {
        native_low_precision.insert(t.spec.name);
      }
    }
  }
  for (const auto& t : ctx.source_tensors) {
    const bool low_precision =
        t.kind != StorageKind::kPlain ||
        (t.stored.dtype == DType::kBF16 && native_low_precision.count(t.name));
    const bool regular = starts_with(t.name, "layers.") && t.layer >= 0 && t.layer < n_layers;
    TargetFacts facts;
    facts.low_precision = low_precision;
    facts.mtp = !regular;
    facts.n_rows = t.n_rows;
    facts.n_cols = t.n_cols;
    facts.routed_expert = is_routed_expert_weight_name(t.name);
    if (is_nvfp4_target(facts, ctx.recipe) && is_weight_name(t.name)) {
      ctx.targets[t.name] = Target{&t, module_of_weight(t.name), ""};
    }
  }
  for (auto& [name, target] : ctx.targets) {
    const std::string other = nvfp4_sibling(name);
    if (!other.empty() && ctx.targets.count(other)) target.pair_weight = other;
  }
  for (const auto& file : ctx.source.shard_files()) {
    auto& list = ctx.expected[file];
    for (const auto& info : ctx.source.shard(file).tensors()) {
      if (ends_with(info.name, model::kScaleSuffix) &&
          ctx.targets.count(strip_suffix(info.name, model::kScaleSuffix) + model::kWeightSuffix)) {
        continue;  // replaced by the target's weight_scale
      }
      const auto it = ctx.targets.find(info.name);
      if (it == ctx.targets.end()) {
        list.push_back({info.spec(), ExpectedKind::kCopy, info.name});
        continue;
      }
      const auto& t = *it->second.source;
      const std::string& p = it->second.module;
      list.push_back(
          {{p + ".weight", DType::kU8, {t.n_rows, t.n_cols / 2}}, ExpectedKind::kWeight, t.name});
      list.push_back({{p + ".weight_scale", DType::kF8E4M3, {t.n_rows, t.n_cols / 16}},
                      ExpectedKind::kWeightScale,
                      t.name});
      list.push_back(
          {{p + ".weight_scale_2", DType::kF32, {}}, ExpectedKind::kWeightScale2, t.name});
      list.push_back({{p + ".input_scale", DType::kF32, {}}, ExpectedKind::kInputScale, t.name});
    }
  }
}

void check_index(Context& ctx) {
  auto& check = ctx.check(kCheckIndex);
  const std::string path = ctx.out.dir + "/" + formats::kShardIndexFileName;
  std::set<std::string> source_files(ctx.source.shard_files().begin(),
                                     ctx.source.shard_files().end());
  for (const auto& file : source_files) {
    if (ctx.out.shards.count(file)) {
      check.pass();
    } else {
      check.fail("source shard", file, "has no readable output shard of the same name");
    }
  }
  for (const auto& [file, reader] : ctx.out.shards) {
    if (!source_files.count(file)) check.fail("output shard", file, "has no source shard");
  }
  formats::ShardIndex index;
  try {
    index = formats::ShardIndex::read(path);
  } catch (const Error& e) {
    check.fail("index unreadable:", e.message());
    return;
  }
  uint64_t n_mismatch = 0;
  for (const auto& [name, file] : index.weight_map) {
    const auto it = ctx.out.shard_of.find(name);
    if (it == ctx.out.shard_of.end()) {
      ++n_mismatch;
      check.fail("index weight_map lists", name, "->", file, "but no output shard holds it");
    } else if (it->second != file) {
      ++n_mismatch;
      check.fail("index weight_map maps", name, "->", file, "but it is in", it->second);
    }
  }
  for (const auto& [name, file] : ctx.out.shard_of) {
    if (!index.weight_map.count(name)) {
      ++n_mismatch;
      check.fail("tensor", name, "in", file, "is missing from the index weight_map");
    }
  }
  if (n_mismatch == 0) check.pass();
  uint64_t total = 0;
  for (const auto& [file, reader] : ctx.out.shards) {
    for (const auto& info : reader->tensors()) total += info.n_bytes();
  }
  const auto& meta = index.metadata;
  if (meta.contains("total_size") && meta["total_size"].is_number_unsigned() &&
      meta["total_size"].get<uint64_t>() == total) {
    check.pass();
  } else {
    check.fail("index metadata.total_size is",
               meta.contains("total_size") ? meta["total_size"].dump() : "absent",
               "but the output tensors hold", total, "bytes");
  }
}

void check_inventory(Context& ctx) {
  auto& inventory = ctx.check(kCheckInventory);
  auto& layout = ctx.check(kCheckLayout);
  const std::string recipe = ctx.recipe_known ? recipes().name(ctx.recipe) : "unknown";
  std::set<std::string> expected_names;
  for (const auto& [file, list] : ctx.expected) {
    for (const auto& e : list) {
      expected_names.insert(e.spec.name);
      const auto* info = ctx.out.find(e.spec.name);
      if (!info) {
        inventory.fail("missing", e.spec.name, "(expected", spec_text(e.spec.dtype, e.spec.shape),
                       e.kind == ExpectedKind::kCopy ? "copied from the source)"
                                                     : ("for quantized " + e.source_name + ")"));
      } else if (info->dtype != e.spec.dtype || info->shape != e.spec.shape) {
        inventory.fail(e.spec.name, "is", spec_text(info->dtype, info->shape), "but recipe", recipe,
                       "implies", spec_text(e.spec.dtype, e.spec.shape),
                       e.kind == ExpectedKind::kCopy ? "(a copy of the source)" : "(NVFP4)");
      } else {
        inventory.pass();
      }
    }
  }
  for (const auto& [name, file] : ctx.out.shard_of) {
    if (expected_names.count(name)) continue;
    std::string why;
    if (ends_with(name, model::kScaleSuffix) &&
        ctx.targets.count(strip_suffix(name, model::kScaleSuffix) + model::kWeightSuffix)) {
      why = "(the .scale of a quantized weight must be dropped)";
    } else if (ends_with(name, ".weight_scale") || ends_with(name, ".weight_scale_2") ||
               ends_with(name, ".input_scale")) {
      why = "(quantized, but recipe " + recipe + " keeps this module as in the source)";
    }
    inventory.fail("unexpected tensor", name, "in", file, why);
  }
  for (const auto& [name, file] : ctx.out.duplicates) {
    inventory.fail("tensor", name, "appears in", ctx.out.shard_of.at(name), "and again in", file);
  }

  for (const auto& [file, list] : ctx.expected) {
    const auto it = ctx.out.shards.find(file);
    if (it == ctx.out.shards.end()) {
      layout.fail("output shard", file, "is missing; it should hold", list.size(), "tensors");
      continue;
    }
    const auto& have = it->second->tensors();  // data-offset order
    size_t i = 0;
    while (i < list.size() && i < have.size() && list[i].spec.name == have[i].name) ++i;
    if (i == list.size() && i == have.size()) {
      layout.pass();
    } else {
      layout.fail("shard", file, "position", std::to_string(i) + ": expected",
                  i < list.size() ? list[i].spec.name : "(end)", "but found",
                  i < have.size() ? have[i].name : "(end)",
                  str_cat("(", have.size(), " tensors, expected ", list.size(), ")"));
    }
  }
}

void check_copies(Context& ctx, const std::function<void(uint64_t)>& progress) {
  auto& check = ctx.check(kCheckCopies);
  std::vector<const ExpectedTensor*> copies;
  for (const auto& [file, list] : ctx.expected) {
    for (const auto& e : list) {
      if (e.kind != ExpectedKind::kCopy) continue;
      const auto* info = ctx.out.find(e.spec.name);
      if (info && info->dtype == e.spec.dtype && info->shape == e.spec.shape) {
        copies.push_back(&e);
      } else {
        check.skip();  // inventory reports it
      }
    }
  }
  parallel_for(
      copies.size(), ctx.options.n_threads,
      [&](size_t i) {
        const std::string& name = copies[i]->spec.name;
        const formats::SafetensorsReader* src_shard = nullptr;
        const formats::SafetensorsReader* out_shard = nullptr;
        const auto& src = ctx.source.tensor(name, &src_shard);
        const auto& out = *ctx.out.find(name, &out_shard);
        const uint64_t n_bytes = src.n_bytes();
        const uint64_t at = first_difference(
            n_bytes, [&](uint64_t o, uint64_t n, void* dst) { src_shard->read(src, o, n, dst); },
            [&](uint64_t o, uint64_t n, void* dst) { out_shard->read(out, o, n, dst); });
        if (at == n_bytes) {
          check.pass();
        } else {
          uint8_t a = 0, b = 0;
          src_shard->read(src, at, 1, &a);
          out_shard->read(out, at, 1, &b);
          check.fail("copied tensor", name, "differs from the source at byte", at, "of", n_bytes,
                     str_cat("(source 0x", std::hex, int(a), ", output 0x", int(b), ")"));
        }
        progress(n_bytes);
      },
      [&](size_t i, const std::string& message) {
        check.fail("copied tensor", copies[i]->spec.name, "could not be compared:", message);
      });
}

}  // namespace qf::pipeline::validate_detail
