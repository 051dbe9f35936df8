// Steps that may fail on some ranks, turned into a decision every rank shares: either all
// ranks go on, or all ranks stop with qf::CollectiveError (no rank left waiting in a
// collective, no MPI_Abort). Owns: the status exchange. Does not own the work itself.
#pragma once
#include <functional>

#include "dist/communicator.hpp"

namespace qf::dist {

// Runs `work` on `root` only; every rank then learns whether it succeeded.
void run_on_root(Communicator& comm, int root, const char* what, const std::function<void()>& work);

// Runs `work` on every rank; if it fails anywhere, every rank stops. The failing ranks report
// their own error; the others report that a peer failed in `what`.
void run_on_all_ranks(Communicator& comm, const char* what, const std::function<void()>& work);

}  // namespace qf::dist
