"""Qwen2-MoE sparse MoE block, as Hugging Face transformers writes it.

Mirrors `transformers.models.qwen2_moe.modeling_qwen2_moe.Qwen2MoeSparseMoeBlock` and
`Qwen2MoeMLP`. Parameter names, under a prefix such as `model.layers.0.mlp.`:

    gate.weight                        [E, d]     router, Linear(d, E, bias=False)
    experts.{i}.gate_proj.weight       [F, d]     SiLU-GLU experts (moe_intermediate_size F)
    experts.{i}.up_proj.weight         [F, d]
    experts.{i}.down_proj.weight       [d, F]
    shared_expert.gate_proj.weight     [Fs, d]    one always-on SiLU-GLU expert
    shared_expert.up_proj.weight       [Fs, d]    (shared_expert_intermediate_size Fs)
    shared_expert.down_proj.weight     [d, Fs]
    shared_expert_gate.weight          [1, d]     Linear(d, 1, bias=False)

    routing_weights = softmax(router_logits, dim=1, dtype=float32); topk (sorted);
    if norm_topk_prob: routing_weights /= sum          (Qwen1.5-MoE-A2.7B: False)
    y = routed(x) + sigmoid(shared_expert_gate(x)) * shared_expert(x)
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Qwen2MoeConfig:
    def __init__(self, hidden_size=64, moe_intermediate_size=64, shared_expert_intermediate_size=128,
                 num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, hidden_act="silu"):
        self.hidden_size = hidden_size
        self.moe_intermediate_size = moe_intermediate_size
        self.shared_expert_intermediate_size = shared_expert_intermediate_size
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.norm_topk_prob = norm_topk_prob
        self.hidden_act = hidden_act


class Qwen2MoeMLP(nn.Module):
    def __init__(self, config, intermediate_size=None):
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.intermediate_size = intermediate_size
        self.gate_proj = nn.Linear(self.hidden_size, self.intermediate_size, bias=False)
        self.up_proj = nn.Linear(self.hidden_size, self.intermediate_size, bias=False)
        self.down_proj = nn.Linear(self.intermediate_size, self.hidden_size, bias=False)
        assert config.hidden_act == "silu"
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class Qwen2MoeSparseMoeBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_experts = config.num_experts
        self.top_k = config.num_experts_per_tok
        self.norm_topk_prob = config.norm_topk_prob

        # gating
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(
            [Qwen2MoeMLP(config, intermediate_size=config.moe_intermediate_size) for _ in range(self.num_experts)]
        )

        self.shared_expert = Qwen2MoeMLP(config, intermediate_size=config.shared_expert_intermediate_size)
        self.shared_expert_gate = torch.nn.Linear(config.hidden_size, 1, bias=False)

    def route(self, hidden_states):
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
        if self.norm_topk_prob:
            routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        # we cast back to the input dtype
        routing_weights = routing_weights.to(hidden_states.dtype)
        return router_logits, routing_weights, selected_experts

    def forward(self, hidden_states):
        """hidden_states [B, S, d] (or [T, d]) -> (final_hidden_states, router_logits [B*S, E])."""
        orig_shape = hidden_states.shape
        hidden_dim = orig_shape[-1]
        hidden_states = hidden_states.reshape(-1, hidden_dim)
        router_logits, routing_weights, selected_experts = self.route(hidden_states)

        final_hidden_states = torch.zeros(
            (hidden_states.shape[0], hidden_dim), dtype=hidden_states.dtype, device=hidden_states.device
        )

        # One hot encode the selected experts to create an expert mask
        # this will be used to easily index which expert is going to be sollicitated
        expert_mask = torch.nn.functional.one_hot(selected_experts, num_classes=self.num_experts).permute(2, 1, 0)

        # Loop over all available experts in the model and perform the computation on each expert
        for expert_idx in range(self.num_experts):
            expert_layer = self.experts[expert_idx]
            idx, top_x = torch.where(expert_mask[expert_idx])
            if top_x.numel() == 0:
                continue

            # Index the correct hidden states and compute the expert hidden state for
            # the current expert. We need to make sure to multiply the output hidden
            # states by `routing_weights` on the corresponding tokens (top-1 and top-2)
            current_state = hidden_states[None, top_x].reshape(-1, hidden_dim)
            current_hidden_states = expert_layer(current_state) * routing_weights[top_x, idx, None]

            # However `index_add_` only support torch tensors for indexing so we'll use
            # the `top_x` tensor here.
            final_hidden_states.index_add_(0, top_x, current_hidden_states.to(hidden_states.dtype))

        shared_expert_output = self.shared_expert(hidden_states)
        shared_expert_output = torch.sigmoid(self.shared_expert_gate(hidden_states)) * shared_expert_output

        final_hidden_states = final_hidden_states + shared_expert_output

        final_hidden_states = final_hidden_states.reshape(orig_shape)
        return final_hidden_states, router_logits
