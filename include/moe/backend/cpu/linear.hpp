// moe/backend/cpu/linear.hpp - Linear<W>: the one holder of Linear weights in the library.
//
//   y (= or +=) x . W_e^T (+ b_e)      W_e: out x in, e = 0 .. count() - 1
//
// One matrix (a model's Linear, a router's gate: count() == 1) or a stack of E of one shape
// (the E experts of an expert set). Each matrix is stored [out, in] as torch.nn.Linear does, or
// [in, out] as MindSpore's transpose_b=False Linears do (RingMoE's experts and dense MLPs), and
// read in that layout (WeightMatrix); weights are of type W (f32, bf16, f16; fp32 accumulation),
// biases fp32. The E matrices may be slices of one stacked tensor or E separate tensors (as
// Hugging Face checkpoints name them, experts.{i}.w1.weight).
//
// Borrow or convert, in one place (adopt): a weight whose dtype already is W is read where it
// lies (zero copy from an mmapped safetensors file, whose keep_alive() the Linear holds; or a
// Tensor moved in, owned or Tensor::borrow-ed); any other float dtype is converted once, keeping
// its layout. A Linear never writes its weights; copies and select() share them.
//
// The template argument is a weight policy (moe/core/precision.hpp): a storage type (float,
// bf16, f16: exact math, the fp32 GEMM of moe/backend/cpu/gemm.hpp) or bf16_dot (bf16 weights,
// activations rounded to bf16 at the GEMM input, the vdpbf16ps GEMM of gemm_bf16.hpp; pack()
// packs its weights once so no call re-packs). The threaded forward cuts the output columns into
// chunks of kChunk that give the same bits as one thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/simd.hpp"
#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/precision.hpp"
#include "moe/core/tensor.hpp"

namespace moe::cpu {

template <WeightPolicy Policy = float>
class Linear {
public:
    using policy = Policy;
    using weight_type = storage_t<Policy>;  ///< the stored element type
    using math = math_t<Policy>;            ///< ExactMath or Bf16DotMath

private:
    using W = weight_type;

public:

    Linear() = default;

    /// One matrix from tensors: weight [out, in] ([in, out] with layout in_out), bias [out] or an
    /// empty Tensor. A weight of dtype W is kept as given (a borrowed tensor is read in place,
    /// never copied); other float dtypes are converted once.
    Linear(Tensor weight, Tensor bias, std::string_view what = "Linear", WeightLayout layout = WeightLayout::out_in) {
        check<ShapeError>(weight.rank() == 2, what, "expected a 2-D weight ", layout_name(layout), ", found ",
                          weight.shape().str());
        auto w = std::make_shared<Tensor>(std::move(weight));
        std::shared_ptr<Tensor> b;
        const bool has_b = std::as_const(bias).raw() != nullptr;  // const: no copy of a borrowed tensor
        if (has_b) b = std::make_shared<Tensor>(std::move(bias));
        const TensorView bv = has_b ? b->view() : TensorView();
        init_one(w->view(), has_b ? &bv : nullptr, w, what, layout);
        if (b) owners_.push_back(std::move(b));
        finish_load();
    }

    /// One matrix viewed in memory that `owner` keeps alive (e.g. SafetensorsFile::keep_alive());
    /// `what` names it in errors.
    Linear(const TensorView& weight, const TensorView* bias, std::shared_ptr<const void> owner, std::string_view what,
           WeightLayout layout = WeightLayout::out_in) {
        check<ShapeError>(weight.rank() == 2, what, "expected a 2-D weight ", layout_name(layout), ", found ",
                          weight.shape().str());
        init_one(weight, bias, std::move(owner), what, layout);
        finish_load();
    }

