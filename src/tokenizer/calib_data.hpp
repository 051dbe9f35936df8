// The `calib-data` job: a tokenizer.json and JSONL datasets -> the input_ids safetensors that
// `quantize --calib` reads, with its provenance in the metadata. Owns: BOS choice, provenance.
// Does not own tokenization (tokenizer.hpp) or sampling and the file layout (text_calibration).
#pragma once
#include <string>

#include "tokenizer/text_calibration.hpp"

namespace qf::tokenizer {

struct CalibDataOptions {
  TextCalibrationOptions text;  // text.bos_id is chosen here (see bos)
  std::string tokenizer_path;   // tokenizer.json
  std::string out_path;         // .safetensors, written atomically
  // BOS before every document: the post_processor's single prefix id, else the added token
  // named bos_token; an error when neither exists. false: no BOS.
  bool bos = true;
  std::string bos_token = kDeepSeekBosToken;
};

// Loads the tokenizer, builds the set and writes it (metadata "quantforge.calib_data": the
// tokenizer, seq_len, samples, packing, BOS, vocab and per-source counts). Logs on rank 0.
TextCalibrationSet write_calib_data(const CalibDataOptions& options);

}  // namespace qf::tokenizer
