// A router without route(x, plan) is rejected by MoELayer, and the error names the concept and
// the missing requirement.
// expect: Router
// expect: r.route(x, plan)
#include <moe/expert/ffn.hpp>
#include <moe/layer/moe_layer.hpp>

struct NoRoute {
    moe::index_t num_experts() const { return 2; }
    moe::index_t hidden_size() const { return 4; }
};

moe::MoELayer<NoRoute, moe::MlpExperts<moe::Gelu>>* layer = nullptr;
