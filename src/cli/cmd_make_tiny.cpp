// Placeholder until the subcommand lands (owned by the helper implementing it).
#include "cli/commands.hpp"
#include "core/check.hpp"

namespace qf::cli {
int cmd_make_tiny(const Args&) { QF_FAIL("make_tiny is not implemented yet"); }
}  // namespace qf::cli
