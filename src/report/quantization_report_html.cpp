// quantization_report_html: the page, its tables and SVG charts (see quantization_report_html.hpp).
#include "report/quantization_report_html.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <regex>
#include <set>
#include <utility>

namespace qf::pipeline {
namespace {

using json = nlohmann::json;

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string text_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "-";
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string num(double v, int digits = 3) {
  char text[64];
  std::snprintf(text, sizeof(text), "%.*g", digits, v);
  return text;
}

// Rows of (key, value) of an object, nested objects flattened to "a.b".
void flatten(const json& j, const std::string& prefix,
             std::vector<std::pair<std::string, json>>& rows) {
  for (const auto& item : j.items()) {
    const std::string key = prefix.empty() ? item.key() : prefix + "." + item.key();
    if (item.value().is_object()) {
      flatten(item.value(), key, rows);
    } else {
      rows.emplace_back(key, item.value());
    }
  }
}

std::string table(const std::string& id, const json& object) {
  std::vector<std::pair<std::string, json>> rows;
  flatten(object, "", rows);
  std::string t = "<table id=\"" + id + "\">\n";
  for (const auto& [key, value] : rows) {
    t += "<tr><th>" + escape(key) + "</th><td>" + escape(text_of(value)) + "</td></tr>\n";
  }
  return t + "</table>\n";
}

// White (0) to dark blue (1).
std::string heat_color(double f) {
  f = std::clamp(f, 0.0, 1.0);
  const int r = int(247 - f * (247 - 8)), g = int(251 - f * (251 - 48)),
            b = int(255 - f * (255 - 107));
  char text[16];
  std::snprintf(text, sizeof(text), "#%02x%02x%02x", r, g, b);
  return text;
}

std::string timings_chart(const json& seconds) {
  const char* phases[] = {"calibration", "quantization", "export"};
  double total = 0;
  for (const char* p : phases) total += std::max(0.0, seconds.value(p, 0.0));
  std::string s =
      "<svg id=\"timings-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" "
      "height=\"90\" role=\"img\">\n";
  int y = 5;
  for (const char* p : phases) {
    const double v = std::max(0.0, seconds.value(p, 0.0));
    const double w = total > 0 ? 360 * v / total : 0;
    s += "<text x=\"0\" y=\"" + std::to_string(y + 14) + "\" font-size=\"12\">" + p + "</text>";
    s += "<rect class=\"bar\" x=\"100\" y=\"" + std::to_string(y) + "\" width=\"" + num(w, 5) +
         "\" height=\"20\" fill=\"#4a7fb5\"/>";
    s += "<text x=\"" + num(105 + w, 5) + "\" y=\"" + std::to_string(y + 14) +
         "\" font-size=\"12\">" + num(v) + " s</text>\n";
    y += 28;
  }
  return s + "</svg>\n";
}

// (layer, expert) of every module named "layers.L.ffn.experts.E.*" in `names`.
std::set<std::pair<int, int>> expert_cells(const json& names) {
  std::set<std::pair<int, int>> cells;
  static const std::regex pattern(R"(layers\.(\d+)\.ffn\.experts\.(\d+)\.)");
  if (!names.is_array()) return cells;
  for (const json& n : names) {
    std::smatch m;
    const std::string name = n.is_string() ? n.get<std::string>() : "";
    if (std::regex_search(name, m, pattern)) cells.insert({std::stoi(m[1]), std::stoi(m[2])});
  }
  return cells;
}

std::string heatmap(const json& tokens, const json& fallback) {
  size_t n_experts = 0;
  int64_t max_tokens = 0;
  for (const json& row : tokens) {
    n_experts = std::max(n_experts, row.size());
    for (const json& v : row) max_tokens = std::max(max_tokens, v.get<int64_t>());
  }
  const auto marked = expert_cells(fallback);
  const int cell = std::clamp(int(720 / std::max<size_t>(1, n_experts)), 4, 24);
  const int left = 60, top = 20;
  const int width = std::max(left + cell * int(n_experts) + 10, 480),
            height = top + cell * int(tokens.size()) + 30;
  std::string s = "<svg id=\"expert-heatmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                  std::to_string(width) + "\" height=\"" + std::to_string(height) +
                  "\" role=\"img\">\n<text x=\"" + std::to_string(left) +
                  "\" y=\"12\" font-size=\"11\">experts &#8594; (color: log tokens; red X: "
                  "input_scale fallback)</text>\n";
  for (size_t l = 0; l < tokens.size(); ++l) {
    const int y = top + cell * int(l);
    s += "<text x=\"0\" y=\"" + std::to_string(y + cell - 2) + "\" font-size=\"10\">layer " +
         std::to_string(l) + "</text>\n";
    for (size_t e = 0; e < tokens[l].size(); ++e) {
      const int64_t n = tokens[l][e].get<int64_t>();
      const double f = max_tokens > 0 ? std::log1p(double(n)) / std::log1p(double(max_tokens)) : 0;
      const int x = left + cell * int(e);
      const bool fb = marked.count({int(l), int(e)}) > 0;
      s += "<rect class=\"cell" + std::string(fb ? " fallback" : "") + "\" x=\"" +
           std::to_string(x) + "\" y=\"" + std::to_string(y) + "\" width=\"" +
           std::to_string(cell) + "\" height=\"" + std::to_string(cell) + "\" fill=\"" +
           heat_color(f) + "\" stroke=\"#ddd\"><title>layer " + std::to_string(l) + " expert " +
           std::to_string(e) + ": " + std::to_string(n) + " tokens" +
           (fb ? " (fallback input_scale)" : "") + "</title></rect>";
      if (fb) {
        s += "<path class=\"fallback-mark\" d=\"M" + std::to_string(x + 1) + " " +
             std::to_string(y + 1) + "l" + std::to_string(cell - 2) + " " +
             std::to_string(cell - 2) + "M" + std::to_string(x + cell - 1) + " " +
             std::to_string(y + 1) + "l-" + std::to_string(cell - 2) + " " +
             std::to_string(cell - 2) + "\" stroke=\"#d62728\" stroke-width=\"1.5\"/>";
      }
    }
    s += "\n";
  }
  return s + "</svg>\n";
}

// One horizontal bar per layer from min to max amax, on a log10 axis.
std::string amax_ranges(const json& amax) {
  double lo = 1e30, hi = 0;
  for (const json& r : amax) {
    if (r["min"].is_number() && r["min"].get<double>() > 0)
      lo = std::min(lo, r["min"].get<double>());
    if (r["max"].is_number()) hi = std::max(hi, r["max"].get<double>());
  }
  if (!(hi > 0) || lo > hi) lo = hi = 1;
  const double l0 = std::floor(std::log10(lo)), l1 = std::max(l0 + 1, std::ceil(std::log10(hi)));
  const int left = 60, plot = 420, row = 16;
  auto x_of = [&](double v) {
    return left + plot * (std::log10(std::max(v, lo)) - l0) / (l1 - l0);
  };
  std::string s = "<svg id=\"amax-ranges\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                  std::to_string(left + plot + 80) + "\" height=\"" +
                  std::to_string(30 + row * int(amax.size())) + "\" role=\"img\">\n";
  s += "<text x=\"" + std::to_string(left) +
       "\" y=\"12\" font-size=\"11\">input amax, log10 axis " + num(std::pow(10.0, l0)) + " .. " +
       num(std::pow(10.0, l1)) + "</text>\n";
  int y = 20;
  for (const json& r : amax) {
    s += "<text x=\"0\" y=\"" + std::to_string(y + 11) + "\" font-size=\"10\">layer " +
         text_of(r["layer"]) + "</text>";
    if (r["min"].is_number() && r["max"].is_number()) {
      const double a = x_of(r["min"].get<double>()), b = x_of(r["max"].get<double>());
      s += "<rect class=\"amax\" x=\"" + num(a, 6) + "\" y=\"" + std::to_string(y + 2) +
           "\" width=\"" + num(std::max(2.0, b - a), 6) +
           "\" height=\"10\" fill=\"#2ca02c\">"
           "<title>layer " +
           text_of(r["layer"]) + ": " + num(r["min"].get<double>()) + " .. " +
           num(r["max"].get<double>()) + " over " + text_of(r["n_modules"]) +
           " modules</title></rect>";
    }
    s += "\n";
    y += row;
  }
  return s + "</svg>\n";
}

std::string eval_section(const json& e) {
  std::string s = "<section id=\"eval\"><h2>Accuracy (eval)</h2>\n";
  s += table("eval-summary", {{"kl_mean", e.value("kl_mean", json())},
                              {"top1_agreement", e.value("top1_agreement", json())},
                              {"perplexity", e.value("perplexity", json())},
                              {"tokens", e.value("tokens", json())}});
  const json layers = e.value("layers", json::array());
  double worst = 0;
  for (const json& l : layers) {
    if (l["rel_l2"].is_number()) worst = std::max(worst, l["rel_l2"].get<double>());
  }
  s += "<h3>Per-layer relative L2 error</h3>\n<svg id=\"eval-layers\" "
       "xmlns=\"http://www.w3.org/2000/svg\" width=\"520\" height=\"" +
       std::to_string(10 + 16 * int(layers.size())) + "\" role=\"img\">\n";
  int y = 5;
  for (const json& l : layers) {
    const double v = l["rel_l2"].is_number() ? l["rel_l2"].get<double>() : 0;
    const double w = worst > 0 ? 360 * v / worst : 0;
    s += "<text x=\"0\" y=\"" + std::to_string(y + 11) + "\" font-size=\"10\">layer " +
         text_of(l["layer"]) + "</text><rect class=\"bar\" x=\"60\" y=\"" + std::to_string(y) +
         "\" width=\"" + num(w, 5) + "\" height=\"12\" fill=\"#ff7f0e\"/><text x=\"" +
         num(65 + w, 5) + "\" y=\"" + std::to_string(y + 11) + "\" font-size=\"10\">" + num(v) +
         "</text>\n";
    y += 16;
  }
  s += "</svg>\n<h3>Worst modules</h3>\n<table id=\"worst-modules\">\n"
       "<tr><th>module</th><th>rel_l2</th><th>tokens</th></tr>\n";
  // worst_modules names them; modules (sorted by error) has their numbers.
  const json modules = e.value("modules", json::array());
  for (const json& name : e.value("worst_modules", json::array())) {
    json found = {{"name", name}};
    for (const json& m : modules) {
      if (m.is_object() && m.value("name", json()) == name) found = m;
    }
    s += "<tr><td>" + escape(text_of(found.value("name", json()))) + "</td><td>" +
         escape(text_of(found.value("rel_l2", json()))) + "</td><td>" +
         escape(text_of(found.value("tokens", json()))) + "</td></tr>\n";
  }
  return s + "</table></section>\n";
}

// validate's verdict (`quantforge validate` merges it): PASS/FAIL and every check's counts.
std::string validate_section(const json& v) {
  const bool passed = v.value("passed", false);
  std::string s =
      "<section id=\"validate\"><h2>Validation</h2>\n<p id=\"validate-verdict\" "
      "style=\"font-weight:bold;color:" +
      std::string(passed ? "#1a7f37\">PASS" : "#cf222e\">FAIL") + "</p>\n<p>" +
      escape(text_of(v.value("summary", json()))) + "</p>\n";
  s += "<table id=\"validate-checks\"><tr><th>check</th><th>pass</th><th>fail</th><th>skip</th>"
       "<th>first failure / note</th></tr>\n";
  for (const json& c : v.value("checks", json::array())) {
    const std::string first = text_of(c.value("first_failure", json()));
    s += "<tr><td>" + escape(text_of(c.value("name", json()))) + "</td><td>" +
         escape(text_of(c.value("pass", json()))) + "</td><td>" +
         escape(text_of(c.value("fail", json()))) + "</td><td>" +
         escape(text_of(c.value("skip", json()))) + "</td><td>" +
         escape(first.empty() ? text_of(c.value("note", json())) : first) + "</td></tr>\n";
  }
  return s + "</table></section>\n";
}

}  // namespace

std::string quantization_report_html_path(const std::string& json_path) {
  const std::string ext = ".json";
  if (json_path.size() >= ext.size() &&
      json_path.compare(json_path.size() - ext.size(), ext.size(), ext) == 0) {
    return json_path.substr(0, json_path.size() - ext.size()) + ".html";
  }
  return json_path + ".html";
}

std::string quantization_report_html(const json& report) {
  const json q = report.value("quantize", json());
  const json e = report.value("eval", json());
  const std::string out = q.is_object() ? text_of(q.value("out", json())) : "";
  std::string h =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<title>quantforge report " +
      escape(out) +
      "</title>\n<style>"
      "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
      "margin-bottom:1em}th,td{border:1px solid #ccc;padding:2px 8px;text-align:left;"
      "font-size:13px}th{background:#f4f4f4}</style></head><body>\n"
      "<h1>quantforge quantization report</h1>\n<p id=\"out\">" +
      escape(out) + "</p>\n";
  if (q.is_object()) {
    json options = {{"tool", q.value("tool", json())},
                    {"mode", q.value("mode", json())},
                    {"source", q.value("source", json())},
                    {"world_size", q.value("world_size", json())},
                    {"targets", q.value("targets", json())},
                    {"n_uncalibrated_experts", q.value("n_uncalibrated_experts", json())},
                    {"options", q.value("options", json::object())}};
    h += "<section><h2>Options</h2>\n" + table("options", options) + "</section>\n";
    const json seconds = q.value("seconds", json::object());
    h += "<section><h2>Timings</h2>\n" + table("timings", seconds) + timings_chart(seconds) +
         "</section>\n";
    const json summary = q.value("calibration_summary", json::object());
    h += "<section><h2>Calibration tokens per expert</h2>\n" +
         heatmap(summary.value("expert_tokens", json::array()),
                 q.value("uncalibrated_experts", json::array())) +
         "</section>\n<section><h2>Input amax per layer</h2>\n" +
         amax_ranges(summary.value("input_amax", json::array())) + "</section>\n";
  }
  if (e.is_object()) h += eval_section(e);
  const json v = report.value("validate", json());
  if (v.is_object()) h += validate_section(v);
  return h + "</body></html>\n";
}

}  // namespace qf::pipeline
