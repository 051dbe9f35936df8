// Export-decoding weight loader, NVFP4 activation quantizer and per-module error probe of eval.
#include "eval/eval_model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "core/strings.hpp"
#include "eval/nvfp4_export_tensors.hpp"
#include "eval/nvfp4_fake_quant.hpp"
#include "formats/tensor_spec.hpp"
#include "model/forward_linear.hpp"
#include "model/tensor_table.hpp"
#include "ops/matmul.hpp"
#include "source/native_weight_loader.hpp"

namespace qf::pipeline {
namespace {

const model::Tensor2D* expert_linear(const model::ExpertWeights& e, const std::string& w) {
  if (w == "w1") return &e.w1;
  if (w == "w2") return &e.w2;
  if (w == "w3") return &e.w3;
  return nullptr;
}

}  // namespace

Nvfp4ExportModules read_nvfp4_export_modules(const formats::CheckpointDir& out) {
  Nvfp4ExportModules m;
  for (const std::string& prefix : nvfp4_export_prefixes(out)) {
    if (starts_with(prefix, "mtp.")) continue;  // the forward runs no MTP layer
    const float scale = read_nvfp4_input_scale(out, prefix);
    QF_CHECK(std::isfinite(scale) && scale > 0.0f, out.dir() + ":", prefix + ".input_scale is",
             scale, "(must be finite and > 0)");
    m.index[prefix] = static_cast<int>(m.names.size());
    m.names.push_back(prefix);
    m.input_scale.push_back(scale);
  }
  return m;
}

model::WeightLoader make_export_weight_loader(const formats::CheckpointDir& out,
                                              const Nvfp4ExportModules& modules,
                                              model::WeightLoader source_loader,
                                              bool tie_word_embeddings) {
  return [&out, &modules, source_loader = std::move(source_loader), tie_word_embeddings](
             const std::string& name, std::vector<int64_t> expected_shape) {
    const std::string native = native_weight_name(name, tie_word_embeddings);
    if (ends_with(native, model::kWeightSuffix) && native != model::kWeightSuffix) {
      const std::string prefix = strip_suffix(native, model::kWeightSuffix);
      if (modules.contains(prefix)) {
        Nvfp4DecodedWeight d = decode_nvfp4_export_weight(out, prefix);
        const std::vector<int64_t> shape = {d.n_rows, d.n_cols};
        QF_CHECK(shape == expected_shape, out.dir() + ":", native, "decodes to",
                 formats::shape_str(shape), "but the model needs",
                 formats::shape_str(expected_shape));
        return std::move(d.values);
      }
    }
    return source_loader(name, std::move(expected_shape));
  };
}

const model::Tensor2D* find_linear_weight(const model::LayerWeights& w, const std::string& name) {
  const std::string head = "layers." + std::to_string(w.layer) + ".";
  if (!starts_with(name, head)) return nullptr;
  const std::string r = name.substr(head.size());
  const model::AttentionWeights& a = w.attn;
  if (r == "attn.wq_a") return &a.wq_a;
  if (r == "attn.wq_b") return &a.wq_b;
  if (r == "attn.wkv") return &a.wkv;
  if (r == "attn.wo_a") return &a.wo_a;
  if (r == "attn.wo_b") return &a.wo_b;
  if (a.has_compressor && r == "attn.compressor.wkv") return &a.compressor.wkv;
  if (a.has_compressor && r == "attn.compressor.wgate") return &a.compressor.wgate;
  if (a.has_indexer) {
    if (r == "attn.indexer.wq_b") return &a.indexer.wq_b;
    if (r == "attn.indexer.weights_proj") return &a.indexer.weights_proj;
    if (r == "attn.indexer.compressor.wkv") return &a.indexer.compressor.wkv;
    if (r == "attn.indexer.compressor.wgate") return &a.indexer.compressor.wgate;
  }
  if (r == "ffn.gate") return &w.ffn.gate;
  const std::string shared = "ffn.shared_experts.";
  if (starts_with(r, shared)) return expert_linear(w.ffn.shared, r.substr(shared.size()));
  const std::string experts = "ffn.experts.";
  if (starts_with(r, experts)) {
    const size_t dot = r.find('.', experts.size());
    if (dot == std::string::npos) return nullptr;
    const std::string index = r.substr(experts.size(), dot - experts.size());
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos) return nullptr;
    const size_t e = std::stoul(index);
    if (e >= static_cast<size_t>(w.ffn.n_experts())) return nullptr;
    return expert_linear(w.ffn.expert(static_cast<int64_t>(e)), r.substr(dot + 1));
  }
  return nullptr;
}

const model::Tensor2D* find_linear_weight(const model::GlobalWeights& g, const std::string& name) {
  return name == "head" ? &g.head : nullptr;
}

// ---- activation quantization --------------------------------------------------------------------

