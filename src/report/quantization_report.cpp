// The quantization report (see quantization_report.hpp): file names, read/merge/write, the
// quantize section and the text table rendered from the JSON (so eval can re-render quantize's
// part without knowing its types).
#include "report/quantization_report.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "core/check.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "report/quantization_report_html.hpp"

namespace qf::pipeline {
namespace {

using json = nlohmann::json;

// printf into a std::string line (tables only; bounded).
template <typename... Args>
std::string line(const char* format, Args... args) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), format, args...);
  return std::string(buf) + "\n";
}

std::string str(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump();
}

double num(const json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

std::string seconds_text(const json& v) {
  return v.is_number() ? ProgressMeter::format_seconds(v.get<double>()) : "-";
}

std::string quantize_text(const json& q) {
  std::string t;
  const json& o = q.value("options", json::object());
  t += line("quantize (%s, %s rank(s), %s)", str(q.value("tool", json())).c_str(),
            str(q.value("world_size", json())).c_str(), str(q.value("mode", json())).c_str());
  t += line("  source                %s", str(q.value("source", json())).c_str());
  t += line("  recipe                %s, kv-cache %s, backend %s, act-scale %s",
            str(o.value("recipe", json())).c_str(), str(o.value("kv_cache", json())).c_str(),
            str(o.value("backend", json())).c_str(), str(o.value("act_scale", json())).c_str());
  if (o.contains("expert_weights")) {  // reports before --expert-weights lack it
    t += line("  expert weights        %s", str(o["expert_weights"]).c_str());
  }
  const json& c = o.value("calibration", json::object());
  if (!c.value("amax_file", json()).is_null()) {
    t += line("  calibration           amax file %s", str(c["amax_file"]).c_str());
  } else {
    t += line("  calibration           %s x %s tokens from %s",
              str(c.value("samples", json())).c_str(), str(c.value("seq_len", json())).c_str(),
              c.value("calib", json()).is_null()
                  ? ("the synthetic set, seed " + str(c.value("seed", json()))).c_str()
                  : str(c["calib"]).c_str());
  }
  t += line("  NVFP4 targets         %s", str(q.value("targets", json())).c_str());
  const json& l = q.value("lossless_cast", json());
  if (l.is_object()) {
    t += line(
        "  lossless cast         %s lossless MXFP4 blocks, %s fallback blocks (%s tensors "
        "quantized%s)",
        str(l.value("blocks_lossless", json())).c_str(),
        str(l.value("blocks_fallback", json())).c_str(),
        str(l.value("tensors_quantized", json())).c_str(),
        l.value("complete", false) ? "" : "; partial: a resumed or export-only run");
  } else {
    t += line("  lossless cast         unknown (--export-only quantizes nothing)");
  }
  const json& u = q.value("uncalibrated_experts", json::array());
  t += line("  uncalibrated experts  %zu%s", u.size(),
            u.empty() ? "" : " (input_scale from the max of their projection):");
  for (const auto& name : u) t += line("    %s", str(name).c_str());
  const json& s = q.value("seconds", json::object());
  t += line("  time                  calibration %s, quantization %s, export %s, total %s",
            seconds_text(s.value("calibration", json())).c_str(),
            seconds_text(s.value("quantization", json())).c_str(),
            seconds_text(s.value("export", json())).c_str(),
            seconds_text(s.value("total", json())).c_str());
  return t;
}

std::string eval_text(const json& e) {
  std::string t;
  const json& o = e.value("options", json::object());
  const json& tok = e.value("tokens", json::object());
  t += line("eval (%s, %s rank(s))", o.value("weights_only", false) ? "W4A16" : "W4A4",
            str(o.value("world_size", json())).c_str());
  t += line("  tokens                %s x %s (%s), %.0f positions",
            str(o.value("samples", json())).c_str(), str(o.value("seq_len", json())).c_str(),
            str(tok.value("source", json())).c_str(), num(tok.value("positions", json())));
  t += line("  KL(src||quant)        %.6g nats/token", num(e.value("kl_mean", json())));
  t += line("  top-1 agreement       %.4f", num(e.value("top1_agreement", json())));
  const json& p = e.value("perplexity", json::object());
  t += line("  perplexity            source %.4f, quantized %.4f", num(p.value("source", json())),
            num(p.value("quantized", json())));
  t += line("  %-6s %14s", "layer", "hidden rel L2");
  for (const auto& l : e.value("layers", json::array())) {
    t += line("  %-6s %14.6g", str(l.value("layer", json())).c_str(),
              num(l.value("rel_l2", json())));
  }
  std::map<std::string, json> by_name;
  for (const auto& m : e.value("modules", json::array())) by_name[str(m.value("name", json()))] = m;
  t += line("  worst modules (%zu NVFP4 modules, %s without tokens)", by_name.size(),
            str(e.value("modules_without_tokens", json())).c_str());
  t += line("  %-44s %12s %10s", "module", "rel L2", "tokens");
  for (const auto& name : e.value("worst_modules", json::array())) {
    const json& m = by_name[str(name)];
    t += line("  %-44s %12.6g %10s", str(name).c_str(), num(m.value("rel_l2", json())),
              str(m.value("tokens", json())).c_str());
  }
  return t;
}

}  // namespace

std::string quantization_report_path(const std::string& out_dir) {
  std::string dir = out_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + ".quantization_report.json";
}

std::string quantization_report_text_path(const std::string& json_path) {
  return strip_suffix(json_path, ".json") + ".txt";
}

json read_quantization_report(const std::string& path) {
  const json fresh = {{"format", kQuantizationReportFormat}};
  std::error_code error;
  if (!std::filesystem::exists(path, error)) return fresh;
  try {
    json doc = formats::read_json_file(path);
    if (doc.is_object() && doc.value("format", json()) == kQuantizationReportFormat) return doc;
    log_warn(path, " is not a quantization report (", kQuantizationReportFormat,
             "); it is replaced");
  } catch (const Error& e) {
    log_warn(path, " is unreadable (", e.message(), "); it is replaced");
  }
  return fresh;
}

void write_quantization_report(const std::string& json_path, const json& report) {
  formats::write_file_atomic(json_path, report.dump(2) + "\n");
  formats::write_file_atomic(quantization_report_text_path(json_path),
                             quantization_report_text(report));
  // The page is a view: a report it cannot draw must not fail the job that wrote the numbers.
  std::string page;
  try {
    page = quantization_report_html(report);
  } catch (const std::exception& e) {
    log_warn(quantization_report_html_path(json_path), ": cannot draw the report (", e.what(), ")");
    return;
  }
  formats::write_file_atomic(quantization_report_html_path(json_path), page);
}

std::string quantization_report_text(const json& report) {
  std::string t;
  const json& q = report.value("quantize", json());
  t += line("quantization report: %s",
            q.is_object() ? str(q.value("out", json())).c_str() : "(no quantize section)");
  if (q.is_object()) t += quantize_text(q);
  const json& e = report.value("eval", json());
  if (e.is_object()) {
    t += eval_text(e);
  } else {
    t += "eval: not run yet (quantforge eval --source SRC --out OUT merges its numbers here)\n";
  }
  const json& v = report.value("validate", json());
  if (v.is_object()) {
    t += line("%s (work stores: %s)", str(v.value("summary", json())).c_str(),
              str(v.value("work_stores", json())).c_str());
  } else {
    t += "validate: not run yet (quantforge validate --source SRC --out OUT merges its verdict)\n";
  }
  return t;
}

}  // namespace qf::pipeline
