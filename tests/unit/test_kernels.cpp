// CPU kernels against double-precision definitions: activations, LayerNorm, RMSNorm, GEMM
// (fp32 and 16-bit weights), and the bf16/f16 conversions.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "moe/backend/cpu.hpp"
#include "moe/backend/cpu/gemm_eigen.hpp"  // the EigenGemm engine the tests compare with
#include "moe/core.hpp"

namespace moe_test_kernels {  // this file's names (unity builds merge test files)

using namespace moe;

namespace {
std::vector<float> rand_vec(std::size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
}
double rel_err(const std::vector<float>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-300));
}
}  // namespace

TEST_CASE("activations match their double-precision definitions elementwise", "[kernels]") {
    auto x = rand_vec(1003, 1, -8.0f, 8.0f);  // odd length: SIMD body and scalar tail
    x[0] = 0.0f;
    x[1] = -0.0f;
    auto check_act = [&](auto tag, auto def) {
        using A = decltype(tag);
        auto y = x;
        A::apply(y.data(), static_cast<index_t>(y.size()));
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double ref = def(double(x[i]));
            INFO(A::name << " at x = " << x[i]);
            REQUIRE(y[i] == Approx(ref).epsilon(2e-6).margin(2e-7));
            REQUIRE(A::scalar(x[i]) == Approx(ref).epsilon(2e-6).margin(2e-7));
        }
    };
    check_act(Gelu{}, [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); });
    check_act(GeluTanh{}, [](double v) {
        return 0.5 * v * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
    });
    check_act(Silu{}, [](double v) { return v / (1 + std::exp(-v)); });
    check_act(Relu{}, [](double v) { return v > 0 ? v : 0.0; });
}

TEST_CASE("SwiGLU computes silu(gate) * up", "[kernels]") {
    auto g = rand_vec(77, 2, -4, 4), u = rand_vec(77, 3, -2, 2);
    auto out = g;
    cpu::glu<Silu>(out.data(), u.data(), 77);
    for (int i = 0; i < 77; ++i) REQUIRE(out[i] == Approx(g[i] / (1 + std::exp(-double(g[i]))) * u[i]).epsilon(3e-6));
}

TEST_CASE("LayerNorm and RMSNorm match the definitions, including a large mean", "[kernels]") {
    const index_t R = 5, C = 3584 + 3;
    auto x = rand_vec(static_cast<std::size_t>(R * C), 4, -2, 2);
    for (index_t c = 0; c < C; ++c) x[static_cast<std::size_t>(2 * C + c)] += 1000.0f;  // |mean| >> std
    auto g = rand_vec(static_cast<std::size_t>(C), 5, 0.5f, 1.5f), b = rand_vec(static_cast<std::size_t>(C), 6);
    std::vector<float> y(x.size()), r(x.size());
    cpu::layer_norm({x.data(), R, C}, {y.data(), R, C}, g.data(), b.data(), 1e-6f);
    cpu::rms_norm({x.data(), R, C}, {r.data(), R, C}, g.data(), 1e-6f);
    for (index_t i = 0; i < R; ++i) {
        double mean = 0, var = 0, ms = 0;
        for (index_t c = 0; c < C; ++c) mean += x[static_cast<std::size_t>(i * C + c)];
        mean /= double(C);
        for (index_t c = 0; c < C; ++c) {
            const double d = x[static_cast<std::size_t>(i * C + c)] - mean;
            var += d * d;
            ms += double(x[static_cast<std::size_t>(i * C + c)]) * x[static_cast<std::size_t>(i * C + c)];
        }
        var /= double(C);
        ms /= double(C);
        std::vector<double> ly, ry;
        std::vector<float> lyf, ryf;
        for (index_t c = 0; c < C; ++c) {
            const auto j = static_cast<std::size_t>(i * C + c);
            ly.push_back((x[j] - mean) / std::sqrt(var + 1e-6) * g[static_cast<std::size_t>(c)] + b[static_cast<std::size_t>(c)]);
            ry.push_back(x[j] / std::sqrt(ms + 1e-6) * g[static_cast<std::size_t>(c)]);
            lyf.push_back(y[j]);
            ryf.push_back(r[j]);
        }
        INFO("row " << i);
        REQUIRE(rel_err(lyf, ly) < 1e-5);  // row 2: only the rounding of x itself
        REQUIRE(rel_err(ryf, ry) < 1e-6);
    }
    // in place
    auto z = x;
    cpu::layer_norm({z.data(), R, C}, {z.data(), R, C}, g.data(), b.data(), 1e-6f);
    REQUIRE(z == y);
    std::vector<float> bad(10);
    REQUIRE_THROWS_AS(cpu::layer_norm({x.data(), 1, C}, {bad.data(), 1, 10}, nullptr, nullptr, 1e-5f), ShapeError);
}

