// path_overlap: two spellings of one place are one place (relative/absolute, ".", "..", trailing
// slashes, symlinks, an existing directory reached through a symlinked parent); siblings that
// share a name prefix are not inside each other; the error names both options and paths.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "catch_compat.hpp"
#include "error_test_util.hpp"
#include "formats/path_overlap.hpp"
#include "formats/staged_output.hpp"
#include "formats_test_util.hpp"

using namespace qf::formats;
using qf::formats::test::TempDir;
using qf::test::contains;
using qf::test::error_of;
namespace fs = std::filesystem;

TEST_CASE("resolved_path: one spelling per place", "[formats][paths]") {
  TempDir tmp;
  const std::string root = fs::canonical(tmp.path()).string();
  fs::create_directories(root + "/a/b");
  CHECK(resolved_path(root + "/a/b/") == root + "/a/b");
  CHECK(resolved_path(root + "/a/./b//") == root + "/a/b");
  CHECK(resolved_path(root + "/a/b/../b") == root + "/a/b");
  CHECK(resolved_path(root + "/a/missing/../b") == root + "/a/b");
  fs::create_directory_symlink(root + "/a", root + "/link");
  CHECK(resolved_path(root + "/link/b") == root + "/a/b");
  CHECK(resolved_path(root + "/link/not-yet/x") == root + "/a/not-yet/x");
  CHECK(resolved_path("") == "");
  // A symlink loop cannot be resolved: kept as written (normalised), no exception.
  fs::create_symlink(root + "/loop1", root + "/loop2");
  fs::create_symlink(root + "/loop2", root + "/loop1");
  CHECK(resolved_path(root + "/loop1/x") == root + "/loop1/x");
  // Relative paths are resolved against the current directory.
  const fs::path cwd = fs::current_path();
  fs::current_path(root + "/a");
  CHECK(resolved_path("b") == root + "/a/b");
  CHECK(resolved_path("../a/b/") == root + "/a/b");
  fs::current_path(cwd);
}

TEST_CASE("is_same_or_inside: component-wise, through symlinks", "[formats][paths]") {
  TempDir tmp;
  const std::string root = tmp.path();
  fs::create_directories(root + "/src/sub");
  fs::create_directories(root + "/src-nvfp4");
  CHECK(is_same_or_inside(root + "/src", root + "/src"));
  CHECK(is_same_or_inside(root + "/src/", root + "/src"));
  CHECK(is_same_or_inside(root + "/src/sub/w", root + "/src"));
  CHECK_FALSE(is_same_or_inside(root + "/src-nvfp4", root + "/src"));  // a name prefix only
  CHECK_FALSE(is_same_or_inside(root + "/src.partial", root + "/src"));
  CHECK_FALSE(is_same_or_inside(root + "/src", root + "/src/sub"));
  CHECK_FALSE(is_same_or_inside("", root + "/src"));
  CHECK_FALSE(is_same_or_inside(root + "/src", ""));
  // A symlink outside pointing into src: its (future) children are inside src.
  fs::create_directory_symlink(root + "/src/sub", root + "/work-link");
  CHECK(is_same_or_inside(root + "/work-link", root + "/src"));
  CHECK(is_same_or_inside(root + "/work-link/w", root + "/src"));
  // Names with blanks and UTF-8.
  fs::create_directories(root + "/my models/mod\xc3\xa8le");
  CHECK(is_same_or_inside(root + "/my models/mod\xc3\xa8le/../mod\xc3\xa8le/w",
                          root + "/my models/mod\xc3\xa8le"));
}

TEST_CASE("check_not_inside names both options, both paths and why", "[formats][paths]") {
  TempDir tmp;
  fs::create_directories(tmp.file("in"));
  const std::string message = error_of([&] {
    check_not_inside({"--work", tmp.file("in/w")}, {"--in", tmp.file("in")}, "because");
  });
  CHECK(contains(message, "--work " + tmp.file("in/w") + " is inside --in " + tmp.file("in")));
  CHECK(contains(message, "because"));
  const std::string same = error_of([&] {
    check_not_inside({"--out", tmp.file("in/")}, {"--in", tmp.file("in")}, "x");
  });
  CHECK(contains(same, "is the same path as --in"));
  CHECK(error_of([&] {
          check_not_inside({"--work", tmp.file("w")}, {"--in", tmp.file("in")}, "x");
        }).empty());
}

