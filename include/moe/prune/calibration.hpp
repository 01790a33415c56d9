// moe/prune/calibration.hpp - Calibration: the tokens a pruning policy measures a layer on.
//
// A Calibration is a list of batches of layer inputs x [T_i, d] (owned copies), each optionally
// tagged with one modality id per token (needed by HierarchicalMoE layers with several
// modalities). Pruning policies collect their routing statistics on these tokens and report
// the fidelity of the pruned layer on them. Every batch is run through a layer as one forward
// call, so routing capacity is computed per batch, as at inference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/layer/hierarchical.hpp"

namespace moe {

/// One calibration batch: tokens x [T, d] and, when tagged, the modality of each token.
struct CalibrationBatch {
    std::vector<float> values;           ///< [T * d] fp32, row-major
    index_t tokens = 0, width = 0;       ///< T, d
    std::vector<std::int32_t> modality;  ///< [T] modality ids, or empty (untagged)

    index_t rows() const noexcept { return tokens; }
    ConstMatrixRef<float> matrix() const noexcept { return {values.data(), tokens, width}; }
    bool tagged() const noexcept { return !modality.empty() || tokens == 0; }
};

/// Calibration inputs of one layer: batches of d-wide tokens (copied on add).
class Calibration {
public:
    Calibration() = default;

    /// Adds an untagged batch x [T, d]; ShapeError when d differs from earlier batches.
    Calibration& add(ConstMatrixRef<float> x) { return add_impl(x, {}); }
    /// Adds a batch with one modality id (>= 0) per token.
    Calibration& add(ConstMatrixRef<float> x, std::span<const std::int32_t> modality) {
        check<ShapeError>(static_cast<index_t>(modality.size()) == x.rows, "Calibration::add", modality.size(),
                          " modality ids for ", x.rows, " tokens");
        for (std::size_t t = 0; t < modality.size(); ++t)
            check<ConfigError>(modality[t] >= 0, "Calibration::add", "token ", t, " has negative modality ",
                               modality[t]);
        return add_impl(x, std::vector<std::int32_t>(modality.begin(), modality.end()));
    }
    /// Adds a batch whose modalities are contiguous chunks covering [0, T) in order.
    Calibration& add(ConstMatrixRef<float> x, std::span<const ModalityChunk> chunks) {
        std::vector<std::int32_t> ids;
        ids.reserve(static_cast<std::size_t>(x.rows));
        index_t pos = 0;
        for (const auto& c : chunks) {
            check<ShapeError>(c.begin == pos && c.end >= c.begin, "Calibration::add", "chunks must cover the tokens in "
                              "order: chunk [", c.begin, ", ", c.end, ") follows token ", pos);
            for (index_t t = c.begin; t < c.end; ++t) ids.push_back(c.modality);
            pos = c.end;
        }
        check<ShapeError>(pos == x.rows, "Calibration::add", "chunks cover ", pos, " tokens, the batch has ", x.rows);
        return add(x, std::span<const std::int32_t>(ids));
    }
    /// Adds every row of x with the same modality.
    Calibration& add(ConstMatrixRef<float> x, int modality) {
        const std::vector<std::int32_t> ids(static_cast<std::size_t>(x.rows), modality);
        return add(x, std::span<const std::int32_t>(ids));
    }

    /// Token width (0 while empty).
    index_t hidden_size() const noexcept { return d_; }
    /// Tokens over all batches.
    index_t tokens() const noexcept {
        index_t n = 0;
        for (const auto& b : batches_) n += b.rows();
        return n;
    }
    bool empty() const noexcept { return tokens() == 0; }
    /// Whether every batch carries modality ids.
    bool tagged() const noexcept {
        return std::all_of(batches_.begin(), batches_.end(), [](const CalibrationBatch& b) { return b.tagged(); });
    }
    /// Tokens of modality m (untagged batches count as none).
    index_t tokens_of(int m) const noexcept {
        index_t n = 0;
        for (const auto& b : batches_) n += static_cast<index_t>(std::count(b.modality.begin(), b.modality.end(), m));
        return n;
    }
    /// The largest modality id present plus one (0 when untagged).
    int modalities() const noexcept {
        int m = 0;
        for (const auto& b : batches_)
            for (auto id : b.modality) m = std::max(m, id + 1);
        return m;
    }
    const std::vector<CalibrationBatch>& batches() const noexcept { return batches_; }

    /// Modality m's tokens only (each batch keeps its order; empty batches are left out), tagged
    /// with `relabel` (default 0: the id the extracted one-modality layer gives it).
    Calibration only_modality(int m, int relabel = 0) const {
        check<ConfigError>(tagged(), "Calibration::only_modality", "the calibration has untagged batches");
        Calibration c;
        for (const auto& b : batches_) {
            std::vector<std::int32_t> rows;
            for (std::size_t t = 0; t < b.modality.size(); ++t)
                if (b.modality[t] == m) rows.push_back(static_cast<std::int32_t>(t));
            if (rows.empty()) continue;
            Tensor g = gather(b.matrix(), rows);
            c.add(g.matrix<float>(), relabel);
        }
        return c;
    }

    /// All tokens, stacked in batch order: [tokens(), d].
    Tensor stacked() const {
        Tensor s(DType::f32, Shape{tokens(), d_});
        float* o = s.data<float>();
        for (const auto& b : batches_) {
            const auto m = b.matrix();
            for (index_t t = 0; t < m.rows; ++t, o += d_)
                std::memcpy(o, m.row(t), static_cast<std::size_t>(d_) * sizeof(float));
        }
        return s;
    }

    /// Checks that the tokens are d wide (ShapeError naming `where` otherwise).
    void expect_hidden(index_t d, std::string_view where) const {
        check<ShapeError>(empty() || d_ == d, where, "calibration tokens have ", d_, " features, the layer takes ", d);
    }

    /// Rows `rows` of x as a new [rows.size(), x.cols] tensor.
    static Tensor gather(ConstMatrixRef<float> x, std::span<const std::int32_t> rows) {
        Tensor g(DType::f32, Shape{static_cast<index_t>(rows.size()), x.cols});
        float* o = g.data<float>();
        for (std::size_t i = 0; i < rows.size(); ++i)
            std::memcpy(o + static_cast<index_t>(i) * x.cols, x.row(rows[i]),
                        static_cast<std::size_t>(x.cols) * sizeof(float));
        return g;
    }

private:
    Calibration& add_impl(ConstMatrixRef<float> x, std::vector<std::int32_t> modality) {
        check<ShapeError>(x.cols > 0, "Calibration::add", "tokens must have at least one feature");
        check<ShapeError>(d_ == 0 || x.cols == d_, "Calibration::add", "batch ", batches_.size(), " has ", x.cols,
                          " features, earlier batches have ", d_);
        d_ = x.cols;
        CalibrationBatch b;
        b.tokens = x.rows;
        b.width = x.cols;
        b.values.resize(static_cast<std::size_t>(x.rows * x.cols));
        for (index_t t = 0; t < x.rows; ++t)
            std::memcpy(b.values.data() + t * x.cols, x.row(t), static_cast<std::size_t>(x.cols) * sizeof(float));
        b.modality = std::move(modality);
        batches_.push_back(std::move(b));
        return *this;
    }

    std::vector<CalibrationBatch> batches_;
    index_t d_ = 0;
};

}  // namespace moe
