// WORK/job.json (see job_record.hpp).
#include "job/job_record.hpp"

#include <unistd.h>

#include <filesystem>

#include "core/check.hpp"
#include "core/log.hpp"
#include "formats/atomic_file.hpp"
#include "formats/rank_store_manifest.hpp"

namespace qf::pipeline {
namespace {

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "?";
  return name;
}

}  // namespace

std::string job_record_path(const std::string& work_dir) { return work_dir + "/job.json"; }

nlohmann::json read_job_record(const std::string& work_dir, std::string* error) {
  const std::string path = job_record_path(work_dir);
  std::error_code exists_error;
  if (!std::filesystem::exists(path, exists_error)) {
    if (error) *error = "no " + path;
    return nullptr;
  }
  try {
    nlohmann::json doc = formats::read_json_file(path);
    if (doc.is_object() && doc.value("format", "") == kJobRecordFormat &&
        doc.value("format_version", 0) >= 1) {
      return doc;
    }
    if (error) *error = path + ": not a " + kJobRecordFormat + " record";
  } catch (const Error& e) {
    if (error) *error = e.message();
  }
  return nullptr;
}

void JobRecord::start(const std::string& work_dir, nlohmann::json fields) {
  path_ = job_record_path(work_dir);
  doc_ = std::move(fields);
  const std::string now = formats::utc_timestamp_now();
  doc_["format"] = kJobRecordFormat;
  doc_["format_version"] = kJobRecordFormatVersion;
  doc_["pid"] = static_cast<int64_t>(::getpid());
  doc_["host"] = host_name();
  doc_["started"] = now;
  doc_["phase"] = "startup";
  doc_["phase_since"] = now;
  doc_["phases"] =
      nlohmann::json::array({{{"phase", "startup"}, {"started", now}, {"ended", nullptr}}});
  doc_["status"] = "running";
  doc_["finished"] = nullptr;
  doc_["message"] = nullptr;
  write();
}

void JobRecord::phase(const std::string& phase) {
  if (!started() || doc_.value("phase", "") == phase) return;
  const std::string now = formats::utc_timestamp_now();
  nlohmann::json& phases = doc_["phases"];
  if (!phases.empty()) phases.back()["ended"] = now;
  phases.push_back({{"phase", phase}, {"started", now}, {"ended", nullptr}});
  doc_["phase"] = phase;
  doc_["phase_since"] = now;
  write();
}

void JobRecord::finish(bool ok, const std::string& message) {
  if (!started()) return;
  if (ok) phase("done");
  const std::string now = formats::utc_timestamp_now();
  nlohmann::json& phases = doc_["phases"];
  if (!ok && !phases.empty()) phases.back()["ended"] = now;
  doc_["status"] = ok ? "ok" : "failed";
  doc_["finished"] = now;
  doc_["message"] = ok ? nlohmann::json() : nlohmann::json(message);
  write();
}

void JobRecord::write() {
  try {
    formats::write_file_atomic(
        path_, doc_.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  } catch (const std::exception& e) {
    if (!warned_)
      log_warn(path_, ": cannot write the job record (", e.what(),
               "); `quantforge status` will know less about this run");
    warned_ = true;
  }
}

}  // namespace qf::pipeline
