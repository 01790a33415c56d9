// The Catch2 runner of the expert-parallel tests (tests/mpi/), started by mpirun: every rank
// runs every test case, in the same order, so their collectives meet. A test case checks its
// results only after its last collective (CHECK, never REQUIRE, before that point), so a failure
// on one rank cannot leave the others waiting; ctest's timeout ends a run that hangs anyway.
// Ranks other than 0 report with Catch2's compact reporter (failures only, one line each), and
// the exit status is 1 on every rank when any rank had a failure.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <mpi.h>

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char* argv[]) {
    int provided = 0;
    // Only the calling thread talks to MPI; OpenMP threads run the expert GEMMs between calls.
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        std::fprintf(stderr, "moe_mpi_tests: MPI_Init_thread failed\n");
        return 1;
    }
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    std::vector<char*> args(argv, argv + argc);
    std::string reporter = "--reporter=compact";
    if (rank != 0) args.push_back(reporter.data());
    const int failed = Catch::Session().run(static_cast<int>(args.size()), args.data());
    int any = failed > 0 ? 1 : 0, all = 0;
    MPI_Allreduce(&any, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return all;
}
