// Catch2 entry point for multi-rank tests: MPI lives for the whole session, and only rank 0's
// report is printed unless a rank fails (every rank's result decides the exit code).
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif
#include <mpi.h>

#include "dist/mpi_env.hpp"

int main(int argc, char* argv[]) {
  qf::dist::MpiEnv mpi(&argc, &argv);
  const int failed = Catch::Session().run(argc, argv);
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any_failed;
}
