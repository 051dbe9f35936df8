// Where the paths a command reads and writes lie relative to each other, after resolving what
// makes two spellings name one place: relative vs absolute, ".", "..", trailing slashes,
// symlinks (of every existing prefix) and bind mounts (same device and inode). Owns: the
// resolution and the "same or inside" test with its error. Does not own which pairs a command
// forbids (each job lists its own rules).
#pragma once
#include <string>

namespace qf::formats {

// A path a command uses, with the option that named it ("--work", "the staging directory of
// --out", ...) for messages.
struct NamedPath {
  std::string what;
  std::string path;
};

// Absolute and lexically normal, with the symlinks of its longest existing prefix resolved
// (std::filesystem::weakly_canonical); no trailing slash. A prefix that cannot be resolved (a
// symlink loop, no permission) is kept as written. "" stays "".
std::string resolved_path(const std::string& path);

// Whether `inner` names `outer` or something below it: component-wise on the resolved paths
// (/a/bc is not inside /a/b), or, where both exist, `outer` is the same directory (device and
// inode) as `inner` or one of its ancestors (bind mounts, hard-to-spell aliases).
bool is_same_or_inside(const std::string& inner, const std::string& outer);

// Throws qf::Error when is_same_or_inside(inner, outer): "--work W is inside --in I (resolved:
// ...): <why>". Empty paths are never inside anything.
void check_not_inside(const NamedPath& inner, const NamedPath& outer, const std::string& why);

}  // namespace qf::formats
