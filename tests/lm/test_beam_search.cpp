// Beam search (lm/decoder/beam_search.hpp, generate.hpp) against tools/reference/beam_search.py,
// a line-for-line mirror of transformers 4.30-4.34's beam search that recomputes every sequence
// from scratch (no KV cache, so the cache-slot moves of the C++ side are checked, not copied):
// the fixture decoder_beam.safetensors (fixtures_decoder.py) holds 5 cases on the decoder_qwen2
// and decoder_qwen2_moe models (ids and embedded prompts; 3-5 beams; length penalties 0.5, 1, 2;
// the three early-stopping rules; repetition penalty; min_new_tokens; 1-5 returned sequences; one
// or two stop ids, chosen so that hypotheses finish early and every comparison that decides the
// result has a margin above 1e-4).
// Expected: identical ids; scores within 1e-4 relative (the logits' tolerance; measured 3.7e-6).
// Plus hand-derived cases of the hypothesis list, one scorer step and log_softmax, properties of
// the search (a batch equals each prompt alone, the thread count changes nothing, one beam is
// greedy) and its errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "lm/decoder.hpp"
#include "moe/io/safetensors.hpp"
#include "../parity/fixture_dir.hpp"
#include "../unit/skip.hpp"
#include "../unit/throws.hpp"

