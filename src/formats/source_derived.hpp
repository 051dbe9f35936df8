// Stored tensors the source already holds (issue 19): a lossless MXFP4 -> NVFP4 cast keeps every
// E2M1 code of the source except -0, so an expert's packed NVFP4 weight is its source tensor with
// one nibble rule applied, and its block scales are the source's E8M0 scales under one shift.
// The work store records the rule, the source tensor and the XXH64 of the result instead of the
// bytes (all but ~1.5 MB of the 3.6 GB a V4-Flash layer stores); a rebuild from the store reads
// the source and checks the XXH64. Owns: the rules' byte transforms, the decision (compare
// against the source) and the rebuild. Does not own: which tensors are candidates (the quantize
// plan), the layer file's attributes (layer_file).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "formats/checkpoint_dir.hpp"
#include "formats/layer_record.hpp"

namespace qf::formats {

// Derived bytes per source byte: 2 for the block-scale rule, else 1.
int derivation_expansion(DerivationRule rule);

// `rule` (with `shift` where it takes one) applied to n_in source bytes, written to `out`
// (derivation_expansion(rule) * n_in bytes; out == in is fine for expansion 1). Any split of the
// source into pieces gives the same result: every rule works byte by byte.
void apply_derivation_rule(DerivationRule rule, int32_t shift, const uint8_t* in, size_t n_in,
                           uint8_t* out);

// Where a record tensor may come from: the source tensor, and for block scales the record's FP32
// scalar (weight_scale_2 = 2^shift) that gives the block-scale rule its shift ("" elsewhere).
struct DerivationCandidate {
  std::string source;
  std::string shift_from;
};

// For each tensor of `record` named in `candidates`, compares its bytes with each rule its byte
// count allows applied to the source tensor, read in pieces (from the page cache when the job
// has just read it); the first rule that matches marks the tensor derived, with the XXH64 of its
// bytes. The bytes stay in memory. Tensors already derived, missing from the source, of a byte
// count no rule gives, or whose shift_from is not an exact power of two are left alone. Returns
// the bytes marked.
uint64_t mark_source_derived(LayerRecord& record, const CheckpointDir& source,
                             const std::map<std::string, DerivationCandidate>& candidates);

// Rebuilds the bytes of every derived tensor of `record` without bytes (read back from a store):
// reads the source tensor, applies the rule and checks the byte count and the XXH64. Throws naming
// `label` (the layer file), the tensor, the source tensor and its file when they differ: the
// source changed since the layer was committed.
void materialize_source_derived(LayerRecord& record, const CheckpointDir& source,
                                const std::string& label);

}  // namespace qf::formats
