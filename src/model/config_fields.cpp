// ConfigFields and the checked readers of config.json values (see config_fields.hpp).
#include "model/config_fields.hpp"

#include <cmath>
#include <limits>
#include <sstream>

#include "core/check.hpp"

namespace qf::model::detail {

using nlohmann::json;

std::string value_text(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";  // a long list or string
  return text;
}

void fail_field(const std::string& file, const std::string& field, const std::string& value,
                const std::string& reason) {
  QF_FAIL(file + ":", field, "=", value, reason);
}

namespace {

std::string real_text(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

int64_t checked_integer(const json& value, limits::IntRange range, const std::string& file,
                        const std::string& field) {
  if (!value.is_number_integer()) {
    fail_field(file, field, value_text(value), "must be an integer");
  }
  int64_t v = 0;
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail_field(file, field, value_text(value), "exceeds the limit " + std::to_string(range.max));
    }
    v = static_cast<int64_t>(u);
  } else {
    v = value.get<int64_t>();
  }
  if (v < range.min) {
    fail_field(file, field, std::to_string(v),
               range.min == 0 ? "must not be negative"
                              : "is below the minimum " + std::to_string(range.min));
  }
  if (v > range.max) {
    fail_field(file, field, std::to_string(v),
               range.min == range.max ? "must be " + std::to_string(range.min)
                                      : "exceeds the limit " + std::to_string(range.max));
  }
  return v;
}

double checked_real(const json& value, limits::RealRange range, const std::string& file,
                    const std::string& field) {
  if (!value.is_number()) fail_field(file, field, value_text(value), "must be a number");
  const double v = value.get<double>();
  if (!std::isfinite(v)) fail_field(file, field, real_text(v), "must be finite");
  if (range.min_open ? !(v > range.min) : !(v >= range.min)) {
    fail_field(file, field, value_text(value),
               std::string("must be ") + (range.min_open ? "> " : ">= ") + real_text(range.min));
  }
  if (v > range.max) {
    fail_field(file, field, value_text(value), "exceeds the limit " + real_text(range.max));
  }
  return v;
}

ConfigFields::ConfigFields(const json& object, std::string file, std::string prefix)
    : json_(object), file_(std::move(file)), prefix_(std::move(prefix)) {
  QF_CHECK(json_.is_object(), file_ + ":",
           prefix_.empty() ? std::string("config") : prefix_.substr(0, prefix_.size() - 1),
           "must be a JSON object, got", value_text(json_));
}

const json* ConfigFields::find(const char* key) const {
  const auto it = json_.find(key);
  return (it == json_.end() || it->is_null()) ? nullptr : &*it;
}

int64_t ConfigFields::integer(const char* key, limits::IntRange range, int64_t dflt) const {
  const json* v = find(key);
  return v ? checked_integer(*v, range, file_, field(key)) : dflt;
}

int ConfigFields::narrow_integer(const char* key, limits::IntRange range, int dflt) const {
  static_assert(sizeof(int) >= 4, "int holds every limit");
  QF_CHECK(
      range.min >= std::numeric_limits<int>::min() && range.max <= std::numeric_limits<int>::max(),
      "the limit of", field(key), "does not fit an int");
  return static_cast<int>(integer(key, range, dflt));
}

double ConfigFields::real(const char* key, limits::RealRange range, double dflt) const {
  const json* v = find(key);
  return v ? checked_real(*v, range, file_, field(key)) : dflt;
}

bool ConfigFields::boolean(const char* key, bool dflt) const {
  const json* v = find(key);
  if (!v) return dflt;
  if (!v->is_boolean()) fail_field(file_, field(key), value_text(*v), "must be true or false");
  return v->get<bool>();
}

std::string ConfigFields::string(const char* key, const std::string& dflt) const {
  const json* v = find(key);
  if (!v) return dflt;
  if (!v->is_string()) fail_field(file_, field(key), value_text(*v), "must be a string");
  return v->get<std::string>();
}

const json* ConfigFields::object(const char* key) const {
  const json* v = find(key);
  if (v && !v->is_object()) fail_field(file_, field(key), value_text(*v), "must be an object");
  return v;
}

const json* ConfigFields::list(const char* key) const {
  const json* v = find(key);
  if (v && !v->is_array()) fail_field(file_, field(key), value_text(*v), "must be a list");
  return v;
}

}  // namespace qf::model::detail
