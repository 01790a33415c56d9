"""Qwen2 / LLaMA decoder-only language models, as Hugging Face transformers writes them, with an
FFN slot that is a dense SwiGLU, a Qwen2-MoE sparse block or RSUniVLM's G-MoE.

The ground truth of the C++ decoder runtime (issue 16). No `transformers` here (Debian's torch
1.13 only), so the modules are rewritten from the upstream source, keeping its structure,
parameter names and arithmetic (inference mode, eager attention):

  huggingface/transformers, src/transformers/models/qwen2/modeling_qwen2.py
      @ 00d4b3d2142cb4ced2f51b90614b5d26bc045015: Qwen2MLP, Qwen2RotaryEmbedding
      (compute_default_rope_parameters), rotate_half, apply_rotary_pos_emb, repeat_kv,
      eager_attention_forward, Qwen2Attention (q/k/v bias, o_proj without), Qwen2RMSNorm,
      Qwen2DecoderLayer, Qwen2Model, Qwen2ForCausalLM (lm_head tied when tie_word_embeddings).
  .../models/llama/modeling_llama.py @ 002272831fba584eb30dca9729c1be456836960a: LlamaRMSNorm,
      LlamaMLP, LlamaAttention (q/k/v/o bias = config.attention_bias); that stored version is
      v4.38-era; later versions (from their source, not in the store) add `mlp_bias` to LlamaMLP
      and `head_dim` from the config, both followed here; `pretraining_tp > 1` only splits the
      same sums and is not mirrored.
  src/transformers/modeling_rope_utils.py @ 0044e3b3facff1a1ad60b235c69d5b45beae75a4:
      _compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
      _compute_llama3_parameters ("llama3": factor, low_freq_factor, high_freq_factor,
      original_max_position_embeddings; "type" accepted for "rope_type").
  .../models/qwen2_moe/modeling_qwen2_moe.py @ 00a3f9386614dde0dc41cf4e9b8d0abd3af0671d:
      Qwen2MoeDecoderLayer's choice of FFN (sparse when `layer_idx not in mlp_only_layers` and
      `num_experts > 0` and `(layer_idx + 1) % decoder_sparse_step == 0`, else Qwen2MoeMLP with
      `intermediate_size`); attention with q/k/v bias (`qkv_bias`, default true). The sparse
      block itself is tools/reference/qwen2_moe.py (Qwen2MoeSparseMoeBlock, shared expert with
      its sigmoid gate).
  .../models/mixtral/modeling_mixtral.py: MixtralDecoderLayer (LLaMA's attention without
      biases; the FFN is `block_sparse_moe`, tools/reference/mixtral.py's MixtralSparseMoeBlock:
      softmax top-k renormalised, experts.{e}.w1/w2/w3), model_type "mixtral".
  RSUniVLM llava_qwen_gmoe.py (tools/reference/rsunivlm_gmoe.py): Qwen2GMoEDecoderLayer's
      `mlp = ModuleList([Qwen2MLP] * 3)`, expert chosen per request by the task tag.

Parameter names (HF's, exactly):

    model.embed_tokens.weight                          [V, H]
    model.layers.{i}.input_layernorm.weight            [H]
    model.layers.{i}.self_attn.q_proj.weight           [nH*hd, H]   .bias (Qwen2, Qwen2-MoE; LLaMA if attention_bias)
    model.layers.{i}.self_attn.k_proj.weight           [nKV*hd, H]  .bias
    model.layers.{i}.self_attn.v_proj.weight           [nKV*hd, H]  .bias
    model.layers.{i}.self_attn.o_proj.weight           [H, nH*hd]   .bias (LLaMA if attention_bias)
    model.layers.{i}.post_attention_layernorm.weight   [H]
    model.layers.{i}.mlp.{gate,up,down}_proj.weight    dense SwiGLU (.bias: LLaMA if mlp_bias)
    model.layers.{i}.mlp.gate.weight, mlp.experts.{e}.*, mlp.shared_expert.*, mlp.shared_expert_gate.weight
                                                       Qwen2-MoE sparse layers
    model.layers.{i}.mlp.{g}.{gate,up,down}_proj.weight  G-MoE (g = 0, 1, 2)
    model.norm.weight                                  [H]
    lm_head.weight                                     [V, H]   (absent from the file when tied)

Arithmetic, in order: x = embed(ids) (or inputs_embeds); per layer x += o_proj(attn(rope(q), rope(k),
v) over the cache) on RMSNorm(x), then x += ffn(RMSNorm(x)); logits = lm_head(RMSNorm(x)).
RMSNorm: fp32 mean of squares, rsqrt(var + eps), weight * x.to(input dtype). Rope: cos/sin of
position * inv_freq in fp32, emb = cat(freqs, freqs), q*cos + rotate_half(q)*sin; with
partial_rotary_factor < 1 (no Qwen2/LLaMA checkpoint has one; HF's Phi/StableLM/GPT-NeoX
convention) only the first int(hd * factor) dims rotate, the rest pass through. Attention:
softmax(q k^T * hd^-0.5 + mask) in fp32, GQA by repeat_kv (kv head j serves q heads
j*g .. j*g+g-1).

Padding and positions follow `generate`: attention_mask [B, past + T] of 1/0 covers the cache
and the new tokens; position_ids = cumsum(mask) - 1 (1 where masked), so a left-padded sequence
gets the positions it would have alone; keys where the mask is 0 get finfo.min added (a fully
masked row, a left pad's own query, is then uniform and harmless). Without a mask the positions
are past .. past + T - 1. The KV cache is a list of (k, v) per layer, [B, nKV, S, hd], k after
rope.
"""

