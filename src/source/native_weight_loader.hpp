// Source checkpoint tensors as the FP32 values the reference forward asks for: the one place
// that maps forward (transformers-style) names to native DeepSeek names, and that decodes a
// tensor's source bytes (FP8/FP4 block-scaled, BF16, F32, int) to FP32. Does not own: who reads
// or broadcasts the bytes (layer_weight_exchange) or the tensor classification (native_tensors).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/checkpoint_dir.hpp"
#include "model/layer_weights.hpp"
#include "source/native_tensors.hpp"

namespace qf::pipeline {

// Forward loader name -> native checkpoint name. The forward asks for the names transformers'
// save_pretrained writes (minus `model.`); the native checkpoint (DeepSeek release, make-tiny,
// dequant's BF16 output) differs only in:
//   embed_tokens.weight         -> embed.weight
//   hc_head.hc_fn/hc_base/hc_scale -> hc_head_fn / hc_head_base / hc_head_scale
//   layers.L.attn.norm.weight   -> layers.L.attn.kv_norm.weight
//   head.weight                 -> embed.weight when tie_word_embeddings
// Every other name is the same in both.
std::string native_weight_name(const std::string& forward_name, bool tie_word_embeddings);

// classify_native_tensors() keyed by name.
using NativeTensorIndex = std::map<std::string, NativeTensor>;
NativeTensorIndex index_native_tensors(const std::vector<NativeTensor>& tensors);

// Source bytes of one tensor as this module moves them: the stored bytes, then (block kinds)
// the `.scale` bytes, back to back.
uint64_t source_n_bytes(const NativeTensor& t);
// [n_rows, n_cols] for block kinds, the stored shape otherwise.
std::vector<int64_t> logical_shape(const NativeTensor& t);
std::vector<uint8_t> read_source_bytes(const formats::CheckpointDir& source, const NativeTensor& t);

// FP32 values of `t` from its source bytes (layout of read_source_bytes), row-major in the
// logical shape ([n_rows, n_cols] for block kinds, the stored shape otherwise), which must equal
// expected_shape. FP8/FP4: the BF16 of kernels/dequant.cuh's *_ref (what a BF16 checkpoint made
// by `dequant` holds), widened exactly; BF16/F32 exact; I32/I64 as exact float values.
// Throws naming the tensor for a shape mismatch, a byte count mismatch or an unsupported dtype.
std::vector<float> decode_source_tensor(const NativeTensor& t, const uint8_t* bytes,
                                        uint64_t n_bytes,
                                        const std::vector<int64_t>& expected_shape);

// Single-process loader: reads and decodes every tensor itself (tests, one-rank tools).
model::WeightLoader make_native_weight_loader(const formats::CheckpointDir& source,
                                              const NativeTensorIndex& tensors,
                                              bool tie_word_embeddings);

}  // namespace qf::pipeline