void ActivationQuantizer::transform_input(const std::string& linear_name, float* x, int64_t n_rows,
                                          int64_t n_cols) {
  const auto it = modules_.index.find(linear_name);
  if (it == modules_.index.end()) return;
  nvfp4_fake_quantize_rows(x, n_rows, n_cols, modules_.input_scale[it->second]);
}

// ---- per-module error ---------------------------------------------------------------------------

ModuleErrorRecorder::ModuleErrorRecorder(const model::ModelConfig& config,
                                         const Nvfp4ExportModules& modules,
                                         bool quantize_activations)
    : config_(config),
      modules_(modules),
      quantize_activations_(quantize_activations),
      sums_(modules.names.size()) {}

void ModuleErrorRecorder::set_layer(const model::LayerWeights* source,
                                    const model::LayerWeights* quantized) {
  layer_source_ = source;
  layer_quantized_ = quantized;
}

void ModuleErrorRecorder::set_globals(const model::GlobalWeights* source,
                                      const model::GlobalWeights* quantized) {
  globals_source_ = source;
  globals_quantized_ = quantized;
}

void ModuleErrorRecorder::observe(const std::string& linear_name, const float* x, int64_t n_rows,
                                  int64_t n_cols) {
  const auto it = modules_.index.find(linear_name);
  if (it == modules_.index.end() || n_rows == 0) return;
  const auto start = std::chrono::steady_clock::now();
  const model::Tensor2D *ws = nullptr, *wq = nullptr;
  if (layer_source_ && layer_quantized_) {
    ws = find_linear_weight(*layer_source_, linear_name);
    wq = find_linear_weight(*layer_quantized_, linear_name);
  }
  if (!ws && globals_source_ && globals_quantized_) {
    ws = find_linear_weight(*globals_source_, linear_name);
    wq = find_linear_weight(*globals_quantized_, linear_name);
  }
  QF_CHECK(ws && wq, "eval: no weights for", linear_name, "(internal: set_layer/set_globals)");
  QF_CHECK(ws->n_cols == wq->n_cols && ws->n_rows == wq->n_rows && ws->n_cols == n_cols,
           "eval:", linear_name, "weights/input widths disagree");

  std::vector<float> xq(x, x + n_rows * n_cols);
  if (quantize_activations_) {
    nvfp4_fake_quantize_rows(xq.data(), n_rows, n_cols, modules_.input_scale[it->second]);
  }
  // attn.wo_a is grouped: row r (token r / groups, group r % groups) meets only its group's
  // o_lora_rank rows of the weight (forward_attention.cpp).
  const bool grouped = ends_with(linear_name, ".attn.wo_a") && linear_name != ".attn.wo_a";
  const int64_t groups = grouped ? config_.o_groups : 1;
  const int64_t n_out = ws->n_rows / groups;
  // y_src and y_q of a tile of rows (bounded memory for a wide module such as the head), each
  // element the forward's own dot_ref; then the squared sums per row in output order.
  const int64_t rows_per_group = n_rows / groups;
  const int64_t tile = std::max<int64_t>(1, (int64_t{8} << 20) / n_out);  // <= 32 MB a product
  std::vector<double> row_err(static_cast<size_t>(n_rows)), row_ref(static_cast<size_t>(n_rows));
  std::vector<float> ys, yq;
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t t0 = 0; t0 < rows_per_group; t0 += tile) {
      const int64_t nt = std::min(tile, rows_per_group - t0);
      const int64_t first_row = t0 * groups + g, stride = groups * n_cols;
      ys.resize(static_cast<size_t>(nt * n_out));
      yq.resize(static_cast<size_t>(nt * n_out));
      ops::matmul_rows_ref(x + first_row * n_cols, stride, nt, ws->row(g * n_out), n_out, n_cols,
                           ys.data(), n_out);
      ops::matmul_rows_ref(xq.data() + first_row * n_cols, stride, nt, wq->row(g * n_out), n_out,
                           n_cols, yq.data(), n_out);
      parallel_for(nt, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          double err = 0, ref = 0;
          for (int64_t o = 0; o < n_out; ++o) {
            const double s = ys[i * n_out + o], q = yq[i * n_out + o];
            err += (q - s) * (q - s);
            ref += s * s;
          }
          const int64_t r = (t0 + i) * groups + g;
          row_err[r] = err;
          row_ref[r] = ref;
        }
      });
    }
  }
  ModuleErrorSums& s = sums_[it->second];
  for (int64_t r = 0; r < n_rows; ++r) {  // fixed order: independent of the thread split
    s.sq_err += row_err[r];
    s.sq_ref += row_ref[r];
  }
  s.n_rows += grouped ? n_rows / groups : n_rows;  // tokens, for the grouped wo_a too
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace qf::pipeline
