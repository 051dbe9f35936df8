// Small string predicates the pipeline needs in many places (tensor-name suffixes).
#pragma once
#include <string>

namespace qf {

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace qf
