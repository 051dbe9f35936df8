// bytes_to_unicode table (see byte_level.hpp), built once.
#include "tokenizer/byte_level.hpp"

#include <array>

#include "tokenizer/unicode_text.hpp"

namespace qf::tokenizer {
namespace {

bool maps_to_itself(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct ByteTable {
  std::array<char32_t, 256> code_point{};
  std::array<std::string, 256> utf8;
  ByteTable() {
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      code_point[b] = maps_to_itself(b) ? static_cast<char32_t>(b) : next++;
      append_utf8(code_point[b], utf8[b]);
    }
  }
};

const ByteTable& table() {
  static const ByteTable t;
  return t;
}

}  // namespace

char32_t byte_to_unicode(uint8_t byte) { return table().code_point[byte]; }

const std::string& byte_symbol(uint8_t byte) { return table().utf8[byte]; }

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += byte_symbol(static_cast<uint8_t>(c));
  return out;
}

}  // namespace qf::tokenizer
