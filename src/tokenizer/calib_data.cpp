// write_calib_data (see calib_data.hpp).
#include "tokenizer/calib_data.hpp"

#include <nlohmann/json.hpp>

#include "core/check.hpp"
#include "core/log.hpp"
#include "tokenizer/tokenizer.hpp"

namespace qf::tokenizer {

TextCalibrationSet write_calib_data(const CalibDataOptions& options) {
  const std::string& tokenizer_path = options.tokenizer_path;
  const Tokenizer tok = Tokenizer::load(tokenizer_path);
  TextCalibrationOptions text = options.text;
  if (options.bos) {
    text.bos_id = tok.bos_id(options.bos_token);
    QF_CHECK(text.bos_id.has_value(), tokenizer_path + ": no BOS id: the post_processor has",
             "no single prefix token and there is no added token", "'" + options.bos_token + "'",
             "(use --bos-token TEXT or --no-bos)");
  }
  log_info("calib-data: ", tokenizer_path, ": vocab ", tok.vocab_size(), ", ",
           tok.model().n_merges(), " merges, ", tok.added_vocabulary().tokens().size(),
           " added tokens, BOS ", text.bos_id ? std::to_string(*text.bos_id) : "off");

  TextCalibrationSet set = build_text_calibration(tok, text);
  nlohmann::json provenance = {
      {"tokenizer", tokenizer_path},
      {"seq_len", set.seq_len},
      {"n_samples", set.n_samples},
      {"packing", packings().name(text.packing)},
      {"bos_id", text.bos_id ? nlohmann::json(*text.bos_id) : nlohmann::json(nullptr)},
      {"vocab_size", tok.vocab_size()},
      {"sources", nlohmann::json::array()}};
  for (const auto& s : set.sources) {
    provenance["sources"].push_back({{"path", s.path},
                                     {"samples", s.n_samples},
                                     {"documents", s.n_documents},
                                     {"tokens", s.n_tokens}});
  }
  write_calibration_tokens(set, options.out_path,
                           {{"format", "pt"}, {"quantforge.calib_data", provenance.dump()}});
  log_info("calib-data: wrote ", options.out_path, ": input_ids [", set.n_samples, ", ",
           set.seq_len, "]");
  return set;
}

}  // namespace qf::tokenizer
