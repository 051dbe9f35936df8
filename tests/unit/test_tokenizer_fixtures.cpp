// Parity with Hugging Face `tokenizers`: every tests/fixtures/tokenizer/*.ids.json (written by
// tests/parity/make_tokenizer_fixtures.{py,js} from the Python/npm package) must give the same ids
// from the C++ tokenizer, with and without special tokens. A fixture whose tokenizer.json is not
// next to it nor in $QF_TOKENIZER_DIR (large real tokenizers need not be committed) is skipped
// with a message, as is the whole test when no fixture exists yet.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "core/strings.hpp"
#include "formats/atomic_file.hpp"
#include "tokenizer/tokenizer.hpp"
#include "tokenizer_test_util.hpp"

using namespace qf;
using tokenizer::Tokenizer;

namespace {

std::vector<std::string> fixture_files() {
  std::vector<std::string> files;
  std::error_code error;
  for (const auto& entry :
       std::filesystem::directory_iterator(tokenizer::test::fixture_dir(), error)) {
    const std::string name = entry.path().filename().string();
    if (name != ".ids.json" && ends_with(name, ".ids.json")) {
      files.push_back(entry.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string find_tokenizer(const std::string& fixture_path, const std::string& name) {
  const std::string beside = std::filesystem::path(fixture_path).parent_path() / name;
  if (std::filesystem::exists(beside)) return beside;
  if (const char* dir = std::getenv("QF_TOKENIZER_DIR")) {
    const std::string other = std::string(dir) + "/" + name;
    if (std::filesystem::exists(other)) return other;
  }
  return "";
}

// Checks one table of {text: ids}; returns the number of texts checked.
size_t check_table(const Tokenizer& tok, const nlohmann::json& table, bool with_specials,
                   const std::string& fixture) {
  size_t n_checked = 0;
  for (const auto& [text, ids] : table.items()) {
    const std::vector<int64_t> expected = ids.get<std::vector<int64_t>>();
    const std::vector<int64_t> got =
        with_specials ? tok.encode_with_special_tokens(text) : tok.encode(text);
    INFO(fixture << (with_specials ? " (with special tokens)" : "") << " text: " << text);
    CHECK(got == expected);
    ++n_checked;
  }
  return n_checked;
}

}  // namespace

TEST_CASE("tokenizer matches the Hugging Face tokenizers fixtures", "[tokenizer]") {
  const std::vector<std::string> files = fixture_files();
  if (files.empty()) {
    WARN(
        "no tests/fixtures/tokenizer/*.ids.json yet: generate them with "
        "tests/parity/make_tokenizer_fixtures.py on the GPU machine (Python tokenizers)");
    return;
  }
  size_t n_checked = 0;
  for (const std::string& file : files) {
    const nlohmann::json fixture = formats::read_json_file(file);
    const std::string name = fixture.at("tokenizer").get<std::string>();
    const std::string path = find_tokenizer(file, name);
    if (path.empty()) {
      WARN("skipping " << file << ": " << name
                       << " is neither next to it nor in $QF_TOKENIZER_DIR");
      continue;
    }
    const Tokenizer tok = Tokenizer::load(path);
    n_checked += check_table(tok, fixture.at("ids"), false, file);
    if (fixture.contains("ids_with_special_tokens")) {
      n_checked += check_table(tok, fixture["ids_with_special_tokens"], true, file);
    }
  }
  std::cerr << "tokenizer fixtures: " << n_checked << " texts checked in " << files.size()
            << " fixture file(s)\n";
}
