// An expert container without forward(x, plan, out, combine) is rejected by MoELayer, and the
// error names the concept and the missing requirement.
// expect: ExpertSet
// expect: x.forward(in, plan, out, combine)
#include <moe/layer/moe_layer.hpp>
#include <moe/router/topk.hpp>

struct NoForward {
    moe::index_t num_experts() const { return 2; }
    moe::index_t hidden_size() const { return 4; }
    moe::index_t parameters() const { return 0; }
};

moe::MoELayer<moe::TopKRouter<moe::SoftmaxScores>, NoForward>* layer = nullptr;
