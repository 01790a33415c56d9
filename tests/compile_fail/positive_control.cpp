// Positive control: must compile (so that a broken include path or flag cannot make every
// compile-fail test pass). Types with exactly the members ExpertSet and Router require, used
// in MoELayer, SharedExperts and HierarchicalMoE; the forward calls instantiate every use.
// expect-success
#include <span>

#include <moe/layer.hpp>
#include <moe/router/concepts.hpp>

struct MinimalExperts {
    moe::index_t num_experts() const { return 2; }
    moe::index_t hidden_size() const { return 4; }
    moe::index_t parameters() const { return 0; }
    void forward(moe::ConstMatrixRef<float>, const moe::RoutingPlan&, moe::MatrixRef<float>, moe::Combine) {}
};
struct MinimalRouter {
    moe::index_t num_experts() const { return 2; }
    moe::index_t hidden_size() const { return 4; }
    void route(moe::ConstMatrixRef<float>, moe::RoutingPlan&) {}
};
static_assert(moe::ExpertSet<MinimalExperts> && !moe::ThreadedExpertSet<MinimalExperts>);
static_assert(moe::Router<MinimalRouter>);

void use(moe::ConstMatrixRef<float> x, moe::MatrixRef<float> y, std::span<const std::int32_t> modality) {
    moe::MoELayer<MinimalRouter, MinimalExperts, moe::SharedExperts<MinimalExperts>> layer(
        MinimalRouter{}, MinimalExperts{}, moe::SharedExperts<MinimalExperts>(MinimalExperts{}));
    layer.forward(x, y);
    (void)layer.parameters();
    layer.shared().share_scratch(layer.shared());

    using H = moe::HierarchicalMoE<MinimalExperts, MinimalExperts, moe::SharedExperts<MinimalExperts>>;
    H h({}, {}, moe::Gate{}, MinimalExperts{}, moe::SharedExperts<MinimalExperts>(MinimalExperts{}), {});
    h.forward(x, modality, y);
    h.share_scratch(h);
    (void)h.parameters();
}
