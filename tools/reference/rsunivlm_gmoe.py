"""RSUniVLM's granularity-oriented MoE FFN (G-MoE), in PyTorch.

Mirrors `llava/model/language_model/llava_qwen_gmoe.py` of the released RSUniVLM code
(repository xuliu-cyber/RSUniVLM; ../shared/docs/reference-systems.md and weight-names.md,
section 3): `Qwen2GMoEDecoderLayer` replaces the FFN by `nn.ModuleList([Qwen2MLP(config) for _ in
range(3)])` and calls `self.mlp[granularity](hidden_states)`; there is no gate network. The
granularity is chosen per request (per call of the model) from the task tag of the prompt, as
app.py does:

    [SEG]           -> 2 (pixel level)        checked first
    [VG] or [REF]   -> 1 (region level)
    anything else   -> 0 (image level: [CAP], [VQA], [CLS], [CCD], ...)

and that expert serves every token of the request in every layer.

Names under `model.layers.{l}.mlp.` (Hugging Face Qwen2MLP, no bias):

    {g}.gate_proj.weight   [I, H]     g = 0, 1, 2
    {g}.up_proj.weight     [I, H]
    {g}.down_proj.weight   [H, I]

    Qwen2MLP(x) = down_proj(silu(gate_proj(x)) * up_proj(x))

A batch of several requests (the released code runs one request per call; moe serves a mixed
batch) is the concatenation of their tokens: `forward(x, offsets, prompts)` applies request r's
expert to tokens offsets[r] .. offsets[r+1]-1.
"""

import torch
import torch.nn as nn

TAGS = (("[SEG]", 2), ("[VG]", 1), ("[REF]", 1))
FALLBACK = 0


def granularity(prompt, tags=TAGS, fallback=FALLBACK):
    """The expert a prompt selects (first matching tag wins)."""
    for tag, g in tags:
        if tag in prompt:
            return g
    return fallback


class Qwen2MLP(nn.Module):
    """transformers.models.qwen2.modeling_qwen2.Qwen2MLP (hidden_act "silu")."""

    def __init__(self, hidden_size, intermediate_size):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class GMoEFFN(nn.Module):
    """The FFN of Qwen2GMoEDecoderLayer: `mlp` = 3 Qwen2MLP experts (state-dict names
    `mlp.{g}.*` when this module is registered as `mlp` of a layer)."""

    def __init__(self, hidden_size=896, intermediate_size=4864, num_experts=3):
        super().__init__()
        self.experts = nn.ModuleList([Qwen2MLP(hidden_size, intermediate_size) for _ in range(num_experts)])

    def state_dict_named(self, prefix):
        """{prefix + "{g}.{gate,up,down}_proj.weight": tensor} (prefix e.g. "model.layers.3.mlp.")."""
        return {prefix + k[len("experts."):]: v.detach().clone().contiguous()
                for k, v in self.experts.state_dict(prefix="experts.").items()}

    def forward_one(self, x, g):
        """One request: self.mlp[granularity](hidden_states)."""
        return self.experts[g](x)

    def forward(self, x, offsets, prompts):
        """x [T, H], offsets [R + 1], prompts [R] -> (y [T, H], experts [R])."""
        y = torch.empty_like(x)
        chosen = []
        for r, prompt in enumerate(prompts):
            g = granularity(prompt)
            chosen.append(g)
            a, b = offsets[r], offsets[r + 1]
            y[a:b] = self.forward_one(x[a:b], g)
        return y, chosen
