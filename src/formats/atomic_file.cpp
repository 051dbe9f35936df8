// Small whole files: atomic writes (temp + fsync + rename + dir fsync) and strict JSON reads.
// Owns: duplicate-key detection for every JSON we read. Does not own: streaming tensor writes.
#include "formats/atomic_file.hpp"

#include <set>
#include <string>
#include <vector>

#include "core/check.hpp"
#include "formats/posix_file.hpp"

namespace qf::formats {

void write_file_atomic(const std::string& path, const std::string& contents) {
  const std::string temp_path = temp_path_for(path);
  try {
    FileDescriptor fd = open_for_write(temp_path);
    pwrite_full(fd, contents.data(), contents.size(), 0);
    fsync_file(fd);
    fd.close();
    rename_file(temp_path, path);
  } catch (...) {
    remove_file_noexcept(temp_path);
    throw;
  }
  fsync_parent_dir(path);
}

nlohmann::json parse_json_strict(const std::string& text, const std::string& label) {
  // nlohmann stops at a NUL byte as if the input ended there, silently ignoring the rest.
  const size_t nul_at = text.find('\0');
  QF_CHECK(nul_at == std::string::npos, label + ":", "invalid JSON: NUL byte at offset", nul_at);
  // nlohmann keeps the last of duplicate keys without telling us; a parser callback sees every
  // key, so track the keys of each open object on a stack.
  std::vector<std::set<std::string>> open_objects;
  const nlohmann::json::parser_callback_t on_event = [&](int depth,
                                                         nlohmann::json::parse_event_t event,
                                                         nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start || event == Event::array_start) {
      // depth counts the containers already open around this one.
      QF_CHECK(depth < kMaxJsonDepth, label + ":", "JSON nested deeper than", kMaxJsonDepth,
               "levels; refusing it (no file quantforge reads nests that deep)");
    }
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() && parsed.is_string()) {
      const auto& key = parsed.get_ref<const std::string&>();
      QF_CHECK(open_objects.back().insert(key).second, label + ":", "duplicate key \"" + key + "\"",
               "in a JSON object at nesting depth", open_objects.size());
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, on_event);
  } catch (const nlohmann::json::exception& e) {
    QF_FAIL(label + ":", "invalid JSON:", e.what());
  }
}

nlohmann::json read_json_file(const std::string& path) {
  return parse_json_strict(read_file_bytes(path), path);
}

}  // namespace qf::formats
