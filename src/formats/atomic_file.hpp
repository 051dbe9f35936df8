// Whole-file helpers: atomic small-file writes and strict JSON file reads.
// Owns: the temp + fsync + rename protocol for small files. Does not own: streaming writes.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace qf::formats {

// Writes `<path>.tmp.<pid>`, fsyncs it, renames it to path and fsyncs the directory. On any
// error the temp file is removed and qf::Error names the file.
void write_file_atomic(const std::string& path, const std::string& contents);
// Reads and parses a JSON file, rejecting duplicate keys. Errors name the file and, for parse
// errors, the byte position.
nlohmann::json read_json_file(const std::string& path);
// Deepest JSON nesting any file quantforge reads may have (safetensors headers and config.json
// nest 3-4 levels, tokenizer.json about 8). Deeper documents are refused while parsing: nlohmann
// copies, compares and dumps recursively, so 200,000 nested '[' would overflow the stack later.
constexpr int kMaxJsonDepth = 64;
// Parses JSON text, rejecting duplicate object keys (nlohmann would silently keep the last), NUL
// bytes and nesting deeper than kMaxJsonDepth. `label` (a file name) starts every error message.
nlohmann::json parse_json_strict(const std::string& text, const std::string& label);

}  // namespace qf::formats
