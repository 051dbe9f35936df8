// Path resolution and the "same or inside" test (see path_overlap.hpp).
#include "formats/path_overlap.hpp"

#include <sys/stat.h>

#include <filesystem>

#include "core/check.hpp"

namespace qf::formats {
namespace fs = std::filesystem;
namespace {

fs::path without_trailing_slash(fs::path path) {
  if (!path.has_filename() && path.has_parent_path() && path != path.root_path()) {
    path = path.parent_path();
  }
  return path;
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// Component-wise prefix test on resolved paths.
bool lexically_inside(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // a trailing "" element
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// `outer` (existing) is `inner`'s longest existing prefix or one of that prefix's ancestors.
bool inode_inside(const fs::path& inner, const fs::path& outer) {
  struct stat outer_stat {};
  if (::stat(outer.c_str(), &outer_stat) != 0) return false;
  for (fs::path p = inner; !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 && same_file(st, outer_stat)) return true;
    if (p == p.root_path()) break;
  }
  return false;
}

}  // namespace

std::string resolved_path(const std::string& path) {
  if (path.empty()) return path;
  std::error_code error;
  fs::path absolute = fs::absolute(path, error);
  if (error) absolute = fs::path(path);
  fs::path resolved = fs::weakly_canonical(absolute, error);
  if (error) resolved = absolute.lexically_normal();  // a symlink loop or an unreadable prefix
  return without_trailing_slash(resolved.lexically_normal()).string();
}

bool is_same_or_inside(const std::string& inner, const std::string& outer) {
  if (inner.empty() || outer.empty()) return false;
  const fs::path a(resolved_path(inner)), b(resolved_path(outer));
  return lexically_inside(a, b) || inode_inside(a, b);
}

void check_not_inside(const NamedPath& inner, const NamedPath& outer, const std::string& why) {
  if (!is_same_or_inside(inner.path, outer.path)) return;
  const std::string a = resolved_path(inner.path), b = resolved_path(outer.path);
  const bool same = a == b;
  std::string resolved;
  if (a != inner.path || b != outer.path) resolved = " (resolved: " + a + " and " + b + ")";
  QF_FAIL(inner.what, inner.path, same ? "is the same path as" : "is inside", outer.what,
          outer.path + resolved + ":", why);
}

}  // namespace qf::formats
