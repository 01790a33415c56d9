// The int8 policies (int8_dot: W8A8; int8_weight_only): the quantiser against its definition and
// its error bound, every int8 kernel this build has against an integer model written here (bit for
// bit per output channel, 1e-5 grouped), and Linear<int8_*> (thread splits, conversions, int8
// views, errors).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "moe/moe.hpp"
#include "random_inputs.hpp"

namespace moe_test_int8 {  // this file's names (unity builds merge test files)

using namespace moe;

namespace {

using moe_test::randn;

// A unique file path under the temp directory, removed on exit.
struct TempPath {
    std::filesystem::path path;
    explicit TempPath(const char* stem) {
        std::random_device rd;
        path = std::filesystem::temp_directory_path() /
               (std::string(stem) + std::to_string(::getpid()) + "_" + std::to_string(rd()) + ".safetensors");
    }
    TempPath(const TempPath&) = delete;
    TempPath& operator=(const TempPath&) = delete;
    ~TempPath() {
        std::error_code ec;
        std::filesystem::remove(path, ec);
    }
};

// The definition (docs/scaling.md): per block, s = amax / 127, q = rint(v * (127 / amax)).
struct Ref {
    std::vector<std::int8_t> q;
    std::vector<float> s;
};
Ref quantize_ref(const std::vector<float>& v, index_t rows, index_t cols, index_t group) {
    const index_t G = group == 0 ? cols : group, ng = cols / G;
    Ref r{std::vector<std::int8_t>(v.size()), std::vector<float>(static_cast<std::size_t>(rows * ng))};
    for (index_t n = 0; n < rows; ++n)
        for (index_t g = 0; g < ng; ++g) {
            float amax = 0;
            for (index_t k = g * G; k < (g + 1) * G; ++k) amax = std::max(amax, std::fabs(v[std::size_t(n * cols + k)]));
            const float inv = amax == 0 ? 0.0f : 127.0f / amax;
            r.s[std::size_t(n * ng + g)] = amax == 0 ? 0.0f : amax / 127.0f;
            for (index_t k = g * G; k < (g + 1) * G; ++k) {
                const float x = std::nearbyint(v[std::size_t(n * cols + k)] * inv);
                r.q[std::size_t(n * cols + k)] = static_cast<std::int8_t>(std::max(-127.0f, std::min(127.0f, x)));
            }
        }
    return r;
}

// The int8_dot product from quantised operands added to c (or 0): exact integer sums (int64),
// then the documented fp32 scaling, one fused multiply-add; grouped sums in double (compared with
// a tolerance).
std::vector<float> dot_model(const Ref& x, const Ref& w, index_t M, index_t N, index_t K, index_t group,
                             const std::vector<float>& c = {}) {
    std::vector<float> y(static_cast<std::size_t>(M * N));
    const index_t G = group == 0 ? K : group, ng = K / G;
    for (index_t m = 0; m < M; ++m)
        for (index_t n = 0; n < N; ++n) {
            if (group == 0) {
                std::int64_t acc = 0;
                for (index_t k = 0; k < K; ++k) acc += std::int64_t(x.q[std::size_t(m * K + k)]) * w.q[std::size_t(n * K + k)];
                y[std::size_t(m * N + n)] = std::fma(static_cast<float>(acc), x.s[std::size_t(m)] * w.s[std::size_t(n)],
                                                     c.empty() ? 0.0f : c[std::size_t(m * N + n)]);
            } else {
                double t = 0;
                for (index_t g = 0; g < ng; ++g) {
                    std::int64_t acc = 0;
                    for (index_t k = g * G; k < (g + 1) * G; ++k)
                        acc += std::int64_t(x.q[std::size_t(m * K + k)]) * w.q[std::size_t(n * K + k)];
                    t += double(acc) * w.s[std::size_t(n * ng + g)];
                }
                y[std::size_t(m * N + n)] = static_cast<float>(t * x.s[std::size_t(m)]);
            }
        }
    return y;
}

// panels: give int8_gemm its panel buffer (the VNNI kernel then packs per-channel weights for
// kInt8PanelRows rows or more) or not (row by row).
template <class Kernel>
std::vector<float> run_kernel(const std::vector<float>& x, const cpu::Int8Quantized& w, index_t M, index_t N, index_t K,
                              index_t group, bool panels) {
    const index_t ld = cpu::int8_row_bytes(K);
    std::vector<std::uint8_t> qx(static_cast<std::size_t>(M * ld));
    std::vector<float> sx(static_cast<std::size_t>(M)), y(static_cast<std::size_t>(M * N), 0.0f);
    cpu::quantize_rows_int8<Kernel>(ConstMatrixRef<float>(x.data(), M, K), qx.data(), sx.data());
    const cpu::Int8Matrix m{w.q.data<std::int8_t>(), w.scale.data<float>(), N, K, K, group == 0 ? K : group};
    std::vector<std::uint32_t> panel(cpu::int8_panel_words(K));
    cpu::int8_gemm<Kernel>(M, qx.data(), ld, sx.data(), m, y.data(), N, panels ? panel.data() : nullptr);
    return y;
}

template <class Kernel>
void check_kernel(index_t M, index_t N, index_t K, index_t group, unsigned seed) {
    INFO("kernel " << Kernel::name << ", M " << M << ", N " << N << ", K " << K << ", group " << group);
    const auto x = randn(std::size_t(M * K), seed, 2.0f);
    const auto wv = randn(std::size_t(N * K), seed + 1, 0.05f);
    const auto w = cpu::quantize_int8(N, K, [&](index_t n, index_t k) { return wv[std::size_t(n * K + k)]; }, group, "w");
    const Ref xr = quantize_ref(x, M, K, 0), wr = quantize_ref(wv, N, K, group);
    const auto want = dot_model(xr, wr, M, N, K, group);
    for (const bool panels : {false, true}) {
        INFO("panels " << panels);
        const auto got = run_kernel<Kernel>(x, w, M, N, K, group, panels);
        for (std::size_t i = 0; i < got.size(); ++i) {
            if (group == 0) REQUIRE(got[i] == want[i]);
            else REQUIRE(got[i] == Approx(want[i]).epsilon(1e-5).margin(1e-6));
        }
    }
}

template <class Kernel>
void check_kernel_shapes() {
    unsigned seed = 10;
    for (index_t M : {1, 2, 3, 4, 5, 7, 9, 13})
        for (index_t N : {1, 3, 4, 9, 33, 50})
            for (index_t K : {1, 31, 64, 100, 130, 257}) check_kernel<Kernel>(M, N, K, 0, seed++);
    // Every split of the VNNI panel path's blocks of at most 8 rows (16: 8 + 8, 17: 6 + 6 + 5, 24,
    // 41: 7 x 5 + 6).
    for (index_t M : {8, 16, 17, 24, 41})
        for (index_t N : {17, 64})
            for (index_t K : {64, 257}) check_kernel<Kernel>(M, N, K, 0, seed++);
    for (index_t M : {1, 3, 6})
        for (index_t N : {2, 5})
            for (auto [K, G] : {std::pair<index_t, index_t>{32, 32}, {96, 32}, {160, 32}, {128, 64}, {192, 64}, {384, 128}})
                check_kernel<Kernel>(M, N, K, G, seed++);
}

}  // namespace

TEST_CASE("int8 quantiser: the definition, |q| <= 127, error within half a step", "[int8]") {
    const index_t N = 7, K = 96;
    auto v = randn(std::size_t(N * K), 3, 0.1f);
    for (index_t k = 0; k < K; ++k) v[std::size_t(2 * K + k)] = 0.0f;  // an all-zero row
    for (index_t group : {index_t{0}, index_t{32}}) {
        const auto q = cpu::quantize_int8(N, K, [&](index_t n, index_t k) { return v[std::size_t(n * K + k)]; }, group, "w");
        const Ref r = quantize_ref(v, N, K, group);
        const index_t ng = group == 0 ? 1 : K / group;
        REQUIRE(q.q.shape() == Shape{N, K});
        REQUIRE(q.scale.shape() == Shape{N, ng});
        const cpu::Int8Matrix m{q.q.data<std::int8_t>(), q.scale.data<float>(), N, K, K, group == 0 ? K : group};
        for (index_t n = 0; n < N; ++n) {
            for (index_t g = 0; g < ng; ++g) REQUIRE(q.scale.data<float>()[n * ng + g] == r.s[std::size_t(n * ng + g)]);
            int top = 0;
            for (index_t k = 0; k < K; ++k) {
                const int qi = q.q.data<std::int8_t>()[n * K + k];
                REQUIRE(qi == r.q[std::size_t(n * K + k)]);
                REQUIRE(std::abs(qi) <= 127);
                top = std::max(top, std::abs(qi));
                const float step = q.scale.data<float>()[n * ng + (group == 0 ? 0 : k / group)];
                REQUIRE(std::fabs(m.value(n, k) - v[std::size_t(n * K + k)]) <= 0.5f * step * 1.0001f + 1e-12f);
            }
            if (n == 2) REQUIRE(top == 0);
            else if (group == 0) REQUIRE(top == 127);  // the largest magnitude maps to +-127
        }
    }
    const auto f = [](index_t, index_t) { return 1.0f; };
    REQUIRE_THROWS_AS(cpu::quantize_int8(2, 96, f, 64, "w"), ConfigError);  // 64 does not divide 96
    REQUIRE_THROWS_AS(cpu::quantize_int8(2, 96, f, 48, "w"), ConfigError);  // not a multiple of 32
    const auto nan = [](index_t n, index_t k) { return n == 1 && k == 5 ? std::numeric_limits<float>::quiet_NaN() : 1.0f; };
    REQUIRE_THROWS_WITH(cpu::quantize_int8(2, 8, nan, 0, "experts.w1"),
                        Catch::Contains("experts.w1") && Catch::Contains("[1, 5]"));
}

TEST_CASE("int8 activations: per-token scales, the 128 offset of the VNNI kernel, NaN rows", "[int8]") {
    const index_t M = 3, K = 70;
    auto x = randn(std::size_t(M * K), 5, 3.0f);
    x[std::size_t(K + 9)] = std::numeric_limits<float>::quiet_NaN();
    const index_t ld = cpu::int8_row_bytes(K);
    REQUIRE(ld == 128);
    std::vector<std::uint8_t> a(std::size_t(M * ld)), b(std::size_t(M * ld));
    std::vector<float> sa(M), sb(M);
    cpu::quantize_rows_int8<cpu::Int8ScalarKernel>(ConstMatrixRef<float>(x.data(), M, K), a.data(), sa.data());
    cpu::quantize_rows_int8<cpu::Int8VnniKernel>(ConstMatrixRef<float>(x.data(), M, K), b.data(), sb.data());
    const Ref r0 = quantize_ref(std::vector<float>(x.begin(), x.begin() + K), 1, K, 0);
    REQUIRE(sa[0] == r0.s[0]);
    for (index_t k = 0; k < ld; ++k) {
        const int want = k < K ? r0.q[std::size_t(k)] : 0;
        REQUIRE(static_cast<std::int8_t>(a[std::size_t(k)]) == want);
        REQUIRE(int(b[std::size_t(k)]) == want + 128);
    }
    REQUIRE(std::isnan(sa[1]));
    REQUIRE(std::isnan(sb[1]));
    REQUIRE(std::isfinite(sa[2]));
}

TEST_CASE("int8 activations: every row length, ties to even, zero, NaN and infinity anywhere", "[int8]") {
    // Rows: 2 random; ties (max |x| = 127, so x * 127 / max = x: +-(j + 0.5) round to the even
    // neighbour); all zero; NaN in the last column (the vector paths' masked tail); +infinity
    // first; -infinity last; a tiny but normal scale.
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    for (index_t K : {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 70, 130, 257}) {
        INFO("K " << K);
        const index_t M = 8, ld = cpu::int8_row_bytes(K);
        auto x = randn(std::size_t(M * K), unsigned(K), 3.0f);
        for (index_t k = 0; k < K; ++k) {
            const float t = float(k % 127) + 0.5f;
            x[std::size_t(2 * K + k)] = k == 0 ? 127.0f : (k % 2 ? t : -t);
            x[std::size_t(3 * K + k)] = 0.0f;
            x[std::size_t(7 * K + k)] *= 1e-30f;
        }
        x[std::size_t(4 * K + K - 1)] = nan;
        x[std::size_t(5 * K)] = inf;
        x[std::size_t(6 * K + K - 1)] = -inf;
        std::vector<std::uint8_t> a(std::size_t(M * ld), 0xAB), b(std::size_t(M * ld), 0xAB);
        std::vector<float> sa(M), sb(M);
        cpu::quantize_rows_int8<cpu::Int8ScalarKernel>(ConstMatrixRef<float>(x.data(), M, K), a.data(), sa.data());
        cpu::quantize_rows_int8<cpu::Int8VnniKernel>(ConstMatrixRef<float>(x.data(), M, K), b.data(), sb.data());
        for (index_t m = 0; m < M; ++m) {
            INFO("row " << m);
            const bool bad = m >= 4 && m <= 6;
            if (bad) {
                REQUIRE(std::isnan(sa[std::size_t(m)]));
                REQUIRE(std::isnan(sb[std::size_t(m)]));
            }
            const Ref r = bad ? Ref{std::vector<std::int8_t>(std::size_t(K), 0), {}}
                              : quantize_ref(std::vector<float>(x.begin() + m * K, x.begin() + (m + 1) * K), 1, K, 0);
            if (!bad) {
                REQUIRE(sa[std::size_t(m)] == r.s[0]);
                REQUIRE(sb[std::size_t(m)] == r.s[0]);
            }
            for (index_t k = 0; k < ld; ++k) {
                const int want = k < K ? r.q[std::size_t(k)] : 0;
                REQUIRE(static_cast<std::int8_t>(a[std::size_t(m * ld + k)]) == want);
                REQUIRE(int(b[std::size_t(m * ld + k)]) == want + 128);
            }
            if (m == 2)  // ties to even: 1.5 -> 2, -2.5 -> -2, 3.5 -> 4
                for (index_t k = 1; k < std::min<index_t>(K, 4); ++k)
                    REQUIRE(static_cast<std::int8_t>(a[std::size_t(m * ld + k)]) == (k == 1 ? 2 : k == 2 ? -2 : 4));
        }
    }
}

TEST_CASE("int8 GEMM: every kernel of this build against the integer model", "[int8]") {
    check_kernel_shapes<cpu::Int8ScalarKernel>();
    if constexpr (cpu::kHasInt8Avx2) check_kernel_shapes<cpu::Int8Avx2Kernel>();
    if constexpr (cpu::kHasInt8Vnni) check_kernel_shapes<cpu::Int8VnniKernel>();
    // The default kernel at a K that needs int32 headroom (127 * 127 * 4096 ~ 2^26).
    check_kernel<cpu::DefaultInt8Kernel>(5, 8, 4096, 0, 99);
}

TEST_CASE("Linear<int8_dot>: threads, apply = forward, bias and accumulate, NaN rows", "[int8]") {
    const index_t E = 2, N = 600, K = 200, M = 9;
    const auto f = cpu::Linear<float>::random(E, N, K, true, 7);
    const auto q = cpu::Linear<int8_dot>::converted(f);
    REQUIRE(q.count() == E);
    REQUIRE(q.int8_group() == K);
    REQUIRE(q.layout() == WeightLayout::out_in);
    auto x = randn(std::size_t(M * K), 8);
    x[std::size_t(3 * K + 4)] = std::numeric_limits<float>::infinity();
    const ConstMatrixRef<float> xm(x.data(), M, K);
    // The model on the same quantised weights (q.int8_weight(1)), bias added after.
    const cpu::Int8Matrix w1 = q.int8_weight(1);
    Ref wr{std::vector<std::int8_t>(w1.q, w1.q + N * K), std::vector<float>(w1.scale, w1.scale + N)};
    std::vector<float> b1(std::size_t(M * N)), b2(std::size_t(M * N));
    for (index_t m = 0; m < M; ++m)
        for (index_t n = 0; n < N; ++n) {
            b1[std::size_t(m * N + n)] = f.bias(1)[n];
            b2[std::size_t(m * N + n)] = 1.0f + f.bias(1)[n];
        }
    const Ref xr = quantize_ref(x, M, K, 0);
    const auto want = dot_model(xr, wr, M, N, K, 0, b1), want2 = dot_model(xr, wr, M, N, K, 0, b2);
    std::vector<float> y(std::size_t(M * N)), y2(std::size_t(M * N), 1.0f);
    cpu::GemmWorkspace ws;
    q.apply(1, xm, MatrixRef<float>(y.data(), M, N), ws);
    q.apply(1, xm, MatrixRef<float>(y2.data(), M, N), ws, true);
    for (index_t m = 0; m < M; ++m)
        for (index_t n = 0; n < N; ++n) {
            const std::size_t i = std::size_t(m * N + n);
            if (m == 3) {
                REQUIRE(std::isnan(y[i]));
                continue;
            }
            REQUIRE(y[i] == want[i]);
            REQUIRE(y2[i] == want2[i]);
        }
    // forward (matrix 0) on one thread and on two: the same bits as apply.
    const auto q0 = q.select(std::vector<index_t>{0});
    std::vector<float> a(std::size_t(M * N)), b(std::size_t(M * N)), c(std::size_t(M * N));
    q0.apply(0, xm, MatrixRef<float>(a.data(), M, N), ws);
    q0.forward(xm, MatrixRef<float>(b.data(), M, N), Exec::serial());
    q0.forward(xm, MatrixRef<float>(c.data(), M, N), Exec(2));
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i])) {
            REQUIRE(std::isnan(b[i]));
            REQUIRE(std::isnan(c[i]));
            continue;
        }
        REQUIRE(a[i] == b[i]);
        REQUIRE(a[i] == c[i]);
    }
}

