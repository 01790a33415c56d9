// RoutingPlan: the expert-major view built from token choices, capacity with both priorities,
// and the invariants, on hand-derived cases and random property checks.
#include <catch2/catch.hpp>

#include <random>

#include "moe/router/plan.hpp"

using namespace moe;

namespace {
RoutingPlan make(index_t T, index_t E, index_t k, std::vector<std::int32_t> ids) {
    RoutingPlan p;
    p.reset(T, E, k);
    p.expert_ids = std::move(ids);
    for (std::size_t c = 0; c < p.weights.size(); ++c) p.weights[c] = 0.1f * float(c + 1);
    return p;
}
}  // namespace

TEST_CASE("plan without capacity: counts, offsets and both permutation maps", "[plan]") {
    // T = 4, k = 2, E = 3: t0 -> (2, 0), t1 -> (0, 1), t2 -> (2, 1), t3 -> (0, 2)
    auto p = make(4, 3, 2, {2, 0, 0, 1, 2, 1, 0, 2});
    p.finalize();
    p.validate();
    REQUIRE(p.counts == std::vector<std::int32_t>{3, 2, 3});
    REQUIRE(p.offsets == std::vector<std::int32_t>{0, 3, 5, 8});
    // expert 0 gets t0, t1, t3; expert 1: t1, t2; expert 2: t0, t2, t3
    REQUIRE(p.slot_to_token == std::vector<std::int32_t>{0, 1, 3, 1, 2, 0, 2, 3});
    REQUIRE(p.token_to_slot == std::vector<std::int32_t>{5, 0, 1, 3, 6, 4, 2, 7});
    REQUIRE(p.slot_weights[0] == p.weights[1]);
    REQUIRE(p.dropped.empty());
    REQUIRE(p.load == std::vector<std::int64_t>{3, 2, 3});
}

TEST_CASE("capacity drops in token order (Switch) or by choice rank (GShard)", "[plan]") {
    // T = 4, k = 2, E = 2, capacity 2: expert 0 is asked by t0 (rank 1), t1 (rank 0), t2 (rank 0), t3 (rank 0)
    const std::vector<std::int32_t> ids{1, 0, 0, 1, 0, 1, 0, 1};
    auto a = make(4, 2, 2, ids);
    a.finalize(2, CapacityPriority::token_order);
    a.validate();
    // token order: expert 0 keeps t0, t1; expert 1 keeps t0, t1
    REQUIRE(a.counts == std::vector<std::int32_t>{2, 2});
    REQUIRE(a.dropped == std::vector<std::int32_t>{4, 5, 6, 7});
    auto b = make(4, 2, 2, ids);
    b.finalize(2, CapacityPriority::choice_rank);
    b.validate();
    // choice rank: rank-0 requests first in token order: t0->1, t1->0, t2->0, t3->0 (full), then rank 1
    REQUIRE(b.slot_to_token == std::vector<std::int32_t>{1, 2, 0, 1});
    REQUIRE(b.dropped == std::vector<std::int32_t>{1, 5, 6, 7});
    REQUIRE(b.load == std::vector<std::int64_t>{4, 4});
}

TEST_CASE("expert_capacity is ceil(k T cf / E); empty positions are ignored", "[plan]") {
    REQUIRE(expert_capacity(2304, 4, 1, 1.2) == 692);  // RingMoE stage 1 chunk: ceil(2764.8 / 4)
    REQUIRE(expert_capacity(10, 3, 2, 1.0) == 7);
    REQUIRE(expert_capacity(10, 3, 2, 0.0) == 0);
    REQUIRE_THROWS_AS(expert_capacity(10, 0, 2, 1.0), ConfigError);
    auto p = make(2, 2, 2, {1, -1, -1, 0});
    p.finalize();
    p.validate();
    REQUIRE(p.num_slots() == 2);
    REQUIRE(p.token_to_slot == std::vector<std::int32_t>{1, -1, -1, 0});
}

TEST_CASE("random plans satisfy every invariant", "[plan]") {
    std::mt19937 rng(1);
    for (int it = 0; it < 200; ++it) {
        const index_t T = rng() % 50, E = 1 + rng() % 9, k = 1 + rng() % E;
        RoutingPlan p;
        p.reset(T, E, k);
        for (index_t t = 0; t < T; ++t) {
            std::vector<std::int32_t> e(static_cast<std::size_t>(E));
            for (index_t i = 0; i < E; ++i) e[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
            std::shuffle(e.begin(), e.end(), rng);
            for (index_t j = 0; j < k; ++j) p.expert_ids[static_cast<std::size_t>(t * k + j)] = e[static_cast<std::size_t>(j)];
        }
        p.finalize(rng() % 4 == 0 ? 0 : 1 + rng() % 5, rng() % 2 ? CapacityPriority::token_order : CapacityPriority::choice_rank);
        REQUIRE_NOTHROW(p.validate());
    }
    auto bad = make(1, 2, 1, {5});
    REQUIRE_THROWS_AS(bad.finalize(), ConfigError);
}
