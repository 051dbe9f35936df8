// Regex: one compiled PCRE2 pattern (UTF-8 + Unicode properties, JIT when available) and the
// find-all loop the Split pre-tokenizer needs. Owns: the PCRE2 handle and match semantics.
// Does not own: what the matches mean (pre_tokenizer.cpp).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qf::tokenizer {

struct MatchSpan {
  size_t begin = 0;  // byte offsets into the subject
  size_t end = 0;
};

class Regex {
 public:
  // Compiles `pattern` with PCRE2_UTF | PCRE2_UCP (\p{L}, \s etc. follow Unicode), or as a
  // literal string when `literal`. Throws qf::Error naming `label`, the offset and PCRE2's reason.
  Regex(const std::string& pattern, bool literal, const std::string& label);
  ~Regex();
  Regex(Regex&& other) noexcept;
  Regex& operator=(Regex&& other) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Every non-overlapping match in `subject` (valid UTF-8), left to right. Lookarounds see only
  // `subject`, as in HF tokenizers where each piece is matched on its own. After an empty match
  // the search resumes one character later (empty matches still mark split points).
  std::vector<MatchSpan> find_all(std::string_view subject) const;

  const std::string& pattern() const { return pattern_; }

 private:
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so pcre2.h stays out of headers
  std::string pattern_;
  std::string label_;
};

}  // namespace qf::tokenizer
