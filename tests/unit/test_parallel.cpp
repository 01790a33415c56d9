// Unit tests of the execution layer (include/moe/core/parallel.hpp) and of the kernels built on
// it: chunks cover [0, n) exactly once at the documented bounds, an exception thrown on any
// thread reaches the caller as that exception (the vision Linear's fused epilogue region and
// grouped expert execution included), and results are bit-identical for 1, 2 and 3 threads
// (a floating-point reduction, the routing kernel, the column-split GEMM, grouped experts in a
// MoELayer, a ViT block).
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/backend/cpu/routing.hpp"
#include "moe/core/parallel.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/router/topk.hpp"
#include "vision/vision.hpp"
#include "random_inputs.hpp"

namespace moe_test_test_parallel {  // this file's names (unity builds merge test files)

using namespace moe;
namespace vis = moe::vision;

namespace {

/// The exception the tests throw from inside parallel regions.
struct Boom : std::runtime_error {
    explicit Boom(const std::string& what) : std::runtime_error(what) {}
};

using moe_test::randn;

Tensor tensor(Shape s, std::uint32_t seed, float scale = 1.0f) {
    Tensor t(DType::f32, s);
    const auto v = randn(static_cast<std::size_t>(t.numel()), seed, scale);
    std::memcpy(t.raw(), v.data(), v.size() * sizeof(float));
    return t;
}

// An activation that always throws (to test the regions it runs in).
struct ThrowingActivation {
    static constexpr const char* name = "throwing";
    static float scalar(float) { throw Boom("activation"); }
    static void apply(float*, index_t) { throw Boom("activation"); }
};

bool same_bits(const float* a, const float* b, std::size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }

// Experts that compute 2x + e, except expert `bad`, which throws Boom naming itself.
struct ThrowingExperts {
    index_t E = 4, d = 8, bad = 2;
    GroupedWorkspace ws;
    index_t num_experts() const { return E; }
    index_t hidden_size() const { return d; }
    index_t parameters() const { return 0; }
    void expert_forward(index_t e, ConstMatrixRef<float> x, MatrixRef<float> y, ExpertScratch&) const {
        if (e == bad) throw Boom("expert " + std::to_string(e));
        for (index_t r = 0; r < x.rows; ++r)
            for (index_t c = 0; c < d; ++c) y(r, c) = 2 * x(r, c) + static_cast<float>(e);
    }
    void forward(ConstMatrixRef<float> x, const RoutingPlan& plan, MatrixRef<float> out, Combine combine,
                 const Exec& ex = Exec{}) {
        grouped_forward(*this, x, plan, out, combine, ws, ex);
    }
};
static_assert(ThreadedExpertSet<ThrowingExperts>);

}  // namespace

TEST_CASE("parallel: Exec holds a thread count of at least 1", "[parallel]") {
    CHECK(Exec{}.threads() == std::max(1, max_threads()));
    CHECK(Exec(3).threads() == 3);
    CHECK(Exec(0).threads() == 1);
    CHECK(Exec(-5).threads() == 1);
    CHECK(Exec::serial() == Exec(1));
    CHECK_FALSE(Exec(2) == Exec(3));
    static_assert(ExecAware<MoELayer<TopKRouter<SoftmaxScores>, MlpExperts<Gelu>>>);
    static_assert(ExecAware<vis::Mlp<Gelu>>);
}

TEST_CASE("parallel: chunks cover 0 .. n-1 exactly once at bounds that depend on n and the grain only", "[parallel]") {
    for (const int threads : {1, 2, 3})
        for (const index_t n : {0, 1, 7, 64, 1000, 1001})
            for (const index_t grain : {1, 3, 64, 1000, 5000}) {
                const Exec ex(threads);
                const index_t chunks = n == 0 ? 0 : (n + grain - 1) / grain;  // ceil(n / grain)
                REQUIRE(chunk_count(n, grain) == chunks);
                const int workers = parallel_workers(ex, n, grain);
#if defined(_OPENMP)
                CHECK(workers == std::max<index_t>(1, std::min<index_t>(threads, chunks)));
#else
                CHECK(workers == 1);
#endif
                std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
                std::vector<std::atomic<int>> seen(static_cast<std::size_t>(chunks));
                std::atomic<int> bad{0};
                parallel_chunks(ex, n, grain, [&](index_t b, index_t e, int w) {
                    const index_t c = b / grain;
                    if (b != c * grain || e != std::min(n, b + grain) || w < 0 || w >= workers) ++bad;
                    ++seen[static_cast<std::size_t>(c)];
                    for (index_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
                });
                INFO("threads " << threads << ", n " << n << ", grain " << grain);
                CHECK(bad == 0);
                for (const auto& h : hits) REQUIRE(h == 1);
                for (const auto& s : seen) REQUIRE(s == 1);

                std::vector<std::atomic<int>> once(static_cast<std::size_t>(n));
                parallel_for(ex, n, [&](index_t i) { ++once[static_cast<std::size_t>(i)]; }, grain);
                for (const auto& h : once) REQUIRE(h == 1);
            }
}

TEST_CASE("parallel: even_share gives one share per thread, cut on the alignment", "[parallel]") {
    STATIC_REQUIRE(cpu::Linear<bf16>::kChunkAlign == 32);
    CHECK(even_share(896, 2, 32) == 448);  // Qwen2-0.5B's q / o / down: two equal halves
    CHECK(even_share(4864, 2, 32) == 2432);
    CHECK(even_share(900, 3, 32) == 320);  // 300 rounded up: [0, 320), [320, 640), [640, 900)
    CHECK(even_share(900, 3, 48) == 336);
    CHECK(even_share(100, 4, 32) == 32);  // never below one aligned block
    CHECK(even_share(896, 0, 32) == 896);  // no threads counts as one
}

TEST_CASE("parallel: shares cover 0 .. n-1 exactly once, in aligned pieces inside one share, the owner's front to back",
          "[parallel]") {
    for (const int threads : {1, 2, 3, 4})
        for (const index_t n : {0, 1, 7, 64, 1000, 1001})
            for (const index_t align : {1, 3, 32})
                for (const index_t piece : {1, 32, 70, 100000}) {
                    INFO("threads " << threads << ", n " << n << ", align " << align << ", piece " << piece);
                    const Exec ex(threads);
                    const index_t share = even_share(n, threads, align);
                    const int workers = parallel_workers(ex, n, share);
                    const index_t most = (std::max(piece, align) + align - 1) / align * align;  // piece rounded up
                    struct Piece {
                        index_t b, e;
                    };
                    std::vector<std::vector<Piece>> taken(static_cast<std::size_t>(std::max(workers, 1)));
                    std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
                    std::atomic<int> bad{0};
                    parallel_shares(ex, n, align, piece, [&](index_t b, index_t e, int w) {
                        if (w < 0 || w >= std::max(workers, 1)) {
                            ++bad;
                            return;
                        }
                        const bool aligned = b % align == 0 && (e == n || e % align == 0);
                        const bool one_share = b < e && b / share == (e - 1) / share;
                        if (!aligned || !one_share || e - b > most) ++bad;
                        taken[static_cast<std::size_t>(w)].push_back({b, e});  // only w writes its list
                        for (index_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
                    });
                    CHECK(bad == 0);
                    for (const auto& h : hits) REQUIRE(h == 1);
                    // A worker's pieces of its own share come front to back from the share's start.
                    for (int w = 0; w < static_cast<int>(taken.size()); ++w) {
                        index_t expect = w * share;
                        for (const Piece& p : taken[static_cast<std::size_t>(w)])
                            if (p.b / share == w) {
                                CHECK(p.b == expect);
                                expect = p.e;
                            }
                    }
                }
}

#if defined(_OPENMP)
TEST_CASE("parallel: a worker done with its share takes pieces from the back of a slow one's", "[parallel]") {
    // Worker 0 stalls in the first piece it takes (share 0's front, [0, 32)); worker 1 finishes
    // its own share and then share 0's pieces from the back, so it runs every other piece, share
    // 0's last included, and worker 0 takes nothing more. (Worker 1 may even take all of them
    // before worker 0 starts.)
    const index_t n = 64 * 32;
    std::vector<int> by(static_cast<std::size_t>(n), -1);
    std::atomic<bool> stalled{false};
    parallel_shares(Exec(2), n, 32, 32, [&](index_t b, index_t e, int w) {
        if (w == 0 && !stalled.exchange(true)) std::this_thread::sleep_for(std::chrono::milliseconds(200));
        for (index_t i = b; i < e; ++i) by[static_cast<std::size_t>(i)] = w;
    });
    CHECK(std::count(by.begin() + 32, by.end(), 1) == n - 32);
    CHECK((by.front() == 0 || by.front() == 1));
}
#endif

TEST_CASE("parallel: nested regions still visit every index once", "[parallel]") {
    std::vector<std::atomic<int>> hits(50 * 30);
    parallel_for(Exec(2), 50, [&](index_t i) {
        parallel_for(Exec(2), 30, [&](index_t j) { ++hits[static_cast<std::size_t>(i * 30 + j)]; });
    });
    for (const auto& h : hits) REQUIRE(h == 1);
}

TEST_CASE("parallel: an exception thrown on any thread reaches the caller as that exception", "[parallel]") {
    for (const int threads : {1, 2, 3}) {
        INFO("threads " << threads);
        // One failing index: the caller gets Boom with its message.
        try {
            parallel_for(Exec(threads), 1000, [](index_t i) {
                if (i == 637) throw Boom("index 637");
            });
            FAIL("no exception");
        } catch (const Boom& b) {
            CHECK(std::string(b.what()) == "index 637");
        }
        // Every chunk fails: one of them is rethrown, and a worker stops at its first failure, so
        // at most one chunk per worker runs.
        std::atomic<int> ran{0};
        try {
            parallel_chunks(Exec(threads), 10000, 1, [&](index_t b, index_t, int) {
                ++ran;
                throw Boom("chunk " + std::to_string(b));
            });
            FAIL("no exception");
        } catch (const Boom& b) {
            CHECK(std::string(b.what()).rfind("chunk ", 0) == 0);
        }
        CHECK(ran >= 1);
        CHECK(ran <= parallel_workers(Exec(threads), 10000, 1));
        // A moe error type keeps its type and message.
        CHECK_THROWS_AS(parallel_for(Exec(threads), 100,
                                     [](index_t i) {
                                         if (i == 99) throw ShapeError("test", "row 99");
                                     }),
                        ShapeError);
        // So does parallel_shares, and a worker takes no piece after a failure: one per worker.
        std::atomic<int> pieces{0};
        CHECK_THROWS_AS(parallel_shares(Exec(threads), 1000, 32, 32,
                                        [&](index_t, index_t, int) {
                                            ++pieces;
                                            throw Boom("piece");
                                        }),
                        Boom);
        CHECK(pieces <= threads);
        // parallel_reduce passes a map's exception on too.
        CHECK_THROWS_AS(parallel_reduce(Exec(threads), 100, 10, 0.0,
                                        [](index_t b, index_t) -> double {
                                            if (b == 50) throw Boom("reduce");
                                            return 1.0;
                                        },
                                        [](double a, double c) { return a + c; }),
                        Boom);
    }
}

TEST_CASE("parallel: the vision Linear's fused epilogue region passes exceptions on", "[parallel][vision]") {
    // 500 outputs = 3 column chunks of vis::Linear::kChunk, 16 rows: the parallel path.
    const index_t N = 500, K = 32, M = 16;
    REQUIRE(N > 2 * vis::Linear<float>::kChunk);
    const vis::Linear<float> lin(tensor({N, K}, 1, 0.2f), tensor({N}, 2, 0.1f));
    const Tensor x = tensor({M, K}, 3);
    Tensor y(DType::f32, {M, N});
    for (const int threads : {1, 2, 3}) {
        INFO("threads " << threads);
        std::atomic<int> blocks{0};
        try {
            lin.forward(x.matrix<float>(), y.matrix<float>(), Exec(threads), false, [&](MatrixRef<float>) {
                ++blocks;
                throw Boom("epilogue");
            });
            FAIL("no exception");
        } catch (const Boom& b) {
            CHECK(std::string(b.what()) == "epilogue");
        }
        CHECK(blocks >= 1);
        CHECK(blocks <= parallel_workers(Exec(threads), N, vis::Linear<float>::kChunk));
    }
    // The dense FFN slot runs its activation as that epilogue: an activation that throws is
    // reported to the caller of the block, not fatal.
    using Mlp = vis::Mlp<ThrowingActivation>;
    Mlp mlp(vis::Linear<float>(tensor({N, K}, 4, 0.2f), tensor({N}, 5)),
            vis::Linear<float>(tensor({K, N}, 6, 0.05f), tensor({K}, 7)));
    Tensor out(DType::f32, {M, K});
    for (const int threads : {1, 2, 3}) {
        mlp.set_exec(Exec(threads));
        CHECK_THROWS_AS(mlp.forward(x.matrix<float>(), out.matrix<float>()), Boom);
        vis::FfnContext ctx;
        ctx.exec = Exec(threads);
        CHECK_THROWS_AS(vis::ffn_forward(mlp, x.matrix<float>(), out.matrix<float>(), ctx), Boom);
    }
}

TEST_CASE("parallel: an expert's exception inside grouped execution reaches the caller", "[parallel][experts]") {
    const index_t T = 300;
    ThrowingExperts X;
    RoutingPlan plan;
    plan.reset(T, X.E, 1);
    for (index_t t = 0; t < T; ++t) {
        plan.expert_ids[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t % X.E);
        plan.weights[static_cast<std::size_t>(t)] = 1.0f;
    }
    plan.finalize();
    const Tensor x = tensor({T, X.d}, 8);
    Tensor y(DType::f32, {T, X.d});
    for (const int threads : {1, 2, 3}) {
        INFO("threads " << threads);
        try {
            X.forward(x.matrix<float>(), plan, y.matrix<float>(), Combine::overwrite, Exec(threads));
            FAIL("no exception");
        } catch (const Boom& b) {
            CHECK(std::string(b.what()) == "expert 2");
        }
    }
    // Without the bad expert every token gets 2x + e.
    X.bad = -1;
    X.forward(x.matrix<float>(), plan, y.matrix<float>(), Combine::overwrite, Exec(3));
    for (index_t t = 0; t < T; ++t)
        for (index_t c = 0; c < X.d; ++c)
            REQUIRE(y.matrix<float>()(t, c) == 2 * x.matrix<float>()(t, c) + static_cast<float>(t % X.E));
}

TEST_CASE("parallel: a reduction is bit-identical for 1, 2 and 3 threads", "[parallel]") {
    const index_t n = 100003, grain = 977;
    const auto v = randn(static_cast<std::size_t>(n), 9, 1e3f);
    // Reference: float sums chunk by chunk, then the chunk sums in order (the documented order).
    float ref = 0.0f;
    for (index_t b = 0; b < n; b += grain) {
        float s = 0.0f;
        for (index_t i = b; i < std::min(n, b + grain); ++i) s += v[static_cast<std::size_t>(i)];
        ref += s;
    }
    for (const int threads : {1, 2, 3}) {
        const float got = parallel_reduce(
            Exec(threads), n, grain, 0.0f,
            [&](index_t b, index_t e) {
                float s = 0.0f;
                for (index_t i = b; i < e; ++i) s += v[static_cast<std::size_t>(i)];
                return s;
            },
            [](float a, float c) { return a + c; });
        INFO("threads " << threads);
        CHECK(std::memcmp(&got, &ref, sizeof(float)) == 0);
    }
}

TEST_CASE("parallel: kernels and modules give the same bits for 1, 2 and 3 threads", "[parallel]") {
    SECTION("routing kernel over several 1024-token ranges") {
        const index_t T = 3000, E = 16;
        const auto logits = randn(static_cast<std::size_t>(T * E), 10);
        RouteRule spec;
        spec.k = 2;
        std::vector<std::vector<std::int32_t>> ids;
        std::vector<std::vector<float>> w;
        for (const int threads : {1, 2, 3}) {
            ids.emplace_back(static_cast<std::size_t>(T * spec.k));
            w.emplace_back(static_cast<std::size_t>(T * spec.k));
            cpu::RouteWorkspace ws;
            cpu::topk_route(ConstMatrixRef<float>(logits.data(), T, E), spec, ids.back().data(), w.back().data(), ws,
                            Exec(threads));
        }
        for (std::size_t i = 1; i < ids.size(); ++i) {
            CHECK(ids[i] == ids[0]);
            CHECK(same_bits(w[i].data(), w[0].data(), w[0].size()));
        }
    }
    SECTION("column-split GEMM") {
        const index_t M = 37, K = 64, N = 1000;
        const auto A = randn(static_cast<std::size_t>(M * K), 11), W = randn(static_cast<std::size_t>(N * K), 12);
        std::vector<std::vector<float>> C;
        for (const int threads : {1, 2, 3}) {
            C.emplace_back(static_cast<std::size_t>(M * N));
            cpu::linear_parallel<float>({A.data(), M, K}, ConstMatrixRef<float>(W.data(), N, K), nullptr,
                                        {C.back().data(), M, N}, false, Exec(threads));
        }
        for (std::size_t i = 1; i < C.size(); ++i) CHECK(same_bits(C[i].data(), C[0].data(), C[0].size()));
    }
    SECTION("MoELayer: router, grouped experts, shared experts") {
        const index_t T = 700, d = 48, F = 96, E = 6, k = 2;
        using X = MlpExperts<Gelu>;
        MoELayer layer(softmax_topk_router(Gate::random(E, d, 13), k), X::random(E, d, F, 14),
                       SharedExperts<X>(X::random(1, d, F, 15)));
        const Tensor x = tensor({T, d}, 16);
        std::vector<Tensor> ys;
        for (const int threads : {1, 2, 3}) {
            layer.set_exec(Exec(threads));
            CHECK(layer.exec().threads() == threads);
            CHECK(layer.router().exec().threads() == threads);  // one setter reaches the router
            ys.emplace_back(layer.forward(x));
        }
        for (std::size_t i = 1; i < ys.size(); ++i)
            CHECK(same_bits(ys[i].data<float>(), ys[0].data<float>(), static_cast<std::size_t>(T * d)));
    }
    SECTION("ViT block: attention over (sequence, head) tasks, column-chunked Linears") {
        const index_t C = 128, H = 4, F = 512, n = 50, B = 3;
        const float s = 1.0f / std::sqrt(float(C));
        auto lin = [&](index_t out, index_t in, std::uint32_t seed) {
            return vis::Linear<float>(tensor({out, in}, seed, s), tensor({out}, seed + 1, 0.1f));
        };
        auto norm = [&](std::uint32_t seed) { return vis::LayerNorm(tensor({C}, seed, 0.1f), tensor({C}, seed + 1, 0.1f), 1e-6f); };
        using Mlp = vis::Mlp<Gelu>;
        vis::Block<Mlp> blk(norm(20), vis::Attention<float>(lin(3 * C, C, 22), lin(C, C, 24), H), norm(26),
                            Mlp(lin(F, C, 28), lin(C, F, 30)));
        const Tensor x0 = tensor({B * n, C}, 32);
        std::vector<Tensor> ys;
        for (const int threads : {1, 2, 3}) {
            Tensor x = Tensor::copy_of(x0.view());
            vis::FfnContext ctx;
            ctx.exec = Exec(threads);
            blk.forward(x.matrix<float>(), n, ctx);
            ys.push_back(std::move(x));
        }
        for (std::size_t i = 1; i < ys.size(); ++i)
            CHECK(same_bits(ys[i].data<float>(), ys[0].data<float>(), static_cast<std::size_t>(B * n * C)));
    }
}

}  // namespace moe_test_test_parallel
