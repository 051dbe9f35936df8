// Quantizes the NVFP4 targets a rank owns in one layer into a "quant" LayerRecord: packed
// E2M1 codes, E4M3 block scales and weight_scale_2 per target (input_scale comes later, at
// export, from the calibration records). Owns: the per-source-format paths (lossless MXFP4
// cast for FP4 experts; exact dequant + ModelOpt NVFP4 for FP8/BF16) and w1/w3 sharing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/parallel.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/layer_record.hpp"
#include "kernels/dequant.cuh"
#include "kernels/nvfp4_quantize.cuh"
#include "dist/compute_backend.hpp"
#include "calibrate/layer_weight_exchange.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

struct QuantizeStats {
  uint64_t n_targets = 0;
  uint64_t n_blocks_lossless = 0;  // 32-blocks cast bit-exactly (FP4 sources)
  uint64_t n_blocks_fallback = 0;  // 32-blocks outside the E4M3 window (data-derived scale)
  uint64_t bytes_read = 0;
};

// The kernel calls quantize_owned_targets makes, all on HOST buffers (params as in
// kernels/*.cuh): the CPU references, or the CUDA kernels with the inputs copied in and the
// outputs copied back (bit-identical to the references; tests/kernels check that).
class Nvfp4Ops {
 public:
  virtual ~Nvfp4Ops() = default;
  virtual void fp8_block_dequant(const kernels::Fp8BlockDequantParams& p) = 0;
  virtual void nvfp4_amax(const kernels::Nvfp4AmaxParams& p) = 0;
  virtual void nvfp4_quantize(const kernels::Nvfp4QuantizeParams& p) = 0;
  virtual void mxfp4_e8m0_max(const kernels::Mxfp4E8m0MaxParams& p) = 0;
  virtual void mxfp4_to_nvfp4(const kernels::Mxfp4ToNvfp4Params& p) = 0;
};
// kCpu: the references. kCuda: the current device (CUDA builds; throws otherwise). A CUDA
// Nvfp4Ops remembers that device and may then be used from any thread.
std::unique_ptr<Nvfp4Ops> make_nvfp4_ops(Backend backend);

// One Nvfp4Ops per worker of quantize_owned_targets: the targets of a layer are independent,
// so workers quantize them concurrently (CUDA: one stream and scratch each, so one worker's
// copies overlap another's kernels and host work). n_workers <= 0: the default for the backend
// (CPU: thread_count(); CUDA: up to 8).
class Nvfp4OpsPool {
 public:
  explicit Nvfp4OpsPool(Backend backend, int n_workers = 0);
  int size() const { return static_cast<int>(ops_.size()); }
  Nvfp4Ops& at(int worker) { return *ops_.at(static_cast<size_t>(worker)); }

 private:
  std::vector<std::unique_ptr<Nvfp4Ops>> ops_;
};

// Record keys: tensors `<p>.weight` (U8), `<p>.weight_scale` (F8_E4M3), `<p>.weight_scale_2`
// (F32, 0-d); i64 `<p>.cast_blocks` = {lossless, fallback} for FP4 sources.
// The record is the same for any number of workers: targets in plan order, each computed by
// one worker alone. bytes_of (and the source's reads) are called from several workers at once.
// An error stops the other workers and is rethrown (the one of the earliest failing target).
formats::LayerRecord quantize_owned_targets(const QuantizePlan& plan,
                                            const formats::CheckpointDir& source, int layer,
                                            int rank, QuantizeStats* stats, Nvfp4OpsPool& ops);
// The same from bytes the caller already holds (the CUDA calibration's copy of the layer, so
// the source is read once); stats->bytes_read is left alone.
formats::LayerRecord quantize_owned_targets(const QuantizePlan& plan, const TensorBytes& bytes_of,
                                            int layer, int rank, QuantizeStats* stats,
                                            Nvfp4OpsPool& ops);

}  // namespace qf::pipeline