import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

import mixtral
import qwen2_moe
from safetensors_io import load_file, save_file

# HF defaults per model_type (configuration_qwen2.py / configuration_llama.py /
# configuration_qwen2_moe.py) for the fields this module reads.
_DEFAULTS = {
    "common": dict(hidden_act="silu", rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None,
                   tie_word_embeddings=False, attention_dropout=0.0, head_dim=None, partial_rotary_factor=1.0,
                   num_key_value_heads=None),
    "qwen2": dict(use_sliding_window=False),
    "llama": dict(attention_bias=False, mlp_bias=False, pretraining_tp=1),
    "mixtral": dict(num_local_experts=8, num_experts_per_tok=2, sliding_window=None),
    "qwen2_moe": dict(qkv_bias=True, decoder_sparse_step=1, mlp_only_layers=[], num_experts=60,
                      num_experts_per_tok=4, norm_topk_prob=False, moe_intermediate_size=1408,
                      shared_expert_intermediate_size=5632, use_sliding_window=False),
}

GMOE_ARCHITECTURE = "LlavaQwenGMoeForCausalLM"


class DecoderConfig:
    """A config.json dict with HF's defaults filled in; `gmoe_experts` > 0 makes every FFN a G-MoE
    (the released RSUniVLM config has no field for it: it is recognised here by its
    architectures entry, LlavaQwenGMoeForCausalLM, and the expert count by the names)."""

    def __init__(self, d):
        self.raw = dict(d)
        mt = d.get("model_type")
        if mt not in ("qwen2", "llama", "qwen2_moe", "mixtral"):
            raise ValueError("unsupported model_type %r" % (mt,))
        vals = dict(_DEFAULTS["common"])
        vals.update(_DEFAULTS[mt])
        vals.update(d)
        for k, v in vals.items():
            setattr(self, k, v)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.hidden_act != "silu":
            raise ValueError("unsupported hidden_act %r" % (self.hidden_act,))
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if getattr(self, "use_sliding_window", False):
            raise NotImplementedError("use_sliding_window")
        self.gmoe_experts = int(d.get("_gmoe_experts", 3 if GMOE_ARCHITECTURE in d.get("architectures", []) else 0))
        self.raw.pop("_gmoe_experts", None)

    @property
    def q_bias(self):
        if self.model_type == "mixtral":  # MixtralAttention: no biases
            return False
        if self.model_type == "llama":
            return bool(self.attention_bias)
        return bool(self.raw.get("qkv_bias", True)) if self.model_type == "qwen2_moe" else True

    @property
    def o_bias(self):
        return self.model_type == "llama" and bool(self.attention_bias)

    @property
    def mlp_bias_(self):
        return self.model_type == "llama" and bool(self.mlp_bias)

    def is_sparse_layer(self, i):
        return (self.model_type == "qwen2_moe" and i not in self.mlp_only_layers and self.num_experts > 0
                and (i + 1) % self.decoder_sparse_step == 0)

    def rope_type(self):
        rs = self.rope_scaling
        if not rs:
            return "default"
        return rs.get("rope_type", rs.get("type", "default"))


