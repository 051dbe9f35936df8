// One table per option enum: its names, values and one-line help, read by the parser, the name
// printer and the --help text alike (llama.cpp's quantize type table). Owns only that lookup;
// what a value means belongs to the module that declares the enum.
#pragma once
#include <initializer_list>
#include <string>
#include <vector>

#include "core/check.hpp"

namespace qf {

template <typename E>
struct EnumEntry {
  const char* name;
  E value;
  const char* help;  // one line, no trailing period
};

template <typename E>
class EnumTable {
 public:
  // `what` names the option in errors ("--recipe", "--backend").
  EnumTable(const char* what, std::initializer_list<EnumEntry<E>> entries)
      : what_(what), entries_(entries) {}

  // The value named `name`; an unknown name throws listing every valid one.
  E parse(const std::string& name) const {
    for (const auto& e : entries_) {
      if (name == e.name) return e.value;
    }
    QF_FAIL("unknown", what_, "'" + name + "';", "expected", names());
  }
  const char* name(E value) const {
    for (const auto& e : entries_) {
      if (e.value == value) return e.name;
    }
    return "?";
  }
  bool contains(const std::string& name) const {
    for (const auto& e : entries_) {
      if (name == e.name) return true;
    }
    return false;
  }
  // "a | b | c"
  std::string names(const char* separator = " | ") const {
    std::string out;
    for (const auto& e : entries_) out += std::string(out.empty() ? "" : separator) + e.name;
    return out;
  }
  // `intro`, then one "  name: help" line per value: the text --help shows for the option.
  std::string help(const std::string& intro) const {
    std::string out = intro;
    for (const auto& e : entries_) out += std::string("\n  ") + e.name + ": " + e.help;
    return out;
  }
  const std::vector<EnumEntry<E>>& entries() const { return entries_; }

 private:
  const char* what_;
  std::vector<EnumEntry<E>> entries_;
};

}  // namespace qf
