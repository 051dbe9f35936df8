// Status exchange for run_on_root / run_on_all_ranks (host-buffer communicator).
#include "dist/collective_step.hpp"

#include <cstdint>
#include <vector>

#include "core/check.hpp"
#include "core/stop_signal.hpp"

namespace qf::dist {
namespace {

// Runs work; returns the error it raised (if any) so that the caller can first tell its peers.
// A StopRequested is no failure: the stop signal is shared after the work (stop_after).
bool try_work(const std::function<void()>& work, std::string* what_text, std::string* message) {
  try {
    work();
    return true;
  } catch (const CollectiveError&) {
    throw;  // already shared
  } catch (const StopRequested&) {
    return true;
  } catch (const Error& e) {
    *what_text = e.what();
    *message = e.message();
  } catch (const std::exception& e) {
    *what_text = *message = e.what();
  }
  return false;
}

}  // namespace

void run_on_root(Communicator& comm, int root, const char* what,
                 const std::function<void()>& work) {
  std::string what_text, message;
  int64_t failed = 0;
  if (comm.rank() == root) failed = try_work(work, &what_text, &message) ? 0 : 1;
  comm.broadcast(&failed, sizeof(failed), root, what);
  if (!failed) return;
  if (comm.rank() == root) throw CollectiveError(what_text, message, true);
  throw CollectiveError(str_cat("stopped: rank ", root, " failed in ", what),
                        str_cat("rank ", root, " failed in ", what), false);
}

void run_on_all_ranks(Communicator& comm, const char* what, const std::function<void()>& work) {
  std::string what_text, message;
  const bool ok = try_work(work, &what_text, &message);
  // [ranks that failed, the largest stop signal any rank received]: a safe point for all.
  int64_t status[2] = {ok ? 0 : 1, stop_signal()};
  comm.allreduce(&status[0], 1, ElemType::kI64, ReduceOp::kSum, what);
  comm.allreduce(&status[1], 1, ElemType::kI64, ReduceOp::kMax, what);
  const int64_t n_failed = status[0];
  if (n_failed == 0 && status[1] != 0) {
    const int signal = static_cast<int>(status[1]);
    throw Interrupted(signal,
                      str_cat("stopped by ", signal_name(signal), " after ", what,
                              stop_signal() ? "" : " (received by another rank)"),
                      comm.rank() == 0);
  }
  if (n_failed == 0) return;
  // Share the messages so that an error every rank hit alike (a bad input file) is printed
  // once, by the lowest rank that hit it, while distinct errors are all printed.
  std::vector<size_t> n_bytes_of_rank(size_t(comm.world_size()));
  size_t mine = message.size();
  comm.allgather(&mine, n_bytes_of_rank.data(), sizeof(size_t), "error message sizes");
  size_t n_total = 0;
  for (const size_t n : n_bytes_of_rank) n_total += n;
  std::string all(n_total, '\0');
  comm.allgatherv(message.data(), all.data(), n_bytes_of_rank, "error messages");
  if (!ok) {
    size_t offset = 0;
    bool reported_lower = false;
    for (int r = 0; r < comm.rank(); ++r) {
      reported_lower |= all.compare(offset, n_bytes_of_rank[r], message) == 0 &&
                        n_bytes_of_rank[r] == message.size();
      offset += n_bytes_of_rank[r];
    }
    throw CollectiveError(what_text, message, !reported_lower);
  }
  throw CollectiveError(str_cat("stopped: ", n_failed, " other rank(s) failed in ", what),
                        str_cat(n_failed, " rank(s) failed in ", what), false);
}

}  // namespace qf::dist
