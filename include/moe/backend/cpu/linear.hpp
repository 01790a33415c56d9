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
// chunks of kChunk (one even share per thread for a few rows) that give the same bits as one
// thread.
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
#include "moe/backend/cpu/gemm_int8.hpp"
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
    static constexpr bool kInt8 = std::is_same_v<W, std::int8_t>;

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
            s.push_weight(ws[e], nullptr, name);
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
    /// int8 policies: those values quantised per output channel.
    static Linear random(index_t E, index_t out, index_t in, bool bias, std::uint64_t seed) {
        if constexpr (kInt8) return converted(Linear<float>::random(E, out, in, bias, seed), "Linear::random");
        else return random_values(E, out, in, bias, seed);
    }

    /// A copy of `src` (any policy) converted once to this policy: float weights converted (or
    /// quantised per output channel, int8 policies), int8 ones dequantised (or borrowed, int8
    /// policies); biases shared.
    template <class P>
    static Linear converted(const Linear<P>& src, std::string_view what = "Linear::converted") {
        Linear s;
        s.out_ = src.out_features();
        s.in_ = src.in_features();
        s.layout_ = src.layout();
        for (index_t e = 0; e < src.count(); ++e) {
            const std::string name = std::string(what) + "[" + std::to_string(e) + "]";
            TensorView scale;
            if constexpr (Linear<P>::kInt8) scale = src.scale_view(e);
            s.push_weight(src.weight_view(e), Linear<P>::kInt8 ? &scale : nullptr, name);
            if (src.has_bias()) s.bias_.push_back(src.bias(e));
        }
        s.owners_.insert(s.owners_.end(), src.owners_.begin(), src.owners_.end());
        s.finish_load();
        return s;
    }

    /// E int8 matrices (int8 checkpoints, moe/backend/cpu/gemm_int8.hpp): q[e] [out, in] I8 and
    /// scale[e] F32 [out] (one scale per output channel) or [out, in / group] (group a multiple of
    /// 32); biases as from_list. Borrowed in place by int8 policies, dequantised once by others.
    static Linear from_int8_list(std::span<const TensorView> qs, std::span<const TensorView> scales,
                                 std::span<const TensorView> bs, std::shared_ptr<const void> owner, std::string_view what) {
        check<ShapeError>(!qs.empty(), what, "no int8 weights");
        check<ShapeError>(scales.size() == qs.size(), what, qs.size(), " int8 weights but ", scales.size(), " scales");
        check<ShapeError>(bs.empty() || bs.size() == qs.size(), what, qs.size(), " weights but ", bs.size(), " biases");
        Linear s;
        s.layout_ = WeightLayout::out_in;
        s.owners_.push_back(std::move(owner));
        s.out_ = qs[0].rank() == 2 ? qs[0].dim(0) : -1;
        s.in_ = qs[0].rank() == 2 ? qs[0].dim(1) : -1;
        for (std::size_t e = 0; e < qs.size(); ++e) {
            const std::string name = std::string(what) + "[" + std::to_string(e) + "]";
            qs[e].expect_shape({s.out_, s.in_}, name);
            s.push_weight(qs[e], &scales[e], name);
            if (!bs.empty()) {
                bs[e].expect_shape({s.out_}, name + " bias");
                s.bias_.push_back(s.template adopt<float>(bs[e], name + " bias"));
            }
        }
        s.finish_load();
        return s;
    }

    /// E int8 matrices from one stacked tensor q [E, out, in] I8 and scale [E, out] or
    /// [E, out, in / group] F32, optional bias [E, out].
    static Linear from_int8_stacked(const TensorView& q, const TensorView& scale, const TensorView* b,
                                    std::shared_ptr<const void> owner, std::string_view what) {
        check<ShapeError>(q.rank() == 3, what, "expected a stacked int8 weight [E, out, in], found ", q.shape().str());
        check<ShapeError>(scale.rank() >= 2 && scale.dim(0) == q.dim(0), what, "expected a scale [", q.dim(0),
                          ", out(, groups)], found ", scale.shape().str());
        std::vector<TensorView> qs, ss, bs;
        for (index_t e = 0; e < q.dim(0); ++e) {
            qs.push_back(q[e]);
            ss.push_back(scale[e]);
        }
        if (b) {
            check<ShapeError>(b->rank() == 2 && b->dim(0) == q.dim(0) && b->dim(1) == q.dim(1), what,
                              "expected bias [", q.dim(0), ", ", q.dim(1), "], found ", b->shape().str());
            for (index_t e = 0; e < b->dim(0); ++e) bs.push_back((*b)[e]);
        }
        return from_int8_list(qs, ss, bs, std::move(owner), what);
    }