# --------------------------------------------------------------------------------------------
# parts


class RMSNorm(nn.Module):
    """Qwen2RMSNorm / LlamaRMSNorm."""

    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        h = hidden_states.to(torch.float32)
        variance = h.pow(2).mean(-1, keepdim=True)
        h = h * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * h.to(input_dtype)


def rope_inv_freq(cfg):
    """(inv_freq [rot/2] fp32, attention_scaling): modeling_rope_utils' default, linear and llama3."""
    rot = int(cfg.head_dim * cfg.partial_rotary_factor)
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, rot, 2, dtype=torch.int64).float() / rot))
    kind = cfg.rope_type()
    if kind == "default":
        return inv_freq, 1.0
    rs = cfg.rope_scaling
    if kind == "linear":
        return inv_freq / rs["factor"], 1.0
    if kind == "llama3":
        factor = rs["factor"]
        low_freq_factor = rs["low_freq_factor"]
        high_freq_factor = rs["high_freq_factor"]
        old_context_len = rs["original_max_position_embeddings"]
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(medium, smoothed, scaled), 1.0
    raise NotImplementedError("rope_scaling type %r" % (kind,))


class RotaryEmbedding(nn.Module):
    """Qwen2RotaryEmbedding / LlamaRotaryEmbedding.forward: cos, sin [B, T, rot] in fp32, cast to x's dtype."""

    def __init__(self, cfg):
        super().__init__()
        inv_freq, self.attention_scaling = rope_inv_freq(cfg)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x, position_ids):
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        pos = position_ids[:, None, :].float()
        freqs = (inv @ pos).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    """q [B, nH, T, hd], k [B, nKV, T, hd], cos/sin [B, T, rot]; rot < hd: the rest passes through."""
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    rot = cos.shape[-1]
    if rot == q.shape[-1]:
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    q_rot, q_pass = q[..., :rot], q[..., rot:]
    k_rot, k_pass = k[..., :rot], k[..., rot:]
    q_rot = q_rot * cos + rotate_half(q_rot) * sin
    k_rot = k_rot * cos + rotate_half(k_rot) * sin
    return torch.cat((q_rot, q_pass), dim=-1), torch.cat((k_rot, k_pass), dim=-1)


def repeat_kv(x, n_rep):
    b, nkv, s, hd = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, nkv, n_rep, s, hd).reshape(b, nkv * n_rep, s, hd)


