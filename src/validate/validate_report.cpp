// ValidateReport: verdict, one-line summary, JSON form and the fixed-width tables `validate`
// prints on stdout (checks with counts, first failures, per-tensor accuracy).
// Does not run any check (validate*.cpp).
#include <algorithm>
#include <cstdio>

#include "core/check.hpp"
#include "core/strings.hpp"
#include "validate/validate.hpp"

namespace qf::pipeline {
namespace {

std::string fixed(const char* format, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), format, value);
  return text;
}

std::string pad(const std::string& text, size_t width, bool right = false) {
  if (text.size() >= width) return text;
  const std::string space(width - text.size(), ' ');
  return right ? space + text : text + space;
}

}  // namespace

bool ValidateReport::passed() const {
  return std::all_of(checks.begin(), checks.end(), [](const CheckResult& c) { return c.passed(); });
}

const CheckResult& ValidateReport::check(const std::string& name) const {
  for (const auto& c : checks) {
    if (c.name == name) return c;
  }
  QF_FAIL("validate report has no check named", name);
}

std::vector<std::string> ValidateReport::failed_checks() const {
  std::vector<std::string> out;
  for (const auto& c : checks) {
    if (!c.passed()) out.push_back(c.name);
  }
  return out;
}

std::string ValidateReport::summary() const {
  const auto failed = failed_checks();
  std::string text = "validate " + out_dir + " against " + source_dir + " (recipe " + recipe +
                     (expert_weights.empty() ? "" : ", expert weights " + expert_weights) + "): ";
  if (failed.empty()) return text + "PASS, " + std::to_string(checks.size()) + " checks";
  text += "FAIL, " + std::to_string(failed.size()) + " of " + std::to_string(checks.size()) +
          " checks failed:";
  for (const auto& name : failed)
    text += " " + name + " (" + std::to_string(check(name).n_fail) + ")";
  return text;
}

nlohmann::json ValidateReport::to_json() const {
  nlohmann::json out = {{"source", source_dir},
                        {"out", out_dir},
                        {"recipe", recipe},
                        {"expert_weights", expert_weights},
                        {"passed", passed()},
                        {"seconds", seconds},
                        {"checks", nlohmann::json::array()},
                        {"tensors", nlohmann::json::array()}};
  for (const auto& c : checks) {
    out["checks"].push_back({{"name", c.name},
                             {"description", c.description},
                             {"pass", c.n_pass},
                             {"fail", c.n_fail},
                             {"skip", c.n_skip},
                             {"note", c.note},
                             {"failures", c.failures}});
  }
  for (const auto& t : tensors) {
    out["tensors"].push_back({{"name", t.name},
                              {"source", t.source},
                              {"n_elems", t.n_elems},
                              {"worst_rel", t.worst_rel},
                              {"mean_rel", t.mean_rel},
                              {"worst_bound_ratio", t.worst_bound_ratio},
                              {"n_out_of_bound", t.n_out_of_bound},
                              {"n_scale_too_small", t.n_scale_too_small},
                              {"n_lossless_blocks", t.n_lossless_blocks},
                              {"n_exact_blocks", t.n_exact_blocks},
                              {"source_amax", t.source_amax},
                              {"weight_scale_2", t.weight_scale_2},
                              {"input_scale", t.input_scale}});
  }
  return out;
}

