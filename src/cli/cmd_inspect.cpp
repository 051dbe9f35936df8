// `quantforge inspect DIR`: tensor table, per-dtype totals, config summary, and a check of the
// tensor list against the DeepSeek V4 table for the config. Output on stdout (text or JSON).
// Owns: presentation only; reading is formats::CheckpointDir, expectations model::tensor_table.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "core/log.hpp"
#include "formats/checkpoint_dir.hpp"
#include "model/config.hpp"
#include "model/tensor_table.hpp"

namespace qf::cli {
namespace {

using nlohmann::json;

struct Row {
  const formats::TensorInfo* info;
  std::string shard;
  std::string checksum;  // empty unless --checksums
};

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) v /= 1024.0, ++u;
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

// FNV-1a 64 of the tensor bytes, read in 16 MiB pieces (hex string).
std::string tensor_checksum(const formats::SafetensorsReader& shard, const formats::TensorInfo& t) {
  uint64_t h = 0xCBF29CE484222325ull;
  std::vector<uint8_t> buf;
  const uint64_t chunk = 16ull << 20;
  for (uint64_t off = 0; off < t.n_bytes(); off += chunk) {
    const uint64_t n = std::min(chunk, t.n_bytes() - off);
    buf.resize(n);
    shard.read(t, off, n, buf.data());
    for (const uint8_t b : buf) h = (h ^ b) * 0x100000001B3ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// Differences between the checkpoint and the DeepSeek V4 table of its config.
std::vector<std::string> table_differences(const formats::CheckpointDir& ckpt,
                                           const std::vector<model::ModelTensor>& expected) {
  std::vector<std::string> diffs;
  std::map<std::string, const model::ModelTensor*> want;
  for (const auto& t : expected) want[t.spec.name] = &t;
  for (const auto& [name, t] : want) {
    if (!ckpt.has_tensor(name)) {
      diffs.push_back("missing " + name);
      continue;
    }
    const formats::TensorInfo& got = ckpt.tensor(name);
    if (got.dtype != t->spec.dtype || got.shape != t->spec.shape) {
      diffs.push_back("differs " + name + ": " + dtype_name(got.dtype) + " " +
                      formats::shape_str(got.shape) + ", expected " + dtype_name(t->spec.dtype) +
                      " " + formats::shape_str(t->spec.shape));
    }
  }
  for (const auto& name : ckpt.tensor_names()) {
    if (!want.count(name)) diffs.push_back("unexpected " + name);
  }
  return diffs;
}

}  // namespace

int cmd_inspect(const Args& args) {
  po::options_description options("inspect options");
  options.add_options()("dir", po::value<std::string>()->required(), "checkpoint directory")(
      "totals-only", "print only the per-dtype totals and the config summary")(
      "json", "print one JSON document instead of text")(
      "checksums", "add an FNV-1a 64 checksum of every tensor's bytes (reads all data)")(
      "check",
      "exit 1 unless config.json is a valid DeepSeek V4 config and the tensors match "
      "its table exactly");
  add_common_options(options);
  po::positional_options_description positional;
  positional.add("dir", 1);
  po::variables_map vm;
  if (!parse_command_line("inspect", "DIR [--totals-only] [--json] [--checksums] [--check]",
                          "Prints the tensor table (name, dtype, shape, bytes, shard), per-dtype "
                          "totals and the config summary of a safetensors checkpoint.",
                          options, positional, args, vm)) {
    return 0;
  }
  const std::string dir = vm["dir"].as<std::string>();
  const bool totals_only = vm.count("totals-only") > 0, as_json = vm.count("json") > 0;
  const bool checksums = vm.count("checksums") > 0;

  const formats::CheckpointDir ckpt(dir);
  std::vector<Row> rows;
  std::map<DType, model::DTypeTotal> totals;
  uint64_t total_bytes = 0;
  for (const auto& file : ckpt.shard_files()) {
    const formats::SafetensorsReader& shard = ckpt.shard(file);
    for (const auto& t : shard.tensors()) {
      rows.push_back({&t, file, checksums ? tensor_checksum(shard, t) : std::string()});
      ++totals[t.dtype].n_tensors;
      totals[t.dtype].n_bytes += t.n_bytes();
      total_bytes += t.n_bytes();
    }
  }

  // Config and table check (a missing or foreign config is reported, not fatal).
  std::optional<model::ModelConfig> config;
  std::string config_error;
  std::vector<std::string> diffs;
  try {
    config = model::ModelConfig::from_json(ckpt.read_json("config.json"), dir + "/config.json");
    diffs = table_differences(
        ckpt, model::checkpoint_tensors(*config, model::config_weight_format(*config)));
  } catch (const Error& e) {
    config_error = e.message();
  }

  if (as_json) {
    json doc = {{"dir", dir},
                {"n_shards", ckpt.shard_files().size()},
                {"n_tensors", rows.size()},
                {"n_bytes", total_bytes}};
    json by_dtype = json::object();
    for (const auto& [dtype, total] : totals) {
      by_dtype[dtype_name(dtype)] = {{"n_tensors", total.n_tensors}, {"n_bytes", total.n_bytes}};
    }
    doc["totals"] = by_dtype;
    if (!totals_only) {
      json list = json::array();
      for (const auto& r : rows) {
        json e = {{"name", r.info->name},
                  {"dtype", dtype_name(r.info->dtype)},
                  {"shape", r.info->shape},
                  {"n_bytes", r.info->n_bytes()},
                  {"shard", r.shard}};
        if (checksums) e["checksum"] = r.checksum;
        list.push_back(e);
      }
      doc["tensors"] = list;
    }
    if (config) {
      doc["config"] = config->to_json();
      doc["table_check"] = {
          {"format", model::weight_format_name(model::config_weight_format(*config))},
          {"matches", diffs.empty()},
          {"differences", diffs}};
    } else {
      doc["config_error"] = config_error;
    }
    std::cout << doc.dump(2) << std::endl;
  } else {
    std::cout << "checkpoint " << dir << ": " << ckpt.shard_files().size() << " shards, "
              << rows.size() << " tensors, " << total_bytes << " bytes ("
              << human_bytes(total_bytes) << ")\n";
    if (!totals_only) {
      size_t width = 4;
      for (const auto& r : rows) width = std::max(width, r.info->name.size());
      std::printf("\n%-*s  %-8s  %-18s  %14s  %s%s\n", static_cast<int>(width), "name", "dtype",
                  "shape", "bytes", "shard", checksums ? "  checksum" : "");
      for (const auto& r : rows) {
        std::printf("%-*s  %-8s  %-18s  %14llu  %s%s%s\n", static_cast<int>(width),
                    r.info->name.c_str(), dtype_name(r.info->dtype),
                    formats::shape_str(r.info->shape).c_str(),
                    static_cast<unsigned long long>(r.info->n_bytes()), r.shard.c_str(),
                    checksums ? "  " : "", r.checksum.c_str());
      }
    }
    std::printf("\ntotals by dtype:\n");
    for (const auto& [dtype, total] : totals) {
      std::printf("  %-8s %8llu tensors  %16llu bytes  %12s\n", dtype_name(dtype),
                  static_cast<unsigned long long>(total.n_tensors),
                  static_cast<unsigned long long>(total.n_bytes),
                  human_bytes(total.n_bytes).c_str());
    }
    std::printf("  %-8s %8zu tensors  %16llu bytes  %12s\n", "all", rows.size(),
                static_cast<unsigned long long>(total_bytes), human_bytes(total_bytes).c_str());
    std::cout << "\nconfig:\n";
    if (config) {
      std::cout << config->summary();
      std::cout << "\ntensor table vs DeepSeek V4 ("
                << model::weight_format_name(model::config_weight_format(*config)) << " format): "
                << (diffs.empty() ? "matches" : std::to_string(diffs.size()) + " differences")
                << "\n";
      for (size_t i = 0; i < diffs.size() && i < 20; ++i) std::cout << "  " << diffs[i] << "\n";
      if (diffs.size() > 20) std::cout << "  ... " << diffs.size() - 20 << " more\n";
    } else {
      std::cout << "  (none usable: " << config_error << ")\n";
    }
    std::cout << std::flush;
  }
  if (vm.count("check") && (!config || !diffs.empty())) {
    log_error("inspect --check: ", config ? std::to_string(diffs.size()) +
                                                " differences from the "
                                                "DeepSeek V4 tensor table"
                                          : config_error);
    return 1;
  }
  return 0;
}

}  // namespace qf::cli