private:
    static Linear random_values(index_t E, index_t out, index_t in, bool bias, std::uint64_t seed) {
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

public:
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

    /// Inputs per scale of an int8 policy's matrices (in_features(): one scale per output channel).
    index_t int8_group() const noexcept
        requires kInt8
    {
        return group_;
    }
    /// Matrix e of an int8 policy as the int8 GEMMs read it (q [out, in] and its scales).
    Int8Matrix int8_weight(index_t e = 0) const noexcept
        requires kInt8
    {
        return {weight_[static_cast<std::size_t>(e)], scale_[static_cast<std::size_t>(e)], out_, in_, in_, group_};
    }
    /// Matrix e's scales as a [out] (per channel) or [out, in / group] fp32 view (int8 policies).
    TensorView scale_view(index_t e = 0) const
        requires kInt8
    {
        const Shape sh = group_ >= in_ ? Shape{out_} : Shape{out_, in_ / group_};
        return TensorView(scale_[static_cast<std::size_t>(e)], DType::f32, sh);
    }

    /// Matrix e as the GEMMs read it (out x in, stored as layout() says; int8 policies: q alone).
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
        s.group_ = group_;
        s.owners_ = owners_;
        for (index_t e : keep) {
            check<ConfigError>(e >= 0 && e < count(), "Linear::select", "expert ", e, " out of range [0, ", count(),
                               ")");
            s.weight_.push_back(weight_[static_cast<std::size_t>(e)]);
            if constexpr (kInt8) s.scale_.push_back(scale_[static_cast<std::size_t>(e)]);
            if (has_bias()) s.bias_.push_back(bias_[static_cast<std::size_t>(e)]);
            if (!packed_.empty()) s.packed_.push_back(packed_[static_cast<std::size_t>(e)]);
            if (!packed8_.empty()) s.packed8_.push_back(packed8_[static_cast<std::size_t>(e)]);
        }
        return s;
    }

    /// One matrix keeping only the output features listed (in that order): a copy, in the same
    /// layout (a router's gate over fewer experts).
    Linear select_outputs(std::span<const index_t> keep, std::string_view what = "Linear::select_outputs") const
        requires(!kInt8)
    {
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
    /// GEMM workspace (experts of a grouped forward, a router's gate): calls on one Linear may
    /// overlap when each has its own workspace.
    void apply(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, GemmWorkspace& ws,
               bool accumulate = false) const {
        forward_matrix(e, x, y, Exec::serial(), accumulate, [](MatrixRef<float>) {}, ws);
    }

    /// Packs every matrix once into the GEMM's panels (Bf16DotMath: the bf16 dot GEMM's;
    /// Int8DotMath: the VNNI kernel's, per-channel matrices on AVX-512 VNNI builds only), so that
    /// no call packs again: an owned copy of packed_bytes() bytes (the weights' size, padded) held
    /// beside the weights as loaded (which stay mapped for weight(), checkpoints and pruning, but
    /// are no longer read by the GEMMs). Products are bit-identical to the unpacked ones. Copies
    /// and select() share the packed panels. Idempotent. The PackOnce policies (bf16_dot_packed,
    /// int8_dot_packed) call it at load, in every constructor.
    void pack()
        requires(std::is_same_v<math, Bf16DotMath> || std::is_same_v<math, Int8DotMath>)
    {
        if (packed()) return;
        if constexpr (std::is_same_v<math, Bf16DotMath>) {
            pack_each<PackedBf16>(packed_, [&](index_t e) { return weight(e); });
        } else {
#if !defined(MOE_NO_SIMD) && defined(__AVX512VNNI__) && defined(__AVX512BW__)
            if (count() == 0 || group_ < in_) return;  // grouped scales: the row kernel
            pack_each<PackedInt8>(packed8_, [&](index_t e) { return int8_weight(e); });
#endif
        }
    }
    /// Whether pack() has packed the matrices (and the GEMMs read the packed panels).
    bool packed() const noexcept { return !packed_.empty() || !packed8_.empty(); }
    /// Bytes the packed panels hold (0 before pack()).
    std::size_t packed_bytes() const noexcept { return packed_bytes_; }

    /// y [M, out] (= or +=) x [M, in] . W^T + b with the first (or only) matrix. With
    /// ex.threads() > 1 the output columns are cut into chunks of kChunk (a multiple of every
    /// register block) that the threads take dynamically (moe::parallel_chunks), so a thread the
    /// OS preempts does not hold the others up; for a few rows (decoding) into one even share per
    /// thread, helped from its back by threads done with theirs (moe::parallel_shares). Every
    /// output element is computed by the same kernel path whatever the split (bit-identical).
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
        forward_matrix(0, x, y, ex, accumulate, std::forward<Epilogue>(epilogue), ws_);
    }

    /// apply(e, ...) on ex's threads, as forward() runs the first matrix (the same split of the
    /// output columns), each column by the same kernel path as the single-threaded apply
    /// (bit-identical). Uses this Linear's own workspaces, so calls on one
    /// Linear must not overlap (GluExperts / MlpExperts::expert_forward with an Exec: one expert
    /// at a time on all threads, for steps with fewer experts than threads).
    void apply(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, const Exec& ex, bool accumulate = false) const {
        forward_matrix(e, x, y, ex, accumulate, [](MatrixRef<float>) {}, ws_);
    }