namespace {
template <class W, class Engine>
void check_linear() {
    for (index_t M : {1, 3, 4, 5, 6, 7, 67}) {
        const index_t K = 131 + 256, N = 97 + 512;  // edges in every blocking dimension
        auto A = rand_vec(static_cast<std::size_t>(M * K), 7);
        auto Wf = rand_vec(static_cast<std::size_t>(N * K), 8);
        auto bias = rand_vec(static_cast<std::size_t>(N), 9);
        std::vector<W> Wq(Wf.size());
        for (std::size_t i = 0; i < Wf.size(); ++i) Wq[i] = from_float<W>(Wf[i]);
        std::vector<float> C(static_cast<std::size_t>(M * N), 123.0f);
        cpu::GemmWorkspace ws;
        cpu::linear<W, Engine>({A.data(), M, K}, {Wq.data(), N, K}, bias.data(), {C.data(), M, N}, false, ws);
        std::vector<double> ref(C.size());
        for (index_t m = 0; m < M; ++m)
            for (index_t n = 0; n < N; ++n) {
                double s = bias[static_cast<std::size_t>(n)];
                for (index_t k = 0; k < K; ++k)
                    s += double(A[static_cast<std::size_t>(m * K + k)]) * double(to_float(Wq[static_cast<std::size_t>(n * K + k)]));
                ref[static_cast<std::size_t>(m * N + n)] = s;
            }
        INFO("engine " << Engine::name << ", M = " << M);
        REQUIRE(rel_err(C, ref) < 1e-6);
        // accumulate adds on top
        cpu::linear<W, Engine>({A.data(), M, K}, {Wq.data(), N, K}, nullptr, {C.data(), M, N}, true, ws);
        for (index_t i = 0; i < M * N; ++i) ref[static_cast<std::size_t>(i)] = 2 * ref[static_cast<std::size_t>(i)] - bias[static_cast<std::size_t>(i % N)];
        REQUIRE(rel_err(C, ref) < 1e-6);
    }
}
}  // namespace

TEMPLATE_TEST_CASE("linear: C = A W^T + b for fp32 and 16-bit weights, any M, both engines", "[kernels][gemm]", float,
                   bf16, f16) {
    check_linear<TestType, cpu::PackedGemm>();
    check_linear<TestType, cpu::EigenGemm>();
}

TEST_CASE("the packed GEMM gives bit-identical rows whatever rows it is given together", "[kernels][gemm]") {
    // Row blocks of any size (thread tiles) must not change any output bit.
    const index_t M = 50, K = 300, N = 70;
    auto A = rand_vec(static_cast<std::size_t>(M * K), 21), Wf = rand_vec(static_cast<std::size_t>(N * K), 22);
    std::vector<float> all(static_cast<std::size_t>(M * N)), part(all.size());
    cpu::GemmWorkspace ws;
    cpu::linear<float, cpu::PackedGemm>({A.data(), M, K}, {Wf.data(), N, K}, nullptr, {all.data(), M, N}, false, ws);
    for (index_t r0 = 0; r0 < M; r0 += 7) {
        const index_t n = std::min<index_t>(7, M - r0);
        cpu::linear<float, cpu::PackedGemm>({A.data() + r0 * K, n, K}, {Wf.data(), N, K}, nullptr,
                                            {part.data() + r0 * N, n, N}, false, ws);
    }
    REQUIRE(all == part);
}