namespace moe_test_beam_search {  // this file's names (unity builds merge test files)

using namespace moe;

using moe_test::throws_with;

namespace {

std::vector<std::int32_t> ints(const TensorView& v) {
    return {v.data<std::int32_t>(), v.data<std::int32_t>() + v.numel()};
}

lm::EarlyStopping early_of(const std::string& s) {
    if (s == "heuristic") return lm::EarlyStopping::heuristic;
    if (s == "first_complete") return lm::EarlyStopping::first_complete;
    REQUIRE(s == "never");
    return lm::EarlyStopping::never;
}

}  // namespace

TEST_CASE("beam search: log_softmax by hand and its properties", "[decoder]") {
    std::vector<float> x = {1.0f, 2.0f, 3.0f};
    lm::log_softmax(x);
    const double lse = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
    for (int i = 0; i < 3; ++i) CHECK(x[static_cast<std::size_t>(i)] == Approx(i + 1.0 - lse).epsilon(1e-6));
    // shift invariance, -inf stays -inf and takes no mass
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> y = {101.0f, 102.0f, 103.0f, -inf};
    lm::log_softmax(y);
    for (int i = 0; i < 3; ++i) CHECK(y[static_cast<std::size_t>(i)] == Approx(x[static_cast<std::size_t>(i)]).margin(1e-6));
    CHECK(y[3] == -inf);
    std::vector<float> all_banned = {-inf, -inf};
    throws_with<ValueError>([&] { lm::log_softmax(all_banned); }, "every logit is -inf");
    std::vector<float> nan = {0.0f, std::nanf("")};
    throws_with<ValueError>([&] { lm::log_softmax(nan); }, "token 1 is NaN");
    std::vector<float> empty;
    throws_with<ShapeError>([&] { lm::log_softmax(empty); }, "no logits");
}

TEST_CASE("beam search: the hypothesis list by hand", "[decoder]") {
    // 2 beams, length penalty 1: score = sum / length
    lm::BeamHypotheses h(2, 1.0f, lm::EarlyStopping::heuristic, 20);
    CHECK_FALSE(h.is_done(-1.0, 4));  // fewer than 2 finished
    h.add({7}, -4.0, 4);               // -1.0
    h.add({8}, -3.0, 2);               // -1.5
    CHECK(h.size() == 2);
    CHECK(h.worst_score() == -1.5);
    h.add({9}, -8.0, 4);  // -2.0: worse than the worst, not kept
    CHECK(h.size() == 2);
    h.add({10}, -2.0, 4);  // -0.5: replaces -1.5; the worst becomes -1.0
    CHECK(h.size() == 2);
    CHECK(h.worst_score() == -1.0);
    const auto best = h.best(2);
    REQUIRE(best.size() == 2);
    CHECK(best[0].ids == std::vector<std::int32_t>{10});
    CHECK(best[0].score == -0.5);
    CHECK(best[1].ids == std::vector<std::int32_t>{7});
    // heuristic: done when best candidate / cur_len cannot beat the worst (-1.0)
    CHECK(h.is_done(-5.0, 4));        // -1.25 <= -1.0
    CHECK_FALSE(h.is_done(-3.0, 4));  // -0.75 > -1.0
    CHECK(h.is_done(-4.5, 4));        // the boundary: -1.125 at cur_len 4 ...
    CHECK_FALSE(h.is_done(-4.5, 5));  // ... -0.9 at 5
    // first_complete: done as soon as 2 are finished
    lm::BeamHypotheses t(2, 1.0f, lm::EarlyStopping::first_complete, 20);
    t.add({1}, -100.0, 1);
    CHECK_FALSE(t.is_done(0.0, 1));
    t.add({2}, -100.0, 1);
    CHECK(t.is_done(0.0, 1));
    // never, length penalty > 0: the bound at max_length (20): -3 / 20 = -0.15 > -1.0: not done,
    // where the heuristic at cur_len 2 would be (-1.5 <= -1.0)
    lm::BeamHypotheses n(2, 1.0f, lm::EarlyStopping::never, 20);
    n.add({1}, -4.0, 4);
    n.add({2}, -4.0, 4);
    CHECK_FALSE(n.is_done(-3.0, 2));
    CHECK(n.is_done(-30.0, 2));  // -1.5 at 20
    // length penalty 2: score = sum / length^2; 0: the plain sum
    lm::BeamHypotheses sq(1, 2.0f, lm::EarlyStopping::heuristic, 20);
    CHECK(sq.score_of(-8.0, 2) == -2.0);
    lm::BeamHypotheses flat(1, 0.0f, lm::EarlyStopping::heuristic, 20);
    CHECK(flat.score_of(-8.0, 2) == -8.0);
}

TEST_CASE("beam search: candidates and one scorer step by hand", "[decoder]") {
    const float inf = std::numeric_limits<float>::infinity();
    // 2 beams of 4 tokens; ties go to the lower beam, then the lower id
    const std::vector<float> scores = {-1.0f, -5.0f, -2.0f, -inf,   // beam 0
                                       -2.0f, -0.5f, -3.0f, -4.0f};  // beam 1
    const auto top = lm::top_candidates(scores, 4, 4);
    REQUIRE(top.size() == 4);
    CHECK(top[0] == lm::BeamCandidate{-0.5f, 1, 1});
    CHECK(top[1] == lm::BeamCandidate{-1.0f, 0, 0});
    CHECK(top[2] == lm::BeamCandidate{-2.0f, 0, 2});
    CHECK(top[3] == lm::BeamCandidate{-2.0f, 1, 0});
    CHECK(lm::top_candidates(scores, 4, 20).back().score == -inf);  // all 8, -inf last
    throws_with<ShapeError>([&] { (void)lm::top_candidates(scores, 3, 2); }, "not whole rows of 3");
    // against a full sort of every (beam, id), on scores with many ties
    std::mt19937 g(5);
    for (const index_t V : {1, 3, 17, 64})
        for (const index_t K : {1, 2, 5}) {
            std::vector<float> sc(static_cast<std::size_t>(K * V));
            for (float& v : sc) v = static_cast<float>(g() % 7) - (g() % 9 == 0 ? inf : 0.0f);
            std::vector<lm::BeamCandidate> all;
            for (index_t i = 0; i < K * V; ++i)
                all.push_back({sc[static_cast<std::size_t>(i)], i / V, static_cast<std::int32_t>(i % V)});
            std::sort(all.begin(), all.end(), lm::ranks_before);
            for (const index_t n : {index_t{0}, index_t{1}, 2 * K, K * V, K * V + 3}) {
                INFO("V " << V << ", K " << K << ", n " << n);
                const auto want = std::vector<lm::BeamCandidate>(all.begin(), all.begin() + std::min(n, K * V));
                CHECK(lm::top_candidates(sc, V, n) == want);
            }
        }

    // stop id 1 at rank 0 (finishes beam 1), stop id 0 at rank 3 >= 2 beams (skipped): the
    // continuing beams are ranks 1 and 2
    const std::vector<std::vector<std::int32_t>> ids = {{7, 7}, {8, 9}};
    const auto ids_of = [&](index_t b) -> const std::vector<std::int32_t>& { return ids[static_cast<std::size_t>(b)]; };
    lm::BeamHypotheses h(2, 1.0f, lm::EarlyStopping::heuristic, 10);
    const auto stop01 = [](std::int32_t id) { return id == 1 || id == 0; };
    const std::vector<lm::BeamCandidate> c = {{-0.5f, 1, 1}, {-1.0f, 0, 2}, {-2.0f, 0, 3}, {-2.5f, 1, 0}};
    const auto next = lm::continue_beams(std::span<const lm::BeamCandidate>(c), 2, 2, h, ids_of, stop01);
    REQUIRE(next.size() == 2);
    CHECK(next[0] == c[1]);
    CHECK(next[1] == c[2]);
    REQUIRE(h.size() == 1);
    CHECK(h.hypotheses()[0].ids == std::vector<std::int32_t>{8, 9, 1});
    CHECK(h.hypotheses()[0].score == -0.25);  // -0.5 / length 2
    // a stop id ranked lower that is reached before two beams continue is skipped
    lm::BeamHypotheses h2(2, 1.0f, lm::EarlyStopping::heuristic, 10);
    const std::vector<lm::BeamCandidate> d = {{-0.5f, 0, 2}, {-1.0f, 0, 1}, {-2.0f, 1, 0}, {-2.5f, 1, 3}};
    const auto next2 = lm::continue_beams(std::span<const lm::BeamCandidate>(d), 2, 2, h2, ids_of, stop01);
    CHECK(h2.size() == 1);  // rank 1 finished, rank 2 skipped
    CHECK(next2[1] == d[3]);
    // too many stop ids
    const std::vector<lm::BeamCandidate> e = {{-0.5f, 0, 1}, {-1.0f, 0, 0}, {-2.0f, 1, 1}, {-2.5f, 1, 3}};
    throws_with<ValueError>([&] { (void)lm::continue_beams(std::span<const lm::BeamCandidate>(e), 2, 2, h2, ids_of, stop01); },
                            "fewer than 2 beams continue");
}

TEST_CASE("beam search: options and KvCache::copy_slot", "[decoder]") {
    lm::BeamOptions o;
    o.validate();
    CHECK_FALSE(o.enabled());
    o.num_beams = 0;
    throws_with<ConfigError>([&] { o.validate(); }, "num_beams = 0");
    o.num_beams = 3;
    o.num_return_sequences = 4;
    throws_with<ConfigError>([&] { o.validate(); }, "num_return_sequences = 4");
    o.num_return_sequences = 2;
    o.length_penalty = std::numeric_limits<float>::quiet_NaN();
    throws_with<ConfigError>([&] { o.validate(); }, "length_penalty");

    lm::KvCache<float> c(2, 2, 4, 3, 8);
    c.advance(0, 5);
    for (index_t l = 0; l < 2; ++l)
        for (index_t h = 0; h < 2; ++h)
            for (index_t i = 0; i < 5 * 4; ++i) {
                c.keys(l, 0, h)[i] = static_cast<float>(100 * l + 10 * h + i);
                c.values(l, 0, h)[i] = -static_cast<float>(100 * l + 10 * h + i);
            }
    c.advance(2, 7);
    c.copy_slot(0, 2);
    CHECK(c.length(2) == 5);
    for (index_t l = 0; l < 2; ++l)
        for (index_t h = 0; h < 2; ++h)
            for (index_t i = 0; i < 5 * 4; ++i) {
                CHECK(c.keys(l, 2, h)[i] == c.keys(l, 0, h)[i]);
                CHECK(c.values(l, 2, h)[i] == c.values(l, 0, h)[i]);
            }
    CHECK(c.length(1) == 0);
    throws_with<ConfigError>([&] { c.copy_slot(0, 3); }, "slot 3 out of range");
}

TEST_CASE("beam search: transformers' beam search on the decoder fixtures", "[.][decoder-parity]") {
    const auto dir = moe_test::fixture_dir();
    if (!std::filesystem::exists(dir / "decoder_beam.safetensors"))
        MOE_SKIP("no beam-search fixture in " << dir << " (tools/reference/fixtures_decoder.py)");
    const auto fx = io::SafetensorsFile::open(dir / "decoder_beam.safetensors");
    const auto meta = [&](const std::string& k) { return fx.metadata().at(k); };
    const int cases = std::stoi(meta("cases"));
    REQUIRE(cases >= 5);
    double worst = 0;  // the largest relative score difference
    for (int c = 0; c < cases; ++c) {
        const std::string p = "c" + std::to_string(c) + "_";
        INFO("case " << c << ": " << meta(p + "model") << ", embedded " << meta(p + "embedded") << ", "
                     << meta(p + "beams") << " beams, early " << meta(p + "early_stopping"));
        lm::GenerationOptions o;
        o.sampling.temperature = 0;
        o.sampling.repetition_penalty = std::stof(meta(p + "repetition_penalty"));
        o.max_new_tokens = std::stoi(meta(p + "max_new"));
        o.min_new_tokens = std::stoi(meta(p + "min_new"));
        o.use_default_stops = false;
        o.stop_ids = ints(fx.get("__" + p + "eos__"));
        o.beams.num_beams = std::stoi(meta(p + "beams"));
        o.beams.length_penalty = std::stof(meta(p + "length_penalty"));
        o.beams.early_stopping = early_of(meta(p + "early_stopping"));
        o.beams.num_return_sequences = std::stoi(meta(p + "return"));
        const auto prompt = ints(fx.get("__" + p + "prompt__"));
        const TensorView scores = fx.get("__" + p + "scores__");
        const auto run = [&](auto& m) {
            auto cache = m.make_cache(lm::cache_slots_for(1, o), 64);
            if (meta(p + "embedded") == "true") {
                Tensor x(DType::f32, {static_cast<index_t>(prompt.size()), m.hidden_size()});
                m.embed(prompt, x.matrix<float>());
                const lm::EmbeddedPrompt ep{x.matrix<float>(), {}};
                return lm::generate(m, cache, std::span<const lm::EmbeddedPrompt>(&ep, 1), o);
            }
            return lm::generate(m, cache, std::span<const std::int32_t>(prompt), o);
        };
        const auto check = [&](const lm::GenerationResult& r) {
            REQUIRE(static_cast<index_t>(r.sequences.size()) == o.beams.num_return_sequences);
            for (index_t i = 0; i < o.beams.num_return_sequences; ++i) {
                INFO("returned sequence " << i);
                CHECK(r.sequences[static_cast<std::size_t>(i)].ids ==
                      ints(fx.get("__" + p + "ids_" + std::to_string(i) + "__")));
                const double want = scores.data<float>()[i];
                const double err = std::abs(r.sequences[static_cast<std::size_t>(i)].score - want) / std::abs(want);
                CHECK(err <= 1e-4);
                worst = std::max(worst, err);
            }
        };
        if (meta(p + "model") == "decoder_qwen2_moe") {
            auto m = lm::load_decoder<lm::Qwen2MoeDecoder<float>>(dir / meta(p + "model"));
            check(run(m));
        } else {
            auto m = lm::load_decoder<lm::DenseDecoder<float>>(dir / meta(p + "model"));
            check(run(m));
        }
    }
    WARN("beam search: " << cases << " cases, ids identical, scores within " << worst << " (relative)");
}

TEST_CASE("beam search: a batch equals each prompt alone, threads change nothing, one beam is greedy, errors",
          "[.][decoder-parity]") {
    const auto dir = moe_test::fixture_dir();
    if (!std::filesystem::exists(dir / "decoder_qwen2.safetensors"))
        MOE_SKIP("no decoder fixtures in " << dir << " (tools/reference/fixtures_decoder.py)");
    const auto fx = io::SafetensorsFile::open(dir / "decoder_qwen2.safetensors");
    auto m = lm::load_decoder<lm::DenseDecoder<float>>(dir / "decoder_qwen2");
    const auto p0 = ints(fx.get("__prompt_0__")), p1 = ints(fx.get("__prompt_1__"));
    const auto greedy = ints(fx.get("__greedy_ids__"));

    lm::GenerationOptions o;
    o.sampling.temperature = 0;
    o.sampling.repetition_penalty = 1.3f;
    o.max_new_tokens = 10;
    o.use_default_stops = false;
    o.stop_ids = {greedy[3]};
    o.beams.num_beams = 4;
    o.beams.num_return_sequences = 2;
    auto cache = m.make_cache(lm::cache_slots_for(2, o), 64);
    const auto both = lm::generate(m, cache, {p0, p1}, o);
    const auto a0 = lm::generate(m, cache, p0, o);
    const auto a1 = lm::generate(m, cache, p1, o);
    REQUIRE(both.sequences.size() == 4);
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(both.sequences[i].ids == a0.sequences[i].ids);
        CHECK(std::abs(both.sequences[i].score - a0.sequences[i].score) <= 1e-5 * std::abs(a0.sequences[i].score));
        CHECK(both.sequences[2 + i].ids == a1.sequences[i].ids);
    }
    CHECK(both.sequences[0].score >= both.sequences[1].score);  // best first
    m.set_exec(Exec(1));
    const auto one = lm::generate(m, cache, {p0, p1}, o);
    m.set_exec(Exec{});
    for (std::size_t i = 0; i < 4; ++i) {
        CHECK(one.sequences[i].ids == both.sequences[i].ids);
        CHECK(one.sequences[i].score == both.sequences[i].score);
    }

