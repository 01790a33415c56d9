// The bf16 dot GEMM (Bf16DotMath): both micro-kernels against a scalar model of vdpbf16ps
// written here from Intel's description of the instruction (bit for bit), weights packed once
// against packed per call, thread splits, and the Linear<bf16_dot> holder.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "moe/moe.hpp"
#include "random_inputs.hpp"
#include "skip.hpp"

namespace moe_test_gemm_bf16 {  // this file's names (unity builds merge test files)

using namespace moe;

namespace {

using moe_test::randn;
using moe_test::transposed;

// bf16 rounding (nearest even, moe::bf16) of x with subnormals read as zero (DAZ) before and
// after rounding.
float bf16_daz(float x) {
    if (std::fabs(x) < std::numeric_limits<float>::min()) return std::copysign(0.0f, x);
    const float r = static_cast<float>(bf16(x));
    return std::fabs(r) < std::numeric_limits<float>::min() ? std::copysign(0.0f, r) : r;
}

// fp32 result with subnormals flushed to zero (FTZ).
float ftz(float x) { return std::fabs(x) < std::numeric_limits<float>::min() ? std::copysign(0.0f, x) : x; }

// The model: y[m, n] = b[n] (or y) + sum over blocks of 256 inputs of s, where s starts at zero
// and takes, per pair (2q, 2q + 1), s += a[2q+1] w[2q+1] then s += a[2q] w[2q], each step one
// fp32 rounding (the products of two bf16 are exact in float; computed in double and rounded to
// be independent of FMA contraction), each step's result flushed when subnormal.
std::vector<float> model(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                         const std::vector<float>& y0, index_t M, index_t N, index_t K) {
    std::vector<float> y(static_cast<std::size_t>(M * N));
    for (index_t m = 0; m < M; ++m)
        for (index_t n = 0; n < N; ++n) {
            float c = !y0.empty() ? y0[static_cast<std::size_t>(m * N + n)] : 0.0f;
            if (!b.empty()) c += b[static_cast<std::size_t>(n)];
            for (index_t k0 = 0; k0 < K; k0 += 256) {
                float s = 0.0f;
                for (index_t k = k0; k < std::min(K, k0 + 256); k += 2) {
                    auto term = [&](index_t kk) -> double {
                        if (kk >= K) return 0.0;
                        return double(bf16_daz(x[static_cast<std::size_t>(m * K + kk)])) *
                               double(bf16_daz(w[static_cast<std::size_t>(n * K + kk)]));
                    };
                    s = ftz(static_cast<float>(double(s) + term(k + 1)));
                    s = ftz(static_cast<float>(double(s) + term(k)));
                }
                c += s;
            }
            y[static_cast<std::size_t>(m * N + n)] = c;
        }
    return y;
}

// The small-M model (M <= 8 rows, cpu::kSmallMRowsBf16Dot): per output, the pairs (2q, 2q + 1),
// padded with zero pairs to a multiple of L, go in chunks of L to 2L partials (chunk c to
// partials (c mod 2) L + i), each step as above; then partial j += partial j + L and a halving
// tree (plain fp32 adds), added to b (or y) once.
std::vector<float> model_small(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                               const std::vector<float>& y0, index_t M, index_t N, index_t K) {
    constexpr index_t L = cpu::Bf16Blocking::L;
    const index_t P = (K + 1) / 2, padded = (P + L - 1) / L * L;
    std::vector<float> y(static_cast<std::size_t>(M * N));
    for (index_t m = 0; m < M; ++m)
        for (index_t n = 0; n < N; ++n) {
            float c = !y0.empty() ? y0[static_cast<std::size_t>(m * N + n)] : 0.0f;
            if (!b.empty()) c += b[static_cast<std::size_t>(n)];
            std::vector<float> part(static_cast<std::size_t>(2 * L), 0.0f);
            for (index_t q = 0; q < padded; ++q) {
                auto term = [&](index_t kk) -> double {
                    if (kk >= K) return 0.0;
                    return double(bf16_daz(x[static_cast<std::size_t>(m * K + kk)])) *
                           double(bf16_daz(w[static_cast<std::size_t>(n * K + kk)]));
                };
                const auto j = static_cast<std::size_t>((q / L) % 2 * L + q % L);
                part[j] = ftz(static_cast<float>(double(part[j]) + term(2 * q + 1)));
                part[j] = ftz(static_cast<float>(double(part[j]) + term(2 * q)));
            }
            for (index_t j = 0; j < L; ++j) part[static_cast<std::size_t>(j)] += part[static_cast<std::size_t>(j + L)];
            for (index_t h = L / 2; h >= 1; h /= 2)
                for (index_t j = 0; j < h; ++j) part[static_cast<std::size_t>(j)] += part[static_cast<std::size_t>(j + h)];
            y[static_cast<std::size_t>(m * N + n)] = c + part[0];
        }
    return y;
}

std::vector<bf16> to_bf16(const std::vector<float>& v) {
    std::vector<bf16> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = bf16(v[i]);
    return r;
}


// Bits of a and b equal everywhere (NaN included).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
    return true;
}

template <class Kernel>
std::vector<float> run(const std::vector<float>& x, const std::vector<bf16>& w, WeightLayout layout,
                       const std::vector<float>& b, const std::vector<float>& y0, index_t M, index_t N, index_t K,
                       bool prepacked) {
    const WeightMatrix<bf16> wm = layout == WeightLayout::out_in ? WeightMatrix<bf16>(w.data(), N, K, K, layout)
                                                                 : WeightMatrix<bf16>::in_out(w.data(), K, N);
    std::vector<float> y = y0.empty() ? std::vector<float>(static_cast<std::size_t>(M * N), 7.0f) : y0;
    cpu::GemmWorkspace ws;
    const cpu::PackedBf16 packed = prepacked ? cpu::PackedBf16(wm) : cpu::PackedBf16();
    const cpu::Bf16PanelsView view = packed.view();
    cpu::linear_bf16<Kernel>(ConstMatrixRef<float>(x.data(), M, K, K), wm, prepacked ? &view : nullptr,
                             b.empty() ? nullptr : b.data(), MatrixRef<float>(y.data(), M, N, N), !y0.empty(), ws);
    return y;
}

template <class Kernel>
void check_kernel() {
    const index_t Ms[] = {1, 3, 4, 5, 8, 9, 14, 15, 33};
    // {45, 8321}: long rows, summed by the small-M kernel in segments of 2048 pairs (the last
    // one short) over blocks of 32 rows (the last one short); the rows start on 4-byte words
    // and between them (odd K), the aligned-load and the unaligned-load readers.
    const index_t NKs[][2] = {{1, 1}, {17, 7}, {32, 256}, {100, 300}, {600, 513}, {48, 2}, {40, 97}, {33, 64}, {45, 8321}};
    unsigned seed = 1;
    for (index_t M : Ms)
        for (const auto& nk : NKs) {
            const index_t N = nk[0], K = nk[1];
            const auto x = randn(static_cast<std::size_t>(M * K), ++seed);
            const auto wf = randn(static_cast<std::size_t>(N * K), ++seed);
            const auto b = randn(static_cast<std::size_t>(N), ++seed);
            const auto y0 = randn(static_cast<std::size_t>(M * N), ++seed);
            const auto w = to_bf16(wf);
            std::vector<float> wr(wf.size());
            for (std::size_t i = 0; i < w.size(); ++i) wr[i] = static_cast<float>(w[i]);
            const bool acc = (M + N) % 2 == 1;
            const auto expect = M <= cpu::kSmallMRowsBf16Dot ? model_small(x, wr, b, acc ? y0 : std::vector<float>{}, M, N, K)
                                                      : model(x, wr, b, acc ? y0 : std::vector<float>{}, M, N, K);
            const auto wt = transposed(w, N, K);
            INFO("M = " << M << ", N = " << N << ", K = " << K << ", kernel " << Kernel::name);
            for (bool pre : {false, true}) {
                INFO("packed ahead: " << pre);
                CHECK(same_bits(run<Kernel>(x, w, WeightLayout::out_in, b, acc ? y0 : std::vector<float>{}, M, N, K, pre),
                                expect));
                CHECK(same_bits(run<Kernel>(x, wt, WeightLayout::in_out, b, acc ? y0 : std::vector<float>{}, M, N, K, pre),
                                expect));
            }
        }
}

}  // namespace

