// Parity: the int8 policies vs tools/reference/int8.py (moe's quantiser and int8 Linear written
// in PyTorch from docs/scaling.md) inside transformers' MixtralSparseMoeBlock (fixtures
// mixtral_int8: one scale per output channel; mixtral_int8_g32: groups of 32 inputs).
//
// Tolerances (relative Frobenius error of the block output; measured 2026-12-06 in brackets):
//   int8_dot, per channel     1e-6 (7.5e-8): the integer sums are exact and the scaling is the
//                             same fma on both sides; what differs is fp32 outside the experts
//                             (silu, routing weights, the combine). The expert's intermediate
//                             (silu(w1 x) * w3 x) is requantised per token, so a last-ulp
//                             difference could move one element across a rounding boundary (one
//                             int8 step); on these inputs none does
//   int8_dot, groups of 32    1e-6 (1.4e-7; plus the fp32 sum over groups in another order)
//   int8_weight_only          1e-5 (1.9e-7; fp32 arithmetic on the same dequantised weights)
//   the quantiser             bit for bit: moe's int8 bytes and scales, quantised at load from
//                             the fp32 weights, equal the reference's
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <string>

#include "parity_util.hpp"

namespace moe_test_parity_int8 {  // this file's names (unity builds merge test files)

using namespace moe_test;

namespace {

template <moe::WeightPolicy W>
double block_error(const SafetensorsFile& f, const char* expected) {
    auto layer = moe::hf::load_mixtral_block<W>(f, meta(f, "prefix"), meta_int(f, "k"));
    const moe::TensorView x = f.get("__input__");
    moe::Tensor y(moe::DType::f32, x.shape());
    layer.forward(x.matrix<float>(), y.matrix<float>());
    return rel_error(y.matrix<float>(), f.get(expected).matrix<float>());
}

void int8_case(const std::string& fixture, double dot_tol) {
    const auto f = open_fixture(fixture);
    const std::string prefix = meta(f, "prefix");
    const index_t group = meta_int(f, "group");
    // The experts are borrowed from the file's int8 bytes.
    auto layer = moe::hf::load_mixtral_block<moe::int8_dot>(f, prefix, meta_int(f, "k"));
    const std::string w1 = prefix + "experts.1.w1.weight";
    CHECK(static_cast<const void*>(layer.experts().gate().int8_weight(1).q) == f.get(w1).raw());
    CHECK(layer.experts().gate().int8_group() == (group == 0 ? layer.hidden_size() : group));

    const double dot = block_error<moe::int8_dot>(f, "__output__");
    const double wo = block_error<moe::int8_weight_only>(f, "__output_weight_only__");
    const double f32 = block_error<moe::int8_dot>(f, "__output_f32__");
    std::printf("parity %-18s int8_dot %.2e (tol %.0e)  int8_weight_only %.2e (tol 1e-5)  int8_dot vs fp32 %.2e\n",
                fixture.c_str(), dot, dot_tol, wo, f32);
    CHECK(dot <= dot_tol);
    CHECK(wo <= 1e-5);

    // The quantiser: per-channel weights quantised at load from the fp32 copies equal the file's.
    if (group == 0) {
        const index_t E = layer.num_experts();
        for (index_t e = 0; e < E; ++e)
            for (const char* lin : {"w1", "w2", "w3"}) {
                const std::string n = prefix + "experts." + std::to_string(e) + "." + lin + ".weight";
                const moe::TensorView fw = f.get("float." + n), q = f.get(n), s = f.get(n + "_scale");
                const auto mine = moe::cpu::Linear<moe::int8_dot>(fw, nullptr, nullptr, n);
                const moe::cpu::Int8Matrix m = mine.int8_weight();
                INFO(n);
                REQUIRE(std::memcmp(m.q, q.raw(), static_cast<std::size_t>(q.nbytes())) == 0);
                REQUIRE(std::memcmp(m.scale, s.raw(), static_cast<std::size_t>(s.nbytes())) == 0);
            }
    }
}

}  // namespace

TEST_CASE("parity: int8 Mixtral block, one scale per output channel", "[parity][int8]") {
    int8_case("mixtral_int8", 1e-6);
}

TEST_CASE("parity: int8 Mixtral block, groups of 32 inputs", "[parity][int8]") {
    int8_case("mixtral_int8_g32", 1e-6);
}

}  // namespace moe_test_parity_int8
