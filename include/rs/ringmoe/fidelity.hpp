// rs/ringmoe/fidelity.hpp - how close one RingMoE model's outputs are to another's, block by
// block: the report of a quantised (int8 experts) model against its bf16 or fp32 original, in the
// terms of the pruning reports (moe/prune/report.hpp: relative error, cosine, mean token cosine).
//
//   Capture c = capture(model, inputs)      every block's output and the encoder output of one
//                                           forward call (the model can then be dropped: a full-
//                                           size reference and its quantised model need not
//                                           fit in memory together)
//   ModelFidelity f = fidelity(c, ref)      per block and for the encoder output
//   fidelity_table(f, cfg)                  the report as text, one row per block
#pragma once

#include <algorithm>
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/prune/report.hpp"
#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/model.hpp"
#include "vision/swin.hpp"

namespace moe::rs::ringmoe {

/// The outputs of one forward call: every block's (in order) and the encoder's (after its final
/// LayerNorm).
struct Capture {
    std::vector<Tensor> blocks;
    Tensor features;
};

/// Runs `model` on `inputs` (heads off) and keeps its block outputs and encoder output.
template <class Model>
Capture capture(Model& model, std::span<const vision::ModalityImages> inputs) {
    Capture c;
    RingMoeForward fo;
    fo.heads = false;
    fo.encoder.block_outputs = &c.blocks;
    c.features = std::move(model.forward(inputs, fo).features);
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
