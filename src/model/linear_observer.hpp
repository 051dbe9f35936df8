// LinearInputObserver: the hook the reference forward calls with the input of every linear layer
// right before its matmul; AmaxRecorder: the calibration statistic (max |x| per linear).
// Does not own: reductions across ranks (dist/) or what the quantizer does with the amax.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace qf::model {

// Names are native weight names without `.weight`, e.g. `layers.3.attn.wq_a`,
// `layers.3.attn.compressor.wkv`, `layers.3.attn.indexer.wq_b`, `layers.3.ffn.experts.5.w1`,
// `layers.3.ffn.shared_experts.w2`, `layers.3.ffn.gate`, `head`.
// x is row-major [n_rows, n_cols]; n_cols is the linear's input width (for the grouped
// `attn.wo_a` that is heads*head_dim/o_groups, with one row per token and group).
// w1 and w3 of an expert share one input: observe() is called for both names.
// Calls come from the calling thread only, in a fixed order.
struct LinearInputObserver {
  virtual ~LinearInputObserver() = default;
  virtual void observe(const std::string& linear_name, const float* x, int64_t n_rows,
                       int64_t n_cols) = 0;
  // Number of (token, top-k slot) assignments routed to `expert` in `layer` by this call
  // (a token whose hash row names one expert twice counts twice, as in transformers).
  // Called only for experts with n_tokens > 0; such experts are never observe()d either.
  virtual void observe_expert_tokens(int layer, int expert, int64_t n_tokens) {
    (void)layer, (void)expert, (void)n_tokens;
  }
  // Optional input rewrite (eval's simulated NVFP4 activation quantization): when
  // transforms_inputs() is true, every linear's product uses x after transform_input(name, x...)
  // rewrote a private copy of it in place; observe() still sees the original. Same names, shapes
  // and calling rules as observe(). false (the default) leaves the forward untouched, no copy.
  virtual bool transforms_inputs() const { return false; }
  virtual void transform_input(const std::string& linear_name, float* x, int64_t n_rows,
                               int64_t n_cols) {
    (void)linear_name, (void)x, (void)n_rows, (void)n_cols;
  }
};

// Keeps max |x| per linear name and summed token counts per (layer, expert).
// Thread-safe; NaN inputs propagate (amax becomes NaN) so that they are never hidden.
class AmaxRecorder : public LinearInputObserver {
 public:
  void observe(const std::string& linear_name, const float* x, int64_t n_rows,
               int64_t n_cols) override;
  void observe_expert_tokens(int layer, int expert, int64_t n_tokens) override;

  float amax(const std::string& linear_name) const;    // 0 = never seen
  int64_t expert_tokens(int layer, int expert) const;  // 0 = never routed
  const std::map<std::string, float>& amax_by_name() const { return amax_; }
  const std::map<std::pair<int, int>, int64_t>& tokens_by_expert() const { return tokens_; }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, float> amax_;
  std::map<std::pair<int, int>, int64_t> tokens_;
};

// max |x| over n_elems values; NaN if any value is NaN.
float abs_max(const float* x, int64_t n_elems);

}  // namespace qf::model