TEST_CASE("Linear<int8_dot_packed>: packed once, the same bits as int8_dot at every row count", "[int8]") {
    // Panels of 32 outputs: N = 450 is 14 full panels and 2 outputs; K = 130 is not a multiple of
    // 4 or 64. Threads split the outputs in chunks of 192 (6 panels).
    const index_t E = 2, N = 450, K = 130;
    const auto f = cpu::Linear<float>::random(E, N, K, true, 21);
    const auto q = cpu::Linear<int8_dot>::converted(f);
    const auto p = cpu::Linear<int8_dot_packed>::converted(f);
    CHECK(std::string(policy_name<int8_dot_packed>()) == "int8-dot-packed");
    // Packed on AVX-512 VNNI builds (about the int8 bytes), nothing elsewhere; the int8 weights
    // stay the same either way.
    CHECK(p.packed() == cpu::kInt8Packs);
    if (cpu::kInt8Packs) {
        CHECK(p.packed_bytes() >= std::size_t(E * N * K));
        CHECK(p.packed_bytes() < std::size_t(E * (N + 32) * (K + 4) + E * (N + 32) * 4 + 64));
    }
    CHECK(!q.packed());
    for (index_t e = 0; e < E; ++e)
        CHECK(std::memcmp(p.int8_weight(e).q, q.int8_weight(e).q, std::size_t(N * K)) == 0);
    cpu::GemmWorkspace ws;
    for (index_t M : {1, 2, 3, 4, 5, 8, 9, 17, 40}) {
        INFO("M " << M);
        auto x = randn(std::size_t(M * K), unsigned(30 + M), 1.5f);
        if (M > 3) x[std::size_t(2 * K + 7)] = std::numeric_limits<float>::quiet_NaN();
        const ConstMatrixRef<float> xm(x.data(), M, K);
        for (index_t e = 0; e < E; ++e) {
            std::vector<float> a(std::size_t(M * N), 0.5f), b(std::size_t(M * N), 0.5f);
            q.apply(e, xm, MatrixRef<float>(a.data(), M, N), ws, true);
            p.apply(e, xm, MatrixRef<float>(b.data(), M, N), ws, true);
            REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
        }
        // forward on one and two threads, and a selected copy (which shares the panels)
        const auto p1 = p.select(std::vector<index_t>{1});
        CHECK(p1.packed() == cpu::kInt8Packs);
        std::vector<float> a(std::size_t(M * N)), b(std::size_t(M * N)), c(std::size_t(M * N));
        q.select(std::vector<index_t>{1}).forward(xm, MatrixRef<float>(a.data(), M, N), Exec::serial());
        p1.forward(xm, MatrixRef<float>(b.data(), M, N), Exec::serial());
        p1.forward(xm, MatrixRef<float>(c.data(), M, N), Exec(2));
        REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
        REQUIRE(std::memcmp(a.data(), c.data(), a.size() * sizeof(float)) == 0);
    }
    // Grouped scales are not packed (the row kernel runs them): still int8_dot's results.
    const cpu::Int8Quantized g =
        cpu::quantize_int8(64, 128, [&](index_t n, index_t k) { return 0.01f * float((n * 7 + k * 3) % 23 - 11); }, 32, "g");
    const TensorView gq = g.q.view(), gs = g.scale.view();
    const auto gp = cpu::Linear<int8_dot_packed>::from_int8_list(std::span(&gq, 1), std::span(&gs, 1), {}, nullptr, "g");
    const auto gd = cpu::Linear<int8_dot>::from_int8_list(std::span(&gq, 1), std::span(&gs, 1), {}, nullptr, "g");
    CHECK(!gp.packed());
    const auto xg = randn(std::size_t(6 * 128), 50);
    std::vector<float> ya(6 * 64), yb(6 * 64);
    gd.apply(0, ConstMatrixRef<float>(xg.data(), 6, 128), MatrixRef<float>(ya.data(), 6, 64), ws);
    gp.apply(0, ConstMatrixRef<float>(xg.data(), 6, 128), MatrixRef<float>(yb.data(), 6, 64), ws);
    CHECK(std::memcmp(ya.data(), yb.data(), ya.size() * sizeof(float)) == 0);
}

