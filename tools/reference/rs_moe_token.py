"""RS-MoE's released token-level MoE (see ../shared/docs/reference-systems.md, "RS-MoE").

The released RS-MoE code (repository CongcongWen1208/RS-MoE) contains a token MoE layer:
a Linear gate -> fp32 softmax -> top-k -> renormalise; experts Linear(d, 4d) -> GELU ->
Linear(4d, d) with biases; optional always-on shared experts of the same shape whose outputs are
summed; defaults 4 experts, top-2, 2 shared. The parameter names are not fixed by a public
checkpoint; this reference (and moe::hf::load_rs_moe_token) uses, under a prefix such as
`model.layers.0.moe.`:

    gate.weight                    [E, d]    torch.nn.Linear(d, E): with a bias by default
    gate.bias                      [E]       (the loader accepts a gate without bias too)
    experts.{i}.fc1.weight         [4d, d]
    experts.{i}.fc1.bias           [4d]
    experts.{i}.fc2.weight         [d, 4d]
    experts.{i}.fc2.bias           [d]
    shared_experts.{j}.fc1.weight  [4d, d]   (same for fc1.bias, fc2.weight, fc2.bias)

    p = softmax(gate(x).float()); w, idx = topk(p, k); w /= w.sum(-1)
    y = sum_j w_j * expert_{idx_j}(x) + sum_s shared_s(x)
GELU is the exact erf form (torch.nn.GELU()).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Expert(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TokenMoE(nn.Module):
    def __init__(self, dim=64, num_experts=4, top_k=2, num_shared_experts=2, mlp_ratio=4, gate_bias=True):
        super().__init__()
        self.dim = dim
        self.num_experts = num_experts
        self.top_k = top_k
        self.gate = nn.Linear(dim, num_experts, bias=gate_bias)
        self.experts = nn.ModuleList([Expert(dim, dim * mlp_ratio) for _ in range(num_experts)])
        self.shared_experts = nn.ModuleList([Expert(dim, dim * mlp_ratio) for _ in range(num_shared_experts)])

    def route(self, x):
        logits = self.gate(x)
        probs = F.softmax(logits.float(), dim=-1)
        weights, indices = torch.topk(probs, self.top_k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, weights.to(x.dtype), indices

    def forward(self, x):
        """x [..., d] -> (y, router_logits [T, E], topk_weights [T, k], topk_indices [T, k])."""
        shape = x.shape
        x = x.reshape(-1, self.dim)
        logits, weights, indices = self.route(x)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token_idx, slot = torch.where(indices == e)
            if token_idx.numel() == 0:
                continue
            y.index_add_(0, token_idx, expert(x[token_idx]) * weights[token_idx, slot, None])
        for shared in self.shared_experts:
            y = y + shared(x)
        return y.reshape(shape), logits, weights, indices
