// An expert container that cannot be moved (layers hold their experts by value) is rejected by
// MoELayer, and the error names the concept and the failed requirement.
// expect: ExpertSet
// expect: move_constructible
#include <moe/layer/moe_layer.hpp>
#include <moe/router/topk.hpp>

struct Pinned {
    Pinned() = default;
    Pinned(Pinned&&) = delete;
    moe::index_t num_experts() const { return 2; }
    moe::index_t hidden_size() const { return 4; }
    moe::index_t parameters() const { return 0; }
    void forward(moe::ConstMatrixRef<float>, const moe::RoutingPlan&, moe::MatrixRef<float>, moe::Combine) {}
};

moe::MoELayer<moe::TopKRouter<moe::SoftmaxScores>, Pinned>* layer = nullptr;