class Attention(nn.Module):
    def __init__(self, cfg, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = cfg.head_dim
        self.num_heads = cfg.num_attention_heads
        self.num_key_value_heads = cfg.num_key_value_heads
        self.num_key_value_groups = self.num_heads // self.num_key_value_heads
        self.scaling = self.head_dim ** -0.5
        H = cfg.hidden_size
        self.q_proj = nn.Linear(H, self.num_heads * self.head_dim, bias=cfg.q_bias)
        self.k_proj = nn.Linear(H, self.num_key_value_heads * self.head_dim, bias=cfg.q_bias)
        self.v_proj = nn.Linear(H, self.num_key_value_heads * self.head_dim, bias=cfg.q_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, H, bias=cfg.o_bias)

    def forward(self, x, cos, sin, mask, past_kv):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        if past_kv is not None:
            k = torch.cat((past_kv[0], k), dim=2)
            v = torch.cat((past_kv[1], v), dim=2)
        kr = repeat_kv(k, self.num_key_value_groups)
        vr = repeat_kv(v, self.num_key_value_groups)
        w = torch.matmul(q, kr.transpose(2, 3)) * self.scaling
        if mask is not None:
            w = w + mask[:, :, :, : kr.shape[-2]]
        # HF: softmax in fp32. fp64 (only the self-checks run it) keeps fp64, else finfo(fp64).min
        # would become -inf in fp32 and a fully masked (left-pad) row NaN.
        w = F.softmax(w, dim=-1, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32).to(q.dtype)
        o = torch.matmul(w, vr).transpose(1, 2).contiguous().reshape(B, T, -1)
        return self.o_proj(o), (k, v)


class MLP(nn.Module):
    """Qwen2MLP / LlamaMLP: down_proj(silu(gate_proj(x)) * up_proj(x))."""

    def __init__(self, hidden_size, intermediate_size, bias=False):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SparseFFN(qwen2_moe.Qwen2MoeSparseMoeBlock):
    """Qwen2MoeSparseMoeBlock over [B, T, H]; keeps the last router logits (for margin checks)."""

    def __init__(self, cfg):
        super().__init__(qwen2_moe.Qwen2MoeConfig(
            hidden_size=cfg.hidden_size, moe_intermediate_size=cfg.moe_intermediate_size,
            shared_expert_intermediate_size=cfg.shared_expert_intermediate_size, num_experts=cfg.num_experts,
            num_experts_per_tok=cfg.num_experts_per_tok, norm_topk_prob=cfg.norm_topk_prob))
        self.last_router_logits = None

    def forward(self, x, granularity=None):
        y, logits = super().forward(x)
        self.last_router_logits = logits.detach()
        return y


class GMoEFFN(nn.ModuleList):
    """Qwen2GMoEDecoderLayer.mlp: a ModuleList of Qwen2MLP (names mlp.{g}.*); request b of the
    batch uses expert granularity[b] for all its tokens."""

    def __init__(self, cfg):
        super().__init__([MLP(cfg.hidden_size, cfg.intermediate_size) for _ in range(cfg.gmoe_experts)])

    def forward(self, x, granularity=None):
        if granularity is None:
            raise ValueError("a G-MoE model needs granularity (one int per sequence)")
        if isinstance(granularity, int):
            granularity = [granularity] * x.shape[0]
        return torch.stack([self[g](x[b]) for b, g in enumerate(granularity)])


class MixtralFFN(mixtral.MixtralSparseMoeBlock):
    """MixtralSparseMoeBlock over [B, T, H] (names block_sparse_moe.gate / experts.{e}.w1/w2/w3);
    keeps the last router logits (for margin checks)."""

    def __init__(self, cfg):
        super().__init__(mixtral.MixtralConfig(
            hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_local_experts=cfg.num_local_experts, num_experts_per_tok=cfg.num_experts_per_tok))
        self.last_router_logits = None

    def forward(self, x, granularity=None):
        y, logits = super().forward(x)
        self.last_router_logits = logits.detach()
        return y.reshape(x.shape)


class DenseFFN(MLP):
    def forward(self, x, granularity=None):
        return super().forward(x)


class DecoderLayer(nn.Module):
    def __init__(self, cfg, i):
        super().__init__()
        self.self_attn = Attention(cfg, i)
        if cfg.model_type == "mixtral":  # MixtralDecoderLayer names its FFN block_sparse_moe
            self.block_sparse_moe = MixtralFFN(cfg)
        elif cfg.gmoe_experts:
            self.mlp = GMoEFFN(cfg)
        elif cfg.is_sparse_layer(i):
            self.mlp = SparseFFN(cfg)
        else:
            self.mlp = DenseFFN(cfg.hidden_size, cfg.intermediate_size, bias=cfg.mlp_bias_)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, past_kv, granularity):
        a, kv = self.self_attn(self.input_layernorm(x), cos, sin, mask, past_kv)
        x = x + a
        ffn = self.block_sparse_moe if hasattr(self, "block_sparse_moe") else self.mlp
        x = x + ffn(self.post_attention_layernorm(x), granularity)
        return x, kv


