// An expert container without num_experts() is rejected by HierarchicalMoE, and the error
// names the concept and the missing requirement.
// expect: ExpertSet
// expect: cx.num_experts()
#include <moe/expert/ffn.hpp>
#include <moe/layer/hierarchical.hpp>

struct NoNumExperts {
    moe::index_t hidden_size() const { return 4; }
    moe::index_t parameters() const { return 0; }
    void forward(moe::ConstMatrixRef<float>, const moe::RoutingPlan&, moe::MatrixRef<float>, moe::Combine) {}
};

moe::HierarchicalMoE<NoNumExperts, moe::MlpExperts<moe::Gelu>>* layer = nullptr;