TEST_CASE("Linear<int8_weight_only> is the fp32 Linear of the dequantised weights", "[int8]") {
    const index_t N = 150, K = 96, M = 6;
    const auto f = cpu::Linear<float>::random(1, N, K, true, 11);
    const auto q = cpu::Linear<int8_weight_only>::converted(f);
    const auto back = cpu::Linear<float>::converted(q);  // dequantised: s * float(q)
    REQUIRE(back.layout() == WeightLayout::out_in);
    const cpu::Int8Matrix w = q.int8_weight();
    for (index_t n = 0; n < N; ++n)
        for (index_t k = 0; k < K; ++k) REQUIRE(back.weight()(n, k) == w.scale[n] * float(w.q[n * K + k]));
    const auto x = randn(std::size_t(M * K), 12);
    std::vector<float> a(std::size_t(M * N)), b(std::size_t(M * N)), c(std::size_t(M * N));
    back.forward(ConstMatrixRef<float>(x.data(), M, K), MatrixRef<float>(a.data(), M, N));
    q.forward(ConstMatrixRef<float>(x.data(), M, K), MatrixRef<float>(b.data(), M, N));
    q.forward(ConstMatrixRef<float>(x.data(), M, K), MatrixRef<float>(c.data(), M, N), Exec(2));
    // Bit for bit where the fp32 engine sums each output in the same order whatever the block of
    // outputs (the packed engine); Eigen's (scalar builds) may block 64 outputs otherwise.
    for (std::size_t i = 0; i < a.size(); ++i) {
        if constexpr (cpu::kHasSimd) {
            REQUIRE(a[i] == b[i]);
            REQUIRE(a[i] == c[i]);
        } else {
            REQUIRE(a[i] == Approx(b[i]).epsilon(1e-5).margin(1e-6));
            REQUIRE(a[i] == Approx(c[i]).epsilon(1e-5).margin(1e-6));
        }
    }
}

