// The quantized model as `eval` simulates it, and the per-module error probe: weights of every
// NVFP4 module decoded from the export (the rest from the source), NVFP4 activation
// quantization of those modules' inputs with the exported input_scale, and the error of each
// NVFP4 linear on the source model's own inputs. Does not own: the layer loop, the metrics or
// the reductions over ranks (eval.cpp).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "formats/checkpoint_dir.hpp"
#include "model/config.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"

namespace qf::pipeline {

// The NVFP4 modules of an export that the forward runs (MTP modules left out), sorted, each
// with its input_scale (checked finite and > 0).
struct Nvfp4ExportModules {
  std::vector<std::string> names;    // e.g. layers.3.ffn.experts.5.w1
  std::map<std::string, int> index;  // name -> position in `names`
  std::vector<float> input_scale;    // parallel to names
  bool contains(const std::string& name) const { return index.count(name) != 0; }
};
Nvfp4ExportModules read_nvfp4_export_modules(const formats::CheckpointDir& out);

// The quantized model's weights: a forward name whose native name is `<m>.weight` for an NVFP4
// module m comes decoded from `out` (shape checked against the forward's), every other tensor
// from `source_loader`. `out` and `modules` must outlive the loader.
model::WeightLoader make_export_weight_loader(const formats::CheckpointDir& out,
                                              const Nvfp4ExportModules& modules,
                                              model::WeightLoader source_loader,
                                              bool tie_word_embeddings);

// The weight of linear `name` (`layers.L.attn.wq_a`, `layers.L.ffn.experts.E.w2`, `head`, ...,
// the observer's names) inside a layer's or the model ends' weights; null if the name is not a
// linear of `layer` / of the ends. A routed expert of lazy weights is decoded now if it is not
// the one held (model::LazyExperts): the pointer lives until another expert is asked for.
const model::Tensor2D* find_linear_weight(const model::LayerWeights& layer,
                                          const std::string& name);
const model::Tensor2D* find_linear_weight(const model::GlobalWeights& globals,
                                          const std::string& name);

// The quantized model's forward hook: rewrites the input of every NVFP4 module through
// nvfp4_fake_quantize_rows with its input_scale (W4A4 as served); other linears unchanged.
class ActivationQuantizer : public model::LinearInputObserver {
 public:
  // enabled false: no transform at all (W4A16).
  ActivationQuantizer(const Nvfp4ExportModules& modules, bool enabled)
      : modules_(modules), enabled_(enabled) {}
  void observe(const std::string&, const float*, int64_t, int64_t) override {}
  bool transforms_inputs() const override { return enabled_; }
  void transform_input(const std::string& linear_name, float* x, int64_t n_rows,
                       int64_t n_cols) override;

 private:
  const Nvfp4ExportModules& modules_;
  bool enabled_;
};

// Squared-error sums of one module over the rows it saw: err = sum (y_q - y_src)^2,
// ref = sum y_src^2, where y_src = x W_src^T and y_q = fq(x) W_q^T on the same x (x itself
// instead of fq(x) when activations are not quantized).
struct ModuleErrorSums {
  double sq_err = 0, sq_ref = 0;
  int64_t n_rows = 0;
};

// The source model's forward hook: for every NVFP4 module, on the input the source model gives
// it, the output of the quantized module (decoded weight, quantized input) against the source
// module's. set_layer / set_globals name the weights the following calls use.
class ModuleErrorRecorder : public model::LinearInputObserver {
 public:
  ModuleErrorRecorder(const model::ModelConfig& config, const Nvfp4ExportModules& modules,
                      bool quantize_activations);
  void set_layer(const model::LayerWeights* source, const model::LayerWeights* quantized);
  void set_globals(const model::GlobalWeights* source, const model::GlobalWeights* quantized);
  void observe(const std::string& linear_name, const float* x, int64_t n_rows,
               int64_t n_cols) override;
  const std::vector<ModuleErrorSums>& sums() const { return sums_; }  // parallel to modules
  double seconds() const { return seconds_; }  // spent in observe() (phase times)

 private:
  const model::ModelConfig& config_;
  const Nvfp4ExportModules& modules_;
  bool quantize_activations_;
  const model::LayerWeights *layer_source_ = nullptr, *layer_quantized_ = nullptr;
  const model::GlobalWeights *globals_source_ = nullptr, *globals_quantized_ = nullptr;
  std::vector<ModuleErrorSums> sums_;
  double seconds_ = 0;
};

}  // namespace qf::pipeline
