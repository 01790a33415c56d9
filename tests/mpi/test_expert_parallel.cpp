// Expert parallelism (include/moe/dist/) under mpirun: every rank's outputs against the
// single-process layers and model on the same weights and the same tokens, bit for bit (the
// arithmetic is the same: each expert runs over the rows the single-process container gives it,
// in the same order, and the combine is the same code), and the errors that must name a rank.
//
// Every rank runs every test case; collectives first, CHECKs after (tests/mpi/main.cpp).
#include <catch2/catch.hpp>
#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "lm/decoder.hpp"
#include "moe/dist/expert_parallel.hpp"
#include "moe/dist/layers.hpp"
#include "moe/dist/loaders.hpp"
#include "moe/moe.hpp"

namespace moe_test_expert_parallel {

using namespace moe;
using dist::ExpertParallel;
using dist::Placement;

int rank() { return dist::rank_of(MPI_COMM_WORLD); }
int ranks() { return dist::size_of(MPI_COMM_WORLD); }

/// Deterministic values in [-1, 1) (a 64-bit LCG): the same on every rank for the same seed.
std::vector<float> values(std::size_t n, std::uint64_t seed) {
    std::vector<float> v(n);
    std::uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (auto& x : v) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x = static_cast<float>(static_cast<double>(s >> 40) / static_cast<double>(1ULL << 24) * 2.0 - 1.0);
    }
    return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

long long sum_over_ranks(long long v) {
    long long all = 0;
    MPI_Allreduce(&v, &all, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    return all;
}

/// Expert e on rank (E - 1 - e) % P: not rank-ordered, so the sender's reordering runs.
Placement strided(index_t E, int P) {
    std::vector<int> owner(static_cast<std::size_t>(E));
    for (index_t e = 0; e < E; ++e) owner[static_cast<std::size_t>(e)] = static_cast<int>((E - 1 - e) % P);
    return Placement::from_owners(owner, P);
}

struct Scenario {
    index_t E = 8, d = 36, F = 40, k = 2;
    double capacity_factor = 0;  // > 0: capacity, dropped tokens
    CapacityPriority priority = CapacityPriority::token_order;
    bool strided = false;        // placement (E - 1 - e) % P instead of contiguous runs
    bool starve_last = false;    // the last rank's experts get no tokens
    bool rank1_empty = false;    // rank 1 brings no tokens
    int threads = 1;
    index_t tokens_base = 5;     // rank r routes tokens_base + 13 r tokens (uneven)
};

struct Outcome {
    bool equal = false;
    long long dropped = 0;           // this rank's dropped choices (single-process plan)
    bool plans_equal = false;
    index_t rows_sent = 0, expected_rows_sent = 0, rows_received = 0;
    index_t own_expert_slots = 0;    // slots of this rank's experts over all ranks
};

/// One MoELayer over Glu experts, single-process on this rank's tokens vs. expert-parallel.
template <WeightPolicy W>
Outcome run_moe(const Scenario& s) {
    const int r = rank(), P = ranks();
    Gate g = Gate::random(s.E, s.d, 11);
    if (s.starve_last) {
        std::vector<float> w(static_cast<std::size_t>(s.E * s.d)), b(static_cast<std::size_t>(s.E), 0.0f);
        std::memcpy(w.data(), g.weight().data, w.size() * sizeof(float));
        const Placement p = s.strided ? strided(s.E, P) : Placement::contiguous(s.E, P);
        for (const index_t e : p.experts_of(P - 1)) b[static_cast<std::size_t>(e)] = -1e4f;
        g = Gate::from_values(s.E, s.d, w, b);
    }
    TopKOptions o;
    o.k = s.k;
    o.capacity_factor = s.capacity_factor;
    o.priority = s.priority;
    auto full = GluExperts<Silu, W>::random(s.E, s.d, s.F, 21);
    const Placement placement = s.strided ? strided(s.E, P) : Placement::contiguous(s.E, P);
    const auto& mine = placement.experts_of(r);

    MoELayer<TopKRouter<SoftmaxScores>, GluExperts<Silu, W>> single(TopKRouter<SoftmaxScores>(g, o), full);
    MoELayer<TopKRouter<SoftmaxScores>, ExpertParallel<GluExperts<Silu, W>>> parallel(
        TopKRouter<SoftmaxScores>(g, o), ExpertParallel<GluExperts<Silu, W>>(MPI_COMM_WORLD, placement, full.select(mine)));
    single.set_exec(Exec(s.threads));
    parallel.set_exec(Exec(s.threads));

    const index_t T = s.rank1_empty && r == 1 ? 0 : s.tokens_base + 13 * r;
    const auto x = values(static_cast<std::size_t>(T * s.d), 100 + static_cast<std::uint64_t>(r));
    std::vector<float> y1(x.size(), 7.0f), y2(x.size(), -7.0f);
    single.forward({x.data(), T, s.d}, {y1.data(), T, s.d});
    parallel.forward({x.data(), T, s.d}, {y2.data(), T, s.d});

    Outcome out;
    out.equal = same_bits(y1, y2);
    const RoutingPlan& a = single.plan();
    const RoutingPlan& b = parallel.plan();
    out.dropped = static_cast<long long>(a.dropped.size());
    out.plans_equal = a.expert_ids == b.expert_ids && a.token_to_slot == b.token_to_slot && a.counts == b.counts;
    for (index_t e = 0; e < s.E; ++e)
        if (placement.owner(e) != r) out.expected_rows_sent += a.counts[static_cast<std::size_t>(e)];
    out.rows_sent = parallel.experts().traffic().rows_sent;
    out.rows_received = parallel.experts().traffic().rows_received;
    // Slots of this rank's experts from every rank: what it must have computed.
    std::vector<long long> counts(a.counts.begin(), a.counts.end()), total(counts.size());
    MPI_Allreduce(counts.data(), total.data(), static_cast<int>(counts.size()), MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
    long long computed = 0;
    for (const index_t e : mine) computed += total[static_cast<std::size_t>(e)];
    out.own_expert_slots = static_cast<index_t>(computed);
    return out;
}

void check_outcome(const Outcome& o) {
    CHECK(o.equal);
    CHECK(o.plans_equal);
    CHECK(o.rows_sent == o.expected_rows_sent);
}

TEST_CASE("ExpertParallel MoELayer equals the single-process layer, bit for bit", "[mpi]") {
    SECTION("contiguous placement, uneven token counts") {
        const Outcome o = run_moe<float>({});
        check_outcome(o);
    }
    SECTION("a placement that is not in rank order (the sender reorders)") {
        Scenario s;
        s.strided = true;
        check_outcome(run_moe<float>(s));
    }
    SECTION("capacity: dropped tokens, token order and GShard's choice order") {
        for (const auto pr : {CapacityPriority::token_order, CapacityPriority::choice_rank}) {
            Scenario s;
            s.capacity_factor = 0.6;
            s.priority = pr;
            s.tokens_base = 40;
            const Outcome o = run_moe<float>(s);
            check_outcome(o);
            CHECK(sum_over_ranks(o.dropped) > 0);  // the scenario drops tokens
        }
    }
    SECTION("the last rank's experts get no tokens (empty experts)") {
        Scenario s;
        s.starve_last = true;
        const Outcome o = run_moe<float>(s);
        check_outcome(o);
        if (rank() == ranks() - 1) {
            CHECK(o.own_expert_slots == 0);
            CHECK(o.rows_received == 0);
        }
    }
    SECTION("rank 1 brings no tokens") {
        Scenario s;
        s.rank1_empty = true;
        const Outcome o = run_moe<float>(s);
        check_outcome(o);
        if (rank() == 1) CHECK(o.rows_sent == 0);
    }
    SECTION("two OpenMP threads per rank") {
        Scenario s;
        s.threads = 2;
        s.tokens_base = 70;
        check_outcome(run_moe<float>(s));
    }
    SECTION("bf16 weights, few rows per expert (the small-M kernel) and many") {
        Scenario s;
        s.k = 1;
        s.tokens_base = 3;
        check_outcome(run_moe<bf16>(s));
        s.tokens_base = 90;
        s.strided = true;
        check_outcome(run_moe<bf16>(s));
    }
}

TEST_CASE("dist::distribute: an MoELayer with shared experts (Qwen2-MoE's structure) made expert-parallel", "[mpi]") {
    const int r = rank(), P = ranks();
    const index_t E = 8, d = 20, F = 28;
    using Glu = GluExperts<Silu>;
    using Layer = MoELayer<TopKRouter<SoftmaxScores>, Glu, SharedExperts<Glu>>;
    Layer single(softmax_topk_router(Gate::random(E, d, 41), 2), Glu::random(E, d, F, 42),
                 SharedExperts<Glu>(Glu::random(1, d, F, 43), values(static_cast<std::size_t>(d), 44)));
    auto parallel = dist::distribute(MPI_COMM_WORLD, single, Placement::contiguous(E, P));
    const index_t T = 11 + 4 * r;
    const auto x = values(static_cast<std::size_t>(T * d), 700 + static_cast<std::uint64_t>(r));
    std::vector<float> y1(x.size()), y2(x.size());
    single.forward({x.data(), T, d}, {y1.data(), T, d});
    parallel.forward({x.data(), T, d}, {y2.data(), T, d});
    CHECK(same_bits(y1, y2));
    CHECK(parallel.experts().local().num_experts() == static_cast<index_t>(Placement::contiguous(E, P).experts_of(r).size()));
}

TEST_CASE("ExpertParallel in RingMoE's HierarchicalMoE equals the single-process layer", "[mpi]") {
    const int r = rank(), P = ranks();
    const index_t d = 24, F = 32, Em = 4, Ec = 8;
    HierarchicalOptions opt;
    opt.k_modal = 1;
    opt.k_collab = 2;
    opt.capacity_factor_modal = 1.0;
    opt.capacity_factor_collab = 1.0;
    using Mlp = MlpExperts<Gelu>;
    std::vector<Gate> gates{Gate::random(Em, d, 1), Gate::random(Em, d, 2)};
    std::vector<Mlp> modal{Mlp::random(Em, d, F, 3), Mlp::random(Em, d, F, 5)};
    const Gate collab_gate = Gate::random(Ec, d, 7);
    const Mlp collab = Mlp::random(Ec, d, F, 8);
    HierarchicalMoE<Mlp, Mlp> single(gates, modal, collab_gate, collab, NoSharedExperts{}, opt);

    const Placement pm = Placement::contiguous(Em, P), pc = strided(Ec, P);
    std::vector<ExpertParallel<Mlp>> modal_parallel;
    for (const auto& m : modal) modal_parallel.emplace_back(MPI_COMM_WORLD, pm, m.select(pm.experts_of(r)));
    ExpertParallel<Mlp> collab_parallel(MPI_COMM_WORLD, pc, collab.select(pc.experts_of(r)));
    HierarchicalMoE<ExpertParallel<Mlp>, ExpertParallel<Mlp>> parallel(gates, std::move(modal_parallel), collab_gate,
                                                                       std::move(collab_parallel), NoSharedExperts{},
                                                                       opt);

    // Rank 1's tokens are all of modality 0: its modality-1 group is reached only on the others.
    const index_t T = 20 + 7 * r;
    const auto x = values(static_cast<std::size_t>(T * d), 300 + static_cast<std::uint64_t>(r));
    std::vector<std::int32_t> modality(static_cast<std::size_t>(T));
    for (index_t t = 0; t < T; ++t) modality[static_cast<std::size_t>(t)] = r == 1 ? 0 : static_cast<int>((t * 7 / 3) % 2);
    std::vector<float> y1(x.size()), y2(x.size(), 1.0f);
    single.forward({x.data(), T, d}, std::span<const std::int32_t>(modality), {y1.data(), T, d});
    parallel.forward({x.data(), T, d}, std::span<const std::int32_t>(modality), {y2.data(), T, d});
    const double loss1 = single.losses().total, loss2 = parallel.losses().total;
    const bool absent1 = !parallel.losses().present[1];
    // ... and once more by contiguous chunks, all tokens of modality 1 except on rank 1.
    const std::vector<ModalityChunk> chunks{{0, T / 2, 0}, {T / 2, T, r == 1 ? 0 : 1}};
    std::vector<float> y3(x.size()), y4(x.size(), 2.0f);
    single.forward({x.data(), T, d}, std::span<const ModalityChunk>(chunks), {y3.data(), T, d});
    parallel.forward({x.data(), T, d}, std::span<const ModalityChunk>(chunks), {y4.data(), T, d});
    // dist::distribute makes the single-process layer expert-parallel (the same placements).
    auto distributed = dist::distribute(MPI_COMM_WORLD, single, pm, pc);
    std::vector<float> y5(x.size(), 3.0f);
    distributed.forward({x.data(), T, d}, std::span<const std::int32_t>(modality), {y5.data(), T, d});
    const long long dropped = static_cast<long long>(single.collab_plan().dropped.size());
    const long long all_dropped = sum_over_ranks(dropped);

    CHECK(same_bits(y1, y2));
    CHECK(same_bits(y3, y4));
    CHECK(same_bits(y1, y5));
    CHECK(distributed.collab_experts().local().num_experts() == static_cast<index_t>(pc.experts_of(r).size()));
    CHECK(distributed.losses().total == loss1);
    CHECK(loss1 == loss2);
    CHECK(absent1 == (r == 1));
    CHECK(all_dropped > 0);  // capacity factor 1.0 drops some collaborative choices
}

// --- a Mixtral checkpoint: one block, and a two-layer decoder --------------------------------

/// A checkpoint of random fp32 tensors: each add() draws values(numel, seed++) * scale (the
/// writer copies them at once).
struct RandomTensors {
    io::SafetensorsWriter w;
    std::uint64_t seed = 1;
    void add(const std::string& name, const Shape& shape, float scale) {
        Tensor t(DType::f32, shape);
        const auto v = values(static_cast<std::size_t>(t.numel()), seed++);
        float* p = t.data<float>();
        for (std::size_t i = 0; i < v.size(); ++i) p[i] = v[i] * scale;
        w.add(name, t.view());
    }
};

struct TinyMixtral {
    index_t H = 32, F = 40, E = 8, k = 2, V = 64, L = 2, heads = 4, kv = 2;
};

/// Writes model.safetensors and config.json of a random Mixtral into dir (rank 0 only).
void write_mixtral(const std::filesystem::path& dir, const TinyMixtral& m) {
    std::filesystem::create_directories(dir);
    RandomTensors rt{{}, 1};
    io::SafetensorsWriter& w = rt.w;
    auto add = [&rt](const std::string& name, Shape shape, float scale = 0.3f) { rt.add(name, shape, scale); };
    const index_t hd = m.H / m.heads;
    add("model.embed_tokens.weight", {m.V, m.H}, 1.0f);
    add("model.norm.weight", {m.H}, 1.0f);
    add("lm_head.weight", {m.V, m.H});
    for (index_t l = 0; l < m.L; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {m.H}, 1.0f);
        add(p + "post_attention_layernorm.weight", {m.H}, 1.0f);
        add(p + "self_attn.q_proj.weight", {m.heads * hd, m.H});
        add(p + "self_attn.k_proj.weight", {m.kv * hd, m.H});
        add(p + "self_attn.v_proj.weight", {m.kv * hd, m.H});
        add(p + "self_attn.o_proj.weight", {m.H, m.heads * hd});
        add(p + "block_sparse_moe.gate.weight", {m.E, m.H}, 1.0f);
        for (index_t e = 0; e < m.E; ++e) {
            const std::string q = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
            add(q + "w1.weight", {m.F, m.H});
            add(q + "w3.weight", {m.F, m.H});
            add(q + "w2.weight", {m.H, m.F});
        }
    }
    w.write(dir / "model.safetensors");
    std::ofstream(dir / "config.json") << "{\"model_type\": \"mixtral\", \"architectures\": [\"MixtralForCausalLM\"], "
                                       << "\"hidden_size\": " << m.H << ", \"intermediate_size\": " << m.F
                                       << ", \"num_hidden_layers\": " << m.L << ", \"num_attention_heads\": " << m.heads
                                       << ", \"num_key_value_heads\": " << m.kv << ", \"vocab_size\": " << m.V
                                       << ", \"num_local_experts\": " << m.E << ", \"num_experts_per_tok\": " << m.k
                                       << ", \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, "
                                       << "\"rope_theta\": 10000.0, \"tie_word_embeddings\": false}\n";
}

/// A directory every rank agrees on (rank 0's process id), written by rank 0.
std::filesystem::path shared_mixtral(const TinyMixtral& m) {
    long long id = rank() == 0 ? static_cast<long long>(::getpid()) : 0;
    MPI_Bcast(&id, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    const auto dir = std::filesystem::temp_directory_path() / ("moe_mpi_test_mixtral_" + std::to_string(id));
    if (rank() == 0) write_mixtral(dir, m);
    MPI_Barrier(MPI_COMM_WORLD);
    return dir;
}

void remove_shared(const std::filesystem::path& dir) {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank() == 0) std::filesystem::remove_all(dir);
}

TEST_CASE("dist::load_mixtral_block reads only the rank's experts and equals hf::load_mixtral_block", "[mpi]") {
    const TinyMixtral m;
    const auto dir = shared_mixtral(m);
    const int r = rank(), P = ranks();
    const std::string prefix = "model.layers.1.block_sparse_moe.";
    const auto file = dist::open_checkpoint(MPI_COMM_WORLD, dir / "model.safetensors");
    const Placement placement = strided(m.E, P);
    auto parallel = dist::load_mixtral_block<float>(MPI_COMM_WORLD, file, prefix, placement, m.k);
    auto single = hf::load_mixtral_block<float>(file, prefix, m.k);
    const index_t T = 9 + 5 * r;
    const auto x = values(static_cast<std::size_t>(T * m.H), 500 + static_cast<std::uint64_t>(r));
    std::vector<float> y1(x.size()), y2(x.size());
    single.forward({x.data(), T, m.H}, {y1.data(), T, m.H});
    parallel.forward({x.data(), T, m.H}, {y2.data(), T, m.H});
    remove_shared(dir);

    CHECK(same_bits(y1, y2));
    // The rank's share, read in place from the mapping (zero copy: the other experts' pages are
    // never touched), in ascending expert order.
    const auto& local = parallel.experts().local();
    const auto& ids = placement.experts_of(r);
    REQUIRE(local.num_experts() == static_cast<index_t>(ids.size()));
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const std::string q = prefix + "experts." + std::to_string(ids[i]) + ".";
        CHECK(static_cast<const void*>(local.gate().weight(static_cast<index_t>(i)).data) == file.get(q + "w1.weight").raw());
        CHECK(static_cast<const void*>(local.up().weight(static_cast<index_t>(i)).data) == file.get(q + "w3.weight").raw());
        CHECK(static_cast<const void*>(local.down().weight(static_cast<index_t>(i)).data) == file.get(q + "w2.weight").raw());
    }
    CHECK(parallel.experts().parameters() == static_cast<index_t>(ids.size()) * 3 * m.F * m.H);
}

TEST_CASE("a Mixtral decoder with expert-parallel FFNs equals the single-process model", "[mpi]") {
    const TinyMixtral m;
    const auto dir = shared_mixtral(m);
    const int r = rank(), P = ranks();
    const lm::DecoderConfig c = lm::DecoderConfig::from_file(dir / "config.json");
    const auto file = dist::open_checkpoint(MPI_COMM_WORLD, dir / "model.safetensors");
    auto single = lm::load_decoder<lm::MixtralDecoder<float>>(c, file);
    const Placement placement = Placement::contiguous(m.E, P);
    auto parallel = lm::load_decoder<dist::MixtralMoE<float>, float>(
        c, file, [&](const io::SafetensorsFile& f, const lm::DecoderConfig& cfg, index_t i) {
            return dist::load_mixtral_block<float>(MPI_COMM_WORLD, f, "model.layers." + std::to_string(i) + ".block_sparse_moe.",
                                                   placement, cfg.num_experts_per_tok);
        });
    // Each rank its own prompt (of its own length), then two more tokens appended.
    std::vector<std::int32_t> prompt;
    for (int i = 0; i < 6 + 3 * r; ++i) prompt.push_back((i * 13 + r * 7 + 1) % static_cast<int>(m.V));
    const std::vector<std::int32_t> more{static_cast<std::int32_t>(r + 2), 5};
    auto c1 = single.make_cache(1, 64);
    auto c2 = parallel.make_cache(1, 64);
    const Tensor a = single.prefill(c1, 0, prompt, -1, lm::LogitRows::all);
    const Tensor b = parallel.prefill(c2, 0, prompt, -1, lm::LogitRows::all);
    const Tensor a2 = single.prefill(c1, 0, more, -1, lm::LogitRows::all);
    const Tensor b2 = parallel.prefill(c2, 0, more, -1, lm::LogitRows::all);
    remove_shared(dir);

    auto as_vector = [](const Tensor& t) {
        const float* p = t.data<float>();
        return std::vector<float>(p, p + t.numel());
    };
    CHECK(a.numel() == static_cast<index_t>(prompt.size()) * m.V);
    CHECK(same_bits(as_vector(a), as_vector(b)));
    CHECK(same_bits(as_vector(a2), as_vector(b2)));
}

/// A random two-layer Qwen2-MoE folder (layer 0 dense: mlp_only_layers; layer 1 the sparse
/// block with its gated shared expert), written by rank 0 into a directory every rank agrees on.
std::filesystem::path shared_qwen2_moe(index_t E) {
    long long id = rank() == 0 ? static_cast<long long>(::getpid()) : 0;
    MPI_Bcast(&id, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    const auto dir = std::filesystem::temp_directory_path() / ("moe_mpi_test_qwen2_moe_" + std::to_string(id));
    const index_t H = 32, I = 48, Fm = 24, Fs = 40, V = 64, heads = 4, kv = 2, hd = H / heads;
    if (rank() == 0) {
        std::filesystem::create_directories(dir);
        RandomTensors rt{{}, 900};
        io::SafetensorsWriter& w = rt.w;
        auto add = [&rt](const std::string& name, Shape shape, float scale = 0.3f) { rt.add(name, shape, scale); };
        add("model.embed_tokens.weight", {V, H}, 1.0f);
        add("model.norm.weight", {H}, 1.0f);
        add("lm_head.weight", {V, H});
        for (int l = 0; l < 2; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".", a = p + "self_attn.", m = p + "mlp.";
            add(p + "input_layernorm.weight", {H}, 1.0f);
            add(p + "post_attention_layernorm.weight", {H}, 1.0f);
            add(a + "q_proj.weight", {heads * hd, H});
            add(a + "q_proj.bias", {heads * hd});
            add(a + "k_proj.weight", {kv * hd, H});
            add(a + "k_proj.bias", {kv * hd});
            add(a + "v_proj.weight", {kv * hd, H});
            add(a + "v_proj.bias", {kv * hd});
            add(a + "o_proj.weight", {H, heads * hd});
            auto glu = [&](const std::string& q, index_t F) {
                add(q + "gate_proj.weight", {F, H});
                add(q + "up_proj.weight", {F, H});
                add(q + "down_proj.weight", {H, F});
            };
            if (l == 0) {
                glu(m, I);
                continue;
            }
            add(m + "gate.weight", {E, H}, 1.0f);
            for (index_t e = 0; e < E; ++e) glu(m + "experts." + std::to_string(e) + ".", Fm);
            glu(m + "shared_expert.", Fs);
            add(m + "shared_expert_gate.weight", {1, H});
        }
        w.write(dir / "model.safetensors");
        std::ofstream(dir / "config.json") << "{\"model_type\": \"qwen2_moe\", \"hidden_size\": " << H
                                           << ", \"intermediate_size\": " << I << ", \"moe_intermediate_size\": " << Fm
                                           << ", \"shared_expert_intermediate_size\": " << Fs
                                           << ", \"num_hidden_layers\": 2, \"num_attention_heads\": " << heads
                                           << ", \"num_key_value_heads\": " << kv << ", \"vocab_size\": " << V
                                           << ", \"num_experts\": " << E << ", \"num_experts_per_tok\": 2, "
                                           << "\"decoder_sparse_step\": 1, \"mlp_only_layers\": [0], "
                                           << "\"norm_topk_prob\": false, \"max_position_embeddings\": 256, "
                                           << "\"rms_norm_eps\": 1e-6, \"tie_word_embeddings\": false}\n";
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return dir;
}

TEST_CASE("a Qwen2-MoE decoder (a dense layer, a sparse one with a shared expert) made expert-parallel", "[mpi]") {
    const int r = rank(), P = ranks();
    const index_t E = 8;
    const auto dir = shared_qwen2_moe(E);
    const lm::DecoderConfig c = lm::DecoderConfig::from_file(dir / "config.json");
    const auto file = dist::open_checkpoint(MPI_COMM_WORLD, dir / "model.safetensors");
    auto single = lm::load_decoder<lm::Qwen2MoeDecoder<float>>(c, file);
    // Each sparse block loaded as the single-process loader builds it, then spread: the weights
    // are the file's pages, so each rank touches only its experts' (distribute keeps select(ids)).
    using DistQwen2 = decltype(dist::distribute(MPI_COMM_WORLD, std::declval<hf::Qwen2MoE<float>>(), Placement{}));
    using Slot = lm::FfnVariant<DistQwen2, lm::SwiGlu<float>>;
    const Placement placement = strided(E, P);
    auto parallel = lm::load_decoder<Slot, float>(c, file, [&](const io::SafetensorsFile& f, const lm::DecoderConfig& cfg,
                                                               index_t i) -> Slot {
        if (!cfg.sparse_layer(i)) return lm::FfnLoader<lm::SwiGlu<float>>::load(f, cfg, i);
        const std::string p = "model.layers." + std::to_string(i) + ".mlp.";
        return dist::distribute(MPI_COMM_WORLD, hf::load_qwen2_moe<float>(f, p, cfg.num_experts_per_tok, cfg.norm_topk_prob),
                                placement);
    });
    std::vector<std::int32_t> prompt;
    for (int i = 0; i < 5 + 4 * r; ++i) prompt.push_back((i * 11 + r * 5 + 3) % 64);
    auto c1 = single.make_cache(1, 64);
    auto c2 = parallel.make_cache(1, 64);
    const Tensor a = single.prefill(c1, 0, prompt, -1, lm::LogitRows::all);
    const Tensor b = parallel.prefill(c2, 0, prompt, -1, lm::LogitRows::all);
    remove_shared(dir);

    const std::vector<float> va(a.data<float>(), a.data<float>() + a.numel()), vb(b.data<float>(), b.data<float>() + b.numel());
    CHECK(a.numel() == static_cast<index_t>(prompt.size()) * 64);
    CHECK(same_bits(va, vb));
}

// --- errors: every rank throws, naming the rank that failed; nobody hangs --------------------

TEST_CASE("a rank that cannot load says which rank and why, on every rank", "[mpi]") {
    const int r = rank(), P = ranks();
    const TinyMixtral m;
    const auto dir = shared_mixtral(m);
    // Rank P - 1 is given a file that does not exist.
    const auto path = r == P - 1 ? dir / "missing.safetensors" : dir / "model.safetensors";
    std::string what1;
    int rank1 = -1;
    try {
        (void)dist::open_checkpoint(MPI_COMM_WORLD, path);
    } catch (const dist::RankError& e) {
        what1 = e.what();
        rank1 = e.rank();
    }
    // Every rank's placement has one expert too many: all fail, the lowest rank is named.
    const auto file = dist::open_checkpoint(MPI_COMM_WORLD, dir / "model.safetensors");
    std::string what2;
    int rank2 = -1;
    try {
        (void)dist::load_mixtral_block<float>(MPI_COMM_WORLD, file, "model.layers.0.block_sparse_moe.",
                                              Placement::contiguous(m.E + 1, P));
    } catch (const dist::RankError& e) {
        what2 = e.what();
        rank2 = e.rank();
    }
    // Only rank P - 1's experts are wrong (it asks for a tensor name that does not exist).
    std::string what3;
    try {
        (void)dist::expert_parallel(MPI_COMM_WORLD, Placement::contiguous(m.E, P), [&](std::span<const index_t> ids) {
            const std::string stem = r == P - 1 ? "model.layers.0.block_sparse_moe.expert." : "model.layers.0.block_sparse_moe.experts.";
            return loaders::glu_experts<float>(file, stem, ids, m.H, ".w1.weight", ".w3.weight", ".w2.weight");
        });
    } catch (const dist::RankError& e) {
        what3 = e.what();
    }
    remove_shared(dir);

    CHECK(rank1 == P - 1);
    CHECK_THAT(what1, Catch::Contains("rank " + std::to_string(P - 1) + " of " + std::to_string(P) + " failed") &&
                          Catch::Contains("missing.safetensors"));
    CHECK(rank2 == 0);
    CHECK_THAT(what2, Catch::Contains("rank 0 of") && Catch::Contains("the placement places 9") &&
                          Catch::Contains("and " + std::to_string(P - 1) + " other rank"));
    CHECK_THAT(what3, Catch::Contains("rank " + std::to_string(P - 1) + " of") && Catch::Contains("expert."));
}

TEST_CASE("ExpertParallel: wrong input on one rank, or a wrong placement, fails on every rank", "[mpi]") {
    const int r = rank(), P = ranks();
    const index_t E = 4, d = 16;
    const auto full = GluExperts<Silu>::random(E, d, 24, 3);
    const Placement p = Placement::contiguous(E, P);
    // A placement over a different rank count: every rank throws.
    std::string what1;
    try {
        (void)ExpertParallel<GluExperts<Silu>>(MPI_COMM_WORLD, Placement::contiguous(E, 1), full);
    } catch (const dist::RankError& e) {
        what1 = e.what();
    }
    // A local set that is not the rank's share (only on the last rank).
    std::string what2;
    try {
        const auto ids = p.experts_of(r);
        std::vector<index_t> wrong(ids.begin(), ids.end());
        if (r == P - 1) wrong.push_back(ids.front() == 0 ? 1 : 0);
        (void)ExpertParallel<GluExperts<Silu>>(MPI_COMM_WORLD, p, full.select(wrong));
    } catch (const dist::RankError& e) {
        what2 = e.what();
    }
    // A forward whose output has the wrong shape on rank 0 only.
    ExpertParallel<GluExperts<Silu>> x(MPI_COMM_WORLD, p, full.select(p.experts_of(r)));
    auto router = softmax_topk_router(Gate::random(E, d, 5), 2);
    const index_t T = 6;
    const auto in = values(static_cast<std::size_t>(T * d), 9);
    RoutingPlan plan;
    router.route({in.data(), T, d}, plan);
    std::vector<float> out(static_cast<std::size_t>(T * d));
    std::string what3;
    try {
        x.forward({in.data(), T, d}, plan, {out.data(), r == 0 ? T - 1 : T, d});
    } catch (const dist::RankError& e) {
        what3 = e.what();
    }
    // ... and the next forward works again on every rank.
    x.forward({in.data(), T, d}, plan, {out.data(), T, d});
    std::vector<float> ref(out.size());
    auto single = full;
    single.forward({in.data(), T, d}, plan, {ref.data(), T, d});

    if (P > 1) CHECK_THAT(what1, Catch::Contains("rank 0 of") && Catch::Contains("the placement is over 1 ranks"));
    CHECK_THAT(what2, Catch::Contains("rank " + std::to_string(P - 1) + " of") && Catch::Contains("the placement gives it"));
    CHECK_THAT(what3, Catch::Contains("rank 0 of") && Catch::Contains("output is [5, 16]"));
    CHECK(same_bits(out, ref));
}

TEST_CASE("Placement: partitions only, every rank with an expert", "[mpi]") {
    const Placement p = Placement::contiguous(10, 4);
    CHECK(p.experts_of(0) == std::vector<index_t>{0, 1});
    CHECK(p.experts_of(3) == std::vector<index_t>{7, 8, 9});
    CHECK(p.rank_ordered());
    CHECK_FALSE(strided(8, 3).rank_ordered());
    const std::vector<std::vector<index_t>> dup{{0, 1}, {1, 2}}, gap{{0, 5}, {1}}, none{{0, 1, 2}, {}};
    CHECK_THROWS_WITH(Placement::from_lists(dup), Catch::Contains("expert 1 is listed twice (ranks 0 and 1)"));
    CHECK_THROWS_WITH(Placement::from_lists(gap), Catch::Contains("rank 0 lists expert 5"));
    CHECK_THROWS_WITH(Placement::from_lists(none), Catch::Contains("rank 1 holds no expert"));
    CHECK_THROWS_WITH(Placement::from_owners({0, 2}, 2), Catch::Contains("expert 1 is placed on rank 2"));
    CHECK_THROWS_WITH(Placement::contiguous(3, 4), Catch::Contains("3 experts over 4 ranks"));
    const std::vector<std::vector<index_t>> ok{{2, 0}, {1}};
    const Placement q = Placement::from_lists(ok);
    CHECK(q.experts_of(0) == std::vector<index_t>{0, 2});
    CHECK(q.local_index(2) == 1);
    CHECK(q.owner(1) == 1);
}

}  // namespace moe_test_expert_parallel