private:
    /// The one dispatch to the kernels: matrix e's product, its input rounded (Bf16DotMath) or
    /// quantised (Int8DotMath) once into `ws`, the output columns on ex's threads (each thread's
    /// chunks with its own workspace of tws_) or, with one thread, all of them with `ws`.
    template <class Epilogue>
    void forward_matrix(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, const Exec& ex, bool accumulate,
                        Epilogue&& epilogue, GemmWorkspace& ws) const {
        check<ShapeError>(count() > 0, "Linear::forward", "no weights (a default-constructed Linear)");
        check<ShapeError>(e >= 0 && e < count(), "Linear::apply", "matrix ", e, " of ", count());
        const WeightMatrix<W> w = weight(e);
        const float* b = bias(e);
        const index_t N = w.out;
        check<ShapeError>(x.cols == w.in && y.rows == x.rows && y.cols == N, "Linear::forward", "input [", x.rows, ", ",
                          x.cols, "], weight of ", N, " outputs and ", w.in, " inputs, output [", y.rows, ", ", y.cols,
                          "] do not fit");
        if (x.rows == 0) return;
        // For a few rows (at most kSmallMRows: decoding) one even share of the columns per thread,
        // each taken front to back and helped from its back by threads done with their own
        // (moe::parallel_shares): a share reads its rows of W as one forward stream, as the
        // hardware prefetcher wants, and a thread slowed by the OS or a busier core does not
        // hold the others up. kChunk-sized tasks taken dynamically were worse: a 896-output matrix
        // (Qwen2-0.5B's q, o and down projections) is 5 of them, 3 for one of two threads (29 %
        // over an even share). Zen 5, Qwen2-0.5B bf16 decode at 2 threads, alternating in one
        // process: kChunk tasks 23.4-24.1, even shares 21.4-22.2 ms per step; helped shares a
        // median 6 % faster again on a busy VM.
        const bool few_rows = x.rows <= kSmallMRows;
        const index_t grain = few_rows ? even_share(N, ex.threads(), kChunkAlign) : kChunk;
        const int nt = parallel_workers(ex, N, grain);
        // Bf16DotMath: the input is rounded to bf16 once, here; every block of columns reads it.
        // Int8DotMath: the same, quantised to int8 per token.
        const std::uint32_t* pairs = nullptr;
        const index_t P = bf16_pairs(x.cols);
        if constexpr (std::is_same_v<math, Bf16DotMath>) {
            std::uint32_t* p = ws.input_pairs.get(static_cast<std::size_t>(std::max<index_t>(1, x.rows * P)));
            round_rows_bf16(x, p);
            pairs = p;
        }
        const std::uint8_t* qx = nullptr;
        const float* sx = nullptr;
        const index_t qld = int8_row_bytes(x.cols);
        if constexpr (std::is_same_v<math, Int8DotMath>) {
            std::uint8_t* q = ws.int8_rows.get(static_cast<std::size_t>(std::max<index_t>(1, x.rows * qld)));
            float* s = ws.int8_scales.get(static_cast<std::size_t>(std::max<index_t>(1, x.rows)));
            quantize_rows_int8(x, q, s);
            qx = q;
            sx = s;
        }
        // Output columns [n0, n1) with workspace cws, then the epilogue on them.
        auto columns = [&](index_t n0, index_t n1, GemmWorkspace& cws) {
            const MatrixRef<float> yc(y.data + n0, y.rows, n1 - n0, y.stride);
            const float* bc = b ? b + n0 : nullptr;
            if constexpr (std::is_same_v<math, Bf16DotMath>) {
                const Bf16PanelsView* pk = packed_view(e);
                const Bf16PanelsView part = pk ? pk->outputs(n0, n1) : Bf16PanelsView{};
                cpu::linear_bf16_pairs(x.rows, pairs, P, w.outputs(n0, n1), pk ? &part : nullptr, bc, yc, accumulate,
                                       cws);
            } else if constexpr (std::is_same_v<math, Int8DotMath>) {
                detail::init_output(yc, bc, accumulate);
                const Int8PanelsView* pk = packed8_view(e);
                const Int8PanelsView part = pk ? pk->outputs(n0, n1) : Int8PanelsView{};
                int8_gemm(x.rows, qx, qld, sx, int8_weight(e).outputs(n0, n1), yc.data, yc.stride,
                          cws.pair_panel.get(int8_panel_words(x.cols)), pk ? &part : nullptr);
            } else if constexpr (kInt8) {
                cpu::linear_int8_widened(x, int8_weight(e).outputs(n0, n1), bc, yc, accumulate, cws);
            } else {
                cpu::linear<W>(x, w.outputs(n0, n1), bc, yc, accumulate, cws);
            }
            epilogue(yc);
        };
        // Few rows: threads only when the weight is large enough to pay for them; each column is
        // computed by the same kernel path either way.
        if (nt > 1 && (!few_rows || N * w.in >= kSmallParallel)) {
            if (static_cast<int>(tws_.size()) < nt) tws_.resize(static_cast<std::size_t>(nt));
            const auto run = [&](index_t n0, index_t n1, int worker) {
                columns(n0, n1, tws_[static_cast<std::size_t>(worker)]);
            };
            if (few_rows) {
                const index_t row_bytes = std::max<index_t>(1, w.in * static_cast<index_t>(sizeof(W)));
                parallel_shares(ex, N, kChunkAlign, std::max<index_t>(kChunkAlign, kSharePieceBytes / row_bytes), run);
            } else {
                parallel_chunks(ex, N, grain, run);
            }
            return;
        }
        columns(0, N, ws);
    }