    /// E matrices from one stacked tensor w ([E, out, in], or [E, in, out] with layout in_out) and
    /// optional bias [E, out].
    static Linear from_stacked(const TensorView& w, const TensorView* b, std::shared_ptr<const void> owner,
                               std::string_view what, WeightLayout layout = WeightLayout::out_in) {
        const bool oi = layout == WeightLayout::out_in;
        check<ShapeError>(w.rank() == 3, what, "expected a stacked weight ", oi ? "[E, out, in]" : "[E, in, out]",
                          ", found ", w.shape().str());
        std::vector<TensorView> ws, bs;
        for (index_t e = 0; e < w.dim(0); ++e) ws.push_back(w[e]);
        if (b) {
            const index_t out = w.dim(oi ? 1 : 2);
            check<ShapeError>(b->rank() == 2 && b->dim(0) == w.dim(0) && b->dim(1) == out, what, "expected bias [",
                              w.dim(0), ", ", out, "], found ", b->shape().str());
            for (index_t e = 0; e < b->dim(0); ++e) bs.push_back((*b)[e]);
        }
        return from_list(ws, bs, std::move(owner), what, layout);
    }

    /// E matrices from E separate weights ([out, in], or [in, out] with layout in_out) and (none or
    /// E) biases [out].
    static Linear from_list(std::span<const TensorView> ws, std::span<const TensorView> bs,
                            std::shared_ptr<const void> owner, std::string_view what,
                            WeightLayout layout = WeightLayout::out_in) {
        check<ShapeError>(!ws.empty(), what, "no expert weights");
        check<ShapeError>(bs.empty() || bs.size() == ws.size(), what, ws.size(), " weights but ", bs.size(), " biases");
        const bool oi = layout == WeightLayout::out_in;
        Linear s;
        s.layout_ = layout;
        s.owners_.push_back(std::move(owner));
        s.out_ = ws[0].rank() == 2 ? ws[0].dim(oi ? 0 : 1) : -1;
        s.in_ = ws[0].rank() == 2 ? ws[0].dim(oi ? 1 : 0) : -1;
        for (std::size_t e = 0; e < ws.size(); ++e) {
            const std::string name = std::string(what) + "[" + std::to_string(e) + "]";
            ws[e].expect_shape(oi ? Shape{s.out_, s.in_} : Shape{s.in_, s.out_}, name);
            s.weight_.push_back(s.template adopt<W>(ws[e], name));
            if (!bs.empty()) {
                bs[e].expect_shape({s.out_}, name + " bias");
                s.bias_.push_back(s.template adopt<float>(bs[e], name + " bias"));
            }
        }
        s.finish_load();
        return s;
    }

    /// One [out, in] matrix holding a copy of fp32 values (converted to W): weight [out * in]
    /// row-major, bias [out] or empty.
    static Linear from_values(index_t out, index_t in, std::span<const float> weight, std::span<const float> bias = {},
                              std::string_view what = "Linear::from_values") {
        check<ConfigError>(out > 0 && in > 0, what, "sizes must be positive, got out = ", out, ", in = ", in);
        check<ShapeError>(static_cast<index_t>(weight.size()) == out * in, what, "weight holds ", weight.size(),
                          " values, expected ", out * in);
        check<ShapeError>(bias.empty() || static_cast<index_t>(bias.size()) == out, what, "bias holds ", bias.size(),
                          " values, expected ", out);
        Tensor b = bias.empty() ? Tensor() : Tensor::from<float>({out}, bias);
        return Linear(Tensor::from<float>({out, in}, weight), std::move(b), what);
    }

    /// E matrices [out, in] with weights (and biases) uniform in +-1/sqrt(in), torch.nn.Linear's
    /// default init, drawn from `seed` (all weights first, expert by expert, then the biases).
    static Linear random(index_t E, index_t out, index_t in, bool bias, std::uint64_t seed) {
        check<ConfigError>(E > 0 && out > 0 && in > 0, "Linear::random", "sizes must be positive");
        auto t = std::make_shared<Tensor>(dtype_v<W>, Shape{E, out, in});
        std::mt19937_64 rng(seed);
        const float a = 1.0f / std::sqrt(static_cast<float>(in));
        std::uniform_real_distribution<float> u(-a, a);
        for (auto& v : t->template span<W>()) v = from_float<W>(u(rng));
        Linear s;
        s.out_ = out;
        s.in_ = in;
        const Tensor& ct = *t;
        for (index_t e = 0; e < E; ++e) s.weight_.push_back(ct.template data<W>() + e * out * in);
        s.owners_.push_back(t);
        if (bias) {
            auto tb = std::make_shared<Tensor>(DType::f32, Shape{E, out});
            for (auto& v : tb->template span<float>()) v = u(rng);
            const Tensor& cb = *tb;
            for (index_t e = 0; e < E; ++e) s.bias_.push_back(cb.template data<float>() + e * out);
            s.owners_.push_back(tb);
        }
        s.finish_load();
        return s;
    }