class DecoderModel(nn.Module):
    """Qwen2Model / LlamaModel."""

    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None,
                past_key_values=None, granularity=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids, inputs_embeds")
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = h.shape[:2]
        past = past_key_values[0][0].shape[2] if past_key_values else 0
        if attention_mask is not None and attention_mask.shape != (B, past + T):
            raise ValueError("attention_mask must be [B, past + T]")
        if position_ids is None:
            if attention_mask is not None:
                pos = attention_mask.long().cumsum(-1) - 1
                pos = pos.masked_fill(attention_mask == 0, 1)
                position_ids = pos[:, -T:]
            else:
                position_ids = torch.arange(past, past + T).unsqueeze(0).expand(B, T)
        # Additive mask [B, 1, T, past + T]: causal in cache order, plus padding.
        neg = torch.finfo(h.dtype).min
        q_idx = torch.arange(past, past + T)[:, None]
        k_idx = torch.arange(past + T)[None, :]
        allowed = (k_idx <= q_idx)[None, None].expand(B, 1, T, past + T)
        if attention_mask is not None:
            allowed = allowed & (attention_mask[:, None, None, :] != 0)
        mask = torch.zeros(B, 1, T, past + T, dtype=h.dtype).masked_fill(~allowed, neg)
        cos, sin = self.rotary_emb(h, position_ids)
        cache = []
        for i, layer in enumerate(self.layers):
            h, kv = layer(h, cos, sin, mask, past_key_values[i] if past_key_values else None, granularity)
            cache.append(kv)
        return self.norm(h), cache


class DecoderForCausalLM(nn.Module):
    """Qwen2ForCausalLM / LlamaForCausalLM / Qwen2MoeForCausalLM / LlavaQwenGMoeForCausalLM's LM."""

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.model = DecoderModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None,
                past_key_values=None, granularity=None):
        """-> (logits [B, T, V], cache: list per layer of (k, v) [B, nKV, past + T, hd])."""
        h, cache = self.model(input_ids, inputs_embeds, attention_mask, position_ids, past_key_values, granularity)
        return self.lm_head(h), cache

    def router_logits(self):
        """The last forward's router logits of the sparse layers, {layer: [B*T, E]}."""
        out = {}
        for i, l in enumerate(self.model.layers):
            ffn = l.block_sparse_moe if hasattr(l, "block_sparse_moe") else l.mlp
            if isinstance(ffn, (SparseFFN, MixtralFFN)):
                out[i] = ffn.last_router_logits
        return out


# --------------------------------------------------------------------------------------------
# generation helpers


@torch.no_grad()
def greedy(model, prompt, n, granularity=None, inputs_embeds=None):
    """Greedy decoding with the KV cache: prompt [T] (ints), or its input embeddings [1, T, H]
    (a vision-language model's spliced prompt; prompt None) -> (ids [n], step logits [n, V])."""
    if inputs_embeds is not None:
        logits, cache = model(inputs_embeds=inputs_embeds, granularity=granularity)
    else:
        logits, cache = model(torch.as_tensor(prompt, dtype=torch.long)[None], granularity=granularity)
    out, steps = [], []
    for _ in range(n):
        last = logits[0, -1]
        nxt = int(torch.argmax(last))
        out.append(nxt)
        steps.append(last)
        logits, cache = model(torch.tensor([[nxt]]), past_key_values=cache, granularity=granularity)
    return torch.tensor(out, dtype=torch.long), torch.stack(steps)


@torch.no_grad()
def prefill_then_decode(model, seq, n_prefill, granularity=None):
    """Logits of seq [T] computed as a prefill of n_prefill tokens then T - n_prefill single-token steps."""
    seq = torch.as_tensor(seq, dtype=torch.long)[None]
    logits, cache = model(seq[:, :n_prefill], granularity=granularity)
    rows = [logits[0]]
    for t in range(n_prefill, seq.shape[1]):
        logits, cache = model(seq[:, t:t + 1], past_key_values=cache, granularity=granularity)
        rows.append(logits[0])
    return torch.cat(rows)


