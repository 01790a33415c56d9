// HierarchicalMoE's router type is a template parameter constrained by moe::Router: a type
// without route(x, plan) is rejected, and the error names the concept and the missing requirement.
// expect: Router
// expect: r.route(x, plan)
#include <moe/expert/ffn.hpp>
#include <moe/layer/hierarchical.hpp>

struct NoRoute {
    moe::index_t num_experts() const { return 2; }
    moe::index_t hidden_size() const { return 4; }
};

moe::HierarchicalMoE<moe::MlpExperts<moe::Gelu>, moe::MlpExperts<moe::Gelu>, moe::NoSharedExperts, NoRoute>* layer =
    nullptr;