    /// Matrices held: 1 for one Linear, E for a stack of experts (0 when default-constructed).
    index_t count() const noexcept { return static_cast<index_t>(weight_.size()); }
    /// The same count, for stacks of experts.
    index_t num_experts() const noexcept { return count(); }
    index_t out_features() const noexcept { return out_; }
    index_t in_features() const noexcept { return in_; }
    bool has_bias() const noexcept { return !bias_.empty(); }
    /// How every matrix is stored.
    WeightLayout layout() const noexcept { return layout_; }
    /// Parameters held (weights and biases).
    index_t parameters() const noexcept { return count() * (out_ * in_ + (has_bias() ? out_ : 0)); }

    /// Matrix e as the GEMMs read it (out x in, stored as layout() says).
    WeightMatrix<W> weight(index_t e = 0) const noexcept {
        return {weight_[static_cast<std::size_t>(e)], out_, in_, layout_ == WeightLayout::out_in ? in_ : out_, layout_};
    }
    /// Matrix e's bias [out], or null.
    const float* bias(index_t e = 0) const noexcept {
        return bias_.empty() ? nullptr : bias_[static_cast<std::size_t>(e)];
    }
    /// Matrix e as stored: [out, in], or [in, out] when layout() is in_out (valid while this
    /// Linear or a copy lives).
    TensorView weight_view(index_t e = 0) const {
        const bool oi = layout_ == WeightLayout::out_in;
        return TensorView(weight_[static_cast<std::size_t>(e)], dtype_v<W>, oi ? Shape{out_, in_} : Shape{in_, out_});
    }
    /// Matrix e's bias as a [out] fp32 view (an empty view when there is none).
    TensorView bias_view(index_t e = 0) const {
        return has_bias() ? TensorView(bias(e), DType::f32, Shape{out_}) : TensorView();
    }

    /// The matrices listed (in that order); shares the memory.
    Linear select(std::span<const index_t> keep) const {
        Linear s;
        s.out_ = out_;
        s.in_ = in_;
        s.layout_ = layout_;
        s.owners_ = owners_;
        for (index_t e : keep) {
            check<ConfigError>(e >= 0 && e < count(), "Linear::select", "expert ", e, " out of range [0, ", count(),
                               ")");
            s.weight_.push_back(weight_[static_cast<std::size_t>(e)]);
            if (has_bias()) s.bias_.push_back(bias_[static_cast<std::size_t>(e)]);
            if (packed()) s.packed_.push_back(packed_[static_cast<std::size_t>(e)]);
        }
        return s;
    }

    /// One matrix keeping only the output features listed (in that order): a copy, in the same
    /// layout (a router's gate over fewer experts).
    Linear select_outputs(std::span<const index_t> keep, std::string_view what = "Linear::select_outputs") const {
        check<ConfigError>(count() == 1, what, "selects the outputs of one matrix, this holds ", count());
        const auto k = static_cast<index_t>(keep.size());
        const bool oi = layout_ == WeightLayout::out_in;
        Tensor w(dtype_v<W>, oi ? Shape{k, in_} : Shape{in_, k});
        Tensor b = has_bias() ? Tensor(DType::f32, Shape{k}) : Tensor();
        const WeightMatrix<W> src = weight();
        W* dw = w.template data<W>();
        for (index_t j = 0; j < k; ++j) {
            const index_t n = keep[static_cast<std::size_t>(j)];
            check<ConfigError>(n >= 0 && n < out_, what, "expert ", n, " out of range [0, ", out_, ")");
            for (index_t i = 0; i < in_; ++i) (oi ? dw[j * in_ + i] : dw[i * k + j]) = src(n, i);
            if (has_bias()) b.template data<float>()[j] = bias()[n];
        }
        return Linear(std::move(w), std::move(b), what, layout_);
    }