    // one beam is the greedy loop (beam search is not entered)
    lm::GenerationOptions g = o;
    g.beams = {};
    g.stop_ids.clear();
    g.sampling.repetition_penalty = 1.0f;
    g.max_new_tokens = 32;
    CHECK(lm::generate(m, cache, p0, g).sequences[0].ids == greedy);

    // min_new_tokens: a stop id never comes earlier (greedy too)
    g.max_new_tokens = 8;
    g.stop_ids = {greedy[0]};
    CHECK(lm::generate(m, cache, p0, g).sequences[0].ids.size() == 1);
    g.min_new_tokens = 3;
    const auto late = lm::generate(m, cache, p0, g).sequences[0].ids;
    CHECK(late.size() >= 4);
    for (std::size_t i = 0; i + 1 < late.size() && i < 3; ++i) CHECK(late[i] != greedy[0]);

    // errors
    auto small = m.make_cache(3, 64);
    throws_with<ConfigError>([&] { (void)lm::generate(m, small, p0, o); }, "need 4 cache slots");
    lm::GenerationOptions bad = o;
    bad.sampling.temperature = 0.7f;
    throws_with<ConfigError>([&] { (void)lm::generate(m, cache, p0, bad); }, "beam search is deterministic");
    bad = o;
    bad.beams.num_return_sequences = 5;
    throws_with<ConfigError>([&] { (void)lm::generate(m, cache, p0, bad); }, "num_return_sequences = 5");
    bad = o;
    const lm::TokenCallback cb = [](index_t, std::int32_t, std::string_view) { return true; };
    throws_with<ConfigError>([&] { (void)lm::generate(m, cache, p0, bad, nullptr, cb); }, "streaming");
    bad.min_new_tokens = -1;
    throws_with<ConfigError>([&] { (void)lm::generate(m, cache, p0, bad); }, "min_new_tokens");
}

}  // namespace moe_test_beam_search
