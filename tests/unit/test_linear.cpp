// cpu::Linear, the one weight holder: borrow or convert, both layouts, stacks, selections and
// the threaded forward, each against a double-precision product written here from y = x W^T + b.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe/moe.hpp"
#include "random_inputs.hpp"
#include "vision/vision.hpp"

namespace moe_test_linear {  // this file's names (unity builds merge test files)

using namespace moe;

namespace {

using moe_test::randn;
using moe_test::transposed;

// y [M, N] = x [M, K] w^T + b in double, w given [N, K] row-major.
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                              index_t M, index_t N, index_t K) {
    std::vector<double> y(static_cast<std::size_t>(M * N));
    for (index_t m = 0; m < M; ++m)
        for (index_t n = 0; n < N; ++n) {
            double s = b.empty() ? 0.0 : b[static_cast<std::size_t>(n)];
            for (index_t k = 0; k < K; ++k)
                s += double(x[static_cast<std::size_t>(m * K + k)]) * double(w[static_cast<std::size_t>(n * K + k)]);
            y[static_cast<std::size_t>(m * N + n)] = s;
        }
    return y;
}


}  // namespace

TEST_CASE("cpu::Linear reads a weight of its dtype in place and converts others once", "[linear]") {
    const index_t N = 6, K = 5;
    const auto w = randn(static_cast<std::size_t>(N * K), 1), b = randn(static_cast<std::size_t>(N), 2);
    auto tw = std::make_shared<Tensor>(Tensor::from<float>({N, K}, w));
    const Tensor tb = Tensor::from<float>({N}, b);
    const TensorView bv = tb.view();

    const cpu::Linear<float> in_place(tw->view(), &bv, tw, "w");
    CHECK(in_place.weight().data == std::as_const(*tw).data<float>());
    CHECK(in_place.bias() == tb.data<float>());
    CHECK(in_place.count() == 1);
    CHECK(in_place.parameters() == N * K + N);

    // A borrowed Tensor moved in stays borrowed: no copy.
    const cpu::Linear<float> borrowed(Tensor::borrow(tw->view(), tw), Tensor(), "w");
    CHECK(borrowed.weight().data == std::as_const(*tw).data<float>());
    CHECK_FALSE(borrowed.has_bias());

    // bf16 holder of an f32 weight: converted once (round to nearest even), the source untouched.
    const cpu::Linear<bf16> conv(tw->view(), &bv, tw, "w");
    CHECK(static_cast<const void*>(conv.weight().data) != static_cast<const void*>(std::as_const(*tw).data<float>()));
    for (index_t n = 0; n < N; ++n)
        for (index_t k = 0; k < K; ++k)
            CHECK(to_float(conv.weight()(n, k)) == to_float(from_float<bf16>(w[static_cast<std::size_t>(n * K + k)])));
    CHECK(conv.bias() == tb.data<float>());  // the fp32 bias stays in place

    // The views give the stored matrices back.
    CHECK(in_place.weight_view().shape() == Shape{N, K});
    CHECK(in_place.bias_view().raw() == tb.data<float>());
    CHECK(borrowed.bias_view().empty());

    CHECK_THROWS_AS(cpu::Linear<float>(Tensor::from<float>({N * K}, w), Tensor(), "w"), ShapeError);
    CHECK_THROWS_AS(cpu::Linear<float>(Tensor::from<float>({N, K}, w), Tensor::from<float>({N - 1}, {b.data(), 5}), "w"),
                    ShapeError);
    const Tensor ints(DType::i32, Shape{N, K});
    CHECK_THROWS_AS(cpu::Linear<float>(ints.view(), nullptr, nullptr, "w"), DTypeError);
}

