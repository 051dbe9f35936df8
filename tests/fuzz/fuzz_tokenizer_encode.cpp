// Fuzz target: arbitrary bytes as text through the fixture tokenizer (tests/fixtures/tokenizer/
// deepseek_like.tokenizer.json, path in QF_FUZZ_TOKENIZER): invalid UTF-8 must be an error,
// everything else must encode.
#include <cstdlib>
#include <memory>

#include "fuzz_util.hpp"
#include "tokenizer/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<qf::tokenizer::Tokenizer> tok;
  if (!tok) {
    const char* path = std::getenv("QF_FUZZ_TOKENIZER");
    if (path == nullptr) ::abort();
    tok = std::make_unique<qf::tokenizer::Tokenizer>(qf::tokenizer::Tokenizer::load(path));
  }
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  qf::fuzz::expect_ok_or_error([&] {
    (void)tok->encode(text);
    (void)tok->encode_with_special_tokens(text);
  });
  return 0;
}