    /// y [M, out] (= or +=) x [M, in] . W_e^T + b_e, on the calling thread with the caller's
    /// GEMM workspace (experts of a grouped forward, a router's gate).
    void apply(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, GemmWorkspace& ws,
               bool accumulate = false) const {
        if constexpr (std::is_same_v<math, Bf16DotMath>)
            cpu::linear_bf16(x, weight(e), packed_view(e), bias(e), y, accumulate, ws);
        else
            cpu::linear<W>(x, weight(e), bias(e), y, accumulate, ws);
    }

    /// Packs every matrix once into the bf16 dot GEMM's panels (Bf16DotMath), so that no call
    /// packs again: an owned copy of packed_bytes() bytes (the weights' size, padded) held beside
    /// the weights as loaded (which stay mapped for weight(), checkpoints and pruning, but are no
    /// longer read by the GEMMs). Products are bit-identical to the unpacked ones. Copies and
    /// select() share the packed panels. Idempotent. The PackOnce policies (bf16_dot_packed)
    /// call it at load, in every constructor.
    void pack()
        requires std::is_same_v<math, Bf16DotMath>
    {
        if (packed()) return;
        std::vector<Bf16PanelsView> views;
        for (index_t e = 0; e < count(); ++e) {
            auto p = std::make_shared<PackedBf16>(weight(e));
            views.push_back(p->view());
            packed_bytes_ += p->bytes();
            owners_.push_back(std::move(p));
        }
        packed_ = std::move(views);
    }
    /// Whether pack() has run (and the GEMMs read the packed panels).
    bool packed() const noexcept { return !packed_.empty(); }
    /// Bytes the packed panels hold (0 before pack()).
    std::size_t packed_bytes() const noexcept { return packed_bytes_; }

    /// y [M, out] (= or +=) x [M, in] . W^T + b with the first (or only) matrix. With
    /// ex.threads() > 1 the output columns are cut into chunks of kChunk (a multiple of every
    /// register block) that the threads take dynamically (moe::parallel_chunks), so a thread the
    /// OS preempts does not hold the others up; every output element is computed by the same
    /// kernel path whatever the split (bit-identical results).
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y, const Exec& ex = Exec::serial(),
                 bool accumulate = false) const {
        forward(x, y, ex, accumulate, [](MatrixRef<float>) {});
    }

    /// The same, then epilogue(block) on every finished block of output columns (e.g. the
    /// activation, fused into the parallel region). An exception from the GEMM or the epilogue on
    /// any thread reaches the caller.
    template <class Epilogue>
    void forward(ConstMatrixRef<float> x, MatrixRef<float> y, const Exec& ex, bool accumulate,
                 Epilogue&& epilogue) const {
        check<ShapeError>(count() > 0, "Linear::forward", "no weights (a default-constructed Linear)");
        const WeightMatrix<W> w = weight();
        const float* b = bias();
        const index_t N = w.out;
        check<ShapeError>(x.cols == w.in && y.rows == x.rows && y.cols == N, "Linear::forward", "input [", x.rows, ", ",
                          x.cols, "], weight of ", N, " outputs and ", w.in, " inputs, output [", y.rows, ", ", y.cols,
                          "] do not fit");
        const int nt = parallel_workers(ex, N, kChunk);
        // Bf16DotMath: the input is rounded to bf16 once, here; every block of columns reads it.
        const std::uint32_t* pairs = nullptr;
        const index_t P = bf16_pairs(x.cols);
        if constexpr (std::is_same_v<math, Bf16DotMath>) {
            std::uint32_t* p = ws_.input_pairs.get(static_cast<std::size_t>(std::max<index_t>(1, x.rows * P)));
            round_rows_bf16(x, p);
            pairs = p;
        }
        // Output columns [n0, n1) with workspace ws, then the epilogue on them.
        auto columns = [&](index_t n0, index_t n1, GemmWorkspace& ws) {
            const MatrixRef<float> yc(y.data + n0, y.rows, n1 - n0, y.stride);
            const float* bc = b ? b + n0 : nullptr;
            if constexpr (std::is_same_v<math, Bf16DotMath>) {
                const Bf16PanelsView* pk = packed_view(0);
                const Bf16PanelsView part = pk ? pk->outputs(n0, n1) : Bf16PanelsView{};
                cpu::linear_bf16_pairs(x.rows, pairs, P, w.outputs(n0, n1), pk ? &part : nullptr, bc, yc, accumulate,
                                       ws);
            } else {
                cpu::linear<W>(x, w.outputs(n0, n1), bc, yc, accumulate, ws);
            }
            epilogue(yc);
        };
        // Few rows (decoding): threads only when the weight is large enough to pay for them; each
        // column is computed by the same kernel path either way.
        if (nt > 1 && (x.rows > kSmallMRows || N * w.in >= kSmallParallel)) {
            if (static_cast<int>(tws_.size()) < nt) tws_.resize(static_cast<std::size_t>(nt));
            parallel_chunks(ex, N, kChunk, [&](index_t n0, index_t n1, int worker) {
                columns(n0, n1, tws_[static_cast<std::size_t>(worker)]);
            });
            return;
        }
        columns(0, N, ws_);
    }

