// moe/backend/cpu/lora.hpp - LoRA (low-rank adaptation) over a cpu::Linear: one adapter, a bank
// of adapters addressed by id, their per-row-range application and merging into the base.
//
//   y = x W^T (+ b) + scale * (x A^T) B^T          A [r, in], B [out, r]  (Hu et al. 2021; PEFT's
//                                                  LoraLayer: base(x) + lora_B(lora_A(x)) * scaling)
//   scale = lora_alpha / r   (lora_alpha / sqrt(r) with use_rslora)
//
// LoraAdapter: one adapter of one Linear: A and B as cpu::Linear<float> (converted once from the
// file's F32 / BF16 / F16), its scale. apply(x, y) adds scale * (x A^T) B^T to y: two GEMMs through
// the width r (t = x A^T [T, r], t *= scale, y += t B^T), O(T * r * (in + out)); delta W = scale * B A
// is never formed at inference.
//
// LoraBank: the adapters of one Linear target (e.g. layer 3's q_proj) by adapter id (an int >= 0;
// an id may have no adapter for this target: nothing is added for it). apply(x, y, ranges, ex)
// adds, for each LoraRows {row0, rows, adapter}, its adapter's delta to y's rows row0 .. row0 +
// rows: the rows of one sequence of a batch step, so one step serves sequences with different
// adapters while the base Linear's weights are read once for all of them (multi-LoRA batching as
// S-LoRA / punica do it). Ranges whose id has no adapter here are skipped.
//
// merge_lora(base, adapter): a new cpu::Linear<W> equal to base + scale * B A (the base's bias
// kept), computed in fp32 from the base weights as stored (any layout; bf16 / f16 widened), then
// stored [out, in] as W (rounded once for bf16 / f16 / bf16_dot; a borrowed base is never written).
//
// Threads: the GEMMs are cpu::Linear's (output columns split; results do not depend on the
// thread count). Bad shapes or ids throw ShapeError / ConfigError naming the adapter.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "moe/backend/cpu/linear.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/precision.hpp"
#include "moe/core/tensor.hpp"

namespace moe::cpu {

/// PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (rank-stabilised LoRA).
inline float lora_scale(double alpha, index_t r, bool rslora) {
    check<ConfigError>(r > 0, "lora_scale", "rank must be positive, got ", r);
    return static_cast<float>(rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r));
}

/// One LoRA adapter of one Linear: delta W = scale * B A.
class LoraAdapter {
public:
    LoraAdapter() = default;
    /// A [r, in] and B [out, r] (F32, BF16 or F16: copied as fp32 once, so the source may go);
    /// `what` names the adapter in errors.
    LoraAdapter(const TensorView& a, const TensorView& b, float scale, std::string_view what = "LoraAdapter")
        : scale_(scale), what_(what) {
        check<ShapeError>(a.rank() == 2 && b.rank() == 2, what, "lora_A and lora_B must be 2-D, found ",
                          a.shape().str(), " and ", b.shape().str());
        check<ShapeError>(a.dim(0) > 0 && a.dim(0) == b.dim(1), what, "lora_A ", a.shape().str(), " and lora_B ",
                          b.shape().str(), " do not chain: A must be [r, in] and B [out, r] with the same r > 0");
        check<ConfigError>(std::isfinite(scale), what, "scale must be finite, got ", scale);
        a_ = Linear<float>(Tensor::copy_of(a), Tensor(), what_ + " lora_A");
        b_ = Linear<float>(Tensor::copy_of(b), Tensor(), what_ + " lora_B");
    }
    /// From fp32 values, row-major: a [r * in], b [out * r].
    static LoraAdapter from_values(index_t r, index_t in, index_t out, std::span<const float> a, std::span<const float> b,
                                   float scale, std::string_view what = "LoraAdapter") {
        check<ShapeError>(r > 0 && in > 0 && out > 0 && static_cast<index_t>(a.size()) == r * in &&
                              static_cast<index_t>(b.size()) == out * r,
                          what, "expected A of ", r, " x ", in, " and B of ", out, " x ", r, " values, got ", a.size(),
                          " and ", b.size());
        const Tensor ta = Tensor::from<float>({r, in}, a), tb = Tensor::from<float>({out, r}, b);
        return LoraAdapter(ta.view(), tb.view(), scale, what);
    }

