// Arithmetic cost of the calibration forward: FLOPs (2 per multiply-add) per token of one
// decoder layer, from the config alone. Used to turn measured token-layers/s into TFLOP/s
// (bench, quantize summary) and back into a projected calibration time (plan).
// Does not own: the forward itself; counts follow model::decoder_layer_forward's work.
#pragma once
#include <cstdint>

#include "model/config.hpp"

namespace qf::model {

struct LayerFlops {
  double linears = 0;    // every projection a token goes through (routed: top-k experts)
  double experts = 0;    // of `linears`: routed + shared expert MLPs
  double attention = 0;  // q.k and p.v over the window and the visible compressed entries,
                         // plus the indexer's scores (CSA); averaged over positions 0..L-1
  double total() const { return linears + attention; }
};

// Per token of regular layer `layer` for sequences of seq_len tokens.
LayerFlops layer_flops_per_token(const ModelConfig& config, int layer, int64_t seq_len);

// Sum over the regular layers (a token through the whole model, calibration never runs MTP).
double model_flops_per_token(const ModelConfig& config, int64_t seq_len);

}  // namespace qf::model
