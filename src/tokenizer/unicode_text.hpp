// UTF-8 helpers the tokenizer needs: validation, code point decoding, Unicode White_Space.
// Owns: byte-level UTF-8 facts only. Does not own: Unicode categories (PCRE2 answers those).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qf::tokenizer {

// Byte offset of the first ill-formed UTF-8 sequence in `text` (overlongs, surrogates and code
// points past U+10FFFF are ill-formed), or std::string_view::npos when the text is valid.
size_t find_invalid_utf8(std::string_view text);

// Number of bytes of the UTF-8 sequence that starts with `lead` (1 for a stray continuation
// byte, so that scanning always advances).
size_t utf8_sequence_length(unsigned char lead);

// Decodes the code point starting at text[pos] (text must be valid UTF-8 there).
char32_t decode_utf8_at(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of `cp` (cp <= U+10FFFF) to `out`.
void append_utf8(char32_t cp, std::string& out);

// Unicode White_Space, as Rust's char::is_whitespace (used by added-token lstrip/rstrip).
bool is_unicode_whitespace(char32_t cp);

}  // namespace qf::tokenizer