void print_validate_report(const ValidateReport& report, std::ostream& out, size_t max_tensors,
                           int max_listed_failures) {
  out << "validate: " << report.out_dir << " against " << report.source_dir << " (recipe "
      << report.recipe
      << (report.expert_weights.empty() ? "" : ", expert weights " + report.expert_weights) << "), "
      << fixed("%.1f", report.seconds) << " s\n\n";
  out << pad("check", 16) << pad("pass", 9, true) << pad("fail", 9, true) << pad("skip", 9, true)
      << "  result  rule\n";
  for (const auto& c : report.checks) {
    const char* verdict = !c.passed() ? "FAIL" : (c.n_pass == 0 ? "-" : "ok");
    out << pad(c.name, 16) << pad(std::to_string(c.n_pass), 9, true)
        << pad(std::to_string(c.n_fail), 9, true) << pad(std::to_string(c.n_skip), 9, true) << "  "
        << pad(verdict, 6) << "  " << c.description << (c.note.empty() ? "" : " [" + c.note + "]")
        << "\n";
  }

  bool any_failure = false;
  for (const auto& c : report.checks) {
    if (c.passed()) continue;
    if (!any_failure) out << "\nfailures (first " << max_listed_failures << " per check):\n";
    any_failure = true;
    for (const auto& f : c.failures) {
      out << "  [" << c.name << "] " << escape_nonprintable(f, /*keep_line_breaks=*/true) << "\n";
    }
    if (c.n_fail > c.failures.size()) {
      out << "  [" << c.name << "] ... and " << (c.n_fail - c.failures.size()) << " more\n";
    }
  }

  if (!report.tensors.empty()) {
    // Totals, then the worst tensors by bound ratio (the one number that says "how close").
    double worst = 0, mean = 0;
    uint64_t n_elems = 0, n_lossless = 0, n_exact = 0;
    const TensorAccuracy* worst_tensor = &report.tensors.front();
    for (const auto& t : report.tensors) {
      if (t.worst_rel > worst) {
        worst = t.worst_rel;
        worst_tensor = &t;
      }
      mean += t.mean_rel * double(t.n_elems);
      n_elems += t.n_elems;
      n_lossless += t.n_lossless_blocks;
      n_exact += t.n_exact_blocks;
    }
    out << "\nNVFP4 accuracy: " << report.tensors.size() << " tensors, worst relative error "
        << fixed("%.4g", worst) << " (" << worst_tensor->name << "), mean "
        << fixed("%.4g", n_elems ? mean / double(n_elems) : 0.0) << "; lossless-cast blocks exact "
        << n_exact << "/" << n_lossless << "\n"
        << "(relative error = |decoded - source| / amax of the source's 16-element block; "
           "err/bound <= 1 passes)\n";
    std::vector<const TensorAccuracy*> order;
    for (const auto& t : report.tensors) order.push_back(&t);
    std::stable_sort(order.begin(), order.end(),
                     [](const TensorAccuracy* a, const TensorAccuracy* b) {
                       return a->worst_bound_ratio > b->worst_bound_ratio;
                     });
    if (max_tensors > 0 && order.size() > max_tensors) order.resize(max_tensors);
    size_t name_width = 6;
    for (const auto* t : order) name_width = std::max(name_width, t->name.size());
    out << pad("tensor", name_width + 2) << pad("src", 5) << pad("elems", 11, true)
        << pad("worst_rel", 11, true) << pad("mean_rel", 11, true) << pad("err/bound", 11, true)
        << pad("lossless", 16, true) << pad("scale_2", 13, true) << pad("input_scale", 13, true)
        << "\n";
    for (const auto* t : order) {
      const std::string lossless = t->source == "FP4" ? std::to_string(t->n_exact_blocks) + "/" +
                                                            std::to_string(t->n_lossless_blocks)
                                                      : "-";
      out << pad(t->name, name_width + 2) << pad(t->source, 5)
          << pad(std::to_string(t->n_elems), 11, true) << pad(fixed("%.4g", t->worst_rel), 11, true)
          << pad(fixed("%.4g", t->mean_rel), 11, true)
          << pad(fixed("%.4g", t->worst_bound_ratio), 11, true) << pad(lossless, 16, true)
          << pad(fixed("%.6g", t->weight_scale_2), 13, true)
          << pad(fixed("%.6g", t->input_scale), 13, true) << "\n";
    }
    if (order.size() < report.tensors.size()) {
      out << "(" << report.tensors.size() - order.size()
          << " more tensors; --tensors 0 lists all, --json writes every one)\n";
    }
  }
  out << "\n" << report.summary() << "\n";
}

}  // namespace qf::pipeline
