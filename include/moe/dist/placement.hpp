// moe/dist/placement.hpp - which process (rank) holds which expert: a partition of E experts
// over P ranks, for expert parallelism (moe/dist/expert_parallel.hpp).
//
//   Placement::contiguous(E, P)   rank r holds experts [r * E / P, (r + 1) * E / P)
//   Placement::from_owners(o, P)  expert e on rank o[e]
//   Placement::from_lists(l)      rank r holds the experts l[r] (each expert listed exactly once)
//
// Every rank holds at least one expert (its local expert set takes its width from them). A rank
// keeps its experts in ascending expert order: local expert i of rank r is experts_of(r)[i].
// No MPI here: a placement is plain data that every rank builds the same.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"

namespace moe::dist {

class Placement {
public:
    Placement() = default;

    /// E experts over P ranks in contiguous, balanced runs: rank r holds [r * E / P, (r + 1) * E / P).
    /// ConfigError unless 1 <= P <= E.
    static Placement contiguous(index_t experts, int ranks) {
        check<ConfigError>(ranks > 0 && experts >= ranks, "dist::Placement::contiguous",
                           "need 1 <= ranks <= experts so that every rank holds an expert, got ", experts,
                           " experts over ", ranks, " ranks");
        std::vector<int> owner(static_cast<std::size_t>(experts));
        for (int r = 0; r < ranks; ++r)
            for (index_t e = r * experts / ranks; e < (r + 1) * experts / ranks; ++e) owner[static_cast<std::size_t>(e)] = r;
        return from_owners(std::move(owner), ranks);
    }

    /// Expert e on rank owner[e]. ConfigError for an owner outside [0, ranks) or a rank that
    /// holds no expert.
    static Placement from_owners(std::vector<int> owner, int ranks) {
        const char* w = "dist::Placement";
        check<ConfigError>(ranks > 0, w, "the rank count must be positive, got ", ranks);
        check<ConfigError>(!owner.empty(), w, "a placement needs at least one expert");
        Placement p;
        p.ranks_ = ranks;
        p.experts_.assign(static_cast<std::size_t>(ranks), {});
        p.local_.assign(owner.size(), -1);
        for (std::size_t e = 0; e < owner.size(); ++e) {
            check<ConfigError>(owner[e] >= 0 && owner[e] < ranks, w, "expert ", e, " is placed on rank ", owner[e],
                               "; the ranks are 0..", ranks - 1);
            auto& mine = p.experts_[static_cast<std::size_t>(owner[e])];
            p.local_[e] = static_cast<index_t>(mine.size());
            mine.push_back(static_cast<index_t>(e));
        }
        for (int r = 0; r < ranks; ++r)
            check<ConfigError>(!p.experts_[static_cast<std::size_t>(r)].empty(), w, "rank ", r, " holds no expert (",
                               owner.size(), " experts over ", ranks, " ranks)");
        p.owner_ = std::move(owner);
        return p;
    }

    /// Rank r holds the experts lists[r]; the experts are 0 .. E-1 with E the number listed.
    /// ConfigError unless every expert is listed exactly once (a partition).
    static Placement from_lists(std::span<const std::vector<index_t>> lists) {
        const char* w = "dist::Placement::from_lists";
        std::size_t E = 0;
        for (const auto& l : lists) E += l.size();
        std::vector<int> owner(E, -1);
        for (std::size_t r = 0; r < lists.size(); ++r)
            for (const index_t e : lists[r]) {
                check<ConfigError>(e >= 0 && static_cast<std::size_t>(e) < E, w, "rank ", r, " lists expert ", e,
                                   "; with ", E, " experts listed they must be 0..", E - 1);
                check<ConfigError>(owner[static_cast<std::size_t>(e)] < 0, w, "expert ", e, " is listed twice (ranks ",
                                   owner[static_cast<std::size_t>(e)], " and ", r, "): not a partition");
                owner[static_cast<std::size_t>(e)] = static_cast<int>(r);
            }
        return from_owners(std::move(owner), static_cast<int>(lists.size()));
    }

    index_t num_experts() const noexcept { return static_cast<index_t>(owner_.size()); }
    int num_ranks() const noexcept { return ranks_; }
    /// The rank holding expert e.
    int owner(index_t e) const { return owner_.at(static_cast<std::size_t>(e)); }
    /// Expert e's index in its rank's local expert set.
    index_t local_index(index_t e) const { return local_.at(static_cast<std::size_t>(e)); }
    /// The experts of rank r, ascending (local expert i is experts_of(r)[i]).
    const std::vector<index_t>& experts_of(int r) const { return experts_.at(static_cast<std::size_t>(r)); }
    /// Whether owners never decrease with the expert index (then the plan's slots are already
    /// grouped by rank and need no reordering).
    bool rank_ordered() const noexcept { return std::is_sorted(owner_.begin(), owner_.end()); }

    friend bool operator==(const Placement& a, const Placement& b) { return a.ranks_ == b.ranks_ && a.owner_ == b.owner_; }

private:
    int ranks_ = 0;
    std::vector<int> owner_;                   // [E] rank of each expert
    std::vector<index_t> local_;               // [E] index within its rank
    std::vector<std::vector<index_t>> experts_;  // [P] experts of each rank, ascending
};

}  // namespace moe::dist
