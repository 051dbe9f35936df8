// ModelConfig::validate: every field against config_limits.hpp, the shapes against each other,
// and the products that size allocations (tensor table entries, tensor elements, parameters)
// against overflow and their limits. Runs before anything is allocated from a config.
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>

#include "core/check.hpp"
#include "model/config.hpp"
#include "model/config_fields.hpp"
#include "model/config_limits.hpp"

namespace qf::model {
namespace {

using detail::fail_field;
namespace lim = limits;

struct Checker {
  const std::string& src;

  void range(int64_t v, lim::IntRange r, const std::string& field) const {
    detail::checked_integer(nlohmann::json(v), r, src, field);
  }
  void real(double v, lim::RealRange r, const std::string& field) const {
    detail::checked_real(nlohmann::json(v), r, src, field);
  }
  // a x b x ... with each partial product checked against overflow and `limit`.
  int64_t product(std::initializer_list<int64_t> factors, int64_t limit,
                  const std::string& what) const {
    int64_t p = 1;
    std::ostringstream text;
    bool overflow = false;
    for (int64_t f : factors) {
      text << (text.tellp() > 0 ? " x " : "") << f;
      if (!overflow && __builtin_mul_overflow(p, f, &p)) overflow = true;
    }
    if (overflow || p > limit) {
      QF_FAIL(src + ":", what, "=", text.str(),
              overflow ? "overflows int64"
                       : "= " + std::to_string(p) + " exceeds the limit " + std::to_string(limit));
    }
    return p;
  }
};

void check_field_ranges(const ModelConfig& c, const Checker& k) {
  k.range(c.vocab_size, lim::kVocabSize, "vocab_size");
  k.range(c.hidden_size, lim::kHiddenSize, "hidden_size");
  k.range(c.num_hidden_layers, lim::kNumHiddenLayers, "num_hidden_layers");
  k.range(c.num_nextn_predict_layers, lim::kNumNextnPredictLayers, "num_nextn_predict_layers");
  k.range(c.num_attention_heads, lim::kNumAttentionHeads, "num_attention_heads");
  k.range(c.num_key_value_heads, lim::kNumKeyValueHeads, "num_key_value_heads");
  k.range(c.head_dim, lim::kHeadDim, "head_dim");
  k.range(c.q_lora_rank, lim::kQLoraRank, "q_lora_rank");
  k.range(c.qk_rope_head_dim, lim::kRopeHeadDim, "qk_rope_head_dim");
  k.range(c.o_groups, lim::kOGroups, "o_groups");
  k.range(c.o_lora_rank, lim::kOLoraRank, "o_lora_rank");
  k.range(c.index_n_heads, lim::kIndexNHeads, "index_n_heads");
  k.range(c.index_head_dim, lim::kIndexHeadDim, "index_head_dim");
  k.range(c.index_topk, lim::kIndexTopk, "index_topk");
  k.range(c.n_routed_experts, lim::kNRoutedExperts, "n_routed_experts");
  k.range(c.n_shared_experts, lim::kNSharedExperts, "n_shared_experts");
  k.range(c.num_experts_per_tok, lim::kNumExpertsPerTok, "num_experts_per_tok");
  k.range(c.moe_intermediate_size, lim::kMoeIntermediateSize, "moe_intermediate_size");
  k.range(c.num_hash_layers, lim::kNumHashLayers, "num_hash_layers");
  k.range(c.hc_mult, lim::kHcMult, "hc_mult");
  k.range(c.hc_sinkhorn_iters, lim::kHcSinkhornIters, "hc_sinkhorn_iters");
  k.range(c.sliding_window, lim::kSlidingWindow, "sliding_window");
  k.range(c.max_position_embeddings, lim::kMaxPositionEmbeddings, "max_position_embeddings");
  k.range(c.compress_rate_csa, lim::kCompressRate, "compress_rates.compressed_sparse_attention");
  k.range(c.compress_rate_hca, lim::kCompressRate, "compress_rates.heavily_compressed_attention");
  k.real(c.routed_scaling_factor, lim::kRoutedScalingFactor, "routed_scaling_factor");
  k.real(c.swiglu_limit, lim::kSwigluLimit, "swiglu_limit");
  k.real(c.hc_eps, lim::kEps, "hc_eps");
  k.real(c.rms_norm_eps, lim::kEps, "rms_norm_eps");
}

void check_rope(const ModelConfig& c, const Checker& k, const ops::RopeParams& p,
                const std::string& name) {
  QF_CHECK(p.rope_type == "default" || p.rope_type == "yarn", k.src + ":", "rope", name,
           "type \"" + p.rope_type + "\"", "must be default or yarn");
  k.real(p.rope_theta, lim::kRopeTheta, "rope " + name + " rope_theta");
  k.real(p.partial_rotary_factor, lim::kPartialRotaryFactor,
         "rope " + name + " partial_rotary_factor");
  k.real(p.factor, lim::kRopeFactor, "rope " + name + " factor");
  k.real(p.beta_fast, lim::kRopeBeta, "rope " + name + " beta_fast");
  k.real(p.beta_slow, lim::kRopeBeta, "rope " + name + " beta_slow");
  k.real(p.attention_factor, lim::kRopeAttentionFactor, "rope " + name + " attention_factor");
  k.real(p.mscale, lim::kRopeMscale, "rope " + name + " mscale");
  k.real(p.mscale_all_dim, lim::kRopeMscale, "rope " + name + " mscale_all_dim");
  if (p.has_original_max_position_embeddings) {
    k.range(p.original_max_position_embeddings, lim::kMaxPositionEmbeddings,
            "rope " + name + " original_max_position_embeddings");
  }
  const auto dim = static_cast<int64_t>(static_cast<double>(c.head_dim) * p.partial_rotary_factor);
  QF_CHECK(dim == c.qk_rope_head_dim, k.src + ":", "rope", name, "rotates", dim,
           "dims (head_dim * partial_rotary_factor), qk_rope_head_dim is", c.qk_rope_head_dim);
}

void check_shapes(const ModelConfig& c, const Checker& k) {
  const std::string& s = k.src;
  QF_CHECK(c.num_experts_per_tok <= c.n_routed_experts, s + ":",
           "num_experts_per_tok =", c.num_experts_per_tok,
           "exceeds n_routed_experts =", c.n_routed_experts);
  QF_CHECK(c.num_hash_layers <= c.num_hidden_layers, s + ":",
           "num_hash_layers =", c.num_hash_layers,
           "exceeds num_hidden_layers =", c.num_hidden_layers);
  QF_CHECK(int64_t{c.num_attention_heads} * c.head_dim % c.o_groups == 0, s + ":",
           "num_attention_heads * head_dim =", int64_t{c.num_attention_heads} * c.head_dim,
           "is not divisible by o_groups =", c.o_groups);
  // The indexer rotates the trailing qk_rope_head_dim dims of its index_head_dim queries.
  QF_CHECK(c.qk_rope_head_dim % 2 == 0 && c.qk_rope_head_dim <= c.head_dim &&
               c.qk_rope_head_dim <= c.index_head_dim,
           s + ":", "qk_rope_head_dim =", c.qk_rope_head_dim,
           "must be even and at most head_dim =", c.head_dim,
           "and index_head_dim =", c.index_head_dim);
  QF_CHECK(static_cast<int>(c.attention_kinds.size()) >= c.n_layers_total(), s + ":",
           "the attention schedule has", c.attention_kinds.size(), "entries for",
           c.n_layers_total(), "layers");
  QF_CHECK(c.expert_dtype == "fp4" || c.expert_dtype == "fp8", s + ":",
           "expert_dtype =", "\"" + c.expert_dtype + "\"", "must be \"fp4\" or \"fp8\"");
  if (c.expert_dtype == "fp4") {
    // FP4 experts: two codes per byte and one UE8M0 scale per 32 inputs (FORMATS.md §4).
    QF_CHECK(c.hidden_size % 32 == 0 && c.moe_intermediate_size % 32 == 0, s + ":",
             "FP4 experts need hidden_size and moe_intermediate_size divisible by 32, got",
             c.hidden_size, "and moe_intermediate_size =", c.moe_intermediate_size);
  }
}

// The tensor table and the weight buffers are sized from these products.
void check_products(const ModelConfig& c, const Checker& k) {
  const int64_t layers = c.n_layers_total(), hidden = c.hidden_size,
                inter = c.moe_intermediate_size;
  k.product({layers, c.n_routed_experts}, lim::kMaxExpertsTotal,
            "routed experts over all layers (main + MTP) x n_routed_experts");
  const int64_t q_dim = k.product({c.num_attention_heads, c.head_dim}, lim::kMaxWidth,
                                  "num_attention_heads x head_dim");
  const int64_t o_dim =
      k.product({c.o_groups, c.o_lora_rank}, lim::kMaxWidth, "o_groups x o_lora_rank");
  const int64_t index_dim = k.product({c.index_n_heads, c.index_head_dim}, lim::kMaxWidth,
                                      "index_n_heads x index_head_dim");
  const int64_t hc_dim = k.product({c.hc_mult, hidden}, lim::kMaxWidth, "hc_mult x hidden_size");
  const int64_t mix = (2 + int64_t{c.hc_mult}) * c.hc_mult;
  const int64_t t = lim::kMaxTensorElems;
  const int64_t embed = k.product({c.vocab_size, hidden}, t, "embed: vocab_size x hidden_size");
  const int64_t wq_a = k.product({c.q_lora_rank, hidden}, t, "wq_a: q_lora_rank x hidden_size");
  const int64_t wq_b = k.product({q_dim, c.q_lora_rank}, t, "wq_b: heads x head_dim x q_lora_rank");
  const int64_t wo_a = k.product({o_dim, q_dim / c.o_groups}, t, "wo_a");
  const int64_t wo_b = k.product({hidden, o_dim}, t, "wo_b: hidden_size x o_groups x o_lora_rank");
  const int64_t compressor =
      k.product({4, c.head_dim, hidden}, t, "compressor: 2 x 2 x head_dim x hidden_size");
  const int64_t indexer = k.product({index_dim, c.q_lora_rank}, t, "indexer wq_b");
  const int64_t expert =
      k.product({inter, hidden}, t, "expert: moe_intermediate_size x hidden_size");
  const int64_t hc =
      k.product({mix, hc_dim}, t, "hc_fn: (2 + hc_mult) x hc_mult x hc_mult x hidden_size");
  k.product({c.vocab_size, c.num_experts_per_tok}, t, "tid2eid: vocab_size x num_experts_per_tok");
  k.product({c.n_routed_experts, hidden}, t, "gate: n_routed_experts x hidden_size");
  // Parameters of the checkpoint: every term bounded above, so the sum cannot overflow.
  const int64_t per_layer = wq_a + wq_b + c.head_dim * hidden + wo_a + wo_b + compressor + indexer +
                            4 * index_dim * hidden + 2 * hc +
                            k.product({c.n_routed_experts + 1, 3, expert}, lim::kMaxModelParams,
                                      "experts of a layer: (n_routed_experts + 1) x 3 x "
                                      "moe_intermediate_size x hidden_size");
  k.product({layers, per_layer}, lim::kMaxModelParams - 2 * embed,
            "parameters: layers (main + MTP) x parameters per layer");
}

}  // namespace

void ModelConfig::validate(const std::string& src) const {
  const Checker k{src};
  QF_CHECK(model_type == "deepseek_v4", src + ":", "model_type =", "\"" + model_type + "\"",
           "must be \"deepseek_v4\"");
  check_field_ranges(*this, k);
  check_shapes(*this, k);
  check_rope(*this, k, rope_main, "main");
  check_rope(*this, k, rope_compress, "compress");
  check_products(*this, k);
  if (has_quantization_config()) {
    const nlohmann::json& q = quantization_config;
    const auto it = q.find("quant_method");
    const std::string method = it != q.end() && it->is_string() ? it->get<std::string>() : "";
    QF_CHECK(method == "fp8", src + ":", "quantization_config.quant_method =", "\"" + method + "\"",
             "must be \"fp8\" for a native DeepSeek V4 checkpoint");
    const auto wbs = q.find("weight_block_size");
    if (wbs != q.end() && !wbs->is_null()) {
      QF_CHECK(*wbs == nlohmann::json::array({128, 128}), src + ":",
               "quantization_config.weight_block_size =", detail::value_text(*wbs),
               "must be [128, 128]");
    }
  }
}

void ModelConfig::require_reference_forward() const {
  QF_CHECK(scoring_func != ops::ScoringFunc::kSoftmax, source + ":",
           "scoring_func = softmax is not supported by the reference forward and the CUDA "
           "decoder layer (sqrtsoftplus, sigmoid)");
}

}  // namespace qf::model