TEST_CASE("linear_parallel equals linear bit for bit", "[kernels][gemm]") {
    const index_t M = 64, K = 200, N = 300;
    auto A = rand_vec(static_cast<std::size_t>(M * K), 10), Wf = rand_vec(static_cast<std::size_t>(N * K), 11);
    std::vector<float> C1(static_cast<std::size_t>(M * N)), C2(C1.size());
    cpu::GemmWorkspace ws;
    cpu::linear<float>({A.data(), M, K}, {Wf.data(), N, K}, nullptr, {C1.data(), M, N}, false, ws);
    cpu::linear_parallel<float>({A.data(), M, K}, {Wf.data(), N, K}, nullptr, {C2.data(), M, N}, false, Exec(2));
    REQUIRE(C1 == C2);
    REQUIRE_THROWS_AS(cpu::linear<float>({A.data(), M, K}, {Wf.data(), N, K - 1}, nullptr, {C1.data(), M, N}, false, ws),
                      ShapeError);
}

TEST_CASE("bf16 and f16 conversions round to nearest even and keep specials", "[dtype]") {
    // bf16: 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties to even (1.0)
    REQUIRE(float(bf16(1.0f + 0x1p-8f)) == 1.0f);
    REQUIRE(float(bf16(1.0f + 0x1p-8f + 0x1p-20f)) == 1.0f + 0x1p-7f);
    REQUIRE(std::isnan(float(bf16(NAN))));
    REQUIRE(float(bf16(INFINITY)) == INFINITY);
    REQUIRE(bf16(-0.0f).bits == 0x8000);
    // f16: exhaustive round trip of every finite half value
    for (std::uint32_t h = 0; h < 0x10000; ++h) {
        const f16 v = f16::from_bits(static_cast<std::uint16_t>(h));
        const float f = float(v);
        if (std::isnan(f)) {
            REQUIRE(std::isnan(float(f16(f))));
            continue;
        }
        REQUIRE(f16(f).bits == h);
    }
    REQUIRE(float(f16(65520.0f)) == INFINITY);  // rounds up past the largest half
    REQUIRE(float(f16(65519.0f)) == 65504.0f);
    REQUIRE(float(f16(1e-8f)) == 0.0f);
    REQUIRE(float(f16(3e-8f)) == 0x1p-24f);  // smallest subnormal
}

