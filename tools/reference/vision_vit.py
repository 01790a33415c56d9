"""The ViT family in PyTorch, with the parameter names of the official code.

  TimmVit        timm VisionTransformer (timm/models/vision_transformer.py): patch_embed.proj,
                 cls_token, pos_embed, blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma?,
                 norm2, mlp.fc1, mlp.fc2, ls2.gamma?}, norm. Pre-norm, exact GELU, LN eps 1e-6.
  EvaVit         LAVIS lavis/models/eva_vit.py (create_eva_vit_g): as timm, but attn.qkv has no
                 bias and attn.q_bias / attn.v_bias are separate (qkv bias = cat(q_bias, 0,
                 v_bias)); no final norm.
  SiglipVision   Hugging Face SiglipVisionModel.vision_model (modeling_siglip.py):
                 embeddings.patch_embedding (conv, padding "valid"), embeddings.position_embedding
                 (nn.Embedding, no CLS), encoder.layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj,
                 layer_norm2, mlp.fc1, mlp.fc2}, post_layernorm; gelu_pytorch_tanh. The scores are
                 (q k^T) * scale with softmax in fp32, as HF computes them.

Position embeddings for another input size: the grid part is resized with
F.interpolate(mode="bicubic", align_corners=False) (no antialias), the CLS row kept.

Everything runs in fp32. `det_tensor` builds weights from an integer hash that the C++ tests
reproduce bit for bit (used for the full-width block, whose weights are not stored).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def det_tensor(shape, seed, scale):
    """Deterministic weights: u = ((i + seed * 1000003) * 2654435761) mod 2^32,
    v = (u >> 8) / 2^23 - 1 in [-1, 1) (24 bits, exact in fp32), times `scale` (a power of two:
    the product is exact). tests/unit/test_vision.cpp (det_fill) computes the same values."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    u = ((i + seed * 1000003) * 2654435761) % (2 ** 32)
    v = (u >> 8).double() / float(2 ** 23) - 1.0
    return (v * scale).float().reshape(shape)


def pow2_scale(fan_in):
    """The power of two nearest to 1 / sqrt(fan_in)."""
    return 2.0 ** (-round(math.log2(math.sqrt(fan_in))))


def resize_pos_grid(grid, gh, gw, nh, nw):
    """grid [gh * gw, C] -> [nh * nw, C], bicubic, align_corners=False (timm / HF)."""
    C = grid.shape[-1]
    g = grid.reshape(1, gh, gw, C).permute(0, 3, 1, 2)
    g = F.interpolate(g, size=(nh, nw), mode="bicubic", align_corners=False)
    return g.permute(0, 2, 3, 1).reshape(nh * nw, C)


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        x = self.proj(x)  # [B, C, gh, gw]
        gh, gw = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), (gh, gw)


class Mlp(nn.Module):
    def __init__(self, dim, hidden, gelu="erf"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.gelu = gelu

    def forward(self, x):
        h = self.fc1(x)
        h = F.gelu(h, approximate="tanh") if self.gelu == "tanh" else F.gelu(h)
        return self.fc2(h)


class TimmAttention(nn.Module):
    """timm Attention (fused qkv) or, with eva=True, LAVIS EVA's (q_bias, v_bias)."""

    def __init__(self, dim, heads, qkv_bias=True, eva=False):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.eva = eva
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias and not eva)
        if eva:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        if self.eva:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
            qkv = F.linear(x, self.qkv.weight, bias)
        else:
            qkv = self.qkv(x)
        qkv = qkv.reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class TimmBlock(nn.Module):
    def __init__(self, dim, heads, mlp_hidden, qkv_bias=True, eva=False, layer_scale=False, gelu="erf"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = TimmAttention(dim, heads, qkv_bias, eva)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_hidden, gelu)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class TimmVit(nn.Module):
    def __init__(self, img=224, patch=16, in_chans=3, dim=768, depth=12, heads=12, mlp_hidden=3072,
                 layer_scale=False, eva=False, final_norm=True):
        super().__init__()
        g = img // patch
        self.grid = g
        self.patch_embed = PatchEmbed(patch, in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, g * g + 1, dim))
        self.blocks = nn.ModuleList([TimmBlock(dim, heads, mlp_hidden, True, eva, layer_scale)
                                     for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6) if final_norm else nn.Identity()

    def forward(self, images, hidden=None):
        x, (gh, gw) = self.patch_embed(images)
        B = x.shape[0]
        pos = self.pos_embed[0]
        if (gh, gw) != (self.grid, self.grid):
            pos = torch.cat((pos[:1], resize_pos_grid(pos[1:], self.grid, self.grid, gh, gw)), 0)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), 1) + pos
        if hidden is not None:
            hidden.append(x)
        for b in self.blocks:
            x = b(x)
            if hidden is not None:
                hidden.append(x)
        return self.norm(x)


class SiglipAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        d = C // self.heads
        q = self.q_proj(x).view(B, N, self.heads, d).transpose(1, 2)
        k = self.k_proj(x).view(B, N, self.heads, d).transpose(1, 2)
        v = self.v_proj(x).view(B, N, self.heads, d).transpose(1, 2)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scale
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(w, v).transpose(1, 2).reshape(B, N, C)
        return self.out_proj(o)


class SiglipLayer(nn.Module):
    def __init__(self, dim, heads, mlp_hidden):
        super().__init__()
        self.self_attn = SiglipAttention(dim, heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_hidden, "tanh")
        self.layer_norm2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class SiglipEmbeddings(nn.Module):
    def __init__(self, img, patch, in_chans, dim):
        super().__init__()
        self.grid = img // patch
        self.patch_embedding = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch, padding="valid")
        self.position_embedding = nn.Embedding(self.grid * self.grid, dim)

    def forward(self, images):
        x = self.patch_embedding(images)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        pos = self.position_embedding.weight
        if (gh, gw) != (self.grid, self.grid):
            pos = resize_pos_grid(pos, self.grid, self.grid, gh, gw)
        return x + pos


class SiglipEncoder(nn.Module):
    def __init__(self, dim, depth, heads, mlp_hidden):
        super().__init__()
        self.layers = nn.ModuleList([SiglipLayer(dim, heads, mlp_hidden) for _ in range(depth)])


class SiglipVisionTransformer(nn.Module):
    def __init__(self, img=384, patch=14, in_chans=3, dim=1152, depth=27, heads=16, mlp_hidden=4304):
        super().__init__()
        self.embeddings = SiglipEmbeddings(img, patch, in_chans, dim)
        self.encoder = SiglipEncoder(dim, depth, heads, mlp_hidden)
        self.post_layernorm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, images, keep=None, hidden=None, post_norm=False):
        """The output of the first `keep` layers (all by default), raw or post-normed."""
        x = self.embeddings(images)
        if hidden is not None:
            hidden.append(x)
        for layer in self.encoder.layers[:keep]:
            x = layer(x)
            if hidden is not None:
                hidden.append(x)
        return self.post_layernorm(x) if post_norm else x


class SiglipVisionModel(nn.Module):
    """Names as transformers' SiglipVisionModel: vision_model.*"""

    def __init__(self, **kw):
        super().__init__()
        self.vision_model = SiglipVisionTransformer(**kw)


def init_random(module, generator, scale_norms=True):
    """Deterministic random init: Linear/Conv weights uniform +-1/sqrt(fan_in), biases small,
    LayerNorm gamma ~ 1 +- 0.1, beta +-0.1, tokens / position embeddings N(0, 0.02)-like."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2 and ("pos" in name or "position" in name or "cls" in name):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
            elif name.endswith("cls_token"):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                b = 1.0 / math.sqrt(fan_in)
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * b)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + (torch.rand(p.shape, generator=generator) * 2 - 1) * 0.1)
            elif name.endswith("gamma") and "ls" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=generator))
            else:
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * 0.1)
