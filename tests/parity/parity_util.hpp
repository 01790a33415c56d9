// Helpers of the parity tests: open a fixture written by tools/reference/make_fixtures.py, run a
// layer on its input, compare output / routing / losses with the PyTorch reference, and build
// edited copies of a fixture (a tensor removed or replaced) for the loaders' error paths.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "fixture_dir.hpp"
#include "moe/loaders/hf.hpp"
#include "moe/router/losses.hpp"

namespace moe_test {

using moe::index_t;
using moe::io::SafetensorsFile;

/// <fixture dir>/<name>.safetensors.
inline SafetensorsFile open_fixture(const std::string& name) {
    const auto path = fixture_dir() / (name + ".safetensors");
    INFO("fixture " << path.string() << " (write it with /usr/bin/python3 tools/reference/make_fixtures.py --out "
                    << fixture_dir().string() << ")");
    REQUIRE(std::filesystem::exists(path));
    return SafetensorsFile::open(path);
}

inline std::string meta(const SafetensorsFile& f, const std::string& key) {
    const auto it = f.metadata().find(key);
    INFO("metadata key '" << key << "' of " << f.path());
    REQUIRE(it != f.metadata().end());
    return it->second;
}
inline index_t meta_int(const SafetensorsFile& f, const std::string& key) { return std::stoll(meta(f, key)); }
inline double meta_double(const SafetensorsFile& f, const std::string& key) { return std::stod(meta(f, key)); }
inline bool meta_bool(const SafetensorsFile& f, const std::string& key) { return meta(f, key) == "true"; }

/// ||a - b|| / ||b|| (Frobenius; double accumulation).
inline double rel_error(moe::ConstMatrixRef<float> a, moe::ConstMatrixRef<float> b) {
    REQUIRE(a.rows == b.rows);
    REQUIRE(a.cols == b.cols);
    double num = 0, den = 0;
    for (index_t r = 0; r < a.rows; ++r)
        for (index_t c = 0; c < a.cols; ++c) {
            const double d = double(a(r, c)) - double(b(r, c));
            num += d * d;
            den += double(b(r, c)) * double(b(r, c));
        }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

inline double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

/// What a parity check measured (printed once per case, so the achieved errors are on record).
struct Report {
    std::string name;
    double output_rel = 0, logits_rel = 0, max_weight_err = 0, aux_rel = -1, z_rel = -1;
    void print() const {
        std::printf("parity %-18s output rel %.2e  logits rel %.2e  max |dw| %.2e", name.c_str(), output_rel,
                    logits_rel, max_weight_err);
        if (aux_rel >= 0) std::printf("  aux rel %.2e  z rel %.2e", aux_rel, z_rel);
        std::printf("\n");
    }
};

/// Runs layer on the fixture's __input__; checks the output and router logits (relative error
/// <= tol) and returns y.
template <class Layer>
moe::Tensor run_and_check_output(Layer& layer, const SafetensorsFile& f, double tol, Report& rep) {
    const moe::TensorView x = f.get("__input__");
    const moe::TensorView y_ref = f.get("__output__");
    const moe::TensorView logits_ref = f.get("__router_logits__");
    moe::Tensor y(moe::DType::f32, x.shape());
    layer.forward(x.matrix<float>(), y.matrix<float>());
    rep.output_rel = rel_error(y.matrix<float>(), y_ref.matrix<float>());
    rep.logits_rel = rel_error(layer.router().last_logits(), logits_ref.matrix<float>());
    INFO(rep.name << ": output relative error " << rep.output_rel << ", logits relative error " << rep.logits_rel);
    CHECK(rep.output_rel <= tol);
    CHECK(rep.logits_rel <= tol);
    return y;
}

/// Compares the plan's choices with __topk_ids__ / __topk_weights__.
///  sorted: the reference lists each token's experts best first; ids must match in order.
///  unsorted: the reference sorted each row by (weight desc, index asc); the plan's choices
///            are sorted the same way, i.e. the chosen sets must be equal.
/// Weights: |w - w_ref| <= wtol * max(1, |w_ref|).
inline void check_routing(const moe::RoutingPlan& plan, const SafetensorsFile& f, bool sorted, double wtol,
                          Report& rep) {
    const moe::TensorView ids = f.get("__topk_ids__");
    const moe::TensorView ws = f.get("__topk_weights__");
    REQUIRE(ids.rank() == 2);
    const index_t T = ids.dim(0), k = ids.dim(1);
    REQUIRE(plan.num_tokens == T);
    REQUIRE(plan.k == k);
    const std::int32_t* ref_ids = ids.data<std::int32_t>();
    const float* ref_w = ws.data<float>();
    index_t id_mismatch = 0, w_mismatch = 0;
    for (index_t t = 0; t < T; ++t) {
        std::vector<std::pair<float, std::int32_t>> got;
        for (index_t j = 0; j < k; ++j)
            got.emplace_back(plan.weights[static_cast<std::size_t>(t * k + j)],
                             plan.expert_ids[static_cast<std::size_t>(t * k + j)]);
        if (!sorted)
            std::sort(got.begin(), got.end(), [](const auto& a, const auto& b) {
                return a.first != b.first ? a.first > b.first : a.second < b.second;
            });
        // Unsorted references: two weights closer than the tolerance may be listed in either
        // order; match those by id.
        for (index_t j = 0; j < k; ++j) {
            const std::int32_t rid = ref_ids[t * k + j];
            const float rw = ref_w[t * k + j];
            std::int32_t gid = got[static_cast<std::size_t>(j)].second;
            float gw = got[static_cast<std::size_t>(j)].first;
            if (!sorted && gid != rid)
                for (const auto& p : got)
                    if (p.second == rid && std::abs(p.first - rw) <= 1e-6f) gid = p.second, gw = p.first;
            if (gid != rid) {
                ++id_mismatch;
                UNSCOPED_INFO("token " << t << " choice " << j << ": expert " << gid << ", reference " << rid);
                continue;
            }
            const double err = std::abs(double(gw) - double(rw));
            rep.max_weight_err = std::max(rep.max_weight_err, err);
            if (err > wtol * std::max(1.0, std::abs(double(rw)))) {
                ++w_mismatch;
                UNSCOPED_INFO("token " << t << " choice " << j << ": weight " << gw << ", reference " << rw);
            }
        }
    }
    CHECK(id_mismatch == 0);
    CHECK(w_mismatch == 0);
}

/// Checks the load-balancing and z losses from the router's logits and plan against the fixture.
template <class Layer>
void check_losses(const Layer& layer, const SafetensorsFile& f, double tol, Report& rep) {
    const double aux = moe::load_balancing_loss(layer.router().last_logits(), layer.plan());
    const double z = moe::z_loss(layer.router().last_logits());
    const double aux_ref = double(*f.get("__aux_loss__").data<float>());
    const double z_ref = double(*f.get("__z_loss__").data<float>());
    rep.aux_rel = rel_diff(aux, aux_ref);
    rep.z_rel = rel_diff(z, z_ref);
    INFO("aux loss " << aux << " (reference " << aux_ref << "), z loss " << z << " (reference " << z_ref << ")");
    CHECK(rep.aux_rel <= tol);
    CHECK(rep.z_rel <= tol);
}

/// A copy of f (in memory) without tensor `drop` and with `replace` added (if named).
inline SafetensorsFile edited(const SafetensorsFile& f, const std::string& drop,
                              const std::string& replace_name = {}, const moe::Tensor* replace = nullptr) {
    moe::io::SafetensorsWriter w;
    for (const auto& n : f.names())
        if (n != drop && n != replace_name) w.add(n, f.get(n));
    if (replace) w.add(replace_name, replace->view());
    return SafetensorsFile::from_buffer(w.to_bytes(), "edited " + f.path());
}

/// A [rows, cols] fp32 tensor of zeros (for mis-shaped replacements).
inline moe::Tensor zeros(index_t rows, index_t cols) { return moe::Tensor(moe::DType::f32, {rows, cols}); }

/// Runs fn, which must throw E; checks that what() contains every needle.
template <class E, class Fn>
void require_throws_mentioning(Fn&& fn, std::initializer_list<std::string> needles) {
    bool thrown = false;
    try {
        fn();
    } catch (const E& e) {
        thrown = true;
        const std::string what = e.what();
        for (const auto& n : needles) {
            INFO("message: " << what);
            CHECK(what.find(n) != std::string::npos);
        }
    }
    CHECK(thrown);
}

/// max |a_i - b_i| / max |b_i| over n values (the models' "max relative" error; max |a - b| when b is 0).
inline double max_rel(const float* a, const float* b, index_t n) {
    double num = 0, den = 0;
    for (index_t i = 0; i < n; ++i) {
        num = std::max(num, std::abs(double(a[i]) - double(b[i])));
        den = std::max(den, std::abs(double(b[i])));
    }
    return den == 0 ? num : num / den;
}
/// The same for two f32 tensors of one size.
inline double max_rel(const moe::TensorView& a, const moe::TensorView& b) {
    REQUIRE(a.numel() == b.numel());
    return max_rel(a.data<float>(), b.data<float>(), a.numel());
}

/// An HWC uint8 image (a fixture's __image__) as planar channels [3, h, w].
inline std::vector<std::uint8_t> planar(const moe::TensorView& hwc) {
    const index_t h = hwc.dim(0), w = hwc.dim(1);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(3 * h * w));
    const auto* p = hwc.data<std::uint8_t>();
    for (index_t y = 0; y < h; ++y)
        for (index_t x = 0; x < w; ++x)
            for (index_t c = 0; c < 3; ++c) out[static_cast<std::size_t>((c * h + y) * w + x)] = p[(y * w + x) * 3 + c];
    return out;
}

}  // namespace moe_test
