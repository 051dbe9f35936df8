// Work store vs the export it wrote (see output_provenance.hpp).
#include "job/output_provenance.hpp"

#include "core/check.hpp"
#include "core/log.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checksum.hpp"
#include "formats/shard_digest.hpp"
#include "report/quantization_report.hpp"

namespace qf::pipeline {

void check_store_matches_output(const std::string& out_dir, const std::string& shard,
                                const std::string& work_dir, const std::string& store_digest) {
  const std::string sums_path = out_dir + "/" + formats::kChecksumsFileName;
  formats::ChecksumsManifest sums;
  try {
    sums = formats::parse_checksums_manifest(formats::read_json_file(sums_path), sums_path);
  } catch (const Error& e) {
    QF_FAIL("--shard", shard + ":", out_dir, "is not a complete quantforge export (", e.message(),
            "); export it whole (--export-only without --shard)");
  }
  QF_CHECK(sums.files.count(shard) > 0, "--shard", shard, ":", sums_path,
           "records no checksum for it; export", out_dir, "whole (--export-only without --shard)");
  const std::string report_path = quantization_report_path(out_dir);
  const nlohmann::json report = read_quantization_report(report_path);
  const nlohmann::json* recorded = nullptr;
  if (report.contains("quantize") && report["quantize"].is_object() &&
      report["quantize"].contains("store_provenance_xxh64") &&
      report["quantize"]["store_provenance_xxh64"].is_string()) {
    recorded = &report["quantize"]["store_provenance_xxh64"];
  }
  if (recorded == nullptr) {
    log_warn("--shard ", shard, ": ", report_path, " does not record which work store ", out_dir,
             " came from; the rebuilt shard must match the checksum ", sums_path,
             " records before it replaces anything");
    return;
  }
  QF_CHECK(recorded->get<std::string>() == store_digest, "--export-only --shard: the work store in",
           work_dir, "is not the one", out_dir, "was exported from (its provenance xxh64",
           store_digest + ",", report_path, "records", recorded->get<std::string>() + ");", out_dir,
           "was not changed. Give the --work and options of the run that wrote it, or "
           "export it whole with this store into a new --out");
}

}  // namespace qf::pipeline
