// Stop-signal handlers and the flag (see stop_signal.hpp).
#include "core/stop_signal.hpp"

#include <signal.h>
#include <string.h>

namespace qf {
namespace {

volatile sig_atomic_t g_signal = 0;

// Async-signal-safe: sets the flag; a second signal restores the default action and re-raises
// it (the process stops at once, as without handlers).
void on_stop_signal(int signal) {
  if (g_signal != 0) {
    ::signal(signal, SIG_DFL);
    ::raise(signal);
    return;
  }
  g_signal = signal;
}

}  // namespace

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a blocking read or MPI wait goes on; the job looks later
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

int stop_signal() { return g_signal; }

std::string signal_name(int signal) {
  if (signal == SIGINT) return "SIGINT";
  if (signal == SIGTERM) return "SIGTERM";
  return "signal " + std::to_string(signal);
}

StopRequested::StopRequested(int signal, const std::string& where)
    : Error(str_cat("stopped by ", signal_name(signal), " (", where, ")"),
            str_cat("stopped by ", signal_name(signal), " (", where, ")")),
      signal_(signal) {}

void check_stop_requested(const char* where) {
  const int signal = stop_signal();
  if (signal != 0) throw StopRequested(signal, where);
}

}  // namespace qf
