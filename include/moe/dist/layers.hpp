// moe/dist/layers.hpp - a built layer made expert-parallel (needs <mpi.h>: not in moe.hpp).
//
//   distribute(comm, group, placement)                RoutedGroup<R, X> -> RoutedGroup<R, ExpertParallel<X>>
//   distribute(comm, moe_layer, placement)            MoELayer<R, X, S> -> MoELayer<R, ExpertParallel<X>, S>
//   distribute(comm, hierarchical, modal, collab)     HierarchicalMoE<M, C, S, R> ->
//                                                     HierarchicalMoE<ExpertParallel<M>, ExpertParallel<C>, S, R>
//
// Each rank keeps the router(s), the shared experts and its share of every routed group's
// experts (experts.select(placement.experts_of(rank)): the weights are shared with the layer
// given, not copied; the other experts are released with it). Loss constants and execution
// contexts carry over. Every function is a collective over comm (ExpertParallel's constructor):
// all ranks call it with the same layer structure and placements. For a rank that should never
// read the other experts' weights, build the layer from its share instead (moe/dist/loaders.hpp).
#pragma once

#include <mpi.h>

#include <utility>
#include <vector>

#include "moe/dist/comm.hpp"
#include "moe/dist/expert_parallel.hpp"
#include "moe/dist/placement.hpp"
#include "moe/expert/concepts.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/routed_group.hpp"
#include "moe/router/concepts.hpp"

namespace moe::dist {

template <Router R, GroupedExpertSet X>
RoutedGroup<R, ExpertParallel<X>> distribute(MPI_Comm comm, RoutedGroup<R, X> group, const Placement& placement) {
    ExpertParallel<X> experts(comm, placement, group.experts().select(placement.experts_of(rank_of(comm))));
    RoutedGroup<R, ExpertParallel<X>> out(std::move(group.router()), std::move(experts), "dist::distribute");
    out.set_loss_constant(group.loss_constant());
    out.set_exec(group.exec());
    return out;
}

template <Router R, GroupedExpertSet X, class Shared>
MoELayer<R, ExpertParallel<X>, Shared> distribute(MPI_Comm comm, MoELayer<R, X, Shared> layer,
                                                  const Placement& placement) {
    return MoELayer<R, ExpertParallel<X>, Shared>(distribute(comm, std::move(layer.group()), placement),
                                                  std::move(layer.shared()));
}

/// Every modal group's experts by `modal` (the modal groups have the same expert count), the
/// collaborative group's by `collab`.
template <GroupedExpertSet Modal, GroupedExpertSet Collab, class Shared, Router R>
HierarchicalMoE<ExpertParallel<Modal>, ExpertParallel<Collab>, Shared, R> distribute(
    MPI_Comm comm, HierarchicalMoE<Modal, Collab, Shared, R> layer, const Placement& modal, const Placement& collab) {
    std::vector<RoutedGroup<R, ExpertParallel<Modal>>> groups;
    groups.reserve(static_cast<std::size_t>(layer.modalities()));
    for (int m = 0; m < layer.modalities(); ++m) groups.push_back(distribute(comm, std::move(layer.modal_group(m)), modal));
    auto c = distribute(comm, std::move(layer.collab_group()), collab);
    HierarchicalMoE<ExpertParallel<Modal>, ExpertParallel<Collab>, Shared, R> out(
        std::move(groups), std::move(c), std::move(layer.shared()), layer.loss_options());
    out.set_exec(layer.exec());
    return out;
}

}  // namespace moe::dist