TEST_CASE("bf16 dot GEMM: the FMA micro-kernel equals the vdpbf16ps model bit for bit", "[gemm][bf16]") {
    check_kernel<cpu::Bf16FmaKernel>();
}

TEST_CASE("bf16 dot GEMM: the vdpbf16ps micro-kernel equals the model bit for bit", "[gemm][bf16]") {
    if constexpr (!cpu::kHasBf16Dot) {
        MOE_SKIP("this build has no vdpbf16ps kernel (it needs SIMD and AVX-512 BF16: -march=native on a CPU that has it)");
    } else {
        check_kernel<cpu::Bf16DotKernel>();
    }
}

TEST_CASE("bf16 dot GEMM: subnormal inputs count as zero, NaN propagates", "[gemm][bf16]") {
    const index_t K = 4, N = 1;
    std::vector<bf16> w = to_bf16({1e30f, 1.0f, 1.0f, 1.0f});
    // 1e-39 is subnormal in fp32 and in bf16: read as zero, so only 2 + 3 + 4 remain.
    std::vector<float> x = {1e-39f, 2.0f, 3.0f, 4.0f};
    auto y = run<cpu::DefaultBf16Kernel>(x, w, WeightLayout::out_in, {}, {}, 1, N, K, false);
    CHECK(y[0] == 9.0f);
    x[0] = 1.0f;  // now 1e30 + 9 rounds to 1e30 in bf16's product
    y = run<cpu::DefaultBf16Kernel>(x, w, WeightLayout::out_in, {}, {}, 1, N, K, false);
    CHECK(y[0] == static_cast<float>(double(static_cast<float>(bf16(1e30f))) + 9.0));
    // The largest fp32 subnormal would round up to the smallest normal bf16: it is read as zero
    // first (DAZ on the input, as vcvtne2ps2bf16 does).
    x = {std::bit_cast<float>(0x007fffffu), 0.0f, 0.0f, 0.0f};
    w = to_bf16({1.0f, 1.0f, 1.0f, 1.0f});
    y = run<cpu::DefaultBf16Kernel>(x, w, WeightLayout::out_in, {}, {}, 1, N, K, false);
    CHECK(y[0] == 0.0f);
    // A row long enough for the vector conversion (32 at a time), the subnormal in the vector part.
    std::vector<float> xl(64, 0.0f);
    xl[5] = std::bit_cast<float>(0x007fffffu);
    xl[40] = 1.0f;
    const auto wl = to_bf16(std::vector<float>(64, 1.0f));
    CHECK(run<cpu::DefaultBf16Kernel>(xl, wl, WeightLayout::out_in, {}, {}, 1, 1, 64, false)[0] == 1.0f);
    x = {1.0f, 2.0f, 3.0f, 4.0f};
    x[2] = std::numeric_limits<float>::quiet_NaN();
    y = run<cpu::DefaultBf16Kernel>(x, w, WeightLayout::out_in, {}, {}, 1, N, K, false);
    CHECK(std::isnan(y[0]));
}

