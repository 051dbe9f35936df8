// PCRE2 wrapper (see regex.hpp).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.hpp"

#include <pcre2.h>

#include <memory>

#include "core/check.hpp"
#include "tokenizer/unicode_text.hpp"

namespace qf::tokenizer {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};

}  // namespace

Regex::Regex(const std::string& pattern, bool literal, const std::string& label)
    : pattern_(pattern), label_(label) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // PCRE2_LITERAL refuses PCRE2_UCP (a literal has no classes for it to affect).
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error_code, &error_offset, nullptr);
  QF_CHECK(code != nullptr, label + ": cannot compile regex", "'" + pattern + "'", "at offset",
           error_offset, "-", pcre2_message(error_code));
  // JIT is an optimisation only: a build without it (or a failing JIT) interprets.
  (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

Regex::Regex(Regex&& other) noexcept
    : code_(other.code_), pattern_(std::move(other.pattern_)), label_(std::move(other.label_)) {
  other.code_ = nullptr;
}

Regex& Regex::operator=(Regex&& other) noexcept {
  if (this != &other) {
    if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
    code_ = other.code_;
    pattern_ = std::move(other.pattern_);
    label_ = std::move(other.label_);
    other.code_ = nullptr;
  }
  return *this;
}

std::vector<MatchSpan> Regex::find_all(std::string_view subject) const {
  auto* code = static_cast<pcre2_code*>(code_);
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> data(
      pcre2_match_data_create_from_pattern(code, nullptr));
  QF_CHECK(data != nullptr, label_ + ": out of memory for regex match data");
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  std::vector<MatchSpan> matches;
  size_t offset = 0;
  uint32_t no_jit = 0;  // set after the JIT stack overflows once: the interpreter has no limit
  while (offset <= subject.size()) {
    // The caller validated the UTF-8 once; re-checking on every call would be quadratic.
    int rc = pcre2_match(code, text, subject.size(), offset, PCRE2_NO_UTF_CHECK | no_jit,
                         data.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !no_jit) {
      no_jit = PCRE2_NO_JIT;
      continue;
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    QF_CHECK(rc >= 0, label_ + ": regex match failed at byte", offset, "of a", subject.size(),
             "byte piece -", pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const MatchSpan span{ovector[0], ovector[1]};
    matches.push_back(span);
    if (span.end > span.begin) {
      offset = span.end;
    } else {
      if (span.end >= subject.size()) break;
      offset = span.end + utf8_sequence_length(static_cast<unsigned char>(subject[span.end]));
    }
  }
  return matches;
}

}  // namespace qf::tokenizer
