// Formats and throws qf::Error with the rank, host, pid and source location of the failure.
#include "core/check.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/strings.hpp"

namespace qf {
namespace {
int g_rank = 0;
int g_world_size = 1;
}  // namespace

void set_process_rank(int rank, int world_size) {
  g_rank = rank;
  g_world_size = world_size;
}
int process_rank() { return g_rank; }
int process_world_size() { return g_world_size; }

std::string errno_text(int err) { return str_cat(std::strerror(err), " (errno ", err, ")"); }

void throw_error(const char* kind, const char* statement, const char* file, int line,
                 const std::string& raw_message) {
  // Names from files may hold a NUL (what() would end there, losing the rest and the location)
  // or terminal control bytes: every message is escaped once, here.
  const std::string message = escape_nonprintable(raw_message, /*keep_line_breaks=*/true);
  char host[256] = "?";
  gethostname(host, sizeof(host) - 1);
  std::ostringstream out;
  out << message;
  out << "\n  [" << kind;
  if (statement && *statement) out << ": " << statement;
  out << " at " << file << ":" << line << ", rank " << g_rank << "/" << g_world_size << " on "
      << host << " pid " << getpid() << "]";
  throw Error(out.str(), message);
}

}  // namespace qf

// ---- library error texts (libraries linked into core: MPI; HDF5 prints its own stack) -------
#include <mpi.h>

namespace qf {

void throw_mpi_error(long rc, const char* statement, const char* file, int line,
                     const std::string& message) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int n_chars = 0;
  MPI_Error_string(static_cast<int>(rc), text, &n_chars);
  throw_error("MPI call failed", statement, file, line,
              join_message(message, "-", std::string(text, n_chars)));
}

void throw_h5_error(long rc, const char* statement, const char* file, int line,
                    const std::string& message) {
  throw_error("HDF5 call failed", statement, file, line,
              join_message(message, "- HDF5 returned", rc));
}

#ifndef QF_HAVE_CUDA
// CPU-only builds: nothing calls these, but the declarations must resolve.
void throw_cuda_error(long rc, const char* statement, const char* file, int line,
                      const std::string& message) {
  throw_error("CUDA call failed", statement, file, line, join_message(message, "- code", rc));
}
void throw_cublas_error(long rc, const char* statement, const char* file, int line,
                        const std::string& message) {
  throw_error("cuBLAS call failed", statement, file, line, join_message(message, "- code", rc));
}
void throw_nccl_error(long rc, const char* statement, const char* file, int line,
                      const std::string& message) {
  throw_error("NCCL call failed", statement, file, line, join_message(message, "- code", rc));
}
#endif

}  // namespace qf
