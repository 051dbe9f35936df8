// manifest.json of a rank store: serialisation with a self-checksum, strict parsing, file-name
// rules and provenance diffs.
#include "formats/rank_store_manifest.hpp"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "core/check.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "formats/checksum.hpp"

namespace qf::formats {
namespace {

using nlohmann::json;

constexpr const char* kSelfChecksumKey = "manifest_xxh64";
constexpr size_t kMaxStageChars = 32;
constexpr size_t kMaxValueChars = 96;  // longer values are cut in provenance diffs

// XXH64 of the compact dump of the manifest without its self-checksum key (nlohmann dumps
// object keys sorted, so the text is canonical).
std::string self_checksum(json manifest) {
  manifest.erase(kSelfChecksumKey);
  const std::string text = manifest.dump();
  return checksum_hex(checksum64(text.data(), text.size()));
}

const json& field(const json& object, const char* key, json::value_t type, const char* type_name,
                  const std::string& where) {
  QF_CHECK(object.contains(key), where + ":", "missing field \"" + std::string(key) + "\"");
  const json& value = object.at(key);
  const bool ok =
      type == json::value_t::number_integer ? value.is_number_integer() : value.type() == type;
  QF_CHECK(ok, where + ":", "field \"" + std::string(key) + "\" is not", type_name);
  return value;
}

std::string string_field(const json& object, const char* key, const std::string& where) {
  return field(object, key, json::value_t::string, "a string", where).get<std::string>();
}

int64_t int_field(const json& object, const char* key, const std::string& where) {
  return field(object, key, json::value_t::number_integer, "an integer", where).get<int64_t>();
}

std::string short_value(const json& value) {
  std::string text = value.dump();
  if (text.size() > kMaxValueChars) {
    text = text.substr(0, kMaxValueChars) + "...(" + std::to_string(text.size()) + " chars)";
  }
  return text;
}

bool is_named_object_array(const json& array) {
  if (!array.is_array() || array.empty()) return false;
  return std::all_of(array.begin(), array.end(), [](const json& element) {
    return element.is_object() && element.contains("name") && element["name"].is_string();
  });
}

void diff(const json& a, const json& b, const std::string& path, std::vector<std::string>* out) {
  const std::string where = path.empty() ? "(provenance)" : path;
  const auto child = [&](const std::string& key) { return path.empty() ? key : path + "." + key; };
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (const auto& item : a.items()) keys.insert(item.key());
    for (const auto& item : b.items()) keys.insert(item.key());
    for (const std::string& key : keys) {
      if (!a.contains(key)) {
        out->push_back(child(key) + ": (absent) vs " + short_value(b[key]));
      } else if (!b.contains(key)) {
        out->push_back(child(key) + ": " + short_value(a[key]) + " vs (absent)");
      } else {
        diff(a[key], b[key], child(key), out);
      }
    }
  } else if (is_named_object_array(a) && is_named_object_array(b)) {
    std::map<std::string, const json*> by_name_a, by_name_b;
    for (const json& element : a) by_name_a[element["name"].get<std::string>()] = &element;
    for (const json& element : b) by_name_b[element["name"].get<std::string>()] = &element;
    std::set<std::string> names;
    for (const auto& [name, element] : by_name_a) names.insert(name);
    for (const auto& [name, element] : by_name_b) names.insert(name);
    for (const std::string& name : names) {
      const std::string element_path = where + "[" + name + "]";
      const auto in_a = by_name_a.find(name);
      const auto in_b = by_name_b.find(name);
      if (in_a == by_name_a.end()) {
        out->push_back(element_path + ": (absent) vs " + short_value(*in_b->second));
      } else if (in_b == by_name_b.end()) {
        out->push_back(element_path + ": " + short_value(*in_a->second) + " vs (absent)");
      } else {
        diff(*in_a->second, *in_b->second, element_path, out);
      }
    }
    if (a.size() != by_name_a.size() || b.size() != by_name_b.size()) {
      out->push_back(where + ": duplicate names (" + std::to_string(a.size()) + " vs " +
                     std::to_string(b.size()) + " entries)");
    }
  } else if (a.is_array() && b.is_array()) {
    const size_t n_common = std::min(a.size(), b.size());
    for (size_t i = 0; i < n_common; ++i) {
      diff(a[i], b[i], where + "[" + std::to_string(i) + "]", out);
    }
    if (a.size() != b.size()) {
      out->push_back(where + ": " + std::to_string(a.size()) + " entries vs " +
                     std::to_string(b.size()) + " entries");
    }
  } else if (a != b) {
    out->push_back(where + ": " + short_value(a) + " vs " + short_value(b));
  }
}

}  // namespace

// ---- file names --------------------------------------------------------------------------------

void check_stage_name(const std::string& stage) {
  bool ok = !stage.empty() && stage.size() <= kMaxStageChars && stage[0] >= 'a' && stage[0] <= 'z';
  for (const char c : stage) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_');
  }
  QF_CHECK(ok, "invalid rank-store stage name \"" + stage + "\"",
           "(expected a lower-case identifier such as calib or quant)");
}

std::string layer_file_name(int layer, const std::string& stage) {
  QF_CHECK(layer >= 0, "layer number", layer, "is negative");
  check_stage_name(stage);
  char number[16];
  std::snprintf(number, sizeof(number), "%04d", layer);
  return "layer-" + std::string(number) + "." + stage + ".h5";
}

