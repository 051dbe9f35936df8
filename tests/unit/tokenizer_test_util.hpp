// Shared helpers for the tokenizer tests: where tests/fixtures/tokenizer is, and the hand-made
// DeepSeek-like tokenizer.json there. Owns: test scaffolding only.
#pragma once
#include <cstdlib>
#include <string>

#include "tokenizer/tokenizer.hpp"

namespace qf::tokenizer::test {

// tests/fixtures/tokenizer: from $QF_SOURCE_DIR (set by ctest), else next to this source file.
inline std::string fixture_dir() {
  if (const char* root = std::getenv("QF_SOURCE_DIR")) {
    return std::string(root) + "/tests/fixtures/tokenizer";
  }
  const std::string here = __FILE__;
  return here.substr(0, here.rfind("/unit/")) + "/fixtures/tokenizer";
}

// deepseek_like.tokenizer.json (made by make_deepseek_like.py there): DeepSeek V3's exact
// pre-tokenizer, ids 0..255 = the byte-level symbol of that byte, merges 256.., EOS 282 (in the
// vocab), BOS 283 (TemplateProcessing prefix), <think> 284, </think> 285, <｜User｜> 286,
// <mask> 287 (special, lstrip).
inline const Tokenizer& deepseek_like() {
  static const Tokenizer tok = Tokenizer::load(fixture_dir() + "/deepseek_like.tokenizer.json");
  return tok;
}

}  // namespace qf::tokenizer::test
