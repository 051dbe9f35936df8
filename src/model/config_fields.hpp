// Typed, range-checked reads of config.json fields (private to model/config*.cpp). Every failure
// names the file, the field (with its object path and list index), the value and the reason.
// Owns: JSON type checks and range checks. Does not own: which fields exist (config_parse.cpp).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/config_limits.hpp"

namespace qf::model::detail {

// "3.5", "\"256\"", "true": a JSON value as the user wrote it, for messages.
std::string value_text(const nlohmann::json& value);

// A JSON value that must be an integer in `range`: read as int64 (an unsigned value above
// INT64_MAX exceeds the limit), never narrowed before the check; floats (also 256.0), strings
// and booleans are refused.
int64_t checked_integer(const nlohmann::json& value, limits::IntRange range,
                        const std::string& file, const std::string& field);
// A finite number (integer or float) in `range`.
double checked_real(const nlohmann::json& value, limits::RealRange range, const std::string& file,
                    const std::string& field);

// Refuses a value of a field: "<file>: <field> = <value> <reason>".
[[noreturn]] void fail_field(const std::string& file, const std::string& field,
                             const std::string& value, const std::string& reason);

// The fields of one JSON object (the file, or a nested object such as rope_scaling, whose
// fields are then named "rope_scaling.factor").
class ConfigFields {
 public:
  ConfigFields(const nlohmann::json& object, std::string file, std::string prefix = "");

  // Null when the field is absent or JSON null (transformers writes absent fields as null).
  const nlohmann::json* find(const char* key) const;
  bool has(const char* key) const { return find(key) != nullptr; }
  std::string field(const char* key) const { return prefix_ + key; }
  const std::string& file() const { return file_; }

  int64_t integer(const char* key, limits::IntRange range, int64_t dflt) const;
  int narrow_integer(const char* key, limits::IntRange range, int dflt) const;  // range in int
  double real(const char* key, limits::RealRange range, double dflt) const;
  bool boolean(const char* key, bool dflt) const;
  std::string string(const char* key, const std::string& dflt) const;
  // A nested object, or null when absent; refuses any other type.
  const nlohmann::json* object(const char* key) const;
  // A list, or null when absent; refuses any other type.
  const nlohmann::json* list(const char* key) const;

 private:
  const nlohmann::json& json_;
  std::string file_;
  std::string prefix_;
};

}  // namespace qf::model::detail
