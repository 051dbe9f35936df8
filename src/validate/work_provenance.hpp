// `validate --work` beyond the stores' own checksums (issue 18 defect 12): the work store must
// be the one the export came from, and every input_scale in OUT must be the one its calibration
// records give (without quantforge_checksums.json, nothing else can tell an unpaired module's
// input_scale was changed). Owns those two checks. Does not own the store sweep (verify_work).
#pragma once
#include <string>
#include <vector>

namespace qf::pipeline {

// Throws qf::Error naming --work and the first difference when rank 0's store in `work_dir`
// belongs to another run: another source (its shard headers or config.json) or, when OUT's
// quantization report records one, another store provenance.
void check_work_matches_export(const std::string& source_dir, const std::string& out_dir,
                               const std::string& work_dir);

struct WorkScalesCheck {
  int n_checked = 0;                  // input_scale tensors compared
  std::vector<std::string> problems;  // one line each; empty when every one matches
};

// Recomputes every target's input_scale from rank 0's calibration records (with the run's
// recipe, expert-weights mode and act-scale method, from the store's provenance) and compares
// each bit for bit with OUT's `<module>.input_scale`. A missing record or tensor is a problem.
WorkScalesCheck check_input_scales_against_work(const std::string& source_dir,
                                                const std::string& out_dir,
                                                const std::string& work_dir);

}  // namespace qf::pipeline
