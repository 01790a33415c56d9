// rs/ringmoe/fidelity.hpp - how close one RingMoE model's outputs are to another's, block by
// block: the report of a quantised (int8 experts) model against its bf16 or fp32 original, in the
// terms of the pruning reports (moe/prune/report.hpp: relative error, cosine, mean token cosine).
//
//   Capture c = capture(model, inputs)      every block's output and the encoder output of one
//                                           forward call, and every block's routing plans (the
//                                           model can then be dropped: a full-size reference and
//                                           its quantised model need not fit in memory together)
//   capture(model, inputs, &ref)            the same with ref's routing decisions imposed in
//                                           every block (RoutedGroup::impose): what the changed
//                                           experts do by themselves, without the tokens whose
//                                           top-1 choice or capacity drop the change flips
//   ModelFidelity f = fidelity(c, ref)      per block and for the encoder output
//   fidelity_table(f, cfg)                  the report as text, one row per block
#pragma once

#include <algorithm>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/tensor.hpp"
#include "moe/prune/report.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/model.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

/// One block's routing decisions: each modality's group's plan and the collaborative one.
struct BlockPlans {
    std::vector<RoutingPlan> modal;
    RoutingPlan collab;
};

/// The outputs of one forward call: every block's (in order) and the encoder's (after its final
/// LayerNorm), and, for a routed model, every block's plans.
struct Capture {
    std::vector<Tensor> blocks;
    Tensor features;
    std::vector<BlockPlans> plans;
};

namespace detail {

/// f(ffn) for every block's hierarchical MoE, in block order.
template <class Model, class F>
void for_each_moe(Model& model, F&& f) {
    auto& enc = model.encoder();
    for (index_t i = 0; i < enc.config().stages(); ++i)
        for (auto& b : enc.stage(i).blocks) f(b.ffn());
}

/// Imposes plans on every block while alive; releases them on destruction (also on an exception).
template <class Model>
struct ImposedRouting {
    Model& model;
    ImposedRouting(Model& m, const std::vector<BlockPlans>& plans) : model(m) {
        std::size_t b = 0;
        for_each_moe(model, [&](auto& moe) {
            check<ShapeError>(b < plans.size(), "ringmoe::capture", "the reference has plans for ", plans.size(),
                              " blocks, this model has more");
            const BlockPlans& p = plans[b++];
            check<ShapeError>(static_cast<int>(p.modal.size()) == moe.modalities(), "ringmoe::capture", "block ", b - 1,
                              ": the reference has ", p.modal.size(), " modalities' plans, this model ",
                              moe.modalities());
            for (int m = 0; m < moe.modalities(); ++m) moe.modal_group(m).impose(p.modal[static_cast<std::size_t>(m)]);
            moe.collab_group().impose(p.collab);
        });
        check<ShapeError>(b == plans.size(), "ringmoe::capture", "the reference has plans for ", plans.size(),
                          " blocks, this model ", b);
    }
    ImposedRouting(const ImposedRouting&) = delete;
    ImposedRouting& operator=(const ImposedRouting&) = delete;
    ~ImposedRouting() {
        for_each_moe(model, [](auto& moe) {
            for (int m = 0; m < moe.modalities(); ++m) moe.modal_group(m).impose(std::nullopt);
            moe.collab_group().impose(std::nullopt);
        });
    }
};

}  // namespace detail

/// Runs `model` on `inputs` (heads off) and keeps its block outputs, encoder output and (routed
/// models) every block's plans. With `routing_of`, that capture's plans are imposed in every
/// block for this call (ShapeError unless they were recorded on the same inputs by a model of
/// the same configuration; a model that does not route ignores them).
template <class Model>
Capture capture(Model& model, std::span<const vision::ModalityImages> inputs, const Capture* routing_of = nullptr) {
    Capture c;
    RingMoeForward fo;
    fo.heads = false;
    fo.encoder.block_outputs = &c.blocks;
    if constexpr (Model::routed) {
        std::optional<detail::ImposedRouting<Model>> imposed;
        if (routing_of) imposed.emplace(model, routing_of->plans);
        c.features = std::move(model.forward(inputs, fo).features);
        detail::for_each_moe(model, [&](const auto& moe) {
            BlockPlans p;
            for (int m = 0; m < moe.modalities(); ++m) p.modal.push_back(moe.modal_plan(m));
            p.collab = moe.collab_plan();
            c.plans.push_back(std::move(p));
        });
    } else {
        c.features = std::move(model.forward(inputs, fo).features);
    }
    return c;
}

/// Per block and for the encoder output.
struct ModelFidelity {
    std::vector<Fidelity> blocks;
    Fidelity encoder;
    /// The smallest cosine over the blocks (NaN without blocks).
    double min_block_cosine() const {
        double m = std::numeric_limits<double>::quiet_NaN();
        for (const auto& b : blocks) m = std::isnan(m) ? b.cosine : std::min(m, b.cosine);
        return m;
    }
};

/// How close y is to the reference: ShapeError unless both captured the same blocks and shapes.
inline ModelFidelity fidelity(const Capture& y, const Capture& ref) {
    const char* w = "ringmoe::fidelity";
    check<ShapeError>(y.blocks.size() == ref.blocks.size(), w, y.blocks.size(), " block outputs against ",
                      ref.blocks.size(), " in the reference");
    ModelFidelity f;
    auto one = [&](const Tensor& a, const Tensor& b, std::size_t i) {
        check<ShapeError>(a.shape() == b.shape(), w, "output ", i, ": ", a.shape().str(), " against ", b.shape().str());
        FidelityAccumulator acc;
        acc.add(a.matrix<float>(), b.matrix<float>());
        return acc.result();
    };
    for (std::size_t i = 0; i < y.blocks.size(); ++i) f.blocks.push_back(one(y.blocks[i], ref.blocks[i], i));
    f.encoder = one(y.features, ref.features, y.blocks.size());
    return f;
}

/// The report: one row per block (stage, block, tokens, relative error, cosine, mean token
/// cosine), then the encoder output.
inline std::string fidelity_table(const ModelFidelity& f, const RingMoeConfig& cfg) {
    std::string s = "  block            tokens   rel. error       cosine   token cosine\n";
    char line[160];
    std::size_t b = 0;
    for (index_t st = 0; st < cfg.swin.stages(); ++st)
        for (index_t j = 0; j < cfg.swin.depths[static_cast<std::size_t>(st)] && b < f.blocks.size(); ++j, ++b) {
            const Fidelity& x = f.blocks[b];
            std::snprintf(line, sizeof line, "  stage %ld block %-3ld %8ld   %.3e   %.7f   %.7f\n", long(st), long(j),
                          long(x.tokens), x.relative_error, x.cosine, x.mean_token_cosine);
            s += line;
        }
    std::snprintf(line, sizeof line, "  encoder output   %8ld   %.3e   %.7f   %.7f\n", long(f.encoder.tokens),
                  f.encoder.relative_error, f.encoder.cosine, f.encoder.mean_token_cosine);
    return s + line;
}

}  // namespace moe::rs::ringmoe
