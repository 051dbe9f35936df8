// Fuzz target: tokenizer.json text through Tokenizer::from_json and, when accepted, an encode
// of a fixed text that touches added tokens, words, digits, CJK and whitespace runs.
#include "formats/atomic_file.hpp"
#include "fuzz_util.hpp"
#include "tokenizer/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  qf::fuzz::expect_ok_or_error([&] {
    const auto json = qf::formats::parse_json_strict(text, "tokenizer.json");
    const auto tok = qf::tokenizer::Tokenizer::from_json(json, "tokenizer.json");
    (void)tok.encode_with_special_tokens(
        "def f(x):\n    return x  # 42 \xe4\xbd\xa0\xe5\xa5\xbd <|end|>");
  });
  return 0;
}
