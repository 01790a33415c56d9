// moe/router/instruction.hpp - RS-MoE's instruction router. The heterogeneous expert container it
// routes to (whole sub-models) and the aggregators are in moe/expert/heterogeneous.hpp.
//
// InstructionRouter: from an instruction embedding q [dq] and the pooled image features
// v = mean(image tokens) [dv], with u = [q; v]:
//   expert weights   w = softmax(W_w u + b_w)                                  [E]
//   expert prompts   a_e = softmax(W_mix[e] u + b_mix[e])                       [P] per expert
//                    prompt_e = (sum_p a_e,p bank[p]) . W_proj[e]^T             [Lp, d_e]
// (a learned bank of P prompts of Lp tokens x dp, mixed by the instruction, projected to
// expert e's width d_e). All experts run (RS-MoE's default, k = 0) or the top-k by weight do,
// with their weights renormalised. The choice is also written as a RoutingPlan over one
// "token" (the request), so it is inspected like any other routing.
//
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "moe/backend/cpu/gemm.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/core/plan.hpp"

namespace moe {

/// The instruction router's result.
struct InstructionRouting {
    std::vector<float> weights;   ///< [E], 0 for experts that do not run
    std::vector<bool> active;     ///< [E]
    std::vector<Tensor> prompts;  ///< [E] x [Lp, d_e] (empty tensors for inactive experts)
    RoutingPlan plan;             ///< the same choice over one request
};

class InstructionRouter {
public:
    struct Weights {
        Tensor gate_w;                ///< [E, dq + dv]
        Tensor gate_b;                ///< [E]
        Tensor mix_w;                 ///< [E, P, dq + dv]
        Tensor mix_b;                 ///< [E, P]
        Tensor bank;                  ///< [P, Lp, dp]
        std::vector<Tensor> proj;     ///< E x [d_e, dp]
    };

    InstructionRouter(Weights w, index_t dq, index_t dv, index_t k = 0) : w_(std::move(w)), dq_(dq), dv_(dv), k_(k) {
        const char* wh = "InstructionRouter";
        E_ = w_.gate_w.rank() == 2 ? w_.gate_w.dim(0) : -1;
        check<ShapeError>(E_ > 0, wh, "gate_w must be [E, dq + dv], found ", w_.gate_w.shape().str());
        const index_t du = dq + dv;
        w_.gate_w.view().expect_shape({E_, du}, "InstructionRouter gate_w");
        w_.gate_b.view().expect_shape({E_}, "InstructionRouter gate_b");
        check<ShapeError>(w_.bank.rank() == 3, wh, "bank must be [P, Lp, dp], found ", w_.bank.shape().str());
        P_ = w_.bank.dim(0);
        Lp_ = w_.bank.dim(1);
        dp_ = w_.bank.dim(2);
        w_.mix_w.view().expect_shape({E_, P_, du}, "InstructionRouter mix_w");
        w_.mix_b.view().expect_shape({E_, P_}, "InstructionRouter mix_b");
        check<ShapeError>(static_cast<index_t>(w_.proj.size()) == E_, wh, w_.proj.size(), " prompt projections for ",
                          E_, " experts");
        for (index_t e = 0; e < E_; ++e) {
            const auto& p = w_.proj[static_cast<std::size_t>(e)];
            check<ShapeError>(p.rank() == 2 && p.dim(1) == dp_, wh, "projection ", e, " must be [d_e, ", dp_,
                              "], found ", p.shape().str());
        }
        set_k(k);
    }
    /// Random weights (uniform +-1/sqrt(fan_in)) for tests: widths[e] is expert e's width.
    static InstructionRouter random(index_t dq, index_t dv, index_t P, index_t Lp, index_t dp,
                                    const std::vector<index_t>& widths, std::uint64_t seed, index_t k = 0) {
        const auto E = static_cast<index_t>(widths.size());
        std::mt19937_64 rng(seed);
        auto fill = [&](Tensor& t, index_t fan_in) {
            std::uniform_real_distribution<float> u(-1.0f / std::sqrt(float(fan_in)), 1.0f / std::sqrt(float(fan_in)));
            for (auto& v : t.span<float>()) v = u(rng);
        };
        Weights w{Tensor({E, dq + dv}), Tensor({E}), Tensor({E, P, dq + dv}), Tensor({E, P}), Tensor({P, Lp, dp}), {}};
        fill(w.gate_w, dq + dv);
        fill(w.gate_b, dq + dv);
        fill(w.mix_w, dq + dv);
        fill(w.mix_b, dq + dv);
        fill(w.bank, 1);
        for (index_t width : widths) {
            w.proj.emplace_back(Shape{width, dp});
            fill(w.proj.back(), dp);
        }
        return InstructionRouter(std::move(w), dq, dv, k);
    }

    index_t num_experts() const noexcept { return E_; }
    index_t k() const noexcept { return k_; }
    /// 0: every expert runs; otherwise the k best by weight (ConfigError unless 0 <= k <= E).
    void set_k(index_t k) {
        check<ConfigError>(k >= 0 && k <= E_, "InstructionRouter::set_k", "k = ", k, " must be in [0, ", E_,
                           "] (0 = all experts)");
        k_ = k;
    }
    index_t prompt_length() const noexcept { return Lp_; }
    index_t expert_width(index_t e) const { return w_.proj.at(static_cast<std::size_t>(e)).dim(0); }