TEST_CASE("Linear from int8 views: borrowed, [in, out] sources quantised as [out, in], clear errors", "[int8]") {
    const index_t N = 64, K = 64;
    const auto v = randn(std::size_t(N * K), 13, 0.02f);
    // The same matrix stored [in, out] (MindSpore) and [out, in]: one quantisation.
    const auto t = moe_test::transposed(v, N, K);
    const auto fo = cpu::Linear<float>::from_values(N, K, v);
    const auto fi = cpu::Linear<float>(Tensor::from<float>({K, N}, t), Tensor(), "w", WeightLayout::in_out);
    const auto qo = cpu::Linear<int8_dot>::converted(fo), qi = cpu::Linear<int8_dot>::converted(fi);
    for (index_t i = 0; i < N * K; ++i) REQUIRE(qo.int8_weight().q[i] == qi.int8_weight().q[i]);
    // Grouped int8 tensors, borrowed where they lie.
    const auto g = cpu::quantize_int8(N, K, [&](index_t n, index_t k) { return v[std::size_t(n * K + k)]; }, 32, "w");
    const TensorView qv = g.q.view(), sv = g.scale.view();
    const auto l = cpu::Linear<int8_dot>::from_int8_list(std::span(&qv, 1), std::span(&sv, 1), {}, nullptr, "w");
    REQUIRE(l.int8_weight().q == g.q.data<std::int8_t>());
    REQUIRE(l.int8_weight().scale == g.scale.data<float>());
    REQUIRE(l.int8_group() == 32);
    REQUIRE(l.scale_view().shape() == Shape{N, 2});
    // Errors name the tensor.
    const Tensor bad_scale(DType::f32, Shape{N, 3});
    const TensorView bs = bad_scale.view();
    REQUIRE_THROWS_WITH(cpu::Linear<int8_dot>::from_int8_list(std::span(&qv, 1), std::span(&bs, 1), {}, nullptr, "x.w"),
                        Catch::Contains("x.w[0]") && Catch::Contains("[64, 3]"));
    const Tensor f32(DType::f32, Shape{N, K});
    const TensorView fv = f32.view();
    REQUIRE_THROWS_AS(cpu::Linear<int8_dot>::from_int8_list(std::span(&fv, 1), std::span(&sv, 1), {}, nullptr, "x.w"),
                      DTypeError);
    const Tensor sf16(DType::f16, Shape{N});
    const TensorView s16 = sf16.view();
    REQUIRE_THROWS_AS(cpu::Linear<int8_dot>::from_int8_list(std::span(&qv, 1), std::span(&s16, 1), {}, nullptr, "x.w"),
                      DTypeError);
}

