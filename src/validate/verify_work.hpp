// Integrity of a quantize run's work directory: every rank store's manifest and every committed
// layer file against its recorded size and XXH64 (`validate --work`). Owns only that sweep.
#pragma once
#include <string>
#include <vector>

namespace qf::pipeline {

struct WorkCheck {
  int world_size = 0;
  int n_files = 0;                    // committed layer files verified
  std::vector<std::string> problems;  // one line each; empty when intact
};

// Opens WORK/rank-0 .. rank-(W-1) (W from rank 0's manifest) read-only and re-checksums every
// committed file. A missing or unreadable store is a problem line, not an exception.
WorkCheck verify_work_stores(const std::string& work_dir);

}  // namespace qf::pipeline
