// Which output tensor is written by whom, from where: the unit of work the export and the output
// streamer share. Owns: the owner rule (a copied `.scale` belongs to its weight's owner) and
// the filters over the plan's output tensors. Does not own the writing.
#pragma once
#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "formats/checkpoint_dir.hpp"
#include "formats/layer_record.hpp"
#include "formats/posix_file.hpp"
#include "formats/source_derived.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

struct ExportJob {
  const OutputTensor* out;
  size_t shard;  // index into plan.shards
  int layer;     // the layer of the owning source tensor (NativeTensor::layer)
  int owner;     // the rank whose store holds a quantized `out` (and who writes it)
};

// NVFP4 outputs: their bytes come from a quant record, not from the source or the scales.
bool is_stored(const OutputTensor& out);
// Throws naming `out` unless the quant record's tensor has its dtype, shape and byte count.
void check_stored_matches(const OutputTensor& out, const formats::StoredTensor& stored);
// Record tensor -> where it may come from, for the NVFP4 weights and the FP4 experts' block
// scales a lossless cast may leave equal to their source under a derivation rule
// (formats/source_derived; --expert-weights cast only, where the FP4 source keeps its codes and
// its E8M0 scales set the block scales): the work store's candidates for derived tensors.
std::map<std::string, formats::DerivationCandidate> source_derivable_outputs(
    const QuantizePlan& plan);
// The source tensor whose owner writes `out` (a copied `.scale` belongs to its weight).
std::string owning_tensor(const QuantizePlan& plan, const OutputTensor& out);
// Every output tensor of the plan, in shard then layout order, for which keep() holds.
std::vector<ExportJob> export_jobs_where(const QuantizePlan& plan,
                                         const std::function<bool(const ExportJob&)>& keep);

// Copies unchanged source tensors into output files and returns the XXH64 of the bytes copied,
// for the checksums manifest, reading each source byte once: a tensor whose digest the job's
// reads already took (SafetensorsReader::known_digest) is copied in the kernel
// (formats::copy_file_bytes, a reflink where the filesystem can); any other goes through a
// buffer, hashed on the way, and its digest is noted as the source tensor's. Keeps the source
// files open. One thread at a time.
class SourceTensorCopier {
 public:
  explicit SourceTensorCopier(const formats::CheckpointDir& source) : source_(source) {}
  struct Result {
    uint64_t digest = 0;
    uint64_t n_bytes_in_kernel = 0;  // copied by copy_file_range itself (the rest: buffered)
  };
  Result copy(const std::string& source_name, const formats::FileDescriptor& to, uint64_t to_offset,
              uint64_t n_bytes);

 private:
  const formats::CheckpointDir& source_;
  std::map<std::string, formats::FileDescriptor> files_;  // source shard path -> fd
  std::vector<uint8_t> buffer_;                           // the hashed copies' chunks
};

}  // namespace qf::pipeline