public:
    static constexpr index_t kChunk = 192;  ///< output columns per parallel task (multiple of 48)
    /// Where a split between threads may cut the output columns: a multiple of every register
    /// block and packed panel (a column lands in the same kernel path wherever the cut falls).
    static constexpr index_t kChunkAlign = 32;
    /// A decode split's pieces (parallel_shares): about this many bytes of weights each, so a
    /// piece is a long stream (~9 us at 28 GB/s) and a share's claims cost nothing beside it.
    static constexpr index_t kSharePieceBytes = index_t{256} << 10;
    /// Weights of at least this many elements are split between threads even for 1-8 rows.
    static constexpr index_t kSmallParallel = index_t{1} << 18;
    static_assert(kChunk % Bf16Blocking::NR == 0 && kChunk % Int8PanelsView::kOutputs == 0 && kChunk % kChunkAlign == 0,
                  "parallel chunks must start on a packed panel");
    static_assert(kChunkAlign % Bf16Blocking::NR == 0 && kChunkAlign % Int8PanelsView::kOutputs == 0,
                  "parallel chunks must start on a packed panel");
#if !defined(MOE_NO_SIMD)
    static_assert(kChunkAlign % detail::Blocking<simd_arch>::NR == 0, "parallel chunks must start on a register block");
#endif

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
    /// views[e] = Packed(matrix(e)).view() for every matrix, the Packed copies owned here.
    template <class Packed, class View, class Matrix>
    void pack_each(std::vector<View>& views, Matrix&& matrix) {
        std::vector<View> v;
        for (index_t e = 0; e < count(); ++e) {
            auto p = std::make_shared<Packed>(matrix(e));
            v.push_back(p->view());
            packed_bytes_ += p->bytes();
            owners_.push_back(std::move(p));
        }
        views = std::move(v);
    }

    void finish_load() {
        if constexpr (kInt8) layout_ = WeightLayout::out_in;  // quantised copies are [out, in]
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
        push_weight(weight, nullptr, name);
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
        check<DTypeError>(is_float_dtype(v.dtype()), name,
                          "weights must be F32, BF16 or F16, found ", dtype_name(v.dtype()));
        auto t = std::make_shared<Tensor>(convert(v, dtype_v<T>));
        const Tensor& ct = *t;
        owners_.push_back(std::move(t));
        return ct.template data<T>();
    }

    // One matrix into weight_ (and scale_): v is a float matrix stored as layout_ says (scale
    // null), or an int8 [out, in] matrix with its scales (scale given; layout_ out_in). Borrowed when its storage
    // is this policy's; else converted once: float to W, float quantised per output channel (int8
    // policies: then stored [out, in]), int8 dequantised (float policies).
    void push_weight(const TensorView& v, const TensorView* scale, const std::string& name) {
        if (scale) {
            check<DTypeError>(v.dtype() == DType::i8, name, "an int8 weight with scales must be I8, found ",
                              dtype_name(v.dtype()));
            check<ShapeError>(v.rank() == 2 && v.dim(0) == out_ && v.dim(1) == in_, name, "expected int8 [", out_, ", ",
                              in_, "] (int8 weights are stored [out, in]), found ", v.shape().str());
            check<DTypeError>(scale->dtype() == DType::f32, name, "int8 scales must be F32, found ",
                              dtype_name(scale->dtype()));
            const index_t group = int8_group_of(scale->shape(), out_, in_);
            check<ShapeError>(group > 0, name, "int8 scales must be [", out_, "] or [", out_,
                              ", in / group] with a group of 32k inputs dividing ", in_, ", found ",
                              scale->shape().str());
            check<ShapeError>(layout_ == WeightLayout::out_in, name, "int8 weights are stored [out, in]");
            if constexpr (kInt8) {
                set_group(group, name);
                weight_.push_back(adopt<std::int8_t>(v, name));
                scale_.push_back(adopt<float>(*scale, name + " scale"));
            } else {
                const Int8Matrix m{v.data<std::int8_t>(name), scale->data<float>(name), out_, in_, in_, group};
                check<ShapeError>(v.contiguous() && scale->contiguous(), name, "int8 weights must be contiguous");
                auto t = std::make_shared<Tensor>(dtype_v<W>, Shape{out_, in_});
                dequantize_int8(m, t->template data<W>());
                const Tensor& ct = *t;
                owners_.push_back(std::move(t));
                weight_.push_back(ct.template data<W>());
            }
            return;
        }
        if constexpr (kInt8) {
            check<DTypeError>(is_float_dtype(v.dtype()), name, "weights must be F32, BF16 or F16 (or I8 with scales), found ",
                              dtype_name(v.dtype()));
            const Tensor f = convert(v, DType::f32);
            const bool oi = layout_ == WeightLayout::out_in;
            const float* d = f.data<float>();
            const index_t ld = oi ? in_ : out_;
            auto q = std::make_shared<Int8Quantized>(quantize_int8(
                out_, in_, [&](index_t n, index_t k) { return oi ? d[n * ld + k] : d[k * ld + n]; }, 0, name));
            set_group(in_, name);
            const Int8Quantized& cq = *q;
            weight_.push_back(cq.q.template data<std::int8_t>());
            scale_.push_back(cq.scale.template data<float>());
            owners_.push_back(std::move(q));  // finish_load() then sets layout_ to out_in
        } else {
            weight_.push_back(adopt<W>(v, name));
        }
    }

    // Every matrix of one Linear has one group size.
    void set_group(index_t group, const std::string& name) {
        check<ShapeError>(weight_.empty() || group == group_, name, "int8 group of ", group,
                          " inputs, the matrices before it have ", group_);
        group_ = group;
    }

    const Int8PanelsView* packed8_view(index_t e) const noexcept {
        return packed8_.empty() ? nullptr : &packed8_[static_cast<std::size_t>(e)];
    }
    const Bf16PanelsView* packed_view(index_t e) const noexcept {
        return packed_.empty() ? nullptr : &packed_[static_cast<std::size_t>(e)];
    }

    template <WeightPolicy>
    friend class Linear;

    std::vector<const W*> weight_;
    std::vector<const float*> scale_;  ///< int8 policies: [out] or [out, in / group_] per matrix
    index_t group_ = 0;                ///< int8 policies: inputs per scale
    std::vector<Bf16PanelsView> packed_;
    std::vector<Int8PanelsView> packed8_;
    std::size_t packed_bytes_ = 0;
    std::vector<const float*> bias_;
    index_t out_ = 0, in_ = 0;
    WeightLayout layout_ = WeightLayout::out_in;
    std::vector<std::shared_ptr<const void>> owners_;
    mutable GemmWorkspace ws_;
    mutable std::vector<GemmWorkspace> tws_;
};

}  // namespace moe::cpu
