"""RingMoE's Swin encoder in PyTorch, with the MindSpore parameter names of the released code
(ringmoe_framework/models/backbone/swin_transformerv2.py and models/layers/{block, attention,
patch, moe_modal, mlp}.py; ../shared/docs/weight-names.md, section 1).

    encoder.patch_embed{m}.projection.{weight [C, Cin_m, p, p], bias}     Conv2d k = s = p
    encoder.patch_embed{m}.norm.{gamma, beta}                             LayerNorm eps 1e-6
    encoder.layers.{i}.blocks.{j}.attn.relative_position_bias.relative_position_bias_table [(2w-1)^2, H]
    encoder.layers.{i}.blocks.{j}.attn.relative_position_bias.relative_position_index      [w^4] int32
    encoder.layers.{i}.blocks.{j}.attn.{q, k, v, proj}.{weight [C, C], bias [C]}
    encoder.layers.{i}.blocks.{j}.norm1/norm2.{gamma, beta}                LayerNorm eps 1e-6
    encoder.layers.{i}.blocks.{j}.attn_mask [1, nW, 1, w^2, w^2]           shifted blocks only
    encoder.layers.{i}.blocks.{j}.mlp.*     MoE: ringmoe_moe.MoeModal; dense: MLP (expert_num 1:
                                            mapping.weight [C, F] [in, out], projection [F, C])
    encoder.layers.{i}.downsample.reduction.weight [2C, 4C]                no bias
    encoder.layers.{i}.downsample.norm.{gamma, beta}                       LayerNorm eps 1e-4
    encoder.norm.{gamma, beta}                                             LayerNorm eps 1e-6

Forward (Swin-V1 window attention, Swin-V2 residual post-norm):
    x = x + norm1(reverse(WindowAttn(partition(roll(x, -s))), +s));  x = x + norm2(mlp(x))
  WindowAttn: (q * d^-0.5) k^T + table[index] (+ mask) -> softmax -> @ v -> proj, head-major.
  A stage whose resolution is not larger than the window clips the window to it, shift 0.
  PatchMerging: cat(x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]) -> reduction -> norm.
  The MoE gets the whole batch [B, N, C] ordered by modality (equal chunks per modality).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import ringmoe_moe


class LayerNorm(nn.Module):
    """MindSpore _LayerNorm: gamma / beta."""

    def __init__(self, dim, eps):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.gamma, self.beta, self.eps)


class Linear(nn.Module):
    """RingMoE Linear with transpose_b=True: weight [out, in]."""

    def __init__(self, cin, cout, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


def relative_position_index(w):
    coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij"))  # [2, w, w]
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)  # [w^2, w^2, 2]
    rel[:, :, 0] += w - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    return rel.sum(-1).flatten().to(torch.int32)


class RelativePositionBias(nn.Module):
    def __init__(self, w, heads):
        super().__init__()
        self.w = w
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * w - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(w))

    def forward(self):
        n = self.w * self.w
        b = self.relative_position_bias_table[self.relative_position_index.long()].view(n, n, self.heads)
        return b.permute(2, 0, 1)  # [H, n, n]


class WindowAttention(nn.Module):
    def __init__(self, dim, w, heads, qkv_bias=True):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = Linear(dim, dim, qkv_bias)
        self.k = Linear(dim, dim, qkv_bias)
        self.v = Linear(dim, dim, qkv_bias)
        self.proj = Linear(dim, dim)
        self.relative_position_bias = RelativePositionBias(w, heads)

    def forward(self, x, mask=None):
        Bw, N, C = x.shape
        d = C // self.heads
        q = (self.q(x) * self.scale).view(Bw, N, self.heads, d).transpose(1, 2)
        k = self.k(x).view(Bw, N, self.heads, d).transpose(1, 2)
        v = self.v(x).view(Bw, N, self.heads, d).transpose(1, 2)
        attn = q @ k.transpose(-2, -1) + self.relative_position_bias().unsqueeze(0)
        if mask is not None:  # [nW, N, N]
            nW = mask.shape[0]
            attn = attn.view(Bw // nW, nW, self.heads, N, N) + mask[None, :, None]
            attn = attn.view(Bw, self.heads, N, N)
        attn = attn.softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(Bw, N, C))


def window_partition(x, w):
    B, H, W, C = x.shape
    x = x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, C)


def window_reverse(win, w, H, W):
    B = win.shape[0] // ((H // w) * (W // w))
    x = win.view(B, H // w, W // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, -1)


def shifted_window_mask(R, w, s):
    img = torch.zeros(1, R, R, 1)
    cnt = 0
    for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
        for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    mw = window_partition(img, w).squeeze(-1)  # [nW, w^2]
    m = mw.unsqueeze(1) - mw.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


class SwinBlock(nn.Module):
    def __init__(self, dim, R, heads, window, shift, mlp, qkv_bias=True, eps=1e-6):
        super().__init__()
        if R <= window:
            window, shift = R, 0
        self.R, self.w, self.s = R, window, shift
        self.norm1 = LayerNorm(dim, eps)
        self.attn = WindowAttention(dim, window, heads, qkv_bias)
        self.norm2 = LayerNorm(dim, eps)
        self.mlp = mlp
        if shift > 0:
            m = shifted_window_mask(R, window, shift)
            self.register_buffer("attn_mask", m.view(1, m.shape[0], 1, window * window, window * window))
        else:
            self.attn_mask = None

    def forward(self, x):
        B, L, C = x.shape
        h = x.view(B, self.R, self.R, C)
        if self.s > 0:
            h = torch.roll(h, shifts=(-self.s, -self.s), dims=(1, 2))
        win = window_partition(h, self.w)
        mask = self.attn_mask[0, :, 0] if self.attn_mask is not None else None
        a = window_reverse(self.attn(win, mask), self.w, self.R, self.R)
        if self.s > 0:
            a = torch.roll(a, shifts=(self.s, self.s), dims=(1, 2))
        x = x + self.norm1(a.reshape(B, L, C))
        m = self.mlp(x)
        if isinstance(m, tuple):  # MoeModal returns (y, aux, info)
            self.last_moe = m
            m = m[0]
        return x + self.norm2(m)


class PatchMerging(nn.Module):
    def __init__(self, dim, R, eps=1e-4):
        super().__init__()
        self.R = R
        self.reduction = Linear(4 * dim, 2 * dim, bias=False)
        self.norm = LayerNorm(2 * dim, eps)

    def forward(self, x):
        B, L, C = x.shape
        x = x.view(B, self.R, self.R, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.norm(self.reduction(x.view(B, -1, 4 * C)))


class Stage(nn.Module):
    def __init__(self, blocks, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


class PatchEmbed(nn.Module):
    def __init__(self, patch, cin, dim, eps=1e-6):
        super().__init__()
        self.projection = nn.Conv2d(cin, dim, kernel_size=patch, stride=patch)
        self.norm = LayerNorm(dim, eps)

    def forward(self, x):
        return self.norm(self.projection(x).flatten(2).transpose(1, 2))


class SwinEncoder(nn.Module):
    """mlp_factory(stage, C, F) builds each block's mlp (dense MLP or MoeModal)."""

    def __init__(self, img=192, patch=4, in_chans=(3, 8, 3, 4), dim=448, depths=(2, 2, 18, 2),
                 heads=(14, 28, 56, 112), window=12, mlp_ratio=4, mlp_factory=None):
        super().__init__()
        for m, cin in enumerate(in_chans):
            setattr(self, "patch_embed%d" % m, PatchEmbed(patch, cin, dim))
        self.modalities = len(in_chans)
        R = img // patch
        stages = []
        self.resolutions = []
        for i, (d, h) in enumerate(zip(depths, heads)):
            C = dim << i
            Ri = R >> i
            self.resolutions.append(Ri)
            blocks = [SwinBlock(C, Ri, h, window, 0 if j % 2 == 0 else window // 2,
                                mlp_factory(i, C, int(C * mlp_ratio))) for j in range(d)]
            down = PatchMerging(C, Ri) if i + 1 < len(depths) else None
            stages.append(Stage(blocks, down))
        self.layers = nn.ModuleList(stages)
        self.norm = LayerNorm(dim << (len(depths) - 1), 1e-6)

    def forward(self, batches, block_outputs=None):
        """batches: list of (images [b, Cin_m, H, W], m), concatenated in order."""
        x = torch.cat([getattr(self, "patch_embed%d" % m)(img) for img, m in batches], 0)
        for st in self.layers:
            for blk in st.blocks:
                x = blk(x)
                if block_outputs is not None:
                    block_outputs.append(x)
            if st.downsample is not None:
                x = st.downsample(x)
        return self.norm(x)


class Top(nn.Module):
    """SimMIM_Moe's top level: the encoder's names start with "encoder."."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder


def dense_mlp(gelu_kind="tanh"):
    return lambda i, C, F_: ringmoe_moe.MLP(C, F_, 1, gelu_kind)


def moe_mlp(modalities, experts=4, gelu_kind="tanh", capacity_factor=1.2):
    return lambda i, C, F_: ringmoe_moe.MoeModal(hidden=C, ffn_hidden=F_, modal_num=modalities,
                                                 specific_expert_num=experts, cross_expert_num=experts,
                                                 expert_num=8, num_experts_chosen=1,
                                                 capacity_factor=capacity_factor, gelu_kind=gelu_kind).eval()
