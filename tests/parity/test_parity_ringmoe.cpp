// Parity: moe::rs::ringmoe::load_moe_modal (HierarchicalMoE) vs. RingMoE's MindSpore Moe_modal as
// tools/reference/ringmoe_moe.py computes it (fixtures ringmoe_moe: renormalised combine, the
// released convention; ringmoe_moe_rawprob: raw-probability combine). 4 modalities x 48 tokens,
// 4 modal + 4 collaborative experts + 1 shared, top-1, capacity factor 1.2, tanh GELU; experts
// overflow their capacity in the collaborative group and in several modalities.
// ringmoe_moe_k2 / ringmoe_moe_k2_rawprob: the same layer at k = 2 (num_experts_chosen = 2),
// capacity factor 0.6: the released TopkRouter's rule (CapacityPriority::sequential: all first
// choices before any second choice; a token whose first choice is dropped asks the same expert
// again and is dropped again; weights renormalised over the KEPT choices, w / (sum + 1e-9)).
// In the collaborative group and in at least two modalities some first choices are dropped and
// some tokens keep their first choice but lose their second (their weight is exactly 1).
//
// Tolerances:
//   layer output, router logits       relative Frobenius error <= 1e-5 (fp32 on both sides)
//   expert ids (every group, choice)  exact
//   kept mask, dropped-choice count,  exact (capacity in the released order)
//   per-expert kept counts, capacity
//   combine weights                   k = 1 renormalised: exactly 1 (kept) / 0 (dropped);
//                                     k = 2 renormalised: |dw| <= 1e-6 (the two sides' fp32
//                                     softmax may differ in the last bits), and exactly 1 for a
//                                     token that keeps only its first choice, 0 when dropped;
//                                     raw probability: |dw| <= 1e-6
//   group losses sum_j mean_e(f_je P_je) c^2   relative error <= 1e-5
//   layer loss 0.001 (L_c + mean L_m) relative error <= 1e-5
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "parity_util.hpp"
#include "rs/ringmoe/moe_modal.hpp"