bool parse_layer_file_name(const std::string& name, int* layer, std::string* stage) {
  const std::string prefix = "layer-";
  const std::string suffix = ".h5";
  if (name.size() <= prefix.size() + suffix.size() || !starts_with(name, prefix) ||
      !ends_with(name, suffix)) {
    return false;
  }
  const std::string middle =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  const size_t dot = middle.find('.');
  if (dot == std::string::npos || dot == 0 || dot > 9) return false;
  int value = 0;
  for (size_t i = 0; i < dot; ++i) {
    if (middle[i] < '0' || middle[i] > '9') return false;
    value = value * 10 + (middle[i] - '0');
  }
  const std::string stage_part = middle.substr(dot + 1);
  try {
    if (layer_file_name(value, stage_part) != name) return false;  // canonical form only
  } catch (const Error&) {
    return false;
  }
  *layer = value;
  *stage = stage_part;
  return true;
}

// ---- manifest ----------------------------------------------------------------------------------

std::string manifest_to_text(const StoreManifest& manifest) {
  json files = json::array();
  for (const StoreFileEntry& entry : manifest.files) {
    files.push_back({{"stage", entry.stage},
                     {"layer", entry.layer},
                     {"file", entry.file},
                     {"n_bytes", entry.n_bytes},
                     {"xxh64", checksum_hex(entry.checksum)}});
  }
  json document = {{"format", kStoreManifestFormat},
                   {"format_version", kStoreManifestFormatVersion},
                   {"checksum", "xxh64"},
                   {"rank", manifest.rank},
                   {"world_size", manifest.world_size},
                   {"created", manifest.created},
                   {"updated", manifest.updated},
                   {"provenance", manifest.provenance},
                   {"files", files}};
  if (!manifest.source.is_null()) document["source"] = manifest.source;
  try {
    document[kSelfChecksumKey] = self_checksum(document);
    return document.dump(2) + "\n";
  } catch (const json::exception& e) {  // e.g. invalid UTF-8 in a provenance string
    QF_FAIL("cannot serialise the rank-store manifest:", e.what());
  }
}

StoreManifest manifest_from_text(const std::string& text, const std::string& path) {
  const json document = parse_json_strict(text, path);
  QF_CHECK(document.is_object(), path + ":", "the manifest is not a JSON object");
  const std::string format = string_field(document, "format", path);
  QF_CHECK(format == kStoreManifestFormat, path + ":",
           "not a rank-store manifest (format \"" + format + "\")");
  const int64_t version = int_field(document, "format_version", path);
  QF_CHECK(version >= 1 && version <= kStoreManifestFormatVersion, path + ":",
           "manifest format version", version, "is not supported by this build (supports 1 to",
           kStoreManifestFormatVersion, ")");
  const std::string stored_sum = string_field(document, kSelfChecksumKey, path);
  const std::string actual_sum = self_checksum(document);
  QF_CHECK(stored_sum == actual_sum, path + ":", "manifest checksum mismatch (stored", stored_sum,
           "computed", actual_sum + "): the manifest was edited or corrupted");
  QF_CHECK(string_field(document, "checksum", path) == "xxh64", path + ":",
           "unsupported checksum algorithm");

  StoreManifest manifest;
  manifest.rank = static_cast<int>(int_field(document, "rank", path));
  manifest.world_size = static_cast<int>(int_field(document, "world_size", path));
  QF_CHECK(manifest.rank >= 0 && manifest.rank < manifest.world_size, path + ":", "rank",
           manifest.rank, "is outside world size", manifest.world_size);
  manifest.created = string_field(document, "created", path);
  manifest.updated = string_field(document, "updated", path);
  manifest.provenance = field(document, "provenance", json::value_t::object, "an object", path);
  manifest.format_version = version;
  if (document.contains("source")) {
    manifest.source = field(document, "source", json::value_t::object, "an object", path);
  }
  const json& files = field(document, "files", json::value_t::array, "an array", path);
  std::set<std::pair<std::string, int>> seen;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string where = path + ": files[" + std::to_string(i) + "]";
    QF_CHECK(files[i].is_object(), where, "is not an object");
    StoreFileEntry entry;
    entry.stage = string_field(files[i], "stage", where);
    entry.layer = static_cast<int>(int_field(files[i], "layer", where));
    entry.file = string_field(files[i], "file", where);
    const int64_t n_bytes = int_field(files[i], "n_bytes", where);
    QF_CHECK(n_bytes >= 0, where, "negative n_bytes");
    entry.n_bytes = static_cast<uint64_t>(n_bytes);
    QF_CHECK(parse_checksum_hex(string_field(files[i], "xxh64", where), &entry.checksum), where,
             "xxh64 is not 16 hex digits");
    QF_CHECK(entry.layer >= 0, where, "negative layer");
    check_stage_name(entry.stage);
    QF_CHECK(entry.file == layer_file_name(entry.layer, entry.stage), where, "file name",
             entry.file, "does not match layer", entry.layer, "stage", entry.stage);
    QF_CHECK(seen.insert({entry.stage, entry.layer}).second, where, "duplicate entry for layer",
             entry.layer, "stage", entry.stage);
    manifest.files.push_back(std::move(entry));
  }
  std::sort(manifest.files.begin(), manifest.files.end(),
            [](const StoreFileEntry& x, const StoreFileEntry& y) {
              return std::tie(x.stage, x.layer) < std::tie(y.stage, y.layer);
            });
  return manifest;
}

// ---- provenance --------------------------------------------------------------------------------

std::vector<std::string> provenance_differences(const json& a, const json& b) {
  std::vector<std::string> lines;
  diff(a, b, "", &lines);
  return lines;
}

std::string utc_timestamp_now() {
  const time_t now = ::time(nullptr);
  struct tm utc {};
  ::gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

}  // namespace qf::formats