namespace {
// The same matrix stored [in, out] (MindSpore's transpose_b=False layout) must give the product
// of the [out, in] matrix: bit for bit with the packed engine (the panels hold the same values),
// within rounding with Eigen's.
template <class W, class Engine>
void check_linear_in_out() {
    // {3, 4245}: rows long enough for the small-M kernel's segments (2048, 2048, then 128 inputs,
    // the half chunk and 5 one by one), 609 rows in blocks of 32.
    for (const auto& mk : {std::pair<index_t, index_t>{1, 131 + 256}, {4, 131 + 256}, {3, 16 * 37 + 5},
                           {5, 131 + 256}, {6, 131 + 256}, {67, 131 + 256}, {3, 4245}, {5, 4245}}) {
        const index_t M = mk.first, K = mk.second, N = 97 + 512;
        auto A = rand_vec(static_cast<std::size_t>(M * K), 31);
        auto Wf = rand_vec(static_cast<std::size_t>(N * K), 32);
        auto bias = rand_vec(static_cast<std::size_t>(N), 33);
        std::vector<W> oi(Wf.size()), io(Wf.size());
        for (index_t n = 0; n < N; ++n)
            for (index_t k = 0; k < K; ++k) {
                const W v = from_float<W>(Wf[static_cast<std::size_t>(n * K + k)]);
                oi[static_cast<std::size_t>(n * K + k)] = v;
                io[static_cast<std::size_t>(k * N + n)] = v;
            }
        const auto wio = WeightMatrix<W>::in_out(io.data(), K, N);
        REQUIRE(wio(5, 7) == oi[static_cast<std::size_t>(5 * K + 7)]);
        std::vector<float> C1(static_cast<std::size_t>(M * N)), C2(C1.size());
        cpu::GemmWorkspace ws;
        cpu::linear<W, Engine>({A.data(), M, K}, {oi.data(), N, K}, bias.data(), {C1.data(), M, N}, false, ws);
        cpu::linear<W, Engine>({A.data(), M, K}, wio, bias.data(), {C2.data(), M, N}, false, ws);
        std::vector<double> ref(C1.size());
        for (index_t m = 0; m < M; ++m)
            for (index_t n = 0; n < N; ++n) {
                double s = bias[static_cast<std::size_t>(n)];
                for (index_t k = 0; k < K; ++k)
                    s += double(A[static_cast<std::size_t>(m * K + k)]) * double(to_float(oi[static_cast<std::size_t>(n * K + k)]));
                ref[static_cast<std::size_t>(m * N + n)] = s;
            }
        INFO("engine " << Engine::name << ", M = " << M);
        REQUIRE(rel_err(C2, ref) < 1e-6);
#if !defined(MOE_NO_SIMD)
        // The packed engine: both layouts equal the packed product of the [out, in] matrix bit
        // for bit, so a split of the rows between threads cannot change a result.
        if constexpr (std::is_same_v<Engine, cpu::PackedGemm> && cpu::kHasSimd) {
            if (std::is_same_v<W, float> || M > cpu::kSmallMRowsF32) {
                std::vector<float> Cp(C1.size());
                for (index_t m = 0; m < M; ++m)
                    std::copy(bias.begin(), bias.end(), Cp.begin() + m * N);
                std::vector<float> pack(cpu::packed_gemm_workspace());
                cpu::packed_gemm(M, N, K, A.data(), K, oi.data(), K, Cp.data(), N, pack.data());
                REQUIRE(C2 == Cp);
                REQUIRE(C1 == Cp);
            }
        }
#endif
        // 1-5 rows of 16-bit weights (decoding, beams): both layouts follow the small-M order written
        // out here from its description (cpu::detail::small_m_lanes), bit for bit, and a row
        // gives the same bits alone as in a group.
        if (!std::is_same_v<W, float> && M <= cpu::kSmallMRowsF32) {
            constexpr index_t L = cpu::detail::small_m_lanes();
            std::vector<float> Cs(C1.size());
            for (index_t m = 0; m < M; ++m)
                for (index_t n = 0; n < N; ++n) {
                    std::vector<float> part(static_cast<std::size_t>(2 * L), 0.0f);
                    const auto a = [&](index_t k) { return A[static_cast<std::size_t>(m * K + k)]; };
                    const auto w = [&](index_t k) { return to_float(oi[static_cast<std::size_t>(n * K + k)]); };
                    index_t k = 0;
                    if (L > 1) {
                        for (; k + 2 * L <= K; k += 2 * L)
                            for (index_t j = 0; j < 2 * L; ++j) part[j] = cpu::madd(a(k + j), w(k + j), part[j]);
                        if (k + L <= K)
                            for (index_t j = 0; j < L; ++j, ++k) part[j] = cpu::madd(a(k), w(k), part[j]);
                        for (index_t j = 0; j < L; ++j) part[j] += part[j + L];
                        for (index_t h = L / 2; h >= 1; h /= 2)
                            for (index_t j = 0; j < h; ++j) part[j] += part[j + h];
                    }
                    float t = part[0];
                    for (; k < K; ++k) t = cpu::madd(a(k), w(k), t);
                    Cs[static_cast<std::size_t>(m * N + n)] = bias[static_cast<std::size_t>(n)] + t;
                }
            REQUIRE(C1 == Cs);
            REQUIRE(C2 == Cs);
            std::vector<float> one(static_cast<std::size_t>(N));
            for (index_t m = 0; m < M; ++m) {
                cpu::linear<W, Engine>({A.data() + m * K, 1, K}, wio, bias.data(), {one.data(), 1, N}, false, ws);
                REQUIRE(std::equal(one.begin(), one.end(), C1.begin() + m * N));
            }
        }
        // Output sub-ranges (what the threads take) and linear_parallel.
        std::vector<float> C3(C1.size(), 0.0f);
        for (index_t n0 = 0; n0 < N; n0 += 192) {
            const index_t n1 = std::min<index_t>(N, n0 + 192);
            cpu::linear<W, Engine>({A.data(), M, K}, wio.outputs(n0, n1), bias.data() + n0, {C3.data() + n0, M, n1 - n0, N},
                                   false, ws);
        }
        std::vector<float> C4(C1.size());
        cpu::linear_parallel<W, Engine>({A.data(), M, K}, wio, bias.data(), {C4.data(), M, N}, false, Exec(2));
        if constexpr (std::is_same_v<Engine, cpu::PackedGemm> && cpu::kHasSimd) {
            REQUIRE(C3 == C2);
            REQUIRE(C4 == C2);
        } else {  // Eigen's blocking depends on the column count: equal within rounding
            REQUIRE(rel_err(C3, ref) < 1e-6);
            REQUIRE(rel_err(C4, ref) < 1e-6);
        }
    }
}
}  // namespace

