// Quantizes the NVFP4 targets a rank owns in one layer into a "quant" LayerRecord: packed
// E2M1 codes, E4M3 block scales and weight_scale_2 per target (input_scale comes later, at
// export, from the calibration records). Owns: the per-source-format paths (lossless MXFP4
// cast for FP4 experts, or with --expert-weights requantize their exact BF16 dequant + ModelOpt
// NVFP4 like FP8/BF16 weights) and w1/w3 sharing.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "calibrate/layer_weight_exchange.hpp"
#include "core/parallel.hpp"
#include "formats/checkpoint_dir.hpp"
#include "formats/layer_record.hpp"
#include "gpu/nvfp4_ops.hpp"
#include "quantize/quantize_plan.hpp"

namespace qf::pipeline {

struct QuantizeStats {
  uint64_t n_targets = 0;
  uint64_t n_blocks_lossless = 0;  // 32-blocks cast bit-exactly (FP4 sources)
  uint64_t n_blocks_fallback = 0;  // 32-blocks outside the E4M3 window (data-derived scale)
  uint64_t n_blocks_moved = 0;     // --weight-scale search: 16-blocks whose scale is not max-mapped
  uint64_t bytes_read = 0;
};

// Record keys: tensors `<p>.weight` (U8), `<p>.weight_scale` (F8_E4M3), `<p>.weight_scale_2`
// (F32, 0-d); i64 `<p>.cast_blocks` = {lossless, fallback} for FP4 sources; with a
// --weight-scale other than max, i64 `<p>.weight_scale_search` = {weight_scale_2 candidate index
// (numerics/nvfp4_search.hpp), 16-blocks whose scale is not max-mapped, 1 if GPTQ ran} for each
// requantized target.
// plan.weight_scale gptq | hessian: `hessians` is this rank's hessian record of the layer
// (calibrate/hessian_recorder.hpp); a target it has no X^T X for (routed experts) falls back to
// mse. Other methods ignore it (may be null).
// The record is the same for any number of workers: targets in plan order, each computed by
// one worker alone. bytes_of (and the source's reads) are called from several workers at once.
// An error stops the other workers and is rethrown (the one of the earliest failing target).
formats::LayerRecord quantize_owned_targets(const QuantizePlan& plan,
                                            const formats::CheckpointDir& source, int layer,
                                            int rank, QuantizeStats* stats, gpu::Nvfp4OpsPool& ops,
                                            const formats::LayerRecord* hessians = nullptr);
// The same from bytes the caller already holds (the CUDA calibration's copy of the layer, so
// the source is read once); stats->bytes_read is left alone.
formats::LayerRecord quantize_owned_targets(const QuantizePlan& plan, const TensorBytes& bytes_of,
                                            int layer, int rank, QuantizeStats* stats,
                                            gpu::Nvfp4OpsPool& ops,
                                            const formats::LayerRecord* hessians = nullptr);

}  // namespace qf::pipeline
