// Small string helpers the pipeline needs in many places: tensor-name prefixes and suffixes,
// printf-style formatting into a std::string (fixed-width tables). The project's only copies:
// no file defines its own ends_with or counts a suffix's characters by hand.
#pragma once
#include <cstdarg>
#include <cstdio>
#include <string>

namespace qf {

inline bool starts_with(const std::string& s, const std::string& head) {
  return s.compare(0, head.size(), head) == 0;
}

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// s without its leading `head` (`model.layers.0` -> `layers.0`); s itself when it does not
// start with head.
inline std::string strip_prefix(const std::string& s, const std::string& head) {
  return starts_with(s, head) ? s.substr(head.size()) : s;
}

// s without its trailing `tail` (`a.b.scale` -> `a.b`); s itself when it does not end with tail.
inline std::string strip_suffix(const std::string& s, const std::string& tail) {
  return ends_with(s, tail) ? s.substr(0, s.size() - tail.size()) : s;
}

// `text` with its control bytes (NUL, 0x01-0x1F, DEL) written as \xNN, for names read from
// files (tensor names, JSON keys) in messages: a NUL would cut the message where it is printed
// through a C string, and control bytes would garble the terminal. UTF-8 stays as it is.
// keep_line_breaks: '\n' and '\t' stay (whole messages, which are laid out with them).
inline std::string escape_nonprintable(const std::string& text, bool keep_line_breaks = false) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    const bool line_break = byte == '\n' || byte == '\t';
    if ((byte < 0x20 || byte == 0x7f) && !(keep_line_breaks && line_break)) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    } else {
      out += c;
    }
  }
  return out;
}

// printf into a std::string of any length.
inline std::string str_printf(const char* format, ...) __attribute__((format(printf, 1, 2)));
inline std::string str_printf(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list again;
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out(n > 0 ? size_t(n) : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), out.size() + 1, format, again);
  va_end(again);
  return out;
}

}  // namespace qf
