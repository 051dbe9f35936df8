// The export streamed beside the job (issue 19): as soon as a layer's NVFP4 record is committed
// to a rank's store, that rank pwrites the layer's outputs it owns (the NVFP4 tensors from the
// record in memory, the copied tensors straight from the source file by copy_file_range) into
// the staged output's presized shards, and starts their writeback. With the first layer, a
// background thread also copies the rank's tensors outside every layer (embedding, head, final
// norms), which need no calibration. The export at the end of the job then writes only what
// nothing streamed: input scales (known once every layer is calibrated), the MTP layers, and
// layers committed by an earlier run (--resume: an earlier process's staging is never trusted,
// it is made anew).
// Owns: the open files of one rank and the set of layers streamed. Does not own the staging
// protocol (formats::StagedOutput) or who writes which tensor (export_jobs).
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "export/export_jobs.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/layer_record.hpp"
#include "formats/posix_file.hpp"
#include "formats/staged_output.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

// Rank 0, once it holds the output (before any rank streams): a fresh staging directory with
// every output shard created at its final size, header written (the export's first step).
void prepare_staged_output(const QuantizePlan& plan, formats::StagedOutput& staged);

class OutputStreamer {
 public:
  struct Stats {
    uint64_t n_layers = 0;
    uint64_t bytes_written = 0;           // NVFP4 bytes pwritten + copied bytes
    uint64_t bytes_copied_in_kernel = 0;  // of the copied bytes, by copy_file_range
    double seconds = 0;
  };

  // `staging_dir`: the directory prepare_staged_output made (any rank may stream into it).
  // plan and source outlive the streamer.
  OutputStreamer(const QuantizePlan& plan, const formats::CheckpointDir& source,
                 std::string staging_dir, int rank);
  // Stops the background copy after the tensor in flight and joins it.
  ~OutputStreamer();
  OutputStreamer(const OutputStreamer&) = delete;
  OutputStreamer& operator=(const OutputStreamer&) = delete;

  // Writes this rank's outputs of quant.layer (its NVFP4 tensors must all be in `quant`, the
  // layer's stage "quant" record), hashing each tensor as it goes. One caller at a time (the
  // store committer's worker); errors name the tensor and file.
  void write_layer(const formats::LayerRecord& quant);
  // Waits for the background copy of the tensors outside the layers (started by the first
  // write_layer, else now); rethrows its error (naming the tensor). Before the export.
  void finish_outside_layers();
  // Layers write_layer finished (from any thread); -1: the tensors outside the layers, once
  // finish_outside_layers returned.
  bool streamed(int layer) const;
  Stats stats() const;
  // XXH64 of every output tensor written so far, by name (the checksums manifest's parts).
  std::map<std::string, uint64_t> tensor_digests() const;
  // fsyncs and closes every output file written (before the shard checksums). Call once, after
  // the last write_layer.
  void finish();

 private:
  const formats::FileDescriptor& output_file(size_t shard);
  void start_outside_layers();
  void copy_outside_layers();  // the background thread's work

  const QuantizePlan& plan_;
  const std::string staging_dir_;
  std::map<int, std::vector<ExportJob>> jobs_by_layer_;  // this rank's streamable outputs
  std::map<size_t, formats::FileDescriptor> output_files_;
  SourceTensorCopier copier_;
  // The tensors outside the layers: copied by their own thread, with their own files and
  // copier (write_layer's are not shared across threads).
  std::vector<ExportJob> outside_jobs_;
  SourceTensorCopier outside_copier_;
  std::thread outside_thread_;
  bool outside_started_ = false;  // write_layer's thread, then finish_outside_layers' (joined)
  std::atomic<bool> stopping_{false};
  std::exception_ptr outside_error_;  // set by the thread, read after the join
  mutable std::mutex mutex_;          // streamed_, stats_ and digests_
  std::set<int> streamed_;
  Stats stats_;
  std::map<std::string, uint64_t> digests_;
};

}  // namespace qf::pipeline