TEST_CASE("cpu::Linear: both layouts, stacks and selections compute x W^T + b", "[linear]") {
    const index_t E = 3, N = 7, K = 9, M = 5;
    std::vector<std::vector<float>> wts, bs;
    std::vector<float> stacked_oi, stacked_io, bias_all;
    for (index_t e = 0; e < E; ++e) {
        wts.push_back(randn(static_cast<std::size_t>(N * K), 10u + unsigned(e)));
        bs.push_back(randn(static_cast<std::size_t>(N), 20u + unsigned(e)));
        stacked_oi.insert(stacked_oi.end(), wts.back().begin(), wts.back().end());
        const auto t = transposed(wts.back(), N, K);
        stacked_io.insert(stacked_io.end(), t.begin(), t.end());
        bias_all.insert(bias_all.end(), bs.back().begin(), bs.back().end());
    }
    auto toi = std::make_shared<Tensor>(Tensor::from<float>({E, N, K}, stacked_oi));
    auto tio = std::make_shared<Tensor>(Tensor::from<float>({E, K, N}, stacked_io));
    auto tb = std::make_shared<Tensor>(Tensor::from<float>({E, N}, bias_all));
    const TensorView bv = tb->view();
    const auto oi = cpu::Linear<float>::from_stacked(toi->view(), &bv, toi, "oi");
    const auto io = cpu::Linear<float>::from_stacked(tio->view(), &bv, tio, "io", WeightLayout::in_out);
    REQUIRE(oi.count() == E);
    REQUIRE(io.layout() == WeightLayout::in_out);
    REQUIRE((io.out_features() == N && io.in_features() == K));

    const auto x = randn(static_cast<std::size_t>(M * K), 30);
    cpu::GemmWorkspace ws;
    for (index_t e = 0; e < E; ++e) {
        const auto ref = reference(x, wts[static_cast<std::size_t>(e)], bs[static_cast<std::size_t>(e)], M, N, K);
        std::vector<float> y1(static_cast<std::size_t>(M * N)), y2(y1.size());
        oi.apply(e, {x.data(), M, K}, {y1.data(), M, N}, ws);
        io.apply(e, {x.data(), M, K}, {y2.data(), M, N}, ws);
        for (std::size_t i = 0; i < y1.size(); ++i) REQUIRE(y1[i] == Approx(ref[i]).margin(1e-4));
        CHECK(y1 == y2);  // the packed kernel reads either layout in the same order (M > 4)
    }
    std::vector<float> yb(static_cast<std::size_t>(M * N));  // a matrix the stack does not hold
    CHECK_THROWS_AS(oi.apply(E, {x.data(), M, K}, {yb.data(), M, N}, ws), ShapeError);
    CHECK_THROWS_AS(oi.apply(-1, {x.data(), M, K}, {yb.data(), M, N}, Exec(2)), ShapeError);

    // select keeps (shares) the matrices listed; select_outputs keeps one matrix's output rows.
    const index_t keep[2] = {2, 0};
    const auto sel = io.select(keep);
    REQUIRE(sel.count() == 2);
    CHECK(sel.weight(0).data == io.weight(2).data);
    CHECK(sel.bias(1) == io.bias(0));
    CHECK_THROWS_AS(io.select(std::vector<index_t>{E}), ConfigError);

    const index_t rows[3] = {6, 1, 3};
    for (const auto* l : {&oi, &io}) {
        const auto one = l->select(std::vector<index_t>{1}).select_outputs(rows);
        REQUIRE((one.out_features() == 3 && one.in_features() == K && one.layout() == l->layout()));
        std::vector<float> y(static_cast<std::size_t>(M * 3));
        one.apply(0, {x.data(), M, K}, {y.data(), M, 3}, ws);
        const auto ref = reference(x, wts[1], bs[1], M, N, K);
        for (index_t m = 0; m < M; ++m)
            for (index_t j = 0; j < 3; ++j)
                REQUIRE(y[static_cast<std::size_t>(m * 3 + j)] ==
                        Approx(ref[static_cast<std::size_t>(m * N + rows[j])]).margin(1e-4));
    }
    CHECK_THROWS_AS(oi.select_outputs(rows), ConfigError);  // three matrices: whose rows?
}

TEST_CASE("cpu::Linear::forward: threads split the output columns, bit for bit", "[linear][threads]") {
    const index_t N = 3 * cpu::Linear<bf16>::kChunk + 40, K = 64, M = 37;
    auto l = cpu::Linear<bf16>::random(1, N, K, true, 5);
    const auto x = randn(static_cast<std::size_t>(M * K), 6);
    std::vector<float> y1(static_cast<std::size_t>(M * N)), y2(y1.size(), 2.0f), y3(y1.size(), 2.0f);
    l.forward({x.data(), M, K}, {y1.data(), M, N}, Exec(1));
    l.forward({x.data(), M, K}, {y2.data(), M, N}, Exec(3));
    CHECK(y1 == y2);
    l.forward({x.data(), M, K}, {y3.data(), M, N}, Exec(2), /*accumulate=*/true);
    for (std::size_t i = 0; i < y1.size(); ++i) REQUIRE(y3[i] == Approx(y1[i] + 2.0f).margin(1e-5));
    // Against the definition, on the bf16 values the Linear holds.
    std::vector<float> w(static_cast<std::size_t>(N * K)), b(l.bias(), l.bias() + N);
    for (index_t n = 0; n < N; ++n)
        for (index_t k = 0; k < K; ++k) w[static_cast<std::size_t>(n * K + k)] = to_float(l.weight()(n, k));
    const auto ref = reference(x, w, b, M, N, K);
    for (std::size_t i = 0; i < y1.size(); ++i) REQUIRE(y1[i] == Approx(ref[i]).margin(1e-4));
    CHECK_THROWS_AS(l.forward({x.data(), M, K - 1}, {y1.data(), M, N}), ShapeError);
}

