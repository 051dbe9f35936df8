// inspect_checkpoint (see inspect.hpp).
#include "inspect/inspect.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "core/check.hpp"
#include "core/progress.hpp"
#include "core/strings.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/checksum.hpp"
#include "model/config.hpp"
#include "model/tensor_table.hpp"

namespace qf::pipeline {
namespace {

using nlohmann::json;

struct Row {
  const formats::TensorInfo* info;
  std::string shard;
  std::string checksum;  // empty unless InspectOptions::checksums
};

// What inspect found: the rows in file order, the totals and the table check.
struct Contents {
  std::vector<Row> rows;
  std::map<DType, model::DTypeTotal> totals;
  uint64_t total_bytes = 0;
  std::optional<model::ModelConfig> config;
  std::string config_error;
  std::vector<std::string> diffs;
};

std::string binary_bytes(uint64_t n_bytes) {
  return ProgressMeter::format_bytes(double(n_bytes), ProgressMeter::ByteUnits::kBinary);
}

// XXH64 of the tensor bytes, read in 16 MiB pieces (16 hex digits).
std::string tensor_checksum(const formats::SafetensorsReader& shard, const formats::TensorInfo& t) {
  formats::Checksum64 sum;
  std::vector<uint8_t> buf;
  const uint64_t chunk = 16ull << 20;
  for (uint64_t off = 0; off < t.n_bytes(); off += chunk) {
    const uint64_t n = std::min(chunk, t.n_bytes() - off);
    buf.resize(n);
    shard.read(t, off, n, buf.data());
    sum.update(buf.data(), n);
  }
  return sum.hex_digest();
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
    if (!want.count(name)) diffs.push_back("unexpected " + escape_nonprintable(name));
  }
  return diffs;
}

Contents gather(const formats::CheckpointDir& ckpt, const InspectOptions& options) {
  Contents c;
  for (const auto& file : ckpt.shard_files()) {
    const formats::SafetensorsReader& shard = ckpt.shard(file);
    for (const auto& t : shard.tensors()) {
      c.rows.push_back({&t, file, options.checksums ? tensor_checksum(shard, t) : std::string()});
      ++c.totals[t.dtype].n_tensors;
      c.totals[t.dtype].n_bytes += t.n_bytes();
      c.total_bytes += t.n_bytes();
    }
  }
  // Config and table check (a missing or foreign config is reported, not fatal).
  try {
    c.config =
        model::ModelConfig::from_json(ckpt.read_json("config.json"), options.dir + "/config.json");
    c.diffs = table_differences(
        ckpt, model::checkpoint_tensors(*c.config, model::config_weight_format(*c.config)));
  } catch (const Error& e) {
    c.config_error = e.message();
  }
  return c;
}

void print_json(const formats::CheckpointDir& ckpt, const Contents& c,
                const InspectOptions& options, std::ostream& out) {
  json doc = {{"dir", options.dir},
              {"n_shards", ckpt.shard_files().size()},
              {"n_tensors", c.rows.size()},
              {"n_bytes", c.total_bytes}};
  json by_dtype = json::object();
  for (const auto& [dtype, total] : c.totals) {
    by_dtype[dtype_name(dtype)] = {{"n_tensors", total.n_tensors}, {"n_bytes", total.n_bytes}};
  }
  doc["totals"] = by_dtype;
  if (!options.totals_only) {
    json list = json::array();
    for (const auto& r : c.rows) {
      json e = {{"name", r.info->name},
                {"dtype", dtype_name(r.info->dtype)},
                {"shape", r.info->shape},
                {"n_bytes", r.info->n_bytes()},
                {"shard", r.shard}};
      if (options.checksums) e["checksum"] = r.checksum;
      list.push_back(e);
    }
    doc["tensors"] = list;
  }
  if (c.config) {
    doc["config"] = c.config->to_json();
    doc["table_check"] = {
        {"format", model::weight_formats().name(model::config_weight_format(*c.config))},
        {"matches", c.diffs.empty()},
        {"differences", c.diffs}};
  } else {
    doc["config_error"] = c.config_error;
  }
  out << doc.dump(2) << std::endl;
}

void print_rows(const Contents& c, bool checksums, std::ostream& out) {
  size_t width = 4;
  for (const auto& r : c.rows) width = std::max(width, escape_nonprintable(r.info->name).size());
  out << str_printf("\n%-*s  %-8s  %-18s  %14s  %s%s\n", static_cast<int>(width), "name", "dtype",
                    "shape", "bytes", "shard", checksums ? "  checksum" : "");
  for (const auto& r : c.rows) {
    out << str_printf("%-*s  %-8s  %-18s  %14llu  %s%s%s\n", static_cast<int>(width),
                      escape_nonprintable(r.info->name).c_str(), dtype_name(r.info->dtype),
                      formats::shape_str(r.info->shape).c_str(),
                      static_cast<unsigned long long>(r.info->n_bytes()), r.shard.c_str(),
                      checksums ? "  " : "", r.checksum.c_str());
  }
}

void print_text(const formats::CheckpointDir& ckpt, const Contents& c,
                const InspectOptions& options, std::ostream& out) {
  out << "checkpoint " << options.dir << ": " << ckpt.shard_files().size() << " shards, "
      << c.rows.size() << " tensors, " << c.total_bytes << " bytes (" << binary_bytes(c.total_bytes)
      << ")\n";
  if (!options.totals_only) print_rows(c, options.checksums, out);
  out << "\ntotals by dtype:\n";
  for (const auto& [dtype, total] : c.totals) {
    out << str_printf("  %-8s %8llu tensors  %16llu bytes  %12s\n", dtype_name(dtype),
                      static_cast<unsigned long long>(total.n_tensors),
                      static_cast<unsigned long long>(total.n_bytes),
                      binary_bytes(total.n_bytes).c_str());
  }
  out << str_printf("  %-8s %8zu tensors  %16llu bytes  %12s\n", "all", c.rows.size(),
                    static_cast<unsigned long long>(c.total_bytes),
                    binary_bytes(c.total_bytes).c_str());
  out << "\nconfig:\n";
  if (c.config) {
    out << c.config->summary();
    out << "\ntensor table vs DeepSeek V4 ("
        << model::weight_formats().name(model::config_weight_format(*c.config)) << " format): "
        << (c.diffs.empty() ? "matches" : std::to_string(c.diffs.size()) + " differences") << "\n";
    for (size_t i = 0; i < c.diffs.size() && i < 20; ++i) out << "  " << c.diffs[i] << "\n";
    if (c.diffs.size() > 20) out << "  ... " << c.diffs.size() - 20 << " more\n";
  } else {
    out << "  (none usable: " << c.config_error << ")\n";
  }
  out << std::flush;
}

}  // namespace

std::string InspectResult::problem() const {
  if (!config_ok) return config_error;
  if (n_differences > 0) {
    return std::to_string(n_differences) + " differences from the DeepSeek V4 tensor table";
  }
  return "";
}

InspectResult inspect_checkpoint(const InspectOptions& options, std::ostream& out) {
  const formats::CheckpointDir ckpt(options.dir);
  const Contents contents = gather(ckpt, options);
  if (options.as_json) {
    print_json(ckpt, contents, options, out);
  } else {
    print_text(ckpt, contents, options, out);
  }
  InspectResult result;
  result.config_ok = contents.config.has_value();
  result.config_error = contents.config_error;
  result.n_differences = contents.diffs.size();
  return result;
}

}  // namespace qf::pipeline
