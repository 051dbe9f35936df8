// Placeholder until the subcommand lands (owned by the helper implementing it).
#include "cli/commands.hpp"
#include "core/check.hpp"

namespace qf::cli {
int cmd_inspect(const Args&) { QF_FAIL("inspect is not implemented yet"); }
}  // namespace qf::cli
