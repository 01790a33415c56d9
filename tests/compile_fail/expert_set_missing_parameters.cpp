// An expert container without parameters() is rejected by SharedExperts, and the error names
// the concept and the missing requirement.
// expect: ExpertSet
// expect: cx.parameters()
#include <moe/layer/shared.hpp>

struct NoParameters {
    moe::index_t num_experts() const { return 2; }
    moe::index_t hidden_size() const { return 4; }
    void forward(moe::ConstMatrixRef<float>, const moe::RoutingPlan&, moe::MatrixRef<float>, moe::Combine) {}
};

moe::SharedExperts<NoParameters>* shared = nullptr;
