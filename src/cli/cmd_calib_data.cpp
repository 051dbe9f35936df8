// `quantforge calib-data`: text datasets (JSONL) + a Hugging Face tokenizer.json -> the
// input_ids safetensors that `quantize --calib` reads. Owns: options and their validation.
// Does not own: tokenization or packing (src/tokenizer/).
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "core/log.hpp"
#include "tokenizer/text_calibration.hpp"
#include "tokenizer/tokenizer.hpp"

namespace qf::cli {

int cmd_calib_data(const Args& args) {
  po::options_description input("input");
  input.add_options()("tokenizer", po::value<std::string>()->required(),
                      "Hugging Face tokenizer.json (byte-level BPE, e.g. DeepSeek V3/V4)")(
      "text", po::value<std::vector<std::string>>()->required()->composing(),
      "JSONL dataset PATH or PATH:N (N samples from it); repeat to mix datasets")(
      "field", po::value<std::string>()->default_value("text"),
      "JSONL field with the document text (a line may also be a bare JSON string)");
  po::options_description output("output");
  output.add_options()("out", po::value<std::string>()->required(),
                       "output .safetensors (input_ids I64 [samples, seq-len])")(
      "seq-len", po::value<int>()->required(), "tokens per sample")(
      "samples", po::value<int64_t>()->default_value(0),
      "total samples; datasets without :N share what the counts leave (default: the sum of "
      "the counts; a dataset without a count then gives every sample it holds)")(
      "packing", po::value<std::string>()->default_value("concat"),
      "concat: documents joined (BOS before each) and cut into seq-len windows;\n"
      "document: one document per sample, cut to seq-len, shorter ones skipped")(
      "bos", "put BOS before every document (default)")("no-bos", "no BOS")(
      "bos-token", po::value<std::string>()->default_value(tokenizer::kDeepSeekBosToken),
      "BOS text, used when the post_processor does not name a single BOS id")(
      "force", "replace --out if it exists");
  po::options_description all("calib-data options");
  all.add(input).add(output);
  po::options_description logging("logging");
  add_common_options(logging);
  all.add(logging);

  po::variables_map vm;
  if (!parse_command_line(
          "calib-data",
          "--tokenizer tokenizer.json --text data.jsonl[:N] [--text other.jsonl:M ...] --out "
          "tokens.safetensors --seq-len L [options]",
          "Tokenizes local JSONL text datasets with a tokenizer.json (plain text, no chat "
          "template; special-token text inside documents is matched as the tokens, as HF "
          "tokenizers does) and writes calibration samples for `quantize --calib`. Each "
          "document becomes [BOS] + ids (no EOS). Samples of several datasets are interleaved "
          "in proportion to their counts. Datasets are read only as far as needed. The output "
          "appears atomically, only when complete.",
          all, po::positional_options_description(), args, vm)) {
    return 0;
  }
  if (vm.count("bos") && vm.count("no-bos")) {
    throw UsageError{"give --bos or --no-bos, not both", "calib-data"};
  }
  tokenizer::TextCalibrationOptions options;
  options.seq_len = vm["seq-len"].as<int>();
  options.samples = vm["samples"].as<int64_t>();
  options.field = vm["field"].as<std::string>();
  if (options.seq_len < 1) throw UsageError{"--seq-len must be >= 1", "calib-data"};
  if (options.samples < 0) throw UsageError{"--samples must be >= 1", "calib-data"};
  try {
    options.packing = tokenizer::parse_packing(vm["packing"].as<std::string>());
    for (const std::string& spec : vm["text"].as<std::vector<std::string>>()) {
      options.sources.push_back(tokenizer::parse_text_source(spec));
    }
    tokenizer::resolve_sample_counts(options.sources, options.samples);
  } catch (const Error& e) {
    throw UsageError{e.message(), "calib-data"};
  }
  const std::string out = vm["out"].as<std::string>();
  if (std::filesystem::exists(out) && !vm.count("force")) {
    throw UsageError{"--out " + out + " exists (use --force to replace it)", "calib-data"};
  }
  for (const auto& source : options.sources) {
    QF_CHECK(std::filesystem::is_regular_file(source.path), source.path + ": no such file");
  }

  const std::string tokenizer_path = vm["tokenizer"].as<std::string>();
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::load(tokenizer_path);
  if (!vm.count("no-bos")) {
    const std::string bos_token = vm["bos-token"].as<std::string>();
    options.bos_id = tok.bos_id(bos_token);
    QF_CHECK(options.bos_id.has_value(), tokenizer_path + ": no BOS id: the post_processor has",
             "no single prefix token and there is no added token", "'" + bos_token + "'",
             "(use --bos-token TEXT or --no-bos)");
  }
  log_info("calib-data: ", tokenizer_path, ": vocab ", tok.vocab_size(), ", ",
           tok.model().n_merges(), " merges, ", tok.added_vocabulary().tokens().size(),
           " added tokens, BOS ", options.bos_id ? std::to_string(*options.bos_id) : "off");

  const tokenizer::TextCalibrationSet set = tokenizer::build_text_calibration(tok, options);
  nlohmann::json provenance = {
      {"tokenizer", tokenizer_path},
      {"seq_len", set.seq_len},
      {"n_samples", set.n_samples},
      {"packing", tokenizer::packing_name(options.packing)},
      {"bos_id", options.bos_id ? nlohmann::json(*options.bos_id) : nlohmann::json(nullptr)},
      {"vocab_size", tok.vocab_size()},
      {"sources", nlohmann::json::array()}};
  for (const auto& s : set.sources) {
    provenance["sources"].push_back({{"path", s.path},
                                     {"samples", s.n_samples},
                                     {"documents", s.n_documents},
                                     {"tokens", s.n_tokens}});
  }
  tokenizer::write_calibration_tokens(
      set, out, {{"format", "pt"}, {"quantforge.calib_data", provenance.dump()}});
  log_info("calib-data: wrote ", out, ": input_ids [", set.n_samples, ", ", set.seq_len, "]");
  return 0;
}

}  // namespace qf::cli
