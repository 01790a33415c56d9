"""Mixtral sparse MoE block, as Hugging Face transformers writes it.

Mirrors `transformers.models.mixtral.modeling_mixtral.MixtralSparseMoeBlock` and
`MixtralBlockSparseTop2MLP` (structure, parameter names and arithmetic, inference mode: no
router jitter). Parameter names, under a prefix such as `model.layers.0.block_sparse_moe.`:

    gate.weight             [E, d]   router, Linear(d, E, bias=False)
    experts.{i}.w1.weight   [F, d]   gate projection
    experts.{i}.w3.weight   [F, d]   up projection
    experts.{i}.w2.weight   [d, F]   down projection

    router_logits   = gate(x)
    routing_weights = softmax(router_logits, dim=1, dtype=float32)
    routing_weights, selected_experts = topk(routing_weights, k)     # sorted, best first
    routing_weights /= routing_weights.sum(-1, keepdim=True)
    y = sum over chosen experts of w * w2(silu(w1(x)) * w3(x))        # per-expert loop, index_add_
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class MixtralConfig:
    def __init__(self, hidden_size=64, intermediate_size=128, num_local_experts=8, num_experts_per_tok=2,
                 hidden_act="silu", router_jitter_noise=0.0):
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_local_experts = num_local_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.hidden_act = hidden_act
        self.router_jitter_noise = router_jitter_noise


class MixtralBlockSparseTop2MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ffn_dim = config.intermediate_size
        self.hidden_dim = config.hidden_size

        self.w1 = nn.Linear(self.hidden_dim, self.ffn_dim, bias=False)
        self.w2 = nn.Linear(self.ffn_dim, self.hidden_dim, bias=False)
        self.w3 = nn.Linear(self.hidden_dim, self.ffn_dim, bias=False)

        assert config.hidden_act == "silu"
        self.act_fn = nn.SiLU()

    def forward(self, hidden_states):
        current_hidden_states = self.act_fn(self.w1(hidden_states)) * self.w3(hidden_states)
        current_hidden_states = self.w2(current_hidden_states)
        return current_hidden_states


class MixtralSparseMoeBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.hidden_dim = config.hidden_size
        self.ffn_dim = config.intermediate_size
        self.num_experts = config.num_local_experts
        self.top_k = config.num_experts_per_tok

        # gating
        self.gate = nn.Linear(self.hidden_dim, self.num_experts, bias=False)

        self.experts = nn.ModuleList([MixtralBlockSparseTop2MLP(config) for _ in range(self.num_experts)])

        # Jitter parameters (training only; this reference runs in inference mode)
        self.jitter_noise = config.router_jitter_noise

    def route(self, hidden_states):
        """Router part of forward: (router_logits [T, E], routing_weights [T, k], selected [T, k])."""
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
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
        expert_hitted = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()
        for expert_idx in expert_hitted:
            expert_idx = int(expert_idx)
            expert_layer = self.experts[expert_idx]
            idx, top_x = torch.where(expert_mask[expert_idx])
            # Index the correct hidden states and compute the expert hidden state for
            # the current expert. We need to make sure to multiply the output hidden
            # states by `routing_weights` on the corresponding tokens (top-1 and top-2)
            current_state = hidden_states[None, top_x].reshape(-1, hidden_dim)
            current_hidden_states = expert_layer(current_state) * routing_weights[top_x, idx, None]

            # However `index_add_` only support torch tensors for indexing so we'll use
            # the `top_x` tensor here.
            final_hidden_states.index_add_(0, top_x, current_hidden_states.to(hidden_states.dtype))
        final_hidden_states = final_hidden_states.reshape(orig_shape)
        return final_hidden_states, router_logits
