// The limits every config.json value is checked against before anything is sized from it (the
// one table of them). Owns: the numbers and why. Does not own: the checks (config_validate.cpp)
// or the defaults (ModelConfig's member initializers, config.hpp).
#pragma once
#include <cstdint>

namespace qf::model::limits {

// An integer field's accepted range, both ends included.
struct IntRange {
  int64_t min, max;
};
// A real field's accepted range; `min_open` excludes min itself (a value must exceed it).
struct RealRange {
  double min, max;
  bool min_open;
};

// Every maximum leaves at least 16x headroom over the largest released model, DeepSeek-V4-Pro
// (61 layers + 1 MTP, 384 experts, hidden 7168, 128 heads x 512, q_lora_rank 1536, o_groups 16 x
// o_lora_rank 1024, moe_intermediate_size 3072, vocab 129280, 1M positions). The point is not
// to police architecture choices but to refuse a value (a typo, a corrupted or hostile file)
// that would size an allocation or a loop far beyond any real model: 2^31-1 experts used to be
// OOM-killed at 24 GB, 2^31-1 Sinkhorn iterations ran for minutes.
// clang-format off
// Integer fields: {min, max}                                           // V4-Pro headroom
inline constexpr IntRange kVocabSize{1, int64_t{1} << 22};              // 129280   32x
inline constexpr IntRange kHiddenSize{1, int64_t{1} << 17};             // 7168     18x
inline constexpr IntRange kNumHiddenLayers{1, 1024};                    // 61       16x
inline constexpr IntRange kNumNextnPredictLayers{0, 64};                // 1        64x
inline constexpr IntRange kNumAttentionHeads{1, 4096};                  // 128      32x
inline constexpr IntRange kNumKeyValueHeads{1, 1};                      // 1 (MQA)
inline constexpr IntRange kHeadDim{1, 16384};                           // 512      32x
inline constexpr IntRange kQLoraRank{1, 65536};                         // 1536     42x
inline constexpr IntRange kRopeHeadDim{1, 16384};                       // 64 (even, <= head_dim)
inline constexpr IntRange kOGroups{1, 1024};                            // 16       64x
inline constexpr IntRange kOLoraRank{1, 65536};                         // 1024     64x
inline constexpr IntRange kIndexNHeads{1, 4096};                        // 64       64x
inline constexpr IntRange kIndexHeadDim{1, 16384};                      // 128     128x
inline constexpr IntRange kIndexTopk{1, 65536};                         // 1024     64x
inline constexpr IntRange kNRoutedExperts{1, 65536};                    // 384     170x
inline constexpr IntRange kNSharedExperts{1, 1};                        // 1 (model.py asserts it)
inline constexpr IntRange kNumExpertsPerTok{1, 1024};                   // 6 (<= n_routed_experts)
inline constexpr IntRange kMoeIntermediateSize{1, int64_t{1} << 17};    // 3072     42x
inline constexpr IntRange kNumHashLayers{0, 1024};                      // 3 (<= num_hidden_layers)
inline constexpr IntRange kHcMult{1, 64};                               // 4        16x
inline constexpr IntRange kHcSinkhornIters{1, 1024};                    // 20       51x
inline constexpr IntRange kSlidingWindow{1, int64_t{1} << 20};          // 128    8192x
inline constexpr IntRange kMaxPositionEmbeddings{1, int64_t{1} << 26};  // 1048576  64x
inline constexpr IntRange kCompressRate{1, 4096};                       // 4, 128   32x
// Real fields: {min, max, min excluded}
inline constexpr RealRange kRopeTheta{1.0, 1e12, true};                 // 1e4, 1.6e5 (log taken)
inline constexpr RealRange kRopeFactor{0.0, 65536.0, true};             // 16
inline constexpr RealRange kRopeBeta{0.0, 65536.0, true};               // 32, 1 (0 = default)
inline constexpr RealRange kRopeAttentionFactor{0.0, 1000.0, true};     // 1
inline constexpr RealRange kRopeMscale{0.0, 1000.0, false};             // 0
inline constexpr RealRange kPartialRotaryFactor{0.0, 1.0, true};        // 0.125
inline constexpr RealRange kRoutedScalingFactor{0.0, 1e4, true};        // 2.5
inline constexpr RealRange kSwigluLimit{0.0, 1e6, true};                // 10 (always applied)
inline constexpr RealRange kEps{0.0, 1.0, true};                        // 1e-6 (both eps)
// clang-format on

// --- products that size allocations (each factor is bounded above; these bound the product)
// Routed experts over all layers (main + MTP): the tensor table holds 6 entries per expert.
// V4-Pro: 62 x 384 = 23808 (22x).
inline constexpr int64_t kMaxExpertsTotal = int64_t{1} << 19;
// A linear's or table's width: heads x head_dim, o_groups x o_lora_rank, index_n_heads x
// index_head_dim, hc_mult x hidden_size. V4-Pro: 128 x 512 = 65536 (16x).
inline constexpr int64_t kMaxWidth = int64_t{1} << 20;
// Elements of any one tensor. V4-Pro's largest, embed 129280 x 7168 = 9.3e8 (74x).
inline constexpr int64_t kMaxTensorElems = int64_t{1} << 36;
// Parameters of the whole checkpoint. V4-Pro: about 1.6e12 (44x).
inline constexpr int64_t kMaxModelParams = int64_t{1} << 46;

}  // namespace qf::model::limits