    index_t rank() const noexcept { return a_.out_features(); }
    index_t in_features() const noexcept { return a_.in_features(); }
    index_t out_features() const noexcept { return b_.out_features(); }
    float scale() const noexcept { return scale_; }
    const std::string& name() const noexcept { return what_; }
    /// A [r, in] and B [out, r] as fp32 Linears.
    const Linear<float>& a() const noexcept { return a_; }
    const Linear<float>& b() const noexcept { return b_; }
    /// r * (in + out).
    index_t parameters() const noexcept { return a_.parameters() + b_.parameters(); }

    /// y [T, out] += scale * (x [T, in] A^T) B^T; `t` is a scratch of at least T * r floats.
    void apply(ConstMatrixRef<float> x, MatrixRef<float> y, float* t, const Exec& ex = Exec::serial()) const {
        check<ShapeError>(x.cols == in_features() && y.cols == out_features() && y.rows == x.rows, what_, "input [",
                          x.rows, ", ", x.cols, "] and output [", y.rows, ", ", y.cols, "] do not fit an adapter of ",
                          in_features(), " inputs and ", out_features(), " outputs");
        if (x.rows == 0) return;
        const index_t r = rank();
        const MatrixRef<float> tm(t, x.rows, r);
        a_.forward(x, tm, ex);
        for (index_t i = 0; i < x.rows * r; ++i) t[i] *= scale_;
        b_.forward(ConstMatrixRef<float>(tm), y, ex, true);
    }

    /// delta W [out, in] = scale * B A in fp32 (row-major), for merging and tests.
    std::vector<float> delta() const {
        const index_t r = rank(), in = in_features(), out = out_features();
        std::vector<float> d(static_cast<std::size_t>(out * in), 0.0f);
        const WeightMatrix<float> A = a_.weight(), B = b_.weight();
        for (index_t o = 0; o < out; ++o) {
            float* row = d.data() + o * in;
            for (index_t k = 0; k < r; ++k) {
                const float bk = B(o, k);
                for (index_t i = 0; i < in; ++i) row[i] += bk * A(k, i);
            }
            for (index_t i = 0; i < in; ++i) row[i] *= scale_;
        }
        return d;
    }

private:
    Linear<float> a_, b_;
    float scale_ = 0;
    std::string what_;
};

/// The rows of one batch step that one adapter applies to: rows row0 .. row0 + rows (a sequence).
struct LoraRows {
    index_t row0 = 0, rows = 0;
    int adapter = -1;  ///< < 0: none (skipped)
};

/// The adapters of one Linear target, by adapter id.
class LoraBank {
public:
    /// Adds (or replaces) adapter `id` (>= 0).
    void set(int id, LoraAdapter a) {
        check<ConfigError>(id >= 0, "LoraBank::set", "adapter ids are >= 0, got ", id);
        adapters_.insert_or_assign(id, std::move(a));
    }
    /// Removes adapter `id` (nothing when absent); true when it was there.
    bool remove(int id) { return adapters_.erase(id) > 0; }
    /// Adapter `id`, or null when this target has none for it.
    const LoraAdapter* find(int id) const noexcept {
        const auto it = adapters_.find(id);
        return it == adapters_.end() ? nullptr : &it->second;
    }
    bool empty() const noexcept { return adapters_.empty(); }
    std::size_t size() const noexcept { return adapters_.size(); }
    /// Whether any range's adapter has an entry here (else apply() adds nothing).
    bool touches(std::span<const LoraRows> ranges) const noexcept {
        if (adapters_.empty()) return false;
        for (const LoraRows& g : ranges)
            if (g.rows > 0 && find(g.adapter)) return true;
        return false;
    }
    /// Parameters of adapter `id` here (0 without one).
    index_t parameters(int id) const noexcept {
        const LoraAdapter* a = find(id);
        return a ? a->parameters() : 0;
    }

