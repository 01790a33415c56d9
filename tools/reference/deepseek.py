"""DeepSeek-V3 MoE, as Hugging Face transformers writes it.

Mirrors `transformers.models.deepseek_v3.modeling_deepseek_v3.DeepseekV3MoE`,
`DeepseekV3TopkRouter` (topk_method "noaux_tc") and `DeepseekV3MLP`. Parameter names, under a
prefix such as `model.layers.3.mlp.`:

    gate.weight                       [E, d]       router weight (fp32)
    gate.e_score_correction_bias      [E]          selection bias (a buffer, saved in checkpoints)
    experts.{i}.gate_proj.weight      [F, d]       SiLU-GLU experts, no bias
    experts.{i}.up_proj.weight        [F, d]
    experts.{i}.down_proj.weight      [d, F]
    shared_experts.gate_proj.weight   [F * n_shared, d]   one MLP of width F * n_shared_experts
    shared_experts.up_proj.weight     [F * n_shared, d]
    shared_experts.down_proj.weight   [d, F * n_shared]

Router (verbatim arithmetic):
    scores            = sigmoid(linear(x.float(), W.float()))
    scores_for_choice = scores + e_score_correction_bias
    group_scores      = scores_for_choice.view(T, n_group, -1).topk(2, dim=-1)[0].sum(-1)
    group_idx         = topk(group_scores, topk_group, sorted=False)
    scores_for_choice = scores_for_choice.masked_fill(~group_mask, 0.0)       # NOTE: 0.0, not -inf
    topk_indices      = topk(scores_for_choice, k, sorted=False)
    topk_weights      = scores.gather(1, topk_indices)
    if norm_topk_prob: topk_weights /= topk_weights.sum(-1, keepdim=True) + 1e-20
    topk_weights     *= routed_scaling_factor
    y = routed(x) + shared_experts(x)

The masked experts score 0.0 (not -inf): where the bias makes allowed experts' biased scores
negative, masked experts can still be chosen. moe reproduces this with
TopKOptions::group_mask_value = 0.0 and renorm_eps = 1e-20 (moe::hf::load_deepseek_v3_moe).
The top-k calls are unsorted: fixtures sort each token's choices by (weight desc, index asc).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class DeepseekV3Config:
    def __init__(self, hidden_size=64, moe_intermediate_size=32, n_routed_experts=16, num_experts_per_tok=4,
                 n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True, n_shared_experts=1,
                 hidden_act="silu"):
        self.hidden_size = hidden_size
        self.moe_intermediate_size = moe_intermediate_size
        self.intermediate_size = moe_intermediate_size * 4  # dense layers only; unused here
        self.n_routed_experts = n_routed_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.n_group = n_group
        self.topk_group = topk_group
        self.routed_scaling_factor = routed_scaling_factor
        self.norm_topk_prob = norm_topk_prob
        self.n_shared_experts = n_shared_experts
        self.hidden_act = hidden_act


class DeepseekV3MLP(nn.Module):
    def __init__(self, config, hidden_size=None, intermediate_size=None):
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size if hidden_size is None else hidden_size
        self.intermediate_size = config.intermediate_size if intermediate_size is None else intermediate_size

        self.gate_proj = nn.Linear(self.hidden_size, self.intermediate_size, bias=False)
        self.up_proj = nn.Linear(self.hidden_size, self.intermediate_size, bias=False)
        self.down_proj = nn.Linear(self.intermediate_size, self.hidden_size, bias=False)
        assert config.hidden_act == "silu"
        self.act_fn = nn.SiLU()

    def forward(self, x):
        down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
        return down_proj


class DeepseekV3TopkRouter(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.top_k = config.num_experts_per_tok
        self.n_routed_experts = config.n_routed_experts
        self.routed_scaling_factor = config.routed_scaling_factor
        self.n_group = config.n_group
        self.topk_group = config.topk_group
        self.norm_topk_prob = config.norm_topk_prob

        self.weight = nn.Parameter(torch.empty((self.n_routed_experts, config.hidden_size)))
        self.register_buffer("e_score_correction_bias", torch.zeros((self.n_routed_experts)))

    @torch.no_grad()
    def get_topk_indices(self, scores):
        scores_for_choice = scores.view(-1, self.n_routed_experts) + self.e_score_correction_bias.unsqueeze(0)
        group_scores = (
            scores_for_choice.view(-1, self.n_group, self.n_routed_experts // self.n_group)
            .topk(2, dim=-1)[0]
            .sum(dim=-1)
        )
        group_idx = torch.topk(group_scores, k=self.topk_group, dim=-1, sorted=False)[1]
        group_mask = torch.zeros_like(group_scores)
        group_mask.scatter_(1, group_idx, 1)
        score_mask = (
            group_mask.unsqueeze(-1)
            .expand(-1, self.n_group, self.n_routed_experts // self.n_group)
            .reshape(-1, self.n_routed_experts)
        )
        scores_for_choice = scores_for_choice.masked_fill(~score_mask.bool(), 0.0)
        topk_indices = torch.topk(scores_for_choice, k=self.top_k, dim=-1, sorted=False)[1]
        return topk_indices

    def forward(self, hidden_states):
        hidden_states = hidden_states.view(-1, self.config.hidden_size)
        router_logits = F.linear(hidden_states.type(torch.float32), self.weight.type(torch.float32))
        scores = router_logits.sigmoid()
        topk_indices = self.get_topk_indices(scores)
        topk_weights = scores.gather(1, topk_indices)
        if self.norm_topk_prob:
            denominator = topk_weights.sum(dim=-1, keepdim=True) + 1e-20
            topk_weights /= denominator
        topk_weights = topk_weights * self.routed_scaling_factor
        # (transformers returns only the first two; the logits are kept for the fixtures)
        return topk_indices, topk_weights, router_logits


class DeepseekV3MoE(nn.Module):
    """A mixed expert module containing shared experts."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.experts = nn.ModuleList(
            [
                DeepseekV3MLP(config, intermediate_size=config.moe_intermediate_size)
                for _ in range(config.n_routed_experts)
            ]
        )
        self.gate = DeepseekV3TopkRouter(config)
        self.shared_experts = DeepseekV3MLP(
            config=config, intermediate_size=config.moe_intermediate_size * config.n_shared_experts
        )

    def moe(self, hidden_states, topk_indices, topk_weights):
        final_hidden_states = torch.zeros_like(hidden_states, dtype=topk_weights.dtype)
        expert_mask = torch.nn.functional.one_hot(topk_indices, num_classes=len(self.experts))
        expert_mask = expert_mask.permute(2, 0, 1)

        for expert_idx in range(len(self.experts)):
            expert = self.experts[expert_idx]
            mask = expert_mask[expert_idx]
            token_indices, weight_indices = torch.where(mask)

            if token_indices.numel() > 0:
                expert_weights = topk_weights[token_indices, weight_indices]
                expert_input = hidden_states[token_indices]
                expert_output = expert(expert_input)
                weighted_output = expert_output * expert_weights.unsqueeze(-1)
                final_hidden_states.index_add_(0, token_indices, weighted_output)

        # in original deepseek, the output of the experts are gathered once we leave this module
        # thus the moe module is itself an IsolatedParallel module
        # and all expert are "local" meaning we shard but we don't gather
        return final_hidden_states.type(hidden_states.dtype)

    def forward(self, hidden_states):
        """hidden_states [..., d] -> (y, topk_indices, topk_weights, router_logits)."""
        residuals = hidden_states
        orig_shape = hidden_states.shape
        topk_indices, topk_weights, router_logits = self.gate(hidden_states)
        hidden_states = hidden_states.view(-1, hidden_states.shape[-1])
        hidden_states = self.moe(hidden_states, topk_indices, topk_weights).view(*orig_shape)
        hidden_states = hidden_states + self.shared_experts(residuals)
        return hidden_states, topk_indices, topk_weights, router_logits
