// moe/dist/comm.hpp - the MPI helpers of expert parallelism (needs <mpi.h>: not part of moe.hpp).
//
//   rank_of(comm), size_of(comm)      MPI_Comm_rank / MPI_Comm_size, errors as moe::dist::MpiError
//   mpi_check(rc, where, call)        an MPI return code other than MPI_SUCCESS -> MpiError
//   agree(comm, failed, message, w)   a collective: every rank learns whether any rank failed;
//                                     if one did, every rank throws RankError naming the lowest
//                                     failing rank and its message
//   on_all_ranks(comm, what, fn)      runs fn() (local work: no collectives inside) on every rank,
//                                     then agree()s on its outcome
//
// Why: a rank that throws before a collective leaves the others waiting in it forever. Work that
// may fail on one rank only (loading its experts, checking its inputs) is done first, and the
// ranks agree on the outcome with one small collective before the next one that could hang.
// With MPI's default error handler (MPI_ERRORS_ARE_FATAL) a failing MPI call aborts the job
// itself; under MPI_ERRORS_RETURN it becomes an MpiError.
#pragma once

#include <mpi.h>

#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "moe/core/error.hpp"

namespace moe::dist {

/// An MPI call returned an error code (only under an error handler that returns codes).
class MpiError : public Error {
    using Error::Error;
};

/// Another rank, or this one, failed in a step all ranks take together: what() names the lowest
/// failing rank and its message; every rank of the communicator throws it.
class RankError : public Error {
public:
    RankError(std::string_view where, std::string_view message, int rank) : Error(where, message), rank_(rank) {}
    /// The lowest rank that failed.
    int rank() const noexcept { return rank_; }

private:
    int rank_;
};

/// Throws MpiError naming `where` and the MPI call when rc is not MPI_SUCCESS.
inline void mpi_check(int rc, std::string_view where, const char* call) {
    if (rc == MPI_SUCCESS) [[likely]]
        return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
    throw MpiError(where, detail::cat(call, " failed: ", std::string(text, static_cast<std::size_t>(len))));
}

inline int rank_of(MPI_Comm comm) {
    int r = 0;
    mpi_check(MPI_Comm_rank(comm, &r), "moe::dist::rank_of", "MPI_Comm_rank");
    return r;
}

inline int size_of(MPI_Comm comm) {
    int n = 0;
    mpi_check(MPI_Comm_size(comm, &n), "moe::dist::size_of", "MPI_Comm_size");
    return n;
}

/// A collective over comm: if any rank passes failed = true, every rank throws RankError(where,
/// "rank r of P failed: <r's message>") for the lowest such rank r (its message is broadcast;
/// the count of other failing ranks is appended). Returns normally on every rank otherwise.
inline void agree(MPI_Comm comm, bool failed, const std::string& message, std::string_view where) {
    const int me = rank_of(comm), P = size_of(comm);
    const int mine[2] = {failed ? me : P, failed ? 1 : 0};
    int first = P, count = 0;
    mpi_check(MPI_Allreduce(&mine[0], &first, 1, MPI_INT, MPI_MIN, comm), where, "MPI_Allreduce");
    if (first == P) return;
    mpi_check(MPI_Allreduce(&mine[1], &count, 1, MPI_INT, MPI_SUM, comm), where, "MPI_Allreduce");
    int len = me == first ? static_cast<int>(message.size()) : 0;
    mpi_check(MPI_Bcast(&len, 1, MPI_INT, first, comm), where, "MPI_Bcast");
    std::string text = me == first ? message : std::string(static_cast<std::size_t>(len), '\0');
    if (len > 0) mpi_check(MPI_Bcast(text.data(), len, MPI_CHAR, first, comm), where, "MPI_Bcast");
    std::string what = detail::cat("rank ", first, " of ", P, " failed: ", text);
    if (count > 1) what += detail::cat(" (and ", count - 1, " other rank", count > 2 ? "s" : "", ")");
    throw RankError(where, what, first);
}

/// Runs fn() on this rank, then agree()s: every rank returns, or every rank throws RankError
/// naming the lowest rank whose fn threw and its exception's message. fn must not call
/// collectives on comm (a rank that fails before one would leave the others in it).
template <class F>
void on_all_ranks(MPI_Comm comm, std::string_view where, F&& fn) {
    bool failed = false;
    std::string message;
    try {
        fn();
    } catch (const std::exception& e) {
        failed = true;
        message = e.what();
    } catch (...) {
        failed = true;
        message = "an exception not derived from std::exception";
    }
    agree(comm, failed, message, where);
}

}  // namespace moe::dist
