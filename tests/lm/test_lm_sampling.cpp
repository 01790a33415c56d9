// moe::lm sampling (lm/decoder/sampling.hpp): each processor on small examples worked out by hand,
// greedy and its ties, the counter-based generator (Random123's known answers, independence of
// call order), the empirical distribution of draws against the softmax, and every error. The
// hidden [sampling-reference] case compares every processor chain with transformers' arithmetic
// (tools/reference/fixtures_sampling.py; ctest sampling_reference).
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../parity/fixture_dir.hpp"
#include "../unit/skip.hpp"
#include "lm/decoder/sampling.hpp"
#include "moe/io/safetensors.hpp"

namespace moe_test_lm_sampling {  // this file's names (unity builds merge test files)

using moe::lm::Sampler;
using moe::lm::SamplingOptions;
using Catch::Matchers::Contains;

namespace {

constexpr float inf = std::numeric_limits<float>::infinity();
const std::vector<std::int32_t> no_context;

/// Which logits are finite (kept), as 0/1.
std::vector<int> kept(const std::vector<float>& v) {
    std::vector<int> out;
    for (float x : v) out.push_back(std::isfinite(x) ? 1 : 0);
    return out;
}

template <class P>
std::vector<float> applied(const P& p, std::vector<float> logits, const std::vector<std::int32_t>& ctx = no_context) {
    p(std::span<float>(logits), std::span<const std::int32_t>(ctx));
    return logits;
}

SamplingOptions options(float t, moe::index_t k, float p, float mp, float pen, std::uint64_t seed = 0) {
    SamplingOptions o;
    o.temperature = t;
    o.top_k = k;
    o.top_p = p;
    o.min_p = mp;
    o.repetition_penalty = pen;
    o.seed = seed;
    return o;
}

}  // namespace

static_assert(moe::lm::LogitsProcessor<std::function<void(std::span<float>, std::span<const std::int32_t>)>>);
static_assert(!moe::lm::LogitsProcessor<int>);

TEST_CASE("lm sampling: argmax takes the lowest id at ties; greedy is argmax", "[lm][sampling]") {
    const std::vector<float> v = {1.0f, 3.0f, 3.0f, 2.0f, -inf};
    CHECK(moe::lm::argmax(v) == 1);
    CHECK(moe::lm::argmax(std::vector<float>{-inf, -inf}) == 0);
    std::vector<float> w = v;
    const Sampler greedy(options(0.0f, 0, 1.0f, 0.0f, 1.0f));
    CHECK(greedy.options().greedy());
    CHECK(greedy.sample(w, no_context, 0, 0) == 1);
    // Greedy is transformers' do_sample=False: top-k / top-p / min-p are not applied. Sampling
    // with top_p 0.01 on [4, 4, 1] keeps only id 1 (the stable sort's last maximum); greedy says 0.
    std::vector<float> tie = {4.0f, 4.0f, 1.0f};
    CHECK(Sampler(options(0.0f, 1, 0.01f, 0.9f, 1.0f)).sample(tie, no_context, 0, 0) == 0);
    tie = {4.0f, 4.0f, 1.0f};
    CHECK(Sampler(options(1.0f, 0, 0.01f, 0.0f, 1.0f)).sample(tie, no_context, 5, 9) == 1);
    // ... but the repetition penalty is: [2, 1.5] with id 0 in the context -> [1, 1.5].
    std::vector<float> pen = {2.0f, 1.5f};
    const std::vector<std::int32_t> ctx = {0};
    CHECK(Sampler(options(0.0f, 0, 1.0f, 0.0f, 2.0f)).sample(pen, ctx, 0, 0) == 1);
}

TEST_CASE("lm sampling: top_k 1 always samples the argmax", "[lm][sampling]") {
    std::vector<float> base(257);
    for (std::size_t i = 0; i < base.size(); ++i) base[i] = float((i * 7919) % 257) * 0.01f;  // distinct
    const std::int32_t best = moe::lm::argmax(base);
    for (std::uint64_t seed = 0; seed < 4; ++seed) {
        const Sampler s(options(1.3f, 1, 1.0f, 0.0f, 1.0f, seed));
        for (std::uint64_t step = 0; step < 50; ++step) {
            std::vector<float> l = base;
            REQUIRE(s.sample(l, no_context, seed * 3, step) == best);
        }
    }
}

TEST_CASE("lm sampling: repetition penalty by hand (signs, each token once)", "[lm][sampling]") {
    // context 0, 1, 2, 0, 1: tokens 0, 1, 2 once each. -1 < 0: * 2 -> -2 (not -4: once);
    // 1 >= 0: / 2 -> 0.5; 0 is not < 0: 0 / 2 = 0; tokens 3, 4 untouched.
    const std::vector<std::int32_t> ctx = {0, 1, 2, 0, 1};
    CHECK(applied(moe::lm::RepetitionPenalty(2.0f), {-1.0f, 1.0f, 0.0f, 2.0f, 3.0f}, ctx) ==
          std::vector<float>{-2.0f, 0.5f, 0.0f, 2.0f, 3.0f});
    // A penalty below 1 rewards: -1 * 0.5 = -0.5, 1 / 0.5 = 2.
    CHECK(applied(moe::lm::RepetitionPenalty(0.5f), {-1.0f, 1.0f, 5.0f}, {0, 1}) == std::vector<float>{-0.5f, 2.0f, 5.0f});
    // -inf stays -inf; an empty context changes nothing.
    CHECK(applied(moe::lm::RepetitionPenalty(1.5f), {-inf, 3.0f}, {0}) == std::vector<float>{-inf, 3.0f});
    CHECK(applied(moe::lm::RepetitionPenalty(1.5f), {1.0f, 3.0f}) == std::vector<float>{1.0f, 3.0f});
    CHECK_THROWS_AS(applied(moe::lm::RepetitionPenalty(1.5f), {1.0f, 3.0f}, {2}), moe::ValueError);
    CHECK_THROWS_WITH(applied(moe::lm::RepetitionPenalty(1.5f), {1.0f, 3.0f}, {0, -200}), Contains("context[1] = -200"));
}

TEST_CASE("lm sampling: temperature, top-k, top-p, min-p by hand", "[lm][sampling]") {
    CHECK(applied(moe::lm::Temperature(0.5f), {1.0f, -2.0f, -inf}) == std::vector<float>{2.0f, -4.0f, -inf});

    // top-k keeps every token tied with the k-th largest.
    CHECK(applied(moe::lm::TopK(2), {3.0f, 1.0f, 1.0f, 1.0f, 0.0f}) == std::vector<float>{3.0f, 1.0f, 1.0f, 1.0f, -inf});
    CHECK(kept(applied(moe::lm::TopK(1), {4.0f, 4.0f, 1.0f, 1.0f})) == std::vector<int>{1, 1, 0, 0});
    CHECK(kept(applied(moe::lm::TopK(9), {4.0f, 4.0f, 1.0f, 1.0f})) == std::vector<int>{1, 1, 1, 1});

    // top-p on [1, 2, 3, 4]: softmax = e^i / (e + e^2 + e^3 + e^4) = 0.0321, 0.0871, 0.2369,
    // 0.6439; ascending cumulative sums 0.0321, 0.1192, 0.3561, 1. top_p 0.5 removes the sums
    // <= 1 - 0.5 = 0.5: ids 0, 1, 2 (id 3 alone holds 0.64 >= 0.5). top_p 0.7 removes the sums
    // <= 0.3: ids 0, 1. top_p 0.95 removes <= 0.05: id 0.
    const std::vector<float> l4 = {1.0f, 2.0f, 3.0f, 4.0f};
    CHECK(kept(applied(moe::lm::TopP(0.5f), l4)) == std::vector<int>{0, 0, 0, 1});
    CHECK(kept(applied(moe::lm::TopP(0.7f), l4)) == std::vector<int>{0, 0, 1, 1});
    CHECK(kept(applied(moe::lm::TopP(0.95f), l4)) == std::vector<int>{0, 1, 1, 1});
    CHECK(applied(moe::lm::TopP(1.0f), l4) == l4);
    CHECK(applied(moe::lm::TopP(0.7f), l4)[3] == 4.0f);  // survivors keep their values
    // Ties, as a stable ascending sort orders them (lower ids first, so removed first):
    // [2, 2, 2, 2]: sums 0.25, 0.5, 0.75, 1; top_p 0.5 removes <= 0.5: ids 0, 1.
    CHECK(kept(applied(moe::lm::TopP(0.5f), {2.0f, 2.0f, 2.0f, 2.0f})) == std::vector<int>{0, 0, 1, 1});
    // [0, 3, 3, 1]: sorted ids 0, 3, 1, 2 with sums 0.023, 0.085, 0.542, 1; top_p 0.3 removes
    // <= 0.7: ids 0, 3 and 1 (a maximum); the last, id 2, is always kept.
    CHECK(kept(applied(moe::lm::TopP(0.3f), {0.0f, 3.0f, 3.0f, 1.0f})) == std::vector<int>{0, 0, 1, 0});

    // min-p 0.5 on [5, 5, 0, 4.5]: p / p_max = exp(l - 5) = 1, 1, 0.0067, 0.61: id 2 removed;
    // min-p 0.7 also removes id 3 (0.61 < 0.7); min-p 1 keeps both maxima.
    const std::vector<float> m4 = {5.0f, 5.0f, 0.0f, 4.5f};
    CHECK(kept(applied(moe::lm::MinP(0.5f), m4)) == std::vector<int>{1, 1, 0, 1});
    CHECK(kept(applied(moe::lm::MinP(0.7f), m4)) == std::vector<int>{1, 1, 0, 0});
    CHECK(kept(applied(moe::lm::MinP(1.0f), m4)) == std::vector<int>{1, 1, 0, 0});
    CHECK(applied(moe::lm::MinP(0.0f), m4) == m4);
}

TEST_CASE("lm sampling: AllowedTokens bans everything else", "[lm][sampling]") {
    const moe::lm::AllowedTokens digits{3, 1, 3};
    CHECK(std::vector<std::int32_t>(digits.ids().begin(), digits.ids().end()) == std::vector<std::int32_t>{1, 3});
    CHECK(digits.allows(3));
    CHECK_FALSE(digits.allows(2));
    CHECK(applied(digits, {9.0f, 1.0f, 8.0f, -2.0f, 7.0f}) == std::vector<float>{-inf, 1.0f, -inf, -2.0f, -inf});
    // With the sampler: the best allowed token, whatever the others say.
    std::vector<float> l = {9.0f, 1.0f, 8.0f, -2.0f, 7.0f};
    CHECK(Sampler(options(0.0f, 0, 1.0f, 0.0f, 1.0f)).sample_with(l, no_context, 0, 0, digits) == 1);
    for (std::uint64_t step = 0; step < 64; ++step) {
        std::vector<float> x = {9.0f, 1.0f, 8.0f, 1.0f, 7.0f};
        const std::int32_t t = Sampler().sample_with(x, no_context, 0, step, digits);
        REQUIRE((t == 1 || t == 3));
    }
    CHECK_THROWS_AS(moe::lm::AllowedTokens(std::span<const std::int32_t>()), moe::ConfigError);
    CHECK_THROWS_AS((moe::lm::AllowedTokens{2, -1}), moe::ConfigError);
    CHECK_THROWS_WITH(applied(moe::lm::AllowedTokens{1, 7}, {0.0f, 0.0f}), Contains("allowed id 7"));
}

TEST_CASE("lm sampling: user processors run after the penalty, before temperature", "[lm][sampling]") {
    // [2, 1] with id 0 in the context, penalty 2: the user's processor sees [1, 1]; temperature
    // 0.5 then doubles what it leaves.
    std::vector<float> seen;
    const auto spy = [&seen](std::span<float> l, std::span<const std::int32_t>) {
        seen.assign(l.begin(), l.end());
        l[1] += 1.0f;
    };
    const auto twice = [](std::span<float> l, std::span<const std::int32_t> ctx) {
        REQUIRE(ctx.size() == 1);
        l[0] *= 3.0f;
    };
    std::vector<float> l = {2.0f, 1.0f};
    const std::vector<std::int32_t> ctx = {0};
    Sampler(options(0.5f, 0, 1.0f, 0.0f, 2.0f)).process(l, ctx, spy, twice);
    CHECK(seen == std::vector<float>{1.0f, 1.0f});
    CHECK(l == std::vector<float>{6.0f, 4.0f});  // ([1, 1] -> [1, 2] -> [3, 2]) / 0.5
}

TEST_CASE("lm sampling: Philox4x32-10 known answers; draws depend on (seed, stream, step) only", "[lm][sampling]") {
    // Random123's kat_vectors for philox4x32_10.
    using A4 = std::array<std::uint32_t, 4>;
    CHECK(moe::lm::philox4x32_10({0, 0, 0, 0}, {0, 0}) == A4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
    CHECK(moe::lm::philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
          A4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
    CHECK(moe::lm::philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
          A4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
    // uniform01 = the first two words as 53 bits.
    const A4 r = moe::lm::philox4x32_10({7, 0, 3, 0}, {42, 0});
    CHECK(moe::lm::uniform01(42, 3, 7) == double(((std::uint64_t(r[0]) << 32) | r[1]) >> 11) * 0x1.0p-53);
    double lo = 1.0, hi = 0.0, sum = 0.0;
    for (std::uint64_t i = 0; i < 10000; ++i) {
        const double u = moe::lm::uniform01(1, i % 7, i);
        lo = std::min(lo, u);
        hi = std::max(hi, u);
        sum += u;
    }
    CHECK(lo >= 0.0);
    CHECK(hi < 1.0);
    CHECK(std::abs(sum / 10000 - 0.5) < 0.01);  // the mean of 10,000 uniforms: sd 0.0029

    // Four streams, 40 steps, sampled stream by stream and then step by step with the streams
    // in reverse: the same tokens.
    const Sampler s(options(1.0f, 0, 0.95f, 0.0f, 1.0f, 1234));
    std::vector<float> base(64);
    for (std::size_t i = 0; i < base.size(); ++i) base[i] = float(i % 13) * 0.3f;
    std::array<std::array<std::int32_t, 40>, 4> a{}, b{};
    for (std::uint64_t st = 0; st < 4; ++st)
        for (std::uint64_t t = 0; t < 40; ++t) {
            std::vector<float> l = base;
            a[st][t] = s.sample(l, no_context, st, t);
        }
    for (std::uint64_t t = 0; t < 40; ++t)
        for (std::uint64_t st = 4; st-- > 0;) {
            std::vector<float> l = base;
            b[st][t] = s.sample(l, no_context, st, t);
        }
    CHECK(a == b);
    CHECK(a[0] != a[1]);  // streams differ ...
    std::array<std::int32_t, 40> other{};
    const Sampler s2(options(1.0f, 0, 0.95f, 0.0f, 1.0f, 1235));
    for (std::uint64_t t = 0; t < 40; ++t) {
        std::vector<float> l = base;
        other[t] = s2.sample(l, no_context, 0, t);
    }
    CHECK(other != a[0]);  // ... and seeds do
}

TEST_CASE("lm sampling: 20,000 draws follow the softmax (chi-square)", "[lm][sampling]") {
    // Logits [0, 1, 2, 0.5, -1] at temperature 1: p_i = e^l_i / sum. 20,000 draws (stream 0,
    // steps 0..19,999, seed 7). Pearson's chi-square over the 5 cells has 4 degrees of freedom;
    // its 0.999 quantile is 18.47, the bound used (the draws are deterministic, so this either
    // always passes or never does; a biased sampler, e.g. one off by 2 % in one cell, gives
    // chi-square > 40 at this n).
    const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 0.5f, -1.0f};
    double z = 0.0;
    for (float v : logits) z += std::exp(double(v));
    const Sampler s(options(1.0f, 0, 1.0f, 0.0f, 1.0f, 7));
    constexpr int n = 20000;
    std::array<int, 5> counts{};
    for (int i = 0; i < n; ++i) {
        std::vector<float> l = logits;
        ++counts[static_cast<std::size_t>(s.sample(l, no_context, 0, std::uint64_t(i)))];
    }
    double chi2 = 0.0;
    for (std::size_t i = 0; i < 5; ++i) {
        const double e = n * std::exp(double(logits[i])) / z;
        chi2 += (counts[i] - e) * (counts[i] - e) / e;
    }
    INFO("counts " << counts[0] << " " << counts[1] << " " << counts[2] << " " << counts[3] << " " << counts[4]
                   << ", chi-square " << chi2);
    CHECK(chi2 < 18.47);

    // draw() itself: inverse CDF in id order, -inf never drawn. [-inf, 0, -inf, 0]: the two
    // zeros hold half each, so u < 0.5 gives id 1 and u >= 0.5 id 3.
    const std::vector<float> half = {-inf, 0.0f, -inf, 0.0f};
    CHECK(moe::lm::draw(half, 0.0) == 1);
    CHECK(moe::lm::draw(half, 0.4999) == 1);
    CHECK(moe::lm::draw(half, 0.5) == 3);
    CHECK(moe::lm::draw(half, 0.9999999) == 3);
    CHECK_THROWS_AS(moe::lm::draw(half, 1.0), moe::ConfigError);
}

TEST_CASE("lm sampling: invalid options and logits are errors naming what is wrong", "[lm][sampling]") {
    const auto bad = [](SamplingOptions o, const char* field) {
        INFO(field);
        CHECK_THROWS_AS(o.validate(), moe::ConfigError);
        CHECK_THROWS_WITH(Sampler(o), Contains(field));
    };
    const float nan = std::numeric_limits<float>::quiet_NaN();
    bad(options(-1.0f, 0, 1.0f, 0.0f, 1.0f), "temperature = -1");
    bad(options(nan, 0, 1.0f, 0.0f, 1.0f), "temperature = nan");
    bad(options(1.0f, -3, 1.0f, 0.0f, 1.0f), "top_k = -3");
    bad(options(1.0f, 0, 0.0f, 0.0f, 1.0f), "top_p = 0");
    bad(options(1.0f, 0, 1.5f, 0.0f, 1.0f), "top_p = 1.5");
    bad(options(1.0f, 0, nan, 0.0f, 1.0f), "top_p = nan");
    bad(options(1.0f, 0, 1.0f, -0.25f, 1.0f), "min_p = -0.25");
    bad(options(1.0f, 0, 1.0f, 1.5f, 1.0f), "min_p = 1.5");
    bad(options(1.0f, 0, 1.0f, 0.0f, 0.0f), "repetition_penalty = 0");
    bad(options(1.0f, 0, 1.0f, 0.0f, -2.0f), "repetition_penalty = -2");
    CHECK_NOTHROW(options(0.0f, 0, 1.0f, 1.0f, 1.0f).validate());
    CHECK_THROWS_AS(moe::lm::TopK(0), moe::ConfigError);
    CHECK_THROWS_AS(moe::lm::TopP(0.0f), moe::ConfigError);
    CHECK_THROWS_AS(moe::lm::MinP(1.5f), moe::ConfigError);
    CHECK_THROWS_AS(moe::lm::Temperature(0.0f), moe::ConfigError);
    CHECK_THROWS_AS(moe::lm::RepetitionPenalty(0.0f), moe::ConfigError);

    const Sampler s;
    std::vector<float> with_nan = {1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN()};
    CHECK_THROWS_AS(s.sample(with_nan, no_context, 0, 0), moe::ValueError);
    CHECK_THROWS_WITH(s.sample(with_nan, no_context, 0, 0), Contains("token 2 is NaN"));
    CHECK_THROWS_WITH(moe::lm::argmax(with_nan), Contains("token 2 is NaN"));
    std::vector<float> pos_inf = {1.0f, inf};
    CHECK_THROWS_WITH(s.sample(pos_inf, no_context, 0, 0), Contains("token 1 is +inf"));
    std::vector<float> all_banned = {-inf, -inf};
    CHECK_THROWS_AS(s.sample(all_banned, no_context, 0, 0), moe::ValueError);
    CHECK_THROWS_WITH(s.sample(all_banned, no_context, 0, 0), Contains("every logit is -inf"));
    std::vector<float> none;
    CHECK_THROWS_AS(s.sample(none, no_context, 0, 0), moe::ShapeError);
    CHECK_THROWS_AS(moe::lm::argmax(none), moe::ShapeError);
    // A user processor that bans everything, or writes NaN.
    std::vector<float> l = {1.0f, 2.0f};
    const auto ban_all = [](std::span<float> x, std::span<const std::int32_t>) {
        for (float& v : x) v = -inf;
    };
    CHECK_THROWS_WITH(s.sample_with(l, no_context, 0, 0, ban_all), Contains("every logit is -inf"));
    l = {1.0f, 2.0f};
    const auto write_nan = [](std::span<float> x, std::span<const std::int32_t>) { x[1] = std::nanf(""); };
    CHECK_THROWS_WITH(s.sample_with(l, no_context, 0, 0, write_nan), Contains("token 1 is NaN after the user's"));
    CHECK_THROWS_AS(applied(moe::lm::TopK(1), {1.0f, std::nanf("")}), moe::ValueError);
}

// --- against the reference: every chain of tools/reference/fixtures_sampling.py --------------------

TEST_CASE("lm sampling: every processor chain vs transformers' arithmetic", "[.][sampling-reference]") {
    const auto path = moe_test::fixture_dir() / "sampling.safetensors";
    if (!std::filesystem::exists(path))
        MOE_SKIP(path.string() << " not found: run tools/reference/fixtures_sampling.py --out DIR (MOE_FIXTURE_DIR=DIR)");
    const auto f = moe::io::SafetensorsFile::open(path);
    const int cases = std::stoi(f.metadata().at("cases"));
    REQUIRE(cases >= 20);
    const auto vec = [&](const std::string& name, auto tag) {
        using T = decltype(tag);
        const moe::TensorView t = f.get(name);
        const T* p = t.data<T>(name);
        return std::vector<T>(p, p + t.numel());
    };
    int exact = 0, finite_values = 0;
    for (int c = 0; c < cases; ++c) {
        const std::string k = std::to_string(c);
        INFO("case " << c << ": " << f.metadata().at("name_" + k));
        std::vector<float> logits = vec("__logits_" + k + "__", float{});
        const std::vector<std::int32_t> context = vec("__context_" + k + "__", std::int32_t{});
        const std::vector<float> o = vec("__options_" + k + "__", float{});
        const std::vector<float> expected = vec("__expected_" + k + "__", float{});
        const std::int32_t want_argmax = vec("__argmax_" + k + "__", std::int32_t{}).at(0);
        REQUIRE(o.size() == 5);
        const Sampler s(options(o[0], moe::index_t(o[1]), o[2], o[3], o[4]));
        s.process(logits, context);
        REQUIRE(logits.size() == expected.size());
        std::size_t pattern_mismatch = 0, value_mismatch = 0;
        for (std::size_t i = 0; i < logits.size(); ++i) {
            const bool fin = std::isfinite(expected[i]);
            if (fin != bool(std::isfinite(logits[i])) || (!fin && expected[i] != logits[i])) {
                ++pattern_mismatch;
                continue;
            }
            if (!fin) continue;
            ++finite_values;
            if (logits[i] == expected[i]) ++exact;
            if (std::abs(logits[i] - expected[i]) > 1e-6f * std::max(1.0f, std::abs(expected[i]))) ++value_mismatch;
        }
        CHECK(pattern_mismatch == 0);
        CHECK(value_mismatch == 0);
        CHECK(moe::lm::argmax(logits) == want_argmax);
    }
    WARN(cases << " chains; " << exact << " of " << finite_values << " kept logits bit-identical to the reference");
}

}  // namespace moe_test_lm_sampling
