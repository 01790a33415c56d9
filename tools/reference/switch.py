"""Switch-Transformer top-1 MoE with expert capacity (Mesh-TensorFlow / GShard conventions).

Weights use the Hugging Face SwitchTransformers parameter names
(`transformers.models.switch_transformers.modeling_switch_transformers`:
SwitchTransformersTop1Router, SwitchTransformersSparseMLP, SwitchTransformersDenseActDense),
under a prefix such as `encoder.block.1.layer.1.mlp.`:

    router.classifier.weight      [E, d]   Linear(d, E, bias=False)
    experts.expert_{i}.wi.weight  [F, d]   Linear(d, F, bias=False)
    experts.expert_{i}.wo.weight  [d, F]   Linear(F, d, bias=False), ReLU in between

Routing, as mesh_tensorflow/transformer/moe.py (_switch_gating) and GShard write it:
    router_probs = softmax(router_logits in fp32)
    expert       = argmax(router_probs)                       (ties: lowest index)
    mask         = one_hot(expert, E)                         [T, E]
    position     = cumsum(mask over tokens, in order) - 1     (0-based position in the expert)
    kept         = position < capacity,  capacity = ceil(T * capacity_factor / E)
    y[t]         = router_prob[t] * expert(x[t])   if kept
                 = 0                               if dropped

Capacity: Mesh-TF truncates int(T * cf / E); this reference uses ceil(T * cf / E), the formula
of RingMoE and of moe::expert_capacity (k = 1). With the fixture's shapes the two agree.

Dropped tokens: Hugging Face's SwitchTransformersSparseMLP starts from `next_states =
hidden_states.clone()` and only overwrites kept tokens, so a dropped token comes out as
`router_prob * x` (a pass-through, scaled by its probability). This reference follows
Mesh-TF / GShard instead, where a dropped token gets ZERO output from the MoE layer (the
residual connection around the layer carries it on); that is also RingMoE's convention and
what moe::MoELayer computes.
"""

import math

import torch
import torch.nn as nn


class SwitchConfig:
    def __init__(self, d_model=64, d_ff=128, num_experts=8, capacity_factor=1.0, router_dtype=torch.float32):
        self.d_model = d_model
        self.d_ff = d_ff
        self.num_experts = num_experts
        self.capacity_factor = capacity_factor
        self.router_dtype = router_dtype


class SwitchTransformersTop1Router(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_experts = config.num_experts
        self.capacity_factor = config.capacity_factor
        self.classifier = nn.Linear(config.d_model, config.num_experts, bias=False)
        self.dtype = config.router_dtype

    def expert_capacity(self, num_tokens):
        return int(math.ceil(num_tokens * self.capacity_factor / self.num_experts))

    def forward(self, hidden_states):
        """hidden_states [T, d] -> (kept_mask [T, E] (one-hot or all-zero), router_probs [T, 1],
        router_logits [T, E], expert_index [T] (argmax, before capacity))."""
        # Routing is computed in fp32 whatever the model dtype.
        hidden_states = hidden_states.to(self.dtype)
        router_logits = nn.functional.linear(hidden_states, self.classifier.weight.to(self.dtype))
        router_probs = nn.functional.softmax(router_logits, dim=-1, dtype=self.dtype)

        expert_index = torch.argmax(router_probs, dim=-1)
        expert_mask = nn.functional.one_hot(expert_index, num_classes=self.num_experts)

        # Position of each token in its expert's buffer: tokens in order (earlier tokens first).
        position_in_expert = (torch.cumsum(expert_mask, dim=0) - 1) * expert_mask
        capacity = self.expert_capacity(hidden_states.shape[0])
        kept_mask = expert_mask * (position_in_expert < capacity).to(expert_mask.dtype)

        router_probs = torch.max(router_probs, dim=-1).values.unsqueeze(-1)
        return kept_mask, router_probs, router_logits, expert_index


class SwitchTransformersDenseActDense(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wi = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.wo = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.act = nn.ReLU()

    def forward(self, hidden_states):
        return self.wo(self.act(self.wi(hidden_states)))


class SwitchSparseMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.router = SwitchTransformersTop1Router(config)
        self.experts = nn.ModuleDict()
        for idx in range(config.num_experts):
            self.experts["expert_%d" % idx] = SwitchTransformersDenseActDense(config)

    def forward(self, hidden_states):
        """hidden_states [T, d] -> (y [T, d], router_logits, expert_index, router_probs, kept_mask)."""
        kept_mask, router_probs, router_logits, expert_index = self.router(hidden_states)
        # Mesh-TF / GShard: dropped tokens contribute nothing (HF would start from a clone of x).
        next_states = torch.zeros_like(hidden_states)
        for idx, expert in enumerate(self.experts.values()):
            token_indices = kept_mask[:, idx].bool()
            if token_indices.any():
                next_states[token_indices] = expert(hidden_states[token_indices]).to(next_states.dtype)
        hidden_states = router_probs * next_states
        return hidden_states, router_logits, expert_index, router_probs, kept_mask
