// The `dequant` job: native mixed checkpoint (FP8 128x128 blocks, FP4 experts) -> BF16
// checkpoint, exact, on any number of ranks, bit-identical output for every rank count.
// Owns: output planning, the rank protocol, config/index rewriting. Does not own the
// arithmetic (block_dequantizer.hpp) or the pairing rules (native_tensors.hpp).
#pragma once
#include <cstdint>
#include <string>

#include "dist/communicator.hpp"
#include "dist/compute_backend.hpp"

namespace qf::dist {
class MpiEnv;
}

namespace qf::pipeline {

struct DequantOptions {
  std::string in_dir;
  std::string out_dir;
  dist::ComputeBackend backend = dist::ComputeBackend::kCpu;
  uint64_t chunk_bytes = 64ull << 20;  // source bytes converted per step (bounded memory)
  std::string progress_json;  // --progress-json: rank 0 appends its events there ("" = off)
};

struct DequantReport {
  uint64_t n_tensors_converted = 0;  // on this rank
  uint64_t n_tensors_copied = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  double seconds = 0;
};

// Collective over `comm` (host-buffer communicator): every rank calls it with the same options.
// Output layout: the same shard file names as the source, each holding the converted tensors
// of its source shard in source order (scale companions dropped), so the bytes do not depend
// on the rank count. Each rank converts and pwrites the tensors the ownership plan gives it.
DequantReport run_dequant(const DequantOptions& options, dist::Communicator& comm);

// `quantforge dequant` over every rank of `mpi` (dequant_world.cpp): options.backend from
// `backend` (each rank on GPU local_rank % count), run_dequant over a host communicator, then
// the totals over ranks on rank 0. Collective: every rank calls it with the same arguments.
void run_dequant_world(DequantOptions options, dist::BackendChoice backend,
                       const dist::MpiEnv& mpi);

}  // namespace qf::pipeline
