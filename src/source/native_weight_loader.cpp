// Forward-name -> native-name mapping and source-bytes -> FP32 decoding of checkpoint tensors.
#include "source/native_weight_loader.hpp"

#include <algorithm>
#include <cstring>

#include "core/check.hpp"
#include "core/parallel.hpp"
#include "core/strings.hpp"
#include "formats/tensor_spec.hpp"
#include "model/forward_linear.hpp"
#include "numerics/bf16.hpp"
#include "source/fast_decode.hpp"

namespace qf::pipeline {
namespace {

// Little-endian elements of a plain tensor as float.
std::vector<float> decode_plain(const NativeTensor& t, const uint8_t* bytes, uint64_t n_elems) {
  std::vector<float> out(n_elems);
  switch (t.stored.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), bytes, n_elems * 4);
      break;
    case DType::kBF16:  // the embedding and head: 0.5 G values at V4 dimensions
      parallel_for(static_cast<int64_t>(n_elems), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          uint16_t v = 0;
          std::memcpy(&v, bytes + 2 * i, 2);
          out[i] = numerics::bf16_to_float(v);
        }
      });
      break;
    case DType::kI32:
      for (uint64_t i = 0; i < n_elems; ++i) {
        int32_t v = 0;
        std::memcpy(&v, bytes + 4 * i, 4);
        out[i] = static_cast<float>(v);
      }
      break;
    case DType::kI64:
      for (uint64_t i = 0; i < n_elems; ++i) {
        int64_t v = 0;
        std::memcpy(&v, bytes + 8 * i, 8);
        out[i] = static_cast<float>(v);
      }
      break;
    default:
      QF_FAIL("tensor", t.name, "has dtype", dtype_name(t.stored.dtype),
              "which the calibration forward cannot decode (F32, BF16, I32, I64)");
  }
  return out;
}

}  // namespace

std::string native_weight_name(const std::string& forward_name, bool tie_word_embeddings) {
  if (forward_name == "embed_tokens.weight") return "embed.weight";
  if (forward_name == "head.weight") return tie_word_embeddings ? "embed.weight" : forward_name;
  if (starts_with(forward_name, "hc_head.hc_")) {
    return "hc_head_" + forward_name.substr(std::string("hc_head.hc_").size());
  }
  if (starts_with(forward_name, "layers.") && ends_with(forward_name, ".attn.norm.weight")) {
    return forward_name.substr(0, forward_name.size() - std::string("norm.weight").size()) +
           "kv_norm.weight";
  }
  return forward_name;
}

NativeTensorIndex index_native_tensors(const std::vector<NativeTensor>& tensors) {
  NativeTensorIndex index;
  for (const auto& t : tensors) index.emplace(t.name, t);
  return index;
}

std::vector<int64_t> logical_shape(const NativeTensor& t) {
  if (t.kind == StorageKind::kPlain) return t.stored.shape;
  return {t.n_rows, t.n_cols};
}

uint64_t source_n_bytes(const NativeTensor& t) {
  return t.stored.n_bytes() + (t.kind == StorageKind::kPlain ? 0 : t.scale.n_bytes());
}

std::vector<uint8_t> read_source_bytes(const formats::CheckpointDir& source,
                                       const NativeTensor& t) {
  std::vector<uint8_t> bytes(source_n_bytes(t));
  const formats::SafetensorsReader* shard = nullptr;
  const formats::TensorInfo& info = source.tensor(t.name, &shard);
  shard->read(info, 0, info.n_bytes(), bytes.data());
  if (t.kind != StorageKind::kPlain) {
    const formats::TensorInfo& scale = source.tensor(t.scale_name, &shard);
    QF_CHECK(info.n_bytes() + scale.n_bytes() == bytes.size(), "tensor", t.name,
             "changed size on disk since it was classified");
    shard->read(scale, 0, scale.n_bytes(), bytes.data() + info.n_bytes());
  }
  return bytes;
}

std::vector<float> decode_source_tensor(const NativeTensor& t, const uint8_t* bytes,
                                        uint64_t n_bytes,
                                        const std::vector<int64_t>& expected_shape) {
  const std::vector<int64_t> shape = logical_shape(t);
  QF_CHECK(shape == expected_shape, "tensor", t.name, "has shape", formats::shape_str(shape),
           "but the model config implies", formats::shape_str(expected_shape));
  QF_CHECK(n_bytes == source_n_bytes(t), "tensor", t.name, ":", n_bytes, "source bytes, expected",
           source_n_bytes(t));
  const uint64_t n_stored = t.stored.n_bytes();
  switch (t.kind) {
    case StorageKind::kPlain:
      return decode_plain(t, bytes, t.stored.n_elems());
    case StorageKind::kFp8Block: {
      std::vector<float> out(static_cast<size_t>(t.n_rows * t.n_cols));
      decode_fp8_block_to_float(bytes, bytes + n_stored, t.scale.dtype, t.n_rows, t.n_cols,
                                out.data());
      return out;
    }
    case StorageKind::kFp4Block: {
      std::vector<float> out(static_cast<size_t>(t.n_rows * t.n_cols));
      decode_fp4_block_to_float(bytes, bytes + n_stored, t.n_rows, t.n_cols, out.data());
      return out;
    }
  }
  QF_FAIL("tensor", t.name, ": unhandled storage kind");
}

model::WeightLoader make_native_weight_loader(const formats::CheckpointDir& source,
                                              const NativeTensorIndex& tensors,
                                              bool tie_word_embeddings) {
  return [&source, &tensors, tie_word_embeddings](const std::string& name,
                                                  std::vector<int64_t> expected_shape) {
    const std::string native = native_weight_name(name, tie_word_embeddings);
    const auto it = tensors.find(native);
    QF_CHECK(it != tensors.end(), source.dir() + ": no tensor", native, "(asked for as", name, ")");
    const std::vector<uint8_t> bytes = read_source_bytes(source, it->second);
    return decode_source_tensor(it->second, bytes.data(), bytes.size(), expected_shape);
  };
}

}  // namespace qf::pipeline
