// The one family of error macros (QF_*) and the exception they throw.
// Owns: qf::Error and message formatting. Does not own: logging policy or MPI_Abort (cli/main).
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>

namespace qf {

// Thrown by every QF_*_CHECK. what() carries the full report: where (rank, host, pid,
// file:line), the failed statement and the message.
class Error : public std::runtime_error {
 public:
  Error(std::string what_text, std::string message)
      : std::runtime_error(std::move(what_text)), message_(std::move(message)) {}
  // The user-facing part only (no file/line), for tests and short reports.
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

// An error that every rank of a job raises together (after a collective agreed that the job
// must stop), so no rank needs MPI_Abort to unblock its peers. `reported_here` is false on the
// ranks that only learned of a failure reported (logged) by another rank.
class CollectiveError : public Error {
 public:
  CollectiveError(std::string what_text, std::string message, bool reported_here)
      : Error(std::move(what_text), std::move(message)), reported_here_(reported_here) {}
  bool reported_here() const { return reported_here_; }

 private:
  bool reported_here_;
};

// Who this process is, for error reports and log prefixes. Set by dist::MpiEnv; defaults to
// rank 0 of 1 so single-process tools and tests need no set-up.
void set_process_rank(int rank, int world_size);
int process_rank();
int process_world_size();

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream out;
  ((out << args), ...);
  return out.str();
}

// Joins the message parts with single spaces, as FLASHINFER_CHECK does.
template <typename... Args>
std::string join_message(const Args&... args) {
  std::ostringstream out;
  bool first = true;
  ((out << (first ? "" : " ") << args, first = false), ...);
  return out.str();
}

[[noreturn]] void throw_error(const char* kind, const char* statement, const char* file, int line,
                              const std::string& message);

}  // namespace qf

#define QF_CHECK(cond, ...)                                        \
  do {                                                             \
    if (!(cond)) {                                                 \
      ::qf::throw_error("check failed", #cond, __FILE__, __LINE__, \
                        ::qf::join_message(__VA_ARGS__));          \
    }                                                              \
  } while (0)

// Launcher operand checks (kernels/launch_util.cuh): fail naming the operand, its value and
// `what` (the launcher), e.g. QF_CHECK_ALIGNED(p.x, 16, "rms_norm") for a 16-byte vector load
// (null passes), QF_CHECK_MULTIPLE_OF(p.n_cols, 32, "fp4 dequant").
#define QF_CHECK_ALIGNED(ptr, n_bytes, what)                                        \
  QF_CHECK(reinterpret_cast<uintptr_t>(ptr) % (n_bytes) == 0, what, ":", #ptr, "(", \
           static_cast<const void*>(ptr), ") is not", (n_bytes), "-byte aligned")
#define QF_CHECK_MULTIPLE_OF(value, divisor, what)                                            \
  QF_CHECK((value) % (divisor) == 0, what, ":", #value, "=", (value), "is not a multiple of", \
           (divisor))

// Unconditional failure with a message (unknown enum value, unreachable branch on bad input).
#define QF_FAIL(...) \
  ::qf::throw_error("error", "", __FILE__, __LINE__, ::qf::join_message(__VA_ARGS__))

// POSIX calls returning -1 and setting errno.
#define QF_SYS_CHECK(expr, ...)                                                                \
  do {                                                                                         \
    if ((expr) < 0) {                                                                          \
      const int qf_errno_ = errno;                                                             \
      ::qf::throw_error("system call failed", #expr, __FILE__, __LINE__,                       \
                        ::qf::join_message(__VA_ARGS__) + ": " + ::qf::errno_text(qf_errno_)); \
    }                                                                                          \
  } while (0)

// Library-specific checks. The expression types are taken as int so that this header needs no
// CUDA, NCCL, MPI or HDF5 include; each library's error text is looked up where it is linked
// (core/check_mpi.cpp, core/check_cuda.cu, dist/nccl_comm.cpp, formats/h5 files).
#define QF_LIB_CHECK_(fail_test, thrower, expr, ...)                \
  do {                                                              \
    const auto qf_rc_ = (expr);                                     \
    if (fail_test)                                                  \
      thrower(static_cast<long>(qf_rc_), #expr, __FILE__, __LINE__, \
              ::qf::join_message(__VA_ARGS__));                     \
  } while (0)

#define QF_MPI_CHECK(expr, ...) QF_LIB_CHECK_(qf_rc_ != 0, ::qf::throw_mpi_error, expr, __VA_ARGS__)
#define QF_CUDA_CHECK(expr, ...) \
  QF_LIB_CHECK_(static_cast<int>(qf_rc_) != 0, ::qf::throw_cuda_error, expr, __VA_ARGS__)
#define QF_CUBLAS_CHECK(expr, ...) \
  QF_LIB_CHECK_(static_cast<int>(qf_rc_) != 0, ::qf::throw_cublas_error, expr, __VA_ARGS__)
#define QF_NCCL_CHECK(expr, ...) \
  QF_LIB_CHECK_(static_cast<int>(qf_rc_) != 0, ::qf::throw_nccl_error, expr, __VA_ARGS__)
// HDF5 reports failure as a negative herr_t/hid_t; pass the file/dataset name as the message.
#define QF_H5_CHECK(expr, ...) QF_LIB_CHECK_(qf_rc_ < 0, ::qf::throw_h5_error, expr, __VA_ARGS__)

// After a kernel launch: launch errors always; in debug builds also execution errors.
#ifdef NDEBUG
#define QF_KERNEL_CHECK() QF_CUDA_CHECK(cudaGetLastError(), "kernel launch")
#else
#define QF_KERNEL_CHECK()                                       \
  do {                                                          \
    QF_CUDA_CHECK(cudaGetLastError(), "kernel launch");         \
    QF_CUDA_CHECK(cudaDeviceSynchronize(), "kernel execution"); \
  } while (0)
#endif

namespace qf {
std::string errno_text(int err);
[[noreturn]] void throw_mpi_error(long rc, const char* statement, const char* file, int line,
                                  const std::string& message);
[[noreturn]] void throw_cuda_error(long rc, const char* statement, const char* file, int line,
                                   const std::string& message);
[[noreturn]] void throw_cublas_error(long rc, const char* statement, const char* file, int line,
                                     const std::string& message);
[[noreturn]] void throw_nccl_error(long rc, const char* statement, const char* file, int line,
                                   const std::string& message);
[[noreturn]] void throw_h5_error(long rc, const char* statement, const char* file, int line,
                                 const std::string& message);
}  // namespace qf
