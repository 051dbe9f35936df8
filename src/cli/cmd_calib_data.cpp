// `quantforge calib-data`: text datasets (JSONL) + a Hugging Face tokenizer.json -> the
// input_ids safetensors that `quantize --calib` reads. Owns: options and their validation.
// Does not own: tokenization, packing or the file and its provenance (src/tokenizer/).
#include <filesystem>

#include "cli/commands.hpp"
#include "cli/options.hpp"
#include "core/check.hpp"
#include "formats/path_overlap.hpp"
#include "tokenizer/calib_data.hpp"

namespace qf::cli {

int cmd_calib_data(const Args& args) {
  const std::string packing_help = tokenizer::packings().help("how documents become samples:");
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
      "packing", po::value<std::string>()->default_value("concat"), packing_help.c_str())(
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
  tokenizer::CalibDataOptions run;
  tokenizer::TextCalibrationOptions& options = run.text;
  options.seq_len = vm["seq-len"].as<int>();
  options.samples = vm["samples"].as<int64_t>();
  options.field = vm["field"].as<std::string>();
  if (options.seq_len < 1) throw UsageError{"--seq-len must be >= 1", "calib-data"};
  if (options.samples < 0) throw UsageError{"--samples must be >= 1", "calib-data"};
  options.packing =
      parse_enum_option(tokenizer::packings(), vm["packing"].as<std::string>(), "calib-data");
  try {
    for (const std::string& spec : vm["text"].as<std::vector<std::string>>()) {
      options.sources.push_back(tokenizer::parse_text_source(spec));
    }
    tokenizer::resolve_sample_counts(options.sources, options.samples);
  } catch (const Error& e) {
    throw UsageError{e.message(), "calib-data"};
  }
  run.out_path = vm["out"].as<std::string>();
  if (std::filesystem::exists(run.out_path) && !vm.count("force")) {
    throw UsageError{"--out " + run.out_path + " exists (use --force to replace it)", "calib-data"};
  }
  for (const auto& source : options.sources) {
    QF_CHECK(std::filesystem::is_regular_file(source.path), source.path + ": no such file");
  }
  run.tokenizer_path = vm["tokenizer"].as<std::string>();
  // --out is replaced (atomically, at the end): never one of the files this run reads.
  formats::check_not_inside({"--out", run.out_path}, {"--tokenizer", run.tokenizer_path},
                            "the output would replace an input");
  for (const auto& source : options.sources) {
    formats::check_not_inside({"--out", run.out_path}, {"--text", source.path},
                              "the output would replace an input");
  }
  run.bos = !vm.count("no-bos");
  run.bos_token = vm["bos-token"].as<std::string>();
  tokenizer::write_calib_data(run);
  return 0;
}

}  // namespace qf::cli
