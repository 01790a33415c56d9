// moe/dist/loaders.hpp - expert-parallel layers built from a checkpoint, each rank reading only
// its own experts' tensors (needs <mpi.h>: not in moe.hpp).
//
//   expert_parallel(comm, placement, load_local)   ExpertParallel<X> from load_local(ids) -> X,
//                                                  the experts `ids` of this rank
//   open_checkpoint(comm, path)                    the safetensors file, opened on every rank
//   load_mixtral_block<W>(comm, file, prefix, placement, k)
//                                                  Mixtral's block: the router on every rank,
//                                                  this rank's experts only (dist::MixtralMoE)
//
// Zero copy as the single-process loaders (moe/loaders/): weights whose dtype is W are read
// where they lie in the file's mapping, so a rank's resident memory holds the pages of its own
// experts (and the router's), its share of the checkpoint; other dtypes are converted once, the
// rank's experts only.
//
// Loading can fail on one rank only (a missing file or tensor, a bad shape): every step that
// may fail runs first on each rank alone, then the ranks agree (on_all_ranks, moe/dist/comm.hpp)
// and all throw RankError naming the failing rank and its message; none is left in a collective.
#pragma once

#include <mpi.h>

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "moe/backend/cpu/activation.hpp"
#include "moe/core/error.hpp"
#include "moe/core/precision.hpp"
#include "moe/core/tensor.hpp"
#include "moe/dist/comm.hpp"
#include "moe/dist/expert_parallel.hpp"
#include "moe/dist/placement.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/loaders/parts.hpp"
#include "moe/router/gate.hpp"
#include "moe/router/topk.hpp"

namespace moe::dist {

/// Mixtral's sparse block with its experts spread over the ranks.
template <WeightPolicy W = float>
using MixtralMoE = MoELayer<TopKRouter<SoftmaxScores>, ExpertParallel<GluExperts<Silu, W>>>;

/// ExpertParallel<X> over comm from load_local(ids) -> X, ids = placement.experts_of(rank)
/// (ascending): this rank's experts only. A collective; when load_local throws on any rank,
/// every rank throws RankError naming the lowest failing rank and its message.
template <class LoadLocal>
auto expert_parallel(MPI_Comm comm, Placement placement, LoadLocal&& load_local) {
    using X = std::remove_cvref_t<std::invoke_result_t<LoadLocal&, std::span<const index_t>>>;
    std::optional<X> local;
    const int rank = rank_of(comm), P = size_of(comm);
    on_all_ranks(comm, "dist::expert_parallel", [&] {
        check<ConfigError>(placement.num_ranks() == P, "dist::expert_parallel", "the placement is over ",
                           placement.num_ranks(), " ranks, the communicator has ", P);
        local.emplace(load_local(std::span<const index_t>(placement.experts_of(rank))));
    });
    return ExpertParallel<X>(comm, std::move(placement), std::move(*local));
}

/// The safetensors file at `path`, opened (mmapped) on every rank; RankError on every rank when
/// any rank cannot open it.
inline io::SafetensorsFile open_checkpoint(MPI_Comm comm, const std::filesystem::path& path) {
    std::optional<io::SafetensorsFile> f;
    on_all_ranks(comm, "dist::open_checkpoint", [&] { f.emplace(io::SafetensorsFile::open(path)); });
    return std::move(*f);
}

/// Mixtral's MixtralSparseMoeBlock under `prefix` (hf::load_mixtral_block's names and routing),
/// with expert e on rank placement.owner(e): every rank reads the gate and its own experts'
/// w1/w3/w2 only. ConfigError (as RankError, on every rank) when the checkpoint's expert count
/// is not the placement's.
template <WeightPolicy W = float>
MixtralMoE<W> load_mixtral_block(MPI_Comm comm, const io::SafetensorsFile& file, std::string prefix,
                                 Placement placement, index_t k = 2) {
    const char* w = "dist::load_mixtral_block";
    std::optional<Gate> gate;
    index_t d = 0;
    const std::string stem = io::module_prefix(std::move(prefix)) + "experts.";
    on_all_ranks(comm, w, [&] {
        const std::string p = stem.substr(0, stem.size() - 8);  // the module prefix
        const index_t E = io::require_indexed(file, stem, stem + "0.w1.weight");
        check<ConfigError>(E == placement.num_experts(), file.path(), p, " holds ", E,
                           " experts, the placement places ", placement.num_experts());
        d = io::matrix(file, p + "gate.weight").dim(1);
        gate.emplace(loaders::gate(file, p + "gate.weight", E, d));
    });
    auto experts = expert_parallel(comm, std::move(placement), [&](std::span<const index_t> ids) {
        return loaders::glu_experts<W>(file, stem, ids, d, ".w1.weight", ".w3.weight", ".w2.weight");
    });
    return {softmax_topk_router(std::move(*gate), k, true), std::move(experts)};
}

}  // namespace moe::dist