TEST_CASE("Linear<bf16_dot>: packed once, threaded, stacked and selected give the same bits", "[gemm][bf16][linear]") {
    const index_t E = 3, N = 500, K = 384, M = 37;
    const auto lin = cpu::Linear<bf16_dot>::random(E, N, K, true, 11);
    const auto x = randn(static_cast<std::size_t>(M * K), 12);
    const ConstMatrixRef<float> xr(x.data(), M, K, K);
    auto out = [&](const cpu::Linear<bf16_dot>& l, index_t e, int threads) {
        std::vector<float> y(static_cast<std::size_t>(M * N));
        const MatrixRef<float> yr(y.data(), M, N, N);
        if (e == 0 && threads > 0) {
            l.forward(xr, yr, Exec(threads));
        } else {
            cpu::GemmWorkspace ws;
            l.apply(e, xr, yr, ws);
        }
        return y;
    };
    // Expected from the model, with the weights as stored.
    for (index_t e = 0; e < E; ++e) {
        std::vector<float> wf(static_cast<std::size_t>(N * K)), b(static_cast<std::size_t>(N));
        for (index_t n = 0; n < N; ++n) {
            for (index_t k = 0; k < K; ++k) wf[static_cast<std::size_t>(n * K + k)] = to_float(lin.weight(e)(n, k));
            b[static_cast<std::size_t>(n)] = lin.bias(e)[n];
        }
        const auto expect = model(x, wf, b, {}, M, N, K);
        INFO("expert " << e);
        CHECK(same_bits(out(lin, e, -1), expect));
        auto packed = lin;
        REQUIRE_FALSE(packed.packed());
        packed.pack();
        CHECK(packed.packed());
        CHECK(packed.packed_bytes() >= static_cast<std::size_t>(E * N * K * 2));
        CHECK(same_bits(out(packed, e, -1), expect));
        if (e == 0) {
            CHECK(same_bits(out(lin, 0, 1), expect));
            CHECK(same_bits(out(lin, 0, 2), expect));
            CHECK(same_bits(out(packed, 0, 2), expect));
        }
        const index_t keep[] = {e};
        CHECK(same_bits(out(packed.select(keep), 0, 2), expect));
    }
}

TEST_CASE("bf16 dot policy: names and traits", "[gemm][bf16]") {
    STATIC_REQUIRE(WeightPolicy<bf16_dot>);
    STATIC_REQUIRE(WeightPolicy<float>);
    STATIC_REQUIRE_FALSE(WeightPolicy<Weights<float, Bf16DotMath>>);
    STATIC_REQUIRE(std::is_same_v<storage_t<bf16_dot>, bf16>);
    STATIC_REQUIRE(std::is_same_v<math_t<f16>, ExactMath>);
    CHECK(std::string(policy_name<bf16_dot>()) == "bf16-dot");
    CHECK(std::string(policy_name<bf16>()) == "bf16");
}

}  // namespace moe_test_gemm_bf16
