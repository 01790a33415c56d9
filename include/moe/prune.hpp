// moe/prune.hpp - pruning policies: routing statistics, frequency pruning, modality extraction,
// SVD folding into a dense FFN, run-time k reduction (docs/pruning.md).
//
//   Calibration          the layer inputs a policy measures on (optionally tagged with modalities)
//   RoutingStats         per layer / group / modality expert counts; collect(stats, name, layer, cal)
//   PruningPolicy<P, L>  P::apply(const L&, const Calibration&) -> Pruned<L2>{layer, report}
//   KeepMostFrequent     keep the most frequently routed fraction of a group (RingMoE: 25% of collab)
//   ExtractModality      one modality's sub-model of a HierarchicalMoE (exact on its tokens)
//   SvdFold              all experts -> one DenseFfn by per-expert truncation of the activations
//   ReduceK              fewer experts per token, same weights
#pragma once

#include "moe/prune/calibration.hpp"
#include "moe/prune/frequency.hpp"
#include "moe/prune/modality.hpp"
#include "moe/prune/reduce_k.hpp"
#include "moe/prune/report.hpp"
#include "moe/prune/stats.hpp"
#include "moe/prune/svd_fold.hpp"

namespace moe::detail {

// Every policy satisfies the concept for the layers it supports (checked without instantiating
// any apply body: the return types are spelled out).
using CheckMlp = MlpExperts<Gelu>;
using CheckLayer = MoELayer<TopKRouter<SoftmaxScores>, CheckMlp, SharedExperts<CheckMlp>>;
using CheckHier = HierarchicalMoE<CheckMlp, CheckMlp, SharedExperts<CheckMlp>>;
static_assert(PruningPolicy<KeepMostFrequent, CheckLayer> && PruningPolicy<KeepMostFrequent, CheckHier>);
static_assert(PruningPolicy<ExtractModality, CheckHier>);
static_assert(PruningPolicy<SvdFold, CheckLayer> && PruningPolicy<SvdFold, CheckHier>);
static_assert(PruningPolicy<ReduceK, CheckLayer> && PruningPolicy<ReduceK, CheckHier>);

}  // namespace moe::detail
