// The C++ tokenizer.json implementation on the hand-made DeepSeek-like fixture, with ids worked
// out by hand: the byte-level table, DeepSeek V3's pre-tokenizer regexes (digits, CJK, code,
// whitespace, emoji), merge ranking, added/special tokens, the HF id rules, errors; then the
// text -> calibration-samples path (mixing, packing, file:line errors, atomic output).
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "calibrate/calibration_data.hpp"
#include "catch_compat.hpp"
#include "core/check.hpp"
#include "error_test_util.hpp"
#include "formats_test_util.hpp"
#include "tokenizer/byte_level.hpp"
#include "tokenizer/text_calibration.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer_test_util.hpp"

using namespace qf;
using namespace qf::tokenizer;
using formats::test::TempDir;
using Ids = std::vector<int64_t>;
using Pieces = std::vector<std::string>;

namespace {

using qf::test::contains;
using qf::test::error_of;

using qf::test::write_text;

// A minimal tokenizer.json around `model` / `extra` members.
nlohmann::json tiny_config(const nlohmann::json& vocab, const nlohmann::json& merges) {
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

const std::string kSp = "\xC4\xA0";  // 'Ġ' (U+0120), the byte-level symbol of ' '
const std::string kNl = "\xC4\x8A";  // 'Ċ' (U+010A), the symbol of '\n'

}  // namespace

TEST_CASE("byte-level table is GPT-2's bytes_to_unicode", "[tokenizer]") {
  CHECK(byte_to_unicode('A') == U'A');
  CHECK(byte_to_unicode('!') == U'!');
  CHECK(byte_to_unicode(0x00) == 0x100);
  CHECK(byte_to_unicode(' ') == 0x120);
  CHECK(byte_to_unicode('\n') == 0x10A);
  CHECK(byte_to_unicode(0x7F) == 0x121);  // 33 control bytes + space come first
  CHECK(byte_to_unicode(0xA0) == 0x142);
  CHECK(byte_to_unicode(0xA1) == 0xA1);
  CHECK(byte_to_unicode(0xAD) == 0x143);  // soft hyphen: the last remapped byte
  CHECK(byte_to_unicode(0xFF) == 0xFF);
  std::set<char32_t> seen;
  for (int b = 0; b < 256; ++b) seen.insert(byte_to_unicode(static_cast<uint8_t>(b)));
  CHECK(seen.size() == 256);
  CHECK(byte_level_encode("a b\n") == "a" + kSp + "b" + kNl);
}

TEST_CASE("DeepSeek V3 pre-tokenizer splits digits, CJK, code and whitespace", "[tokenizer]") {
  const Tokenizer& tok = qf::tokenizer::test::deepseek_like();
  // \p{N}{1,3} isolates digit triples first.
  CHECK(tok.pre_tokenize("12345") == Pieces{"123", "45"});
  CHECK(tok.pre_tokenize("abc1234def") == Pieces{"abc", "123", "4", "def"});
  // CJK runs are isolated, then byte-level mapped (你 = E4 BD A0 -> "ä½ł").
  CHECK(tok.pre_tokenize("\xE4\xBD\xA0\xE5\xA5\xBDworld") ==
        Pieces{"\xC3\xA4\xC2\xBD\xC5\x82\xC3\xA5\xC2\xA5\xC2\xBD", "world"});
  CHECK(byte_level_encode("\xE4\xBD\xA0") == "\xC3\xA4\xC2\xBD\xC5\x82");
  // Letters take one leading non-letter/punct/symbol (the space); punctuation is separate.
  CHECK(tok.pre_tokenize("Hello, world!") == Pieces{"Hello", ",", kSp + "world", "!"});
  // One ASCII punctuation + ASCII letters is one piece ("(x", ".Net").
  CHECK(tok.pre_tokenize(".Net") == Pieces{".Net"});
  CHECK(tok.pre_tokenize("def f(x):\n    return x") ==
        Pieces{"def", kSp + "f", "(x", "):" + kNl, kSp + kSp + kSp, kSp + "return", kSp + "x"});
  // \s+(?!\S) leaves the last space to the next word; newlines group with \s*[\r\n]+.
  CHECK(tok.pre_tokenize("a  b") == Pieces{"a", kSp, kSp + "b"});
  CHECK(tok.pre_tokenize("x\n\ny") == Pieces{"x", kNl + kNl, "y"});
  // An emoji is a symbol (So): it joins the punctuation run with its leading space.
  CHECK(tok.pre_tokenize("hi \xF0\x9F\x98\x80!") ==
        Pieces{"hi", kSp + byte_level_encode("\xF0\x9F\x98\x80") + "!"});
  CHECK(tok.pre_tokenize("").empty());
}

TEST_CASE("BPE applies merges by rank, leftmost first", "[tokenizer]") {
  const Tokenizer& tok = qf::tokenizer::test::deepseek_like();
  CHECK(tok.encode("abc") == Ids{97, 256});  // "b c" (rank 0) beats "a b" (rank 1)
  CHECK(tok.encode("abab") == Ids{257, 257});
  CHECK(tok.encode("aaa") == Ids{258, 97});  // equal ranks: the leftmost pair merges first
  CHECK(tok.encode("aaaa") == Ids{258, 258});
  CHECK(tok.encode("hello world") == Ids{262, 267});  // he, ll, hell, hello; Ġw, or, Ġwor, ld
  CHECK(tok.encode("12345") == Ids{269, 52, 53});     // "123" merged, "45" has no merge
  CHECK(tok.encode("x") == Ids{120});                 // single byte = its own id here
}

TEST_CASE("every byte reaches the vocabulary through the byte-level alphabet", "[tokenizer]") {
  const Tokenizer& tok = qf::tokenizer::test::deepseek_like();
  // 你好 merge to one token each; 😀 = F0 9F 98 80: "ðŁ" merged, the rest single bytes.
  CHECK(tok.encode("\xE4\xBD\xA0\xE5\xA5\xBD") == Ids{278, 280});
  CHECK(tok.encode("\xF0\x9F\x98\x80") == Ids{281, 0x98, 0x80});
  CHECK(tok.encode("\xC3\xA9") == Ids{0xC3, 0xA9});  // é without merges: its two bytes
  CHECK(tok.encode("\t\r\n") == Ids{9, 13, 10});
}

TEST_CASE("added and special tokens are cut out before pre-tokenization", "[tokenizer]") {
  const Tokenizer& tok = qf::tokenizer::test::deepseek_like();
  REQUIRE(tok.bos_id() == 283);
  CHECK(tok.prefix_ids() == Ids{283});
  CHECK(tok.suffix_ids().empty());
  CHECK(tok.vocab_size() == 288);
  CHECK(tok.token_to_id(kDeepSeekBosToken) == 283);
  CHECK(tok.token_to_id("hello") == 262);
  const std::string bos = kDeepSeekBosToken;
  CHECK(tok.encode(bos + "hi<think>x") == Ids{283, 104, 105, 284, 120});
  CHECK(tok.encode_with_special_tokens("hello world") == Ids{283, 262, 267});
  CHECK(tok.encode_with_special_tokens("") == Ids{283});
  // The text around a token is pre-tokenized on its own: no "Ġ" joins across <think>.
  CHECK(tok.encode("a<think> b") == Ids{97, 284, 32, 98});
  // lstrip: <mask> swallows the space before it.
  CHECK(tok.encode("a <mask> b") == Ids{97, 287, 32, 98});
  // Longest match: "<think>" inside a longer non-token stays plain text.
  CHECK(tok.encode("<thin") == Ids{'<', 't', 'h', 'i', 'n'});
}

TEST_CASE("added-token ids follow HF tokenizers, not the file's id fields", "[tokenizer]") {
  nlohmann::json config = tiny_config({{"a", 0}, {"b", 1}, {"<s>", 2}}, nlohmann::json::array());
  config["added_tokens"] = {
      {{"id", 50}, {"content", "<x>"}, {"special", true}},
      {{"id", 7}, {"content", "<s>"}, {"special", true}},  // in the vocab: keeps 2
      {{"id", 51}, {"content", "<y>"}, {"special", true}},
  };
  const Tokenizer tok = Tokenizer::from_json(config, "inline.json");
  CHECK(tok.token_to_id("<x>") == 3);  // model vocab size
  CHECK(tok.token_to_id("<s>") == 2);
  CHECK(tok.token_to_id("<y>") == 4);
  CHECK(tok.encode("a<y>b<s>") == Ids{0, 4, 1, 2});
  CHECK(!tok.bos_id().has_value());
  CHECK(tok.bos_id("<s>") == 2);
}

TEST_CASE("merges may be strings or pairs; no pre-tokenizer keeps the text whole", "[tokenizer]") {
  const Tokenizer strings = Tokenizer::from_json(
      tiny_config({{"a", 0}, {"b", 1}, {"ab", 2}}, nlohmann::json::array({"a b"})), "s.json");
  const Tokenizer pairs =
      Tokenizer::from_json(tiny_config({{"a", 0}, {"b", 1}, {"ab", 2}},
                                       nlohmann::json::array({nlohmann::json::array({"a", "b"})})),
                           "p.json");
  CHECK(strings.encode("abab") == Ids{2, 2});
  CHECK(pairs.encode("abab") == Ids{2, 2});
  // 'c' is not in the vocab and there is no unk: HF drops it, and "a" "b" then merge.
  CHECK(strings.encode("acb") == Ids{2});
}

TEST_CASE("tokenizer errors name the file and the reason", "[tokenizer]") {
  CHECK(contains(error_of([] {
                   Tokenizer::from_json(tiny_config({{"a", 0}}, nlohmann::json::array({"a b"})),
                                        "bad_merge.json");
                 }),
                 "bad_merge.json merges[0]"));
  nlohmann::json config = tiny_config({{"a", 0}}, nlohmann::json::array());
  config["normalizer"] = {{"type", "NFC"}};
  CHECK(contains(error_of([&] { Tokenizer::from_json(config, "nfc.json"); }),
                 "nfc.json: normalizer"));
  config = tiny_config({{"a", 0}}, nlohmann::json::array());
  config["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  CHECK(
      contains(error_of([&] { Tokenizer::from_json(config, "re.json"); }), "cannot compile regex"));
  config["pre_tokenizer"] = {{"type", "Metaspace"}};
  CHECK(contains(error_of([&] { Tokenizer::from_json(config, "ms.json"); }), "Metaspace"));
  const Tokenizer& tok = qf::tokenizer::test::deepseek_like();
  CHECK(contains(error_of([&] { tok.encode("ok \xFF bad"); }), "not valid UTF-8 at byte 3"));
  CHECK(contains(error_of([] { Tokenizer::load("/nonexistent/tokenizer.json"); }),
                 "/nonexistent/tokenizer.json"));
}

TEST_CASE("--text specs, sample counts and the mixing order", "[tokenizer][calib-data]") {
  CHECK(parse_text_source("a.jsonl").n_samples == -1);
  CHECK(parse_text_source("a.jsonl:12").path == "a.jsonl");
  CHECK(parse_text_source("a.jsonl:12").n_samples == 12);
  CHECK(parse_text_source("C:/x:y.jsonl").path == "C:/x:y.jsonl");  // not a count
  CHECK(contains(error_of([] { parse_text_source("a.jsonl:0"); }), ">= 1"));

  using V = std::vector<int64_t>;
  CHECK(resolve_sample_counts({{"a", 3}, {"b", 5}}, 0) == V{3, 5});
  CHECK(resolve_sample_counts({{"a", 3}, {"b", -1}}, 0) == V{3, -1});
  CHECK(resolve_sample_counts({{"a", 3}, {"b", -1}, {"c", -1}}, 10) == V{3, 4, 3});
  CHECK(contains(error_of([] { resolve_sample_counts({{"a", 3}, {"b", 5}}, 9); }), "add up"));
  CHECK(contains(error_of([] { resolve_sample_counts({{"a", 9}, {"b", -1}}, 9); }), "leaves"));

  CHECK(interleave_sources({2, 2}) == std::vector<int>{0, 1, 0, 1});
  CHECK(interleave_sources({1, 3}) == std::vector<int>{1, 0, 1, 1});
  CHECK(interleave_sources({2, 1}) == std::vector<int>{0, 1, 0});
  CHECK(interleave_sources({3, 0}) == std::vector<int>{0, 0, 0});
}

TEST_CASE("calib-data packs documents with BOS into windows and mixes files", "[calib-data]") {
  const Tokenizer& tok = qf::tokenizer::test::deepseek_like();
  const TempDir dir;
  // Documents: "hello world" -> 283 262 267, "abc" -> 283 97 256, "aaa" -> 283 258 97.
  write_text(dir.file("a.jsonl"),
             "{\"text\": \"hello world\"}\n\n{\"text\": \"abc\", \"id\": 7}\n\"aaa\"\n");
  write_text(dir.file("b.jsonl"), "{\"body\": \"12345\"}\n{\"body\": \"x\"}\n");

  TextCalibrationOptions options;
  options.seq_len = 4;
  options.bos_id = 283;
  options.sources = {{dir.file("a.jsonl"), 2}};
  TextCalibrationSet set = build_text_calibration(tok, options);
  CHECK(set.n_samples == 2);
  CHECK(set.token_ids == Ids{283, 262, 267, 283, 97, 256, 283, 258});
  CHECK(set.sources[0].n_documents == 3);

  // Every full window (-1): 9 tokens -> 2 windows, the tail dropped.
  options.sources = {{dir.file("a.jsonl"), -1}};
  CHECK(build_text_calibration(tok, options).n_samples == 2);

  // --field picks the text: b.jsonl "body": 283 269 52 53 | 283 120 -> 1 window.
  options.field = "body";
  options.sources = {{dir.file("b.jsonl"), 1}};
  CHECK(build_text_calibration(tok, options).token_ids == Ids{283, 269, 52, 53});

  // document packing: one document per sample, short ones skipped.
  options.field = "text";
  options.packing = Packing::kDocument;
  options.seq_len = 3;
  options.sources = {{dir.file("a.jsonl"), 3}};
  set = build_text_calibration(tok, options);
  CHECK(set.token_ids == Ids{283, 262, 267, 283, 97, 256, 283, 258, 97});
  options.seq_len = 4;
  CHECK(contains(error_of([&] { build_text_calibration(tok, options); }),
                 "3 shorter than --seq-len"));

  // No BOS.
  options.packing = Packing::kConcat;
  options.bos_id.reset();
  options.seq_len = 2;
  options.sources = {{dir.file("a.jsonl"), 2}};
  CHECK(build_text_calibration(tok, options).token_ids == Ids{262, 267, 97, 256});
}

TEST_CASE("calib-data mixes two datasets in proportion", "[calib-data]") {
  const Tokenizer& tok = qf::tokenizer::test::deepseek_like();
  const TempDir dir;
  write_text(dir.file("a.jsonl"), "\"aaaa\"\n\"aaaa\"\n");   // 283 258 258 per document
  write_text(dir.file("b.jsonl"), "\"x\"\n\"x\"\n\"x\"\n");  // 283 120 per document
  TextCalibrationOptions options;
  options.seq_len = 2;
  options.bos_id = 283;
  options.packing = Packing::kDocument;
  options.sources = {{dir.file("a.jsonl"), 2}, {dir.file("b.jsonl"), -1}};
  options.samples = 3;  // b gets what the count of a leaves: 1
  const TextCalibrationSet set = build_text_calibration(tok, options);
  REQUIRE(set.n_samples == 3);
  // Order a, b, a (interleave {2, 1}).
  CHECK(set.token_ids == Ids{283, 258, 283, 120, 283, 258});
}

TEST_CASE("calib-data errors name file and line; output is all or nothing", "[calib-data]") {
  const Tokenizer& tok = qf::tokenizer::test::deepseek_like();
  const TempDir dir;
  TextCalibrationOptions options;
  options.seq_len = 2;
  options.bos_id = 283;

  write_text(dir.file("bad.jsonl"), "{\"text\": \"ok\"}\n{\"text\": broken}\n");
  options.sources = {{dir.file("bad.jsonl"), 5}};
  CHECK(contains(error_of([&] { build_text_calibration(tok, options); }),
                 dir.file("bad.jsonl") + ":2: invalid JSON"));
  write_text(dir.file("field.jsonl"), "{\"content\": \"ok\"}\n");
  options.sources = {{dir.file("field.jsonl"), 1}};
  CHECK(contains(error_of([&] { build_text_calibration(tok, options); }),
                 dir.file("field.jsonl") + ":1: no field \"text\""));
  write_text(dir.file("num.jsonl"), "{\"text\": 5}\n");
  options.sources = {{dir.file("num.jsonl"), 1}};
  CHECK(contains(error_of([&] { build_text_calibration(tok, options); }),
                 dir.file("num.jsonl") + ":1: expected a string"));
  write_text(dir.file("short.jsonl"), "\"abc\"\n");
  options.sources = {{dir.file("short.jsonl"), 5}};
  CHECK(contains(error_of([&] { build_text_calibration(tok, options); }), "yields only 1 samples"));
  options.sources = {{dir.file("missing.jsonl"), 1}};
  CHECK(contains(error_of([&] { build_text_calibration(tok, options); }),
                 "missing.jsonl: cannot open"));

  // A good set round-trips through the file quantize reads.
  write_text(dir.file("good.jsonl"), "\"hello world\"\n\"abc\"\n");
  options.sources = {{dir.file("good.jsonl"), 3}};
  const TextCalibrationSet set = build_text_calibration(tok, options);
  const std::string out = dir.file("tokens.safetensors");
  write_calibration_tokens(set, out, {{"format", "pt"}});
  const pipeline::CalibrationSet loaded =
      pipeline::load_calibration_set(out, 0, 2, tok.vocab_size());
  CHECK(loaded.n_samples == 3);
  CHECK(loaded.token_ids == Ids{283, 262, 267, 283, 97, 256});
  // A set that does not fit its shape is refused before anything is created.
  TextCalibrationSet broken = set;
  broken.token_ids.pop_back();
  const std::string out2 = dir.file("never.safetensors");
  CHECK(contains(error_of([&] { write_calibration_tokens(broken, out2, {}); }), "holds 5 ids"));
  CHECK(!std::filesystem::exists(out2));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    CHECK(!contains(entry.path().filename().string(), ".tmp."));
  }
}
