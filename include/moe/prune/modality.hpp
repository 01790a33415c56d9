// moe/prune/modality.hpp - modality extraction: one modality's sub-model of a hierarchical layer.
//
// ExtractModality{m} turns a HierarchicalMoE with M modalities into one with a single modality
// (id 0): modality m's routed group (router and experts), the whole collaborative group and the
// shared experts, with the same loss options; any router type. Nothing else changes, so on modality m's tokens the new layer
// computes exactly what the original computes on a batch of those tokens (same plans, same
// arithmetic: bit for bit). Its fidelity is measured on the calibration tokens of modality m
// (the original layer run on them with id m, the new one with id 0); calibration batches must
// carry modality ids.
//
// RingMoE (deployment chain, step 1): keep one modality's sub-model (4 modal + 4 collaborative
// + 1 shared experts per layer: 6.5B of 14.7B).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/prune/calibration.hpp"
#include "moe/prune/report.hpp"

namespace moe {

struct ExtractModality {
    int modality = 0;  ///< the modality kept; it becomes modality 0 of the new layer

    std::string name() const { return detail::cat("ExtractModality(", modality, ")"); }

    template <ExpertSet M, ExpertSet C, class S, Router R>
    Pruned<HierarchicalMoE<M, C, S, R>> apply(const HierarchicalMoE<M, C, S, R>& layer, const Calibration& cal) const {
        const char* w = "ExtractModality";
        using H = HierarchicalMoE<M, C, S, R>;
        const int Mn = layer.modalities();
        check<ConfigError>(modality >= 0 && modality < Mn, w, "modality ", modality,
                           " does not exist; the layer knows modalities 0..", Mn - 1);
        cal.expect_hidden(layer.hidden_size(), w);
        check<ConfigError>(cal.tagged() || Mn == 1, w, "calibration batches need modality ids");

        std::vector<typename H::modal_group_type> groups{layer.modal_group(modality)};
        H out(std::move(groups), layer.collab_group(), layer.shared(), layer.loss_options());

        PruneReport rep;
        rep.policy = name();
        std::vector<index_t> removed;
        for (int m = 0; m < Mn; ++m)
            if (m != modality) removed.push_back(m);
        rep.groups.push_back({"modalities", Mn, 1, {modality}, removed, {}, {}, {}, 0, 0});
        detail::count_parameters(rep, layer, out);

        // Fidelity on modality m's tokens: original with id m, extracted with id 0.
        H ref = layer, cand = out;
        FidelityAccumulator acc;
        const Calibration mine = Mn == 1 && !cal.tagged() ? cal : cal.only_modality(modality, modality);
        for (const auto& b : mine.batches()) {
            if (b.rows() == 0) continue;
            const index_t T = b.rows(), d = layer.hidden_size();
            const std::vector<std::int32_t> id_ref(static_cast<std::size_t>(T), modality), id_new(static_cast<std::size_t>(T), 0);
            Tensor yr(DType::f32, Shape{T, d}), yc(DType::f32, Shape{T, d});
            ref.forward(b.matrix(), std::span<const std::int32_t>(id_ref), yr.matrix<float>());
            cand.forward(b.matrix(), std::span<const std::int32_t>(id_new), yc.matrix<float>());
            acc.add(yc.matrix<float>(), yr.matrix<float>());
        }
        rep.fidelity = acc.result();
        if (rep.fidelity.tokens == 0) rep.notes.push_back(detail::cat("no calibration tokens of modality ", modality));
        return {std::move(out), std::move(rep)};
    }
};

}  // namespace moe