    /// Routes one request: instruction [dq], image tokens [n, dv] (mean-pooled here).
    InstructionRouting route(std::span<const float> instruction, ConstMatrixRef<float> image) const {
        const char* wh = "InstructionRouter::route";
        check<ShapeError>(static_cast<index_t>(instruction.size()) == dq_, wh, "instruction has ", instruction.size(),
                          " features, expected ", dq_);
        check<ShapeError>(image.cols == dv_ && image.rows > 0, wh, "image tokens are [", image.rows, ", ", image.cols,
                          "], expected [n > 0, ", dv_, "]");
        const index_t du = dq_ + dv_;
        std::vector<double> u(static_cast<std::size_t>(du), 0.0);
        for (index_t i = 0; i < dq_; ++i) u[static_cast<std::size_t>(i)] = instruction[static_cast<std::size_t>(i)];
        for (index_t t = 0; t < image.rows; ++t)
            for (index_t i = 0; i < dv_; ++i) u[static_cast<std::size_t>(dq_ + i)] += image(t, i);
        for (index_t i = 0; i < dv_; ++i) u[static_cast<std::size_t>(dq_ + i)] /= double(image.rows);
        for (double v : u) check<ValueError>(std::isfinite(v), wh, "instruction or image features are not finite");

        InstructionRouting out;
        // weights
        std::vector<double> logit(static_cast<std::size_t>(E_));
        const float* gw = w_.gate_w.data<float>();
        for (index_t e = 0; e < E_; ++e) {
            double s = w_.gate_b.data<float>()[e];
            for (index_t i = 0; i < du; ++i) s += gw[e * du + i] * u[static_cast<std::size_t>(i)];
            logit[static_cast<std::size_t>(e)] = s;
        }
        const auto p = softmax(logit);
        std::vector<index_t> order(static_cast<std::size_t>(E_));
        std::iota(order.begin(), order.end(), index_t{0});
        std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) {
            return p[static_cast<std::size_t>(a)] > p[static_cast<std::size_t>(b)];
        });
        const index_t n_active = k_ == 0 ? E_ : k_;
        out.weights.assign(static_cast<std::size_t>(E_), 0.0f);
        out.active.assign(static_cast<std::size_t>(E_), false);
        double sum = 0;
        for (index_t j = 0; j < n_active; ++j) sum += p[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])];
        for (index_t j = 0; j < n_active; ++j) {
            const auto e = static_cast<std::size_t>(order[static_cast<std::size_t>(j)]);
            out.active[e] = true;
            out.weights[e] = static_cast<float>(p[e] / sum);
        }
        // prompts
        const float* mw = w_.mix_w.data<float>();
        const float* bank = w_.bank.data<float>();
        out.prompts.resize(static_cast<std::size_t>(E_));
        for (index_t e = 0; e < E_; ++e) {
            if (!out.active[static_cast<std::size_t>(e)]) continue;
            std::vector<double> ml(static_cast<std::size_t>(P_));
            for (index_t q = 0; q < P_; ++q) {
                double s = w_.mix_b.data<float>()[e * P_ + q];
                for (index_t i = 0; i < du; ++i) s += mw[(e * P_ + q) * du + i] * u[static_cast<std::size_t>(i)];
                ml[static_cast<std::size_t>(q)] = s;
            }
            const auto a = softmax(ml);
            Tensor mixed({Lp_, dp_});
            float* mx = mixed.data<float>();
            for (index_t q = 0; q < P_; ++q)
                for (index_t i = 0; i < Lp_ * dp_; ++i) mx[i] += static_cast<float>(a[static_cast<std::size_t>(q)]) * bank[q * Lp_ * dp_ + i];
            const Tensor& proj = w_.proj[static_cast<std::size_t>(e)];
            Tensor prompt({Lp_, proj.dim(0)});
            cpu::GemmWorkspace ws;
            cpu::linear<float>(mixed.matrix<float>(), proj.matrix<float>(), nullptr, prompt.matrix<float>(), false, ws);
            out.prompts[static_cast<std::size_t>(e)] = std::move(prompt);
        }
        // the plan over one request
        out.plan.reset(1, E_, n_active);
        for (index_t j = 0; j < n_active; ++j) {
            const auto e = order[static_cast<std::size_t>(j)];
            out.plan.expert_ids[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(e);
            out.plan.weights[static_cast<std::size_t>(j)] = out.weights[static_cast<std::size_t>(e)];
        }
        out.plan.finalize();
        return out;
    }

private:
    static std::vector<double> softmax(const std::vector<double>& l) {
        const double m = *std::max_element(l.begin(), l.end());
        std::vector<double> p(l.size());
        double z = 0;
        for (std::size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp(l[i] - m);
        for (auto& v : p) v /= z;
        return p;
    }

    Weights w_;
    index_t dq_, dv_, k_ = 0, E_ = 0, P_ = 0, Lp_ = 0, dp_ = 0;
};

}  // namespace moe