TEMPLATE_TEST_CASE("linear reads [in, out] weights in place: same product as [out, in]", "[kernels][gemm]", float, bf16,
                   f16) {
    check_linear_in_out<TestType, cpu::PackedGemm>();
    check_linear_in_out<TestType, cpu::EigenGemm>();
    // A wrong input width names the stored layout.
    std::vector<float> A(12), W(12), C(4);
    cpu::GemmWorkspace ws;
    REQUIRE_THROWS_WITH(cpu::linear<float>({A.data(), 2, 6}, WeightMatrix<float>::in_out(W.data(), 4, 3), nullptr,
                                           {C.data(), 2, 3}, false, ws),
                        Catch::Contains("[in, out]") && Catch::Contains("4 inputs"));
}

TEST_CASE("copy_as stores a weight either way", "[kernels]") {
    const std::vector<float> v{1, 2, 3, 4, 5, 6};  // [out 2, in 3]
    const WeightMatrix<float> oi(ConstMatrixRef<float>(v.data(), 2, 3));
    const Tensor t = copy_as(oi, WeightLayout::in_out);
    REQUIRE(t.shape() == Shape{3, 2});
    REQUIRE(std::vector<float>(t.span<float>().begin(), t.span<float>().end()) == std::vector<float>{1, 4, 2, 5, 3, 6});
    const Tensor back = copy_as(WeightMatrix<float>::in_out(t.data<float>(), 3, 2), WeightLayout::out_in);
    REQUIRE(std::vector<float>(back.span<float>().begin(), back.span<float>().end()) == v);
}

TEST_CASE("multiply-add: SIMD lanes and the scalar twin round alike, once on FMA targets", "[kernels][simd]") {
    // x * x = 1 + 2^-11 + 2^-24 needs 25 bits: a separate multiply rounds the 2^-24 away (a tie,
    // to even), a fused multiply-add keeps it.
    const float x = 1.0f + std::ldexp(1.0f, -12), z = -(1.0f + std::ldexp(1.0f, -11));
    const float fused = std::ldexp(1.0f, -24);
    const float scalar = cpu::madd(x, x, z);
#if defined(__FMA__) || defined(MOE_NO_SIMD)
    CHECK(scalar == fused);
#else
    CHECK(scalar == 0.0f);
#endif
#if !defined(MOE_NO_SIMD)
    if constexpr (cpu::kHasSimd) {
        using B = xsimd::batch<float, cpu::simd_arch>;
        alignas(64) float out[B::size];
        cpu::arch::fmadd<cpu::simd_arch>(B(x), B(x), B(z)).store_aligned(out);
        INFO("instruction set " << cpu::simd_name());
        for (float v : out) CHECK(v == scalar);
    }
#endif
}

}  // namespace moe_test_kernels