TEST_CASE("int8 checkpoints: the quantiser writes the convention, loaders borrow what it wrote", "[int8][io]") {
    // A Hugging Face-style expert list ([out, in]) and a MindSpore-style stack [E, in, out].
    const index_t E = 3, d = 64, F = 96;
    const auto w1 = randn(std::size_t(E * F * d), 21, 0.02f), w2 = randn(std::size_t(E * d * F), 22, 0.02f);
    const auto b1 = randn(std::size_t(F), 23, 0.1f);
    io::SafetensorsWriter src;
    for (index_t e = 0; e < E; ++e)
        src.add("experts." + std::to_string(e) + ".w1.weight",
                Tensor::from<float>({F, d}, std::span(w1).subspan(std::size_t(e * F * d), std::size_t(F * d))).view());
    src.add("experts.0.w1.bias", Tensor::from<float>({F}, b1).view());
    src.add("stack.weight", Tensor::from<float>({E, F, d}, w2).view());  // [E, in = F, out = d]
    src.add("norm.weight", Tensor::from<float>({d}, std::span(b1).first(std::size_t(d))).view());
    src.add_metadata("origin", "test");
    TempPath fin("moe_int8_in_"), fout("moe_int8_out_"), fgrp("moe_int8_grp_");
    src.write(fin.path);
    const auto in = io::SafetensorsFile::open(fin.path);

    io::QuantizeOptions opt;
    opt.in_out = [](const std::string& n) { return n == "stack.weight"; };
    const io::QuantizeReport rep = io::quantize_checkpoint(in, fout.path, opt);
    REQUIRE(rep.quantized == 4);  // three experts and the stack; not the bias or the small norm
    REQUIRE(rep.kept == 2);
    const auto q = io::SafetensorsFile::open(fout.path);
    REQUIRE(q.metadata().at("origin") == "test");
    REQUIRE(q.metadata().at("moe.quantization") == "int8");
    REQUIRE(q.get("experts.1.w1.weight").dtype() == DType::i8);
    REQUIRE(q.get("experts.1.w1.weight_scale").shape() == Shape{F});
    REQUIRE(q.get("stack.weight").shape() == Shape{E, d, F});  // written [E, out, in]
    REQUIRE(q.get("stack.weight_scale").shape() == Shape{E, d});
    REQUIRE(q.get("norm.weight").dtype() == DType::f32);

    // Loading the int8 file borrows it; the float file quantised at load gives the same bits.
    const std::vector<std::string> names{"experts.0.w1.weight", "experts.1.w1.weight", "experts.2.w1.weight"};
    const auto a = io::load_linears<int8_dot>(q, names, {}, F, d, WeightLayout::out_in, "experts");
    const auto b = io::load_linears<int8_dot>(in, names, {}, F, d, WeightLayout::out_in, "experts");
    REQUIRE(a.int8_weight(2).q == q.get("experts.2.w1.weight").data<std::int8_t>());  // in place
    for (index_t e = 0; e < E; ++e)
        for (index_t i = 0; i < F * d; ++i) REQUIRE(a.int8_weight(e).q[i] == b.int8_weight(e).q[i]);
    const auto sa = io::load_stacked_linear<int8_dot>(q, "stack.weight", E, d, F, nullptr, WeightLayout::in_out);
    const auto sb = io::load_stacked_linear<int8_dot>(in, "stack.weight", E, d, F, nullptr, WeightLayout::in_out);
    const auto x = randn(std::size_t(5 * F), 24);
    std::vector<float> ya(std::size_t(5 * d)), yb(std::size_t(5 * d));
    cpu::GemmWorkspace ws;
    for (index_t e = 0; e < E; ++e) {
        sa.apply(e, ConstMatrixRef<float>(x.data(), 5, F), MatrixRef<float>(ya.data(), 5, d), ws);
        sb.apply(e, ConstMatrixRef<float>(x.data(), 5, F), MatrixRef<float>(yb.data(), 5, d), ws);
        REQUIRE(ya == yb);
    }
    // A float policy dequantises the int8 file once: s * q.
    const auto f = io::load_stacked_linear<float>(q, "stack.weight", E, d, F, nullptr, WeightLayout::in_out);
    for (index_t n = 0; n < d; ++n)
        for (index_t k = 0; k < F; ++k) REQUIRE(f.weight(1)(n, k) == sa.int8_weight(1).value(n, k));

    // Groups of 32: scales [.., out, in / 32]; a group that does not divide is refused.
    opt.group = 32;
    io::quantize_checkpoint(in, fgrp.path, opt);
    const auto g = io::SafetensorsFile::open(fgrp.path);
    REQUIRE(g.get("stack.weight_scale").shape() == Shape{E, d, F / 32});
    REQUIRE(g.metadata().at("moe.int8.group") == "32");
    const auto gl = io::load_stacked_linear<int8_dot>(g, "stack.weight", E, d, F, nullptr, WeightLayout::in_out);
    REQUIRE(gl.int8_group() == 32);
    opt.group = 64;  // 96 inputs
    REQUIRE_THROWS_WITH(io::quantize_checkpoint(in, fgrp.path, opt), Catch::Contains("stack.weight"));
    // A missing scale tensor is named.
    io::SafetensorsWriter broken;
    broken.add("w", Tensor(DType::i8, Shape{4, 32}).view());
    TempPath fb("moe_int8_broken_");
    broken.write(fb.path);
    const auto bf = io::SafetensorsFile::open(fb.path);
    const std::vector<std::string> wn{"w"};
    REQUIRE_THROWS_WITH(io::load_linears<int8_dot>(bf, wn, {}, 4, 32, WeightLayout::out_in, "w"),
                        Catch::Contains("w_scale"));
}

}  // namespace moe_test_int8
