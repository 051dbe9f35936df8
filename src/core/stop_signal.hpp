// SIGINT and SIGTERM as a request to stop at the next safe point, for the long jobs (quantize,
// dequant): the first signal only sets a flag; the jobs look at it between layers and between
// export chunks (stop_requested_here) and at every collective step (dist/collective_step), so
// every rank stops together, cleanly, with a message saying what was kept. A second signal
// stops the process at once (the default action: the on-disk protocols survive kill -9).
// Owns: the handlers, the flag and the two exception types. Does not own what a job keeps.
#pragma once
#include <string>

#include "core/check.hpp"

namespace qf {

// Installs the handlers of SIGINT and SIGTERM (idempotent).
void install_stop_handlers();
// The first stop signal received (SIGINT, SIGTERM), 0 if none.
int stop_signal();
// "SIGTERM", "SIGINT", "signal N".
std::string signal_name(int signal);
// The exit status of a process stopped by `signal` through these handlers: 128 + signal, as a
// shell reports a process killed by it (130 for SIGINT, 143 for SIGTERM).
inline int exit_status_for_signal(int signal) { return 128 + signal; }

// This process received a stop signal; thrown by check_stop_requested at a safe point inside a
// rank's own loop. Collective steps turn it into Interrupted on every rank.
class StopRequested : public Error {
 public:
  StopRequested(int signal, const std::string& where);
  int signal() const { return signal_; }

 private:
  int signal_;
};
// Throws StopRequested when a stop signal was received; `where`: "between layers", ...
void check_stop_requested(const char* where);

// Every rank stops because a stop signal reached at least one of them (like CollectiveError:
// only the reporting rank prints). main exits with exit_status_for_signal(signal()).
class Interrupted : public CollectiveError {
 public:
  Interrupted(int signal, std::string message, bool reported_here)
      : CollectiveError(message, message, reported_here), signal_(signal) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

}  // namespace qf
