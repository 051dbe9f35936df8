// The GPT-2 byte-level alphabet (bytes_to_unicode): every byte maps to one printable code point,
// so any UTF-8 text becomes a string of vocabulary symbols. Owns: the table and the mapping.
// Does not own: where the pre-tokenizer cuts the text (pre_tokenizer.hpp).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace qf::tokenizer {

// The code point GPT-2's bytes_to_unicode() assigns to `byte`: printable Latin-1 bytes
// ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) map to themselves, the other 68 bytes to
// U+0100.. in byte order (so ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
char32_t byte_to_unicode(uint8_t byte);

// The UTF-8 text of byte_to_unicode(byte), precomputed.
const std::string& byte_symbol(uint8_t byte);

// `bytes` with every byte replaced by its symbol (the ByteLevel pre-tokenizer's output).
std::string byte_level_encode(std::string_view bytes);

}  // namespace qf::tokenizer
