// RoutingPlan: the expert-major view built from token choices, capacity with both priorities,
// and the invariants, on hand-derived cases and random property checks.
#include <catch2/catch.hpp>

#include <random>

#include "moe/core/plan.hpp"

namespace moe_test_plan {  // this file's names (unity builds merge test files)

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

/// p.reset(T, E, k), then each token's k choices: k distinct experts in random order, with
/// weights 1/2, 1/3, ... (best first).
void random_distinct_choices(RoutingPlan& p, index_t T, index_t E, index_t k, std::mt19937& rng) {
    p.reset(T, E, k);
    std::vector<std::int32_t> e(static_cast<std::size_t>(E));
    for (index_t t = 0; t < T; ++t) {
        for (index_t i = 0; i < E; ++i) e[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
        std::shuffle(e.begin(), e.end(), rng);
        for (index_t j = 0; j < k; ++j) {
            p.expert_ids[static_cast<std::size_t>(t * k + j)] = e[static_cast<std::size_t>(j)];
            p.weights[static_cast<std::size_t>(t * k + j)] = 1.0f / float(j + 2);
        }
    }
}

TEST_CASE("random plans satisfy every invariant", "[plan]") {
    std::mt19937 rng(1);
    for (int it = 0; it < 200; ++it) {
        const index_t T = rng() % 50, E = 1 + rng() % 9, k = 1 + rng() % E;
        RoutingPlan p;
        random_distinct_choices(p, T, E, k, rng);
        p.finalize(rng() % 4 == 0 ? 0 : 1 + rng() % 5, rng() % 2 ? CapacityPriority::token_order : CapacityPriority::choice_rank);
        REQUIRE_NOTHROW(p.validate());
    }
    auto bad = make(1, 2, 1, {5});
    REQUIRE_THROWS_AS(bad.finalize(), ConfigError);
}

TEST_CASE("sequential capacity (MindSpore TopkRouter): a dropped choice repeats; weights over kept choices", "[plan]") {
    // T = 4, E = 3, k = 2, capacity 2. The router's top-2 (weights = probabilities):
    //   t0 -> (0 .5, 2 .3)   t1 -> (0 .6, 2 .25)   t2 -> (0 .45, 1 .4)   t3 -> (2 .7, 0 .2)
    // Round 0 (first choices, token order): t0 -> 0 kept, t1 -> 0 kept (0 full), t2 -> 0
    //   dropped, t3 -> 2 kept.
    // Round 1: t0 -> 2 kept (2 full), t1 -> 2 dropped; t2's first choice was dropped, so it asks
    //   expert 0 again (not 1, which is free) and is dropped; t3 -> 0 dropped.
    // Kept: c0 (t0, 0), c1 (t0, 2), c2 (t1, 0), c6 (t3, 2); dropped: c3, c4, c5, c7.
    RoutingPlan p;
    p.reset(4, 3, 2);
    p.expert_ids = {0, 2, 0, 2, 0, 1, 2, 0};
    p.weights = {0.5f, 0.3f, 0.6f, 0.25f, 0.45f, 0.4f, 0.7f, 0.2f};
    p.finalize(2, CapacityPriority::sequential);
    p.validate();
    REQUIRE(p.expert_ids == std::vector<std::int32_t>{0, 2, 0, 2, 0, 0, 2, 0});  // c5 rewritten 1 -> 0
    REQUIRE(p.weights[5] == 0.45f);                                              // with its weight
    REQUIRE(p.dropped == std::vector<std::int32_t>{3, 4, 5, 7});
    REQUIRE(p.counts == std::vector<std::int32_t>{2, 0, 2});  // expert 1 stays empty
    REQUIRE(p.load == std::vector<std::int64_t>{5, 0, 3});    // requests after the rewrite
    // expert 0: t0, t1; expert 2: t0, t3
    REQUIRE(p.slot_to_token == std::vector<std::int32_t>{0, 1, 0, 3});
    REQUIRE(p.token_to_slot == std::vector<std::int32_t>{0, 2, 1, -1, -1, -1, 3, -1});

    // The other priorities on the same choices differ: choice_rank keeps t2's second choice
    // (expert 1); token_order keeps t1's second and t2's second, drops t3's first.
    RoutingPlan q;
    q.reset(4, 3, 2);
    q.expert_ids = {0, 2, 0, 2, 0, 1, 2, 0};
    q.finalize(2, CapacityPriority::choice_rank);
    REQUIRE(q.dropped == std::vector<std::int32_t>{3, 4, 7});
    q.reset(4, 3, 2);
    q.expert_ids = {0, 2, 0, 2, 0, 1, 2, 0};
    q.finalize(2, CapacityPriority::token_order);
    REQUIRE(q.dropped == std::vector<std::int32_t>{4, 6, 7});

    // Renormalised over the kept choices, w / (sum + 1e-9) in fp32: t0 keeps both,
    // .5 / .8 = .625 and .3 / .8 = .375; t1 and t3 keep only their first choice: exactly 1
    // (not .6 / .85 and .7 / .9); t2 keeps nothing: 0, 0. Dropped choices weigh 0.
    p.renormalize_kept(1e-9f);
    p.validate();
    REQUIRE(p.weights[0] == 0.5f / (0.5f + 0.3f + 1e-9f));
    REQUIRE(p.weights[1] == 0.3f / (0.5f + 0.3f + 1e-9f));
    REQUIRE(p.weights[0] == Approx(0.625));
    REQUIRE(p.weights[1] == Approx(0.375));
    REQUIRE(p.weights[2] == 1.0f);
    REQUIRE(p.weights[6] == 1.0f);
    for (int c : {3, 4, 5, 7}) REQUIRE(p.weights[static_cast<std::size_t>(c)] == 0.0f);
    REQUIRE(p.slot_weights == std::vector<float>{p.weights[0], 1.0f, p.weights[1], 1.0f});
    // a scale multiplies after the division
    RoutingPlan s = p;
    s.weights = {0.5f, 0.3f, 0.6f, 0.25f, 0.45f, 0.45f, 0.7f, 0.2f};
    s.renormalize_kept(0.0f, 2.0f);
    REQUIRE(s.weights[2] == 2.0f);
    REQUIRE(s.slot_weights[1] == 2.0f);
    REQUIRE_THROWS_AS(s.renormalize_kept(-1.0f), ConfigError);
}

TEST_CASE("sequential capacity: without capacity or at k = 1 it is token order; random plans stay valid", "[plan]") {
    std::mt19937 rng(7);
    for (int it = 0; it < 300; ++it) {
        const index_t T = rng() % 40, E = 1 + rng() % 6, k = 1 + rng() % E;
        const index_t cap = rng() % 3 == 0 ? 0 : 1 + rng() % 6;
        RoutingPlan p;
        random_distinct_choices(p, T, E, k, rng);
        RoutingPlan a = p, b = p;
        a.finalize(cap, CapacityPriority::sequential);
        REQUIRE_NOTHROW(a.validate());
        b.finalize(cap, CapacityPriority::choice_rank);
        if (cap == 0 || k == 1) {
            RoutingPlan c = p;
            c.finalize(cap, CapacityPriority::token_order);
            REQUIRE(a.token_to_slot == c.token_to_slot);
            REQUIRE(a.dropped == c.dropped);
        }
        // the first choices are decided alike by sequential and choice_rank (round 0 first)
        for (index_t t = 0; t < T; ++t)
            REQUIRE((a.token_to_slot[static_cast<std::size_t>(t * k)] >= 0) ==
                    (b.token_to_slot[static_cast<std::size_t>(t * k)] >= 0));
        // after a token's first drop, every later choice names the same expert and is dropped;
        // kept choices name distinct experts
        for (index_t t = 0; t < T; ++t) {
            std::int32_t d = -1;
            std::vector<int> seen(static_cast<std::size_t>(E), 0);
            for (index_t j = 0; j < k; ++j) {
                const auto c = static_cast<std::size_t>(t * k + j);
                if (d >= 0) {
                    REQUIRE(a.expert_ids[c] == d);
                    REQUIRE(a.token_to_slot[c] < 0);
                } else if (a.token_to_slot[c] < 0) {
                    d = a.expert_ids[c];
                } else {
                    REQUIRE(seen[static_cast<std::size_t>(a.expert_ids[c])]++ == 0);
                }
            }
        }
        a.renormalize_kept(1e-9f);
        REQUIRE_NOTHROW(a.validate());
        for (index_t t = 0; t < T; ++t) {
            double sum = 0;
            bool any = false;
            for (index_t j = 0; j < k; ++j) {
                const auto c = static_cast<std::size_t>(t * k + j);
                if (a.token_to_slot[c] >= 0) any = true;
                else REQUIRE(a.weights[c] == 0.0f);
                sum += a.weights[c];
            }
            if (any) REQUIRE(sum == Approx(1.0).epsilon(1e-6));
        }
    }
}

}  // namespace moe_test_plan