namespace moe_test_parity_ringmoe {  // this file's names (unity builds merge test files)

using namespace moe_test;

namespace {

struct GroupReport {
    double logits_rel = 0, loss_rel = 0, max_weight_err = 0;
    index_t dropped = 0;        ///< dropped choices
    index_t first_dropped = 0;  ///< tokens whose first choice was dropped
    index_t only_first = 0;     ///< tokens that keep their first choice and lose a later one
};

/// Compares one routed group (its plan, router logits and loss) with the fixture's __<tag>_*__.
/// __<tag>_kept__ is [T] at k = 1 and [T, k] for k > 1; ids and weights are [T, k].
GroupReport check_group(const std::string& tag, const moe::RoutingPlan& plan, moe::ConstMatrixRef<float> logits,
                        double loss, const SafetensorsFile& f, bool renormalize) {
    INFO("group " << tag);
    GroupReport g;
    const moe::TensorView ids = f.get("__" + tag + "_expert_ids__");
    const moe::TensorView w = f.get("__" + tag + "_weights__");
    const moe::TensorView kept = f.get("__" + tag + "_kept__");
    const moe::TensorView counts = f.get("__" + tag + "_counts__");
    const index_t T = ids.dim(0), E = counts.dim(0), k = ids.dim(1);
    REQUIRE(ids.rank() == 2);
    REQUIRE(w.dim(0) == T);
    REQUIRE(w.dim(1) == k);
    REQUIRE(kept.dim(0) == T);
    REQUIRE((kept.rank() == 1 ? index_t{1} : kept.dim(1)) == k);
    REQUIRE(plan.num_tokens == T);
    REQUIRE(plan.num_experts == E);
    REQUIRE(plan.k == k);
    plan.validate();
    CHECK(plan.capacity == meta_int(f, tag + "_capacity"));

    g.logits_rel = rel_error(logits, f.get("__" + tag + "_logits__").matrix<float>());
    CHECK(g.logits_rel <= 1e-5);

    index_t id_mismatch = 0, kept_mismatch = 0, w_mismatch = 0;
    for (index_t t = 0; t < T; ++t) {
        bool lost_later = false;
        for (index_t j = 0; j < k; ++j) {
            const auto c = static_cast<std::size_t>(t * k + j);
            const std::int32_t id_ref = ids.data<std::int32_t>()[c];
            if (plan.expert_ids[c] != id_ref) {
                ++id_mismatch;
                UNSCOPED_INFO("token " << t << ", choice " << j << ": expert " << plan.expert_ids[c] << ", reference "
                                       << id_ref);
            }
            const bool k_got = plan.token_to_slot[c] >= 0, k_ref = kept.data<std::int32_t>()[c] != 0;
            if (k_got != k_ref) {
                ++kept_mismatch;
                UNSCOPED_INFO("token " << t << ", choice " << j << ": kept " << k_got << ", reference " << k_ref);
            }
            if (!k_ref) {
                ++g.dropped;
                if (j == 0) ++g.first_dropped;
                lost_later = lost_later || j > 0;
            }
            const float w_got = k_got ? plan.weights[c] : 0.0f, w_ref = w.data<float>()[c];
            const double err = std::abs(double(w_got) - double(w_ref));
            g.max_weight_err = std::max(g.max_weight_err, err);
            // exact where the reference is exact: renormalised top-1, and 0 for dropped choices
            const bool exact = (renormalize && k == 1) || !k_ref;
            if (exact ? w_got != w_ref : err > 1e-6) {
                ++w_mismatch;
                UNSCOPED_INFO("token " << t << ", choice " << j << ": weight " << w_got << ", reference " << w_ref);
            }
        }
        const auto c0 = static_cast<std::size_t>(t * k);
        if (k > 1 && lost_later && plan.token_to_slot[c0] >= 0) {
            bool only = true;
            for (index_t j = 1; j < k; ++j) only = only && plan.token_to_slot[c0 + static_cast<std::size_t>(j)] < 0;
            if (only) {
                ++g.only_first;
                // it keeps all its weight on its first choice: exactly 1, not p1 / (p1 + p2)
                if (renormalize) CHECK(plan.weights[c0] == 1.0f);
                if (renormalize) CHECK(w.data<float>()[c0] == 1.0f);
            }
        }
    }
    CHECK(id_mismatch == 0);
    CHECK(kept_mismatch == 0);
    CHECK(w_mismatch == 0);
    CHECK(g.dropped == meta_int(f, tag + "_dropped"));
    CHECK(static_cast<index_t>(plan.dropped.size()) == g.dropped);
    for (index_t e = 0; e < E; ++e) {
        INFO("expert " << e);
        CHECK(plan.counts[static_cast<std::size_t>(e)] == counts.data<std::int32_t>()[e]);
    }
    const double loss_ref = double(*f.get("__" + tag + "_group_loss__").data<float>());
    g.loss_rel = rel_diff(loss, loss_ref);
    INFO("group loss " << loss << ", reference " << loss_ref);
    CHECK(g.loss_rel <= 1e-5);
    return g;
}

void run_case(const std::string& name) {
    const auto f = open_fixture(name);
    const std::string prefix = meta(f, "prefix");
    const bool renormalize = meta_bool(f, "renormalize");
    REQUIRE(meta(f, "gelu") == "tanh");
    moe::rs::ringmoe::MoeModalConfig cfg;
    cfg.num_experts_chosen = meta_int(f, "k");
    cfg.capacity_factor = meta_double(f, "capacity_factor");
    cfg.renormalize = renormalize;
    cfg.expert_num = meta_double(f, "aux_constant");
    cfg.aux_loss_factor = meta_double(f, "aux_loss_factor");
    auto layer = moe::rs::ringmoe::load_moe_modal<float>(f, prefix, cfg);

    const int M = static_cast<int>(meta_int(f, "modalities"));
    REQUIRE(layer.modalities() == M);
    REQUIRE(layer.hidden_size() == meta_int(f, "hidden_size"));
    // zero copy: routers, biases and the [E, in, out] / [in, out] expert weights are read in
    // the mapping (the in_out layout), and element (out j, in i) is the file's [i, j]
    CHECK(static_cast<const void*>(layer.modal_router(2).gate().weight().data) ==
          f.get(prefix + "special_router.2.dense.weight").raw());
    CHECK(layer.modal_experts(3).fc1().layout() == moe::WeightLayout::in_out);
    CHECK(static_cast<const void*>(layer.modal_experts(3).fc1().weight(1).data) ==
          f.get(prefix + "special_ffn.3.mapping.weight")[1].raw());
    CHECK(static_cast<const void*>(layer.collab_experts().fc2().weight(0).data) ==
          f.get(prefix + "cross_ffn.projection.weight").raw());
    CHECK(static_cast<const void*>(layer.shared().experts().fc1().weight(0).data) ==
          f.get(prefix + "public_ffn.mapping.weight").raw());
    CHECK(layer.collab_experts().fc1().bias(1) ==
          f.get(prefix + "cross_ffn.mapping.bias").data<float>() + meta_int(f, "ffn_size"));
    {
        const moe::TensorView w1 = f.get(prefix + "special_ffn.3.mapping.weight");  // [E, C, F]
        const moe::TensorView ws = f.get(prefix + "public_ffn.projection.weight");  // [F, C]
        const index_t C = w1.dim(1), F = w1.dim(2);
        index_t bad = 0;
        for (index_t e = 0; e < w1.dim(0); ++e)
            for (index_t i = 0; i < C; ++i)
                for (index_t j = 0; j < F; ++j)
                    bad += layer.modal_experts(3).fc1().weight(e)(j, i) != w1.data<float>()[(e * C + i) * F + j];
        for (index_t i = 0; i < F; ++i)
            for (index_t j = 0; j < C; ++j)
                bad += layer.shared().experts().fc2().weight(0)(j, i) != ws.data<float>()[i * C + j];
        CHECK(bad == 0);
    }

    const moe::TensorView x = f.get("__input__");
    const moe::TensorView y_ref = f.get("__output__");
    const auto chunks =
        moe::rs::ringmoe::modality_chunks(meta_int(f, "batch"), meta_int(f, "tokens_per_image"), M);
    moe::Tensor y(moe::DType::f32, x.shape());
    layer.forward(x.matrix<float>(), chunks, y.matrix<float>());

    Report rep{name};
    rep.output_rel = rel_error(y.matrix<float>(), y_ref.matrix<float>());
    INFO(name << ": output relative error " << rep.output_rel);
    CHECK(rep.output_rel <= 1e-5);

    const auto& L = layer.losses();
    const index_t k = meta_int(f, "k");
    index_t dropped = 0;
    GroupReport g = check_group("cross", layer.collab_plan(), layer.collab_router().last_logits(), L.collab, f,
                                renormalize);
    double worst_loss = g.loss_rel, worst_logits = g.logits_rel;
    dropped += g.dropped;
    rep.max_weight_err = g.max_weight_err;
    if (k > 1) {  // the fixture's draw: both kinds of drop in the collaborative group ...
        CHECK(g.first_dropped > 0);
        CHECK(g.only_first > 0);
    }
    int modal_first = 0, modal_only_first = 0;
    for (int m = 0; m < M; ++m) {
        REQUIRE(L.present[static_cast<std::size_t>(m)]);
        g = check_group("special_" + std::to_string(m), layer.modal_plan(m), layer.modal_router(m).last_logits(),
                        L.modal[static_cast<std::size_t>(m)], f, renormalize);
        worst_loss = std::max(worst_loss, g.loss_rel);
        worst_logits = std::max(worst_logits, g.logits_rel);
        rep.max_weight_err = std::max(rep.max_weight_err, g.max_weight_err);
        dropped += g.dropped;
        modal_first += g.first_dropped > 0;
        modal_only_first += g.only_first > 0;
    }
    CHECK(dropped > 0);  // the fixture overflows some experts
    if (k > 1) {  // ... and in at least two modalities
        CHECK(modal_first >= 2);
        CHECK(modal_only_first >= 2);
    }
    rep.logits_rel = worst_logits;
    rep.z_rel = worst_loss;  // printed as "z rel": the worst group-loss error
    const double aux_ref = double(*f.get("__aux_loss__").data<float>());
    rep.aux_rel = rel_diff(L.total, aux_ref);
    INFO("layer aux loss " << L.total << ", reference " << aux_ref);
    CHECK(rep.aux_rel <= 1e-5);

    // The per-token modality form of forward gives the same result (it gathers each modality's
    // rows and adds w * expert(x) to the output afterwards instead of accumulating in place: with
    // weights other than 1, raw probabilities or k > 1, the last bit may differ).
    std::vector<std::int32_t> ids(static_cast<std::size_t>(x.dim(0)));
    for (const auto& c : chunks) std::fill(ids.begin() + c.begin, ids.begin() + c.end, c.modality);
    moe::Tensor y2(moe::DType::f32, x.shape());
    layer.forward(x.matrix<float>(), std::span<const std::int32_t>(ids), y2.matrix<float>());
    CHECK(rel_error(y2.matrix<float>(), y.matrix<float>()) <= 1e-6);
    if (renormalize && k == 1)
        CHECK(std::equal(y.span<float>().begin(), y.span<float>().end(), y2.span<float>().begin()));

    std::printf("parity %-18s output rel %.2e  logits rel %.2e (worst group)  max |dw| %.2e  group loss rel %.2e "
                "(worst)  layer aux rel %.2e  dropped %lld\n",
                name.c_str(), rep.output_rel, rep.logits_rel, rep.max_weight_err, worst_loss, rep.aux_rel,
                static_cast<long long>(dropped));
}

}  // namespace

TEST_CASE("parity: RingMoE Moe_modal, renormalised top-1 (released)", "[parity][ringmoe]") { run_case("ringmoe_moe"); }

TEST_CASE("parity: RingMoE Moe_modal, raw-probability combine", "[parity][ringmoe]") {
    run_case("ringmoe_moe_rawprob");
}

TEST_CASE("parity: RingMoE Moe_modal, k = 2, renormalised over the kept choices (released TopkRouter)",
          "[parity][ringmoe]") {
    run_case("ringmoe_moe_k2");
}

TEST_CASE("parity: RingMoE Moe_modal, k = 2, raw-probability combine", "[parity][ringmoe]") {
    run_case("ringmoe_moe_k2_rawprob");
}

TEST_CASE("ringmoe loader: missing and mis-shaped tensors are named", "[parity][ringmoe][errors]") {
    const auto f = open_fixture("ringmoe_moe");
    const std::string p = meta(f, "prefix");
    for (const std::string& name :
         {p + "special_ffn.2.projection.bias", p + "special_router.1.dense.weight", p + "cross_ffn.mapping.weight",
          p + "cross_router.dense.weight", p + "public_ffn.mapping.bias", p + "public_ffn.projection.weight"}) {
        INFO("dropped " << name);
        const auto g = edited(f, name);
        require_throws_mentioning<moe::NotFoundError>([&] { (void)moe::rs::ringmoe::load_moe_modal(g, p); },
                                                      {"'" + name + "'"});
    }
    // a wrong prefix: no modality under it
    require_throws_mentioning<moe::NotFoundError>(
        [&] { (void)moe::rs::ringmoe::load_moe_modal(f, "encoder.layers.0.blocks.0.mlp"); },
        {"encoder.layers.0.blocks.0.mlp.special_router.0.dense.weight"});

    // mis-shaped: a bias stored [E, out] instead of [1, E, 1, out]; a transposed ([out, in]) weight
    const std::string bias = p + "cross_ffn.mapping.bias";
    const moe::Tensor b2 = zeros(4, 128);
    require_throws_mentioning<moe::ShapeError>(
        [&] { (void)moe::rs::ringmoe::load_moe_modal(edited(f, bias, bias, &b2), p); }, {bias, "[1, 4, 1, 128]", "[4, 128]"});
    const std::string pw = p + "public_ffn.mapping.weight";
    const moe::Tensor wt = zeros(128, 32);
    require_throws_mentioning<moe::ShapeError>([&] { (void)moe::rs::ringmoe::load_moe_modal(edited(f, pw, pw, &wt), p); },
                                               {pw, "[32, 128]", "[128, 32]"});
    const std::string sw = p + "special_ffn.1.projection.weight";
    moe::Tensor w3(moe::DType::f32, {4, 32, 128});
    require_throws_mentioning<moe::ShapeError>([&] { (void)moe::rs::ringmoe::load_moe_modal(edited(f, sw, sw, &w3), p); },
                                               {sw, "[4, 128, 32]", "[4, 32, 128]"});
}

}  // namespace moe_test_parity_ringmoe
