// The message of a stopped quantize run (see quantize_stop_message.hpp).
#include "job/quantize_stop_message.hpp"

#include <algorithm>

#include "formats/rank_store.hpp"
#include "formats/staged_output.hpp"

namespace qf::pipeline {

std::string stopped_message(const QuantizeOptions& options, QuantizePhase phase,
                            const Interrupted& e) {
  std::string text = "quantize: " + e.message() + ". ";
  if (phase == QuantizePhase::kChecks) {
    return text + "Nothing was created; run the same command again.";
  }
  if (!options.shard.empty()) {
    return text + options.out_dir + " is unchanged; run the same command again.";
  }
  const int n_files = formats::RankStore::n_committed(options.work_dir, 0);
  if (options.export_only) {
    text += "The stores in " + options.work_dir + " are unchanged";
  } else {
    text += "Kept: every committed layer in " + options.work_dir +
            " (rank 0: " + std::to_string(std::max(n_files, 0)) +
            " layer file(s); commits in flight finished)";
  }
  text += "; " + options.out_dir + " was not written";
  if (phase == QuantizePhase::kExport) {
    text += " (" + formats::StagedOutput::staging_dir_for(options.out_dir) + " removed)";
  }
  text += ". ";
  if (options.export_only) return text + "Run the same command again.";
  return text + (phase == QuantizePhase::kExport
                     ? "Every layer is committed: write the output with the same command and "
                       "--resume (or --export-only)."
                     : "Continue with the same command and --resume.");
}

}  // namespace qf::pipeline