def top2_margin(logits):
    """Smallest gap between the best and second-best logit over rows of [N, V]."""
    v = torch.topk(logits, 2, dim=-1).values
    return float((v[..., 0] - v[..., 1]).min())


def router_margin(router_logits, k):
    """Smallest gap (in softmax probability) at any routing decision: consecutive chosen experts
    and the last chosen vs. the best rejected."""
    p = F.softmax(router_logits.float(), dim=-1)
    v = torch.topk(p, k + 1, dim=-1).values
    return float((v[:, :-1] - v[:, 1:]).min())


# --------------------------------------------------------------------------------------------
# checkpoints as save_pretrained writes them


def checkpoint_tensors(model, dtype=torch.float32):
    """The state dict HF saves: tied lm_head.weight left out, every tensor in `dtype`."""
    sd = model.state_dict()
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return {k: v.detach().to(dtype).clone().contiguous() for k, v in sd.items()}


def _dtype_name(dtype):
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]


def save_pretrained(model, folder, dtype=torch.float32, shards=None, generation_config=None):
    """Writes config.json (indent 2, sorted keys, as PretrainedConfig.to_json_file), and
    model.safetensors or, with shards = [[names of shard 1], [names of shard 2], ...],
    model-0000i-of-0000n.safetensors + model.safetensors.index.json ({"metadata": {"total_size"},
    "weight_map": sorted name -> file}). Safetensors metadata {"format": "pt"} as HF writes it."""
    os.makedirs(folder, exist_ok=True)
    cfg = dict(model.config.raw)
    cfg["torch_dtype"] = _dtype_name(dtype)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    if generation_config is not None:
        with open(os.path.join(folder, "generation_config.json"), "w") as f:
            f.write(json.dumps(generation_config, indent=2, sort_keys=True) + "\n")
    tensors = checkpoint_tensors(model, dtype)
    if not shards:
        save_file(tensors, os.path.join(folder, "model.safetensors"), {"format": "pt"})
        return tensors
    names = [n for s in shards for n in s]
    if sorted(names) != sorted(tensors):
        raise ValueError("shards must name every tensor once")
    weight_map, total = {}, 0
    for i, s in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        save_file({n: tensors[n] for n in s}, os.path.join(folder, fname), {"format": "pt"})
        for n in s:
            weight_map[n] = fname
            total += tensors[n].numel() * tensors[n].element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return tensors


def read_checkpoint(folder):
    """name -> tensor from model.safetensors or the sharded files of model.safetensors.index.json."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index):
        return load_file(os.path.join(folder, "model.safetensors"))
    with open(index) as f:
        weight_map = json.load(f)["weight_map"]
    out = {}
    for fname in sorted(set(weight_map.values())):
        part = load_file(os.path.join(folder, fname))
        for n, t in part.items():
            if weight_map.get(n) != fname:
                raise ValueError("%s: %s not in the index under this file" % (fname, n))
            out[n] = t
    if set(out) != set(weight_map):
        raise ValueError("index names tensors missing from the shards: %s" % sorted(set(weight_map) - set(out)))
    return out


def from_pretrained(folder, compute_dtype=torch.float32):
    """Builds the model of a folder and loads its weights (widened to compute_dtype), strictly."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = DecoderConfig(json.load(f))
    model = DecoderForCausalLM(cfg).eval()
    tensors = {k: v.to(compute_dtype) for k, v in read_checkpoint(folder).items()}
    expected = set(model.state_dict())
    if cfg.tie_word_embeddings:
        expected.discard("lm_head.weight")
    if set(tensors) != expected:
        raise ValueError("checkpoint names differ: missing %s, unexpected %s"
                         % (sorted(expected - set(tensors)), sorted(set(tensors) - expected)))
    with torch.no_grad():
        sd = model.state_dict()
        for k, v in tensors.items():
            if sd[k].shape != v.shape:
                raise ValueError("%s: shape %s, expected %s" % (k, tuple(v.shape), tuple(sd[k].shape)))
            sd[k].copy_(v)
    return model.to(compute_dtype)