    /// For each range: y[row0 .. row0 + rows) += its adapter's scale * (x[rows] A^T) B^T.
    void apply(ConstMatrixRef<float> x, MatrixRef<float> y, std::span<const LoraRows> ranges,
               const Exec& ex = Exec::serial()) const {
        check<ShapeError>(x.rows == y.rows, "LoraBank::apply", "input has ", x.rows, " rows, output ", y.rows);
        // The work grouped by adapter: one adapter's Linears (and their buffers) serve one worker
        // at a time. Each range has its own stretch of the low-rank buffer t.
        struct Item {
            const LoraAdapter* a;
            std::vector<std::size_t> ranges;
        };
        std::vector<Item> items;
        std::vector<index_t> t_off(ranges.size(), 0);
        index_t t_total = 0;
        double work = 0;
        for (std::size_t i = 0; i < ranges.size(); ++i) {
            const LoraRows& g = ranges[i];
            const LoraAdapter* a = g.rows > 0 ? find(g.adapter) : nullptr;
            if (!a) continue;
            check<ShapeError>(g.row0 >= 0 && g.row0 + g.rows <= x.rows, a->name(), "rows ", g.row0, " .. ",
                              g.row0 + g.rows, " outside the step's ", x.rows);
            auto it = std::find_if(items.begin(), items.end(), [&](const Item& m) { return m.a == a; });
            if (it == items.end()) it = items.insert(items.end(), Item{a, {}});
            it->ranges.push_back(i);
            t_off[i] = t_total;
            t_total += g.rows * a->rank();
            work += double(g.rows) * double(a->rank()) * double(a->in_features() + a->out_features());
        }
        if (items.empty()) return;
        float* t = t_.get(static_cast<std::size_t>(t_total));
        auto run = [&](const Item& m, const Exec& e) {
            for (const std::size_t i : m.ranges) {
                const LoraRows& g = ranges[i];
                m.a->apply(ConstMatrixRef<float>(x.row(g.row0), g.rows, x.cols, x.stride),
                           MatrixRef<float>(y.row(g.row0), g.rows, y.cols, y.stride), t + t_off[i], e);
            }
        };
        // A decode step's deltas are tiny GEMVs (rows * r * (in + out) ~ 1e5 MACs): a parallel
        // region per product costs more than the product, so small steps give each worker whole
        // adapters, computed serially; larger ones (prefill) split every product over ex. Either
        // way each product is computed the same way (Linear's results do not depend on threads).
        if (items.size() > 1 && work < kSerialWork) {
            parallel_chunks(ex, static_cast<index_t>(items.size()), 1, [&](index_t b, index_t e, int) {
                for (index_t k = b; k < e; ++k) run(items[static_cast<std::size_t>(k)], Exec::serial());
            });
        } else {
            for (const Item& m : items) run(m, work < kSerialWork ? Exec::serial() : ex);
        }
    }
    /// Below this many multiply-adds a step's deltas run without splitting a product over threads.
    static constexpr double kSerialWork = double(1 << 21);
    /// Use o's scratch (banks that never run at the same time).
    void share_scratch(LoraBank& o) { t_.share(o.t_); }

private:
    std::map<int, LoraAdapter> adapters_;
    mutable Scratch<float> t_;
};

/// base + scale * B A as a new Linear<W> ([out, in], base's bias kept): computed in fp32 from the
/// base weights, then stored as W. ShapeError when the adapter does not fit the base.
template <WeightPolicy W>
Linear<W> merge_lora(const Linear<W>& base, const LoraAdapter& a, std::string_view what = "merge_lora") {
    check<ShapeError>(base.count() == 1, what, "merges into one matrix, the base holds ", base.count());
    const index_t out = base.out_features(), in = base.in_features();
    check<ShapeError>(a.out_features() == out && a.in_features() == in, what, "adapter ", a.name(), " is [",
                      a.out_features(), ", ", a.in_features(), "], the base Linear [", out, ", ", in, "]");
    std::vector<float> w = a.delta();
    const auto src = base.weight();
    for (index_t o = 0; o < out; ++o)
        for (index_t i = 0; i < in; ++i) w[static_cast<std::size_t>(o * in + i)] += to_float(src(o, i));
    Tensor t = convert(Tensor::from<float>({out, in}, w).view(), dtype_v<storage_t<W>>);
    Tensor b;
    if (base.has_bias()) b = Tensor::from<float>({out}, std::span<const float>(base.bias(), static_cast<std::size_t>(out)));
    return Linear<W>(std::move(t), std::move(b), what);
}

}  // namespace moe::cpu
