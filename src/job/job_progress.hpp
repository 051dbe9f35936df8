// What the quantize job tells the people and scripts operating it, besides its log: the job
// record (WORK/job.json, job_record.hpp) and the progress stream (--progress-json,
// core/progress_stream.hpp) with its phases and every rank's layer commits. Owns: those calls
// and the exchange that brings other ranks' commits to rank 0. Does not own the phases.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dist/communicator.hpp"
#include "formats/store_committer.hpp"
#include "job/job_record.hpp"

namespace qf::pipeline {

struct QuantizeOptions;

class JobProgress {
 public:
  JobProgress(const QuantizeOptions& options, dist::Communicator& comm);

  // Rank 0, once this invocation owns the work directory (its rank store is locked, or opened
  // for --export-only): writes WORK/job.json. The "start" event is emitted at construction.
  void own_work_dir(int n_layers);
  // Every rank may call it; rank 0 records and emits the phase change.
  void phase(const std::string& phase);
  // Local: takes the commits `store` finished since the last call into this rank's pending list.
  void collect(formats::StoreCommitter& store);
  // Local, rank 0: emits rank 0's pending commits now (phases without a collective per layer).
  void emit_own();
  // Collective (every rank at the same point, after a step every rank passed): every rank's
  // pending commits reach rank 0, which emits them in rank order.
  void exchange();
  // Rank 0: the "end" event and the record's final status.
  void finish(bool ok, const std::string& message, double seconds);

  // Options as the quantization report and job.json name them (shared with the report).
  static nlohmann::json options_json(const QuantizeOptions& options);

 private:
  struct Commit {   // the wire format of exchange(): plain bytes
    int32_t stage;  // 0 calib, 1 quant
    int32_t layer;
    uint64_t n_bytes;
    double seconds;
    double unix_time;
  };
  void emit(int rank, const Commit& commit) const;

  const QuantizeOptions& options_;
  dist::Communicator& comm_;
  JobRecord record_;
  std::vector<Commit> pending_;
};

}  // namespace qf::pipeline
