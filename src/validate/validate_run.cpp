// run_validate: the checks, the report on stdout and in JSON, the work stores (see validate.hpp).
#include <filesystem>
#include <ostream>

#include "core/check.hpp"
#include "formats/atomic_file.hpp"
#include "formats/path_overlap.hpp"
#include "report/quantization_report.hpp"
#include "validate/validate.hpp"
#include "validate/verify_work.hpp"
#include "validate/work_provenance.hpp"

namespace qf::pipeline {
namespace {

// The verdict as the report's "validate" section: what the page and the text show.
nlohmann::json validate_section(const ValidateReport& report, const ValidateRunOptions& options,
                                bool work_ok) {
  nlohmann::json checks = nlohmann::json::array();
  for (const CheckResult& c : report.checks) {
    checks.push_back({{"name", c.name},
                      {"pass", c.n_pass},
                      {"fail", c.n_fail},
                      {"skip", c.n_skip},
                      {"note", c.note},
                      {"first_failure", c.failures.empty() ? "" : c.failures.front()}});
  }
  return {{"passed", report.passed() && work_ok},
          {"summary", report.summary()},
          {"work_stores", options.work_dir.empty() ? "not checked"
                          : work_ok                ? "ok"
                                                   : "PROBLEMS"},
          {"checks", checks},
          {"seconds", report.seconds}};
}

// The report the verdict goes into, or "" for none (validate.hpp, ValidateRunOptions).
std::string report_to_update(const ValidateRunOptions& options) {
  if (options.no_report) return "";
  if (!options.report_path.empty()) return options.report_path;
  const std::string beside = quantization_report_path(options.checks.out_dir);
  std::error_code error;
  return std::filesystem::is_regular_file(beside, error) ? beside : "";
}

}  // namespace

void run_validate(const ValidateRunOptions& options, std::ostream& out) {
  const ValidateOptions& checks = options.checks;
  QF_CHECK(checks.max_listed_failures >= 0, "--failures must be >= 0, got",
           checks.max_listed_failures);
  // The JSON report is a file of its own: never inside what is being checked.
  for (const formats::NamedPath& checked : {formats::NamedPath{"--out", checks.out_dir},
                                            formats::NamedPath{"--source", checks.source_dir},
                                            formats::NamedPath{"--work", options.work_dir}}) {
    formats::check_not_inside({"--json", options.json_path}, checked,
                              "validate would add a file to what it checks");
    formats::check_not_inside({"--report", options.report_path}, checked,
                              "validate would add a file to what it checks");
  }
  // A store from another run would vouch for nothing: refused before any check (defect 12).
  if (!options.work_dir.empty()) {
    check_work_matches_export(checks.source_dir, checks.out_dir, options.work_dir);
  }
  const ValidateReport report = validate_export(checks);
  print_validate_report(report, out, options.max_tensors, checks.max_listed_failures);
  out.flush();
  if (!options.json_path.empty()) {
    formats::write_file_atomic(options.json_path, report.to_json().dump(2) + "\n");
  }
  bool work_ok = true;
  if (!options.work_dir.empty()) {
    const WorkCheck work = verify_work_stores(options.work_dir);
    work_ok = work.problems.empty();
    out << "work stores " << options.work_dir << ": " << work.world_size << " rank(s), "
        << work.n_files << " committed files, " << (work_ok ? "all checksums match" : "PROBLEMS:")
        << "\n";
    for (const auto& line : work.problems) out << "  " << line << "\n";
    if (work_ok) {
      const WorkScalesCheck scales =
          check_input_scales_against_work(checks.source_dir, checks.out_dir, options.work_dir);
      work_ok = scales.problems.empty();
      out << "input scales vs the work store's calibration: " << scales.n_checked << " compared, "
          << (work_ok ? "all equal" : "PROBLEMS:") << "\n";
      for (const auto& line : scales.problems) out << "  " << line << "\n";
    }
    out.flush();
  }
  const std::string report_path = report_to_update(options);
  if (!report_path.empty()) {
    nlohmann::json doc = read_quantization_report(report_path);
    doc["validate"] = validate_section(report, options, work_ok);
    write_quantization_report(report_path, doc);
    out << "verdict merged into " << report_path << "\n";
  }
  if (!report.passed()) QF_FAIL(report.summary());
  QF_CHECK(work_ok, "validate: the work stores in", options.work_dir,
           "are damaged or disagree with the output (listed above)");
}

}  // namespace qf::pipeline