TEST_CASE("StagedOutput: written paths, and a claim released by its destructor",
          "[formats][paths][lock]") {
  TempDir tmp;
  const std::string out = tmp.file("out");
  const auto paths = StagedOutput::written_paths(out + "/");
  REQUIRE(paths.size() == 4);
  CHECK(paths[0].path == out + "/");
  CHECK(paths[1].path == out + ".partial");
  CHECK(paths[2].path == out + ".partial.lock");
  CHECK(paths[3].path == out + ".partial.marker");
  {
    StagedOutput claimed = StagedOutput::claim(out);
    CHECK(qf::formats::test::file_exists(out + ".partial.lock"));
    // A second claim of the same output is refused while the first is held.
    CHECK(contains(error_of([&] { StagedOutput::claim(out); }), "another live process"));
  }
  // Released without commit: nothing is left behind (no staging was created, no lock file).
  CHECK_FALSE(qf::formats::test::file_exists(out + ".partial.lock"));
  CHECK_FALSE(qf::formats::test::file_exists(out + ".partial"));
  // A stale OUT.partial that this claim did not create is never removed by its release.
  fs::create_directories(out + ".partial");
  qf::formats::test::write_bytes(out + ".partial/data", "someone's");
  { StagedOutput claimed = StagedOutput::claim(out); }
  CHECK(qf::formats::test::file_exists(out + ".partial/data"));
  // claim_existing: an existing directory only.
  CHECK(contains(error_of([&] { StagedOutput::claim_existing(tmp.file("none")); }),
                 "is not an existing directory"));
  fs::create_directories(out);
  StagedOutput existing = StagedOutput::claim_existing(out);
  CHECK(contains(error_of([&] { StagedOutput::claim(out); }), "another live process"));
  existing.release();
  CHECK_FALSE(qf::formats::test::file_exists(out + ".partial.lock"));
}

TEST_CASE("StagedOutput: a crash anywhere leaves OUT complete or a staging the next run redoes",
          "[formats][paths][lock]") {
  namespace fs = std::filesystem;
  TempDir tmp;
  const std::string out = tmp.file("out");
  auto write = [](const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  };
  {
    // A run staged OUT and stopped before its final move (the marker stays beside STAGING).
    StagedOutput first = StagedOutput::claim(out);
    first.create_staging();
    write(out + ".partial/model.safetensors", "complete bytes");
    CHECK(qf::formats::test::file_exists(out + ".partial.marker"));
    CHECK(!qf::formats::test::file_exists(out + ".partial/.quantforge-staging"));
    first.release();  // as a killed process leaves it: STAGING and its marker stay
  }
  {
    // The next run removes that staging and commits its own; nothing of the marker reaches OUT.
    StagedOutput second = StagedOutput::claim(out);
    second.create_staging();
    CHECK(!qf::formats::test::file_exists(out + ".partial/model.safetensors"));
    write(out + ".partial/model.safetensors", "new bytes");
    second.commit();
  }
  CHECK(qf::formats::test::file_exists(out + "/model.safetensors"));
  CHECK(!qf::formats::test::file_exists(out + ".partial.marker"));
  CHECK(!qf::formats::test::file_exists(out + ".partial"));
  std::size_t n_entries = 0;
  for (const auto& entry : fs::directory_iterator(out)) n_entries += entry.is_regular_file();
  CHECK(n_entries == 1);

  // A staging without a marker (not ours, or a complete result whose move failed) is refused.
  const std::string other = tmp.file("other");
  fs::create_directories(other + ".partial");
  write(other + ".partial/data", "someone's");
  {
    StagedOutput claimed = StagedOutput::claim(other);
    CHECK(
        contains(error_of([&] { claimed.create_staging(); }), "was not made by a quantforge run"));
  }
  CHECK(qf::formats::test::file_exists(other + ".partial/data"));
  // A staging marked the way earlier versions did (inside it) still counts as stale.
  write(other + ".partial/.quantforge-staging", "staging of " + other + "\n");
  {
    StagedOutput claimed = StagedOutput::claim(other);
    claimed.create_staging();
    CHECK(!qf::formats::test::file_exists(other + ".partial/data"));
  }
}
