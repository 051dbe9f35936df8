// Messages about what a file holds (issue 18 defect 13): names with NUL or control bytes are
// escaped (a NUL used to cut the error and its location), and a path that is not a regular file
// is described as what it is (symlink loop, directory, FIFO, dangling symlink), never "missing";
// opening a FIFO for reading fails at once instead of waiting for a writer.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "catch_compat.hpp"
#include "core/check.hpp"
#include "core/strings.hpp"
#include "error_test_util.hpp"
#include "formats/posix_file.hpp"
#include "formats_test_util.hpp"

using namespace qf;
using qf::formats::test::TempDir;
using qf::test::contains;
using qf::test::error_of;
namespace fs = std::filesystem;

TEST_CASE("escape_nonprintable: control bytes as \\xNN, UTF-8 kept", "[messages]") {
  CHECK(escape_nonprintable(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(escape_nonprintable("x\x1b[31my\x7f") == "x\\x1b[31my\\x7f");
  CHECK(escape_nonprintable("mod\xc3\xa8le") == "mod\xc3\xa8le");
  CHECK(escape_nonprintable("a\nb\tc") == "a\\x0ab\\x09c");
  CHECK(escape_nonprintable("a\nb\tc\r", true) == "a\nb\tc\\x0d");
}

TEST_CASE("an error naming a tensor with a NUL keeps its whole text and location", "[messages]") {
  const std::string name("layers.0.attn.wq_b\0evil\x1b[31m.weight", 35);
  try {
    QF_CHECK(false, "tensor '" + name + "':", "unknown dtype 'F9'");
    FAIL("no error");
  } catch (const Error& e) {
    const std::string what = e.what();  // through a C string, as main prints it
    CHECK(contains(what, "tensor 'layers.0.attn.wq_b\\x00evil\\x1b[31m.weight': unknown dtype"));
    CHECK(contains(what, "[check failed"));
    CHECK(e.message().find('\0') == std::string::npos);
  }
}

TEST_CASE("not_a_regular_file says what a path is", "[messages]") {
  TempDir tmp;
  const std::string file = tmp.file("f"), dir = tmp.file("d"), fifo = tmp.file("p");
  qf::formats::test::write_bytes(file, "x");
  fs::create_directory(dir);
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  fs::create_symlink(tmp.file("loop-b"), tmp.file("loop-a"));
  fs::create_symlink(tmp.file("loop-a"), tmp.file("loop-b"));
  fs::create_symlink("/nonexistent/target", tmp.file("dangling"));
  fs::create_symlink(file, tmp.file("good-link"));
  CHECK(formats::not_a_regular_file(file).empty());
  CHECK(formats::not_a_regular_file(tmp.file("good-link")).empty());
  CHECK(formats::not_a_regular_file(tmp.file("none")) == "is missing");
  CHECK(formats::not_a_regular_file(dir) == "is a directory, not a file");
  CHECK(formats::not_a_regular_file(fifo) == "is a FIFO (named pipe), not a file");
  CHECK(formats::not_a_regular_file(tmp.file("loop-a")) == "is a symlink loop");
  CHECK(formats::not_a_regular_file(tmp.file("dangling")) ==
        "is a dangling symlink (to /nonexistent/target)");
  CHECK(contains(formats::not_a_regular_file(file + "/x"), "is missing"));
  // Reading: refused at once with what it is (a FIFO used to block the open forever).
  const auto start = std::chrono::steady_clock::now();
  CHECK(contains(error_of([&] { formats::read_file_bytes(fifo); }), "it is a FIFO"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
  CHECK(contains(error_of([&] { formats::read_file_bytes(dir); }), "it is a directory"));
  CHECK(
      contains(error_of([&] { formats::read_file_bytes(tmp.file("loop-a")); }), "a symlink loop"));
  CHECK(formats::read_file_bytes(tmp.file("good-link")) == "x");
}