    static constexpr index_t kChunk = 192;  ///< output columns per parallel task (multiple of 48)
    /// Weights of at least this many elements are split between threads even for 1-4 rows.
    static constexpr index_t kSmallParallel = index_t{1} << 18;
    static_assert(kChunk % Bf16Blocking::NR == 0, "parallel chunks must start on a packed panel");

    /// Use o's GEMM workspaces from now on (layers that never run at the same time).
    void share_scratch(const Linear& o) {
        ws_.share(o.ws_);
        const auto n = static_cast<std::size_t>(std::max({max_threads(), static_cast<int>(tws_.size()),
                                                          static_cast<int>(o.tws_.size())}));
        tws_.resize(n);
        if (o.tws_.size() < n) o.tws_.resize(n);
        for (std::size_t i = 0; i < n; ++i) tws_[i].share(o.tws_[i]);
    }

private:
    void finish_load() {
        if constexpr (std::is_same_v<packing_t<Policy>, PackOnce>) pack();
    }

    void init_one(const TensorView& weight, const TensorView* bias, std::shared_ptr<const void> owner,
                  std::string_view what, WeightLayout layout) {
        const bool oi = layout == WeightLayout::out_in;
        layout_ = layout;
        out_ = weight.dim(oi ? 0 : 1);
        in_ = weight.dim(oi ? 1 : 0);
        owners_.push_back(std::move(owner));
        const std::string name(what);
        weight_.push_back(adopt<W>(weight, name));
        if (bias) {
            check<ShapeError>(bias->rank() == 1 && bias->dim(0) == out_, what, "expected bias shape [", out_,
                              "], found ", bias->shape().str());
            bias_.push_back(adopt<float>(*bias, name + " bias"));
        }
    }

    // The one borrow-or-convert path: v's data as T, in place when the dtype is T and v is
    // contiguous (the memory kept alive by owners_), else a converted copy that owners_ keeps.
    template <class T>
    const T* adopt(const TensorView& v, const std::string& name) {
        if (v.dtype() == dtype_v<T> && v.contiguous()) return v.data<T>(name);
        check<DTypeError>(v.dtype() == DType::f32 || v.dtype() == DType::bf16 || v.dtype() == DType::f16, name,
                          "weights must be F32, BF16 or F16, found ", dtype_name(v.dtype()));
        auto t = std::make_shared<Tensor>(convert(v, dtype_v<T>));
        const Tensor& ct = *t;
        owners_.push_back(std::move(t));
        return ct.template data<T>();
    }

    const Bf16PanelsView* packed_view(index_t e) const noexcept {
        return packed_.empty() ? nullptr : &packed_[static_cast<std::size_t>(e)];
    }

    std::vector<const W*> weight_;
    std::vector<Bf16PanelsView> packed_;
    std::size_t packed_bytes_ = 0;
    std::vector<const float*> bias_;
    index_t out_ = 0, in_ = 0;
    WeightLayout layout_ = WeightLayout::out_in;
    std::vector<std::shared_ptr<const void>> owners_;
    mutable GemmWorkspace ws_;
    mutable std::vector<GemmWorkspace> tws_;
};

}  // namespace moe::cpu