// Decoding (1 .. kSmallMRows rows) cuts the columns into even shares that start where kChunk's
// never do (320, 640 for 900 columns on 3 threads), taken in pieces of ~kSharePieceBytes that
// threads done with their own share take from the others' (moe::parallel_shares): the same bits as
// one thread for every weight policy and both layouts, and the product itself against the
// definition.
TEMPLATE_TEST_CASE("cpu::Linear::forward: few rows split in even shares, bit for bit", "[linear][threads]", float, bf16,
                   f16, bf16_dot, bf16_dot_packed, int8_dot, int8_dot_packed, int8_weight_only) {
    using L = cpu::Linear<TestType>;
    const index_t N = 900, K = 1024;  // N * K above kSmallParallel: threaded even for one row
    REQUIRE(N * K >= L::kSmallParallel);
    // Pieces smaller than a share at 2 and 3 threads (cut inside a share) for every weight size.
    REQUIRE(L::kSharePieceBytes / (K * static_cast<index_t>(sizeof(typename L::weight_type))) < 320);
    const auto w = randn(static_cast<std::size_t>(N * K), 31), b = randn(static_cast<std::size_t>(N), 32);
    auto to = std::make_shared<Tensor>(Tensor::from<float>({1, N, K}, w));
    auto ti = std::make_shared<Tensor>(Tensor::from<float>({1, K, N}, transposed(w, N, K)));
    const Tensor tb = Tensor::from<float>({1, N}, b);
    const TensorView bv = tb.view();
    const auto oi = cpu::Linear<float>::from_stacked(to->view(), &bv, to, "oi", WeightLayout::out_in);
    const auto io = cpu::Linear<float>::from_stacked(ti->view(), &bv, ti, "io", WeightLayout::in_out);
    for (const auto* src : {&oi, &io}) {
        const L l = L::converted(*src);  // PackOnce policies pack here
        for (index_t M = 1; M <= cpu::kSmallMRows; ++M) {
            const auto x = randn(static_cast<std::size_t>(M * K), static_cast<std::uint64_t>(40 + M));
            std::vector<float> y1(static_cast<std::size_t>(M * N)), y2(y1.size(), 7.0f), y3(y1.size(), 7.0f);
            l.forward({x.data(), M, K}, {y1.data(), M, N}, Exec(1));
            l.forward({x.data(), M, K}, {y2.data(), M, N}, Exec(2));
            l.forward({x.data(), M, K}, {y3.data(), M, N}, Exec(3));
            INFO("rows " << M << ", layout " << (src == &oi ? "out_in" : "in_out"));
            REQUIRE(y1 == y2);
            REQUIRE(y1 == y3);
            // Against the fp32 definition, within the rounding each policy makes: 16-bit values
            // (weights, and bf16_dot's activations) are within 2^-9 of their value, so a product
            // is within 2^-8 of x_k w_k; int8 values within half a step (max |row| / 127) / 2.
            const auto ref = reference(x, w, b, M, N, K);
            constexpr bool i8 = std::is_same_v<storage_t<TestType>, std::int8_t>;
            constexpr bool act8 = std::is_same_v<math_t<TestType>, Int8DotMath>;
            for (index_t m = 0; m < M; ++m) {
                const float* xr = x.data() + m * K;
                double xmax = 0, xabs = 0;
                for (index_t k = 0; k < K; ++k) xmax = std::max(xmax, double(std::fabs(xr[k])));
                for (index_t k = 0; k < K; ++k) xabs += std::fabs(xr[k]);
                for (index_t n = 0; n < N; ++n) {
                    const float* wr = w.data() + n * K;
                    double wmax = 0, wabs = 0, prod = 0;
                    for (index_t k = 0; k < K; ++k) wmax = std::max(wmax, double(std::fabs(wr[k])));
                    for (index_t k = 0; k < K; ++k) wabs += std::fabs(wr[k]);
                    for (index_t k = 0; k < K; ++k) prod += std::fabs(double(xr[k]) * wr[k]);
                    double tol = 1e-4 + (std::is_same_v<TestType, float> ? 1e-6 * prod : std::ldexp(prod, -8));
                    if (i8) tol = 1e-4 + xabs * wmax / 254 + (act8 ? wabs * xmax / 254 * 1.01 : 0.0);
                    const std::size_t i = static_cast<std::size_t>(m * N + n);
                    REQUIRE(std::fabs(y1[i] - ref[i]) <= tol);
                }
            }
        }
    }
}

TEST_CASE("Gate, LinearStack, vision::Linear and vision::Mlp are the one Linear and the one dense FFN", "[linear]") {
    STATIC_REQUIRE(std::is_same_v<LinearStack<bf16>, cpu::Linear<bf16>>);
    STATIC_REQUIRE(std::is_same_v<vision::Linear<f16>, cpu::Linear<f16>>);
    STATIC_REQUIRE(std::is_same_v<vision::Mlp<GeluTanh, bf16>, DenseFfn<GeluTanh, bf16>>);
    const auto g = Gate::random(4, 8, 7);
    const auto l = cpu::Linear<float>::random(1, 4, 8, false, 7);  // the same draws
    for (index_t e = 0; e < 4; ++e)
        for (index_t i = 0; i < 8; ++i) CHECK(g.weight()(e, i) == l.weight()(e, i));
    CHECK(g.linear().out_features() == 4);
    CHECK(g.select(std::vector<index_t>{3, 1}).weight()(0, 5) == g.weight()(3, 5));
}

}  // namespace moe_test_linear
