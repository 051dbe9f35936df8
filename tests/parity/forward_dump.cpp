// forward_dump: runs the CPU reference forward (src/model) on a checkpoint saved by transformers'
// save_pretrained and writes what check_forward_vs_transformers.py compares: per-linear input
// amax, per-expert routed-token counts, per-layer hidden streams, final hidden state and logits.
//
// Usage: forward_dump <weights_dir> <tokens.json> <out.json>
//   weights_dir: config.json + *.safetensors (F32 / BF16 / F16 floats, I64 / I32 tid2eid)
//   tokens.json: {"n_seqs": B, "seq_len": L, "tokens": [[L ids], ... B rows]}
#include <dirent.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "core/dtype.hpp"
#include "core/strings.hpp"
#include "formats/safetensors_reader.hpp"
#include "model/config.hpp"
#include "model/forward_decoder_layer.hpp"
#include "model/layer_weights.hpp"
#include "model/linear_observer.hpp"
#include "model/model_forward.hpp"

using namespace qf;
using namespace qf::model;

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  QF_CHECK(in.good(), "cannot open", path);
  return nlohmann::json::parse(in);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      uint32_t m = mant;
      do ++e, m <<= 1;
      while ((m & 0x400u) == 0);
      bits = sign | ((127 - 15 - e) << 23) | ((m & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Every *.safetensors file of a directory, tensors looked up by name.
class TensorSource {
 public:
  explicit TensorSource(const std::string& dir) {
    DIR* d = opendir(dir.c_str());
    QF_CHECK(d != nullptr, "cannot list", dir);
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != ".safetensors" && ends_with(name, ".safetensors")) {
        readers_.push_back(std::make_unique<formats::SafetensorsReader>(dir + "/" + name));
      }
    }
    closedir(d);
    QF_CHECK(!readers_.empty(), "no .safetensors file in", dir);
    for (const auto& r : readers_) {
      for (const auto& t : r->tensors()) where_[t.name] = r.get();
    }
  }

  // Loader names are the saved names minus `model.` (head.weight is saved without it).
  std::vector<float> load(const std::string& name, const std::vector<int64_t>& shape) const {
    std::string key = "model." + name;
    if (!where_.count(key)) key = name;
    QF_CHECK(where_.count(key), "tensor", name, "(or model." + name + ") not in the checkpoint");
    const formats::SafetensorsReader& r = *where_.at(key);
    const formats::TensorInfo& info = r.at(key);
    QF_CHECK(info.shape == shape, "tensor", key, "has shape", formats::shape_str(info.shape),
             "expected", formats::shape_str(shape));
    const std::vector<uint8_t> bytes = r.read_tensor(info);
    const uint64_t n = info.n_elems();
    std::vector<float> out(n);
    for (uint64_t i = 0; i < n; ++i) {
      switch (info.dtype) {
        case DType::kF32:
          std::memcpy(&out[i], bytes.data() + 4 * i, 4);
          break;
        case DType::kBF16: {
          uint32_t bits = uint32_t(bytes[2 * i]) << 16 | uint32_t(bytes[2 * i + 1]) << 24;
          std::memcpy(&out[i], &bits, 4);
          break;
        }
        case DType::kF16: {
          uint16_t h;
          std::memcpy(&h, bytes.data() + 2 * i, 2);
          out[i] = half_to_float(h);
          break;
        }
        case DType::kI64: {
          int64_t v;
          std::memcpy(&v, bytes.data() + 8 * i, 8);
          out[i] = static_cast<float>(v);
          break;
        }
        case DType::kI32: {
          int32_t v;
          std::memcpy(&v, bytes.data() + 4 * i, 4);
          out[i] = static_cast<float>(v);
          break;
        }
        default:
          QF_FAIL("tensor", key, "has unsupported dtype", dtype_name(info.dtype));
      }
    }
    return out;
  }

 private:
  std::vector<std::unique_ptr<formats::SafetensorsReader>> readers_;
  std::map<std::string, const formats::SafetensorsReader*> where_;
};

nlohmann::json summary(const std::vector<float>& v) {
  double sum = 0, sum_sq = 0, amax = 0;
  for (float x : v) sum += x, sum_sq += double(x) * x, amax = std::max(amax, double(std::fabs(x)));
  const double n = static_cast<double>(v.size());
  return {{"n", v.size()}, {"mean", sum / n}, {"rms", std::sqrt(sum_sq / n)}, {"amax", amax}};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    QF_CHECK(argc == 4, "usage: forward_dump <weights_dir> <tokens.json> <out.json>");
    const std::string dir = argv[1];
    const ModelConfig config =
        ModelConfig::from_json(read_json(dir + "/config.json"), dir + "/config.json");
    config.require_reference_forward();
    const nlohmann::json tok = read_json(argv[2]);
    const int n_seqs = tok.at("n_seqs").get<int>(), seq_len = tok.at("seq_len").get<int>();
    std::vector<int64_t> ids;
    for (const auto& row : tok.at("tokens")) {
      QF_CHECK(static_cast<int>(row.size()) == seq_len, "tokens.json: a row is not seq_len long");
      for (const auto& t : row) ids.push_back(t.get<int64_t>());
    }
    QF_CHECK(static_cast<int64_t>(ids.size()) == int64_t(n_seqs) * seq_len, "tokens.json: expected",
             n_seqs, "rows");

    const TensorSource source(dir);
    const WeightLoader loader = [&](const std::string& name, std::vector<int64_t> shape) {
      return source.load(name, shape);
    };
    const GlobalWeights global = load_global_weights(config, loader);
    AmaxRecorder recorder;
    nlohmann::json layers = nlohmann::json::array();
    std::vector<float> hidden = embed_tokens(config, global, ids);
    for (int l = 0; l < config.num_hidden_layers; ++l) {
      const LayerWeights w = load_layer_weights(config, l, loader);
      decoder_layer_forward(config, l, w, ids, n_seqs, seq_len, hidden, &recorder);
      layers.push_back({{"type", attention_kind_name(config.attention_kind(l))},
                        {"summary", summary(hidden)},
                        {"values", hidden}});
      std::cerr << "forward_dump: layer " << l << " done\n";
    }
    const std::vector<float> final_h = final_hidden(config, global, hidden);
    const std::vector<float> logits = final_logits(config, global, final_h, &recorder);

    nlohmann::json out;
    out["n_seqs"] = n_seqs;
    out["seq_len"] = seq_len;
    out["hc_mult"] = config.hc_mult;
    out["hidden_size"] = config.hidden_size;
    out["vocab_size"] = config.vocab_size;
    out["amax"] = nlohmann::json::object();
    for (const auto& [name, v] : recorder.amax_by_name()) out["amax"][name] = v;
    out["expert_tokens"] = nlohmann::json::object();
    for (const auto& [key, n] : recorder.tokens_by_expert()) {
      out["expert_tokens"]
         ["layers." + std::to_string(key.first) + ".ffn.experts." + std::to_string(key.second)] = n;
    }
    out["layers"] = layers;
    out["final_hidden"] = {{"summary", summary(final_h)}, {"values", final_h}};
    out["logits"] = {{"summary", summary(logits)}, {"values", logits}};
    std::ofstream f(argv[3]);
    QF_CHECK(f.good(), "cannot write", argv[3]);
    f << out.dump() << "\n";
    QF_CHECK(f.good(), "write failed:", argv[3]);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "forward_dump: " << e.what() << "\n";
    return 1;
  }
}
