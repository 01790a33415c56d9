"""PyTorch references of the remote-sensing adapters in include/rs/adapters.hpp.

PatchEmbed          nn.Conv2d(C, D, p, stride=p) (+ nn.LayerNorm(D, eps)), tokens flattened
                    row-major over the patch grid: [N, D] (RingMoE's PatchEmbed, timm's).
RingMoEPatchEmbeds  four PatchEmbeds (optical 3, SAR-L1 8, SAR-L2 3, multispectral 4 channels),
                    parameters named encoder.patch_embed{m}.projection.* / .norm.{gamma,beta}
                    as RingMoE's MindSpore checkpoint names them.
WavelengthEmbed     DOFA's Dynamic_MLP_OFA: the sincos wavelength embedding (nm, float32),
                    FCResLayer, a weight generator (DOFA's transformer one, or an MLP one),
                    kernel view(C, p, p, D).permute(3, 0, 1, 2), conv2d with scaler 0.01
                    (padding 1 with DOFA's generator, as DOFA's conv has).
BandGroupEmbed      SatMAE-style groups: one PatchEmbed per group, a learned group encoding
                    added, tokens group-major.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    def __init__(self, cin, dim, patch, norm=False, eps=1e-6):
        super().__init__()
        self.projection = nn.Conv2d(cin, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim, eps=eps) if norm else None

    def forward(self, x):  # x [C, H, W] -> [N, D]
        y = self.projection(x[None])[0]  # [D, gh, gw]
        y = y.flatten(1).transpose(0, 1)
        if self.norm is not None:
            y = self.norm(y)
        return y


class RingMoEPatchEmbeds(nn.Module):
    CHANNELS = (3, 8, 3, 4)

    def __init__(self, dim, patch=4):
        super().__init__()
        self.embeds = nn.ModuleList([PatchEmbed(c, dim, patch, norm=True) for c in self.CHANNELS])

    def named_weights(self, prefix="encoder."):
        out = {}
        for m, pe in enumerate(self.embeds):
            base = "%spatch_embed%d." % (prefix, m)
            out[base + "projection.weight"] = pe.projection.weight.detach().clone()
            out[base + "projection.bias"] = pe.projection.bias.detach().clone()
            out[base + "norm.gamma"] = pe.norm.weight.detach().clone()
            out[base + "norm.beta"] = pe.norm.bias.detach().clone()
        return out

    def forward(self, x, m):
        if m == 2 and x.shape[0] == 1:  # SAR-L2: amplitude replicated to 3 channels
            x = x.repeat(3, 1, 1)
        return self.embeds[m](x)


def sincos_1d(pos, dim):
    """DOFA's get_1d_sincos_pos_embed_from_grid_torch (float32 throughout, as DOFA computes it)."""
    omega = torch.arange(dim // 2, dtype=torch.float32)
    omega /= dim / 2.0
    omega = 1.0 / 10000 ** omega
    out = torch.einsum("m,d->md", pos.reshape(-1).float(), omega)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


class FCResLayer(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.w1 = nn.Linear(n, n)
        self.w2 = nn.Linear(n, n)

    def forward(self, x):
        y = torch.relu(self.w1(x))
        y = torch.relu(self.w2(y))
        return x + y


class WeightGenerator(nn.Module):
    """MLP generator: fc_weight(h_c) per band, fc_bias(mean_c h_c)."""

    def __init__(self, wv_dim, dim, patch):
        super().__init__()
        self.fc_weight = nn.Linear(wv_dim, patch * patch * dim)
        self.fc_bias = nn.Linear(wv_dim, dim)

    def forward(self, h):
        return self.fc_weight(h), self.fc_bias(h.mean(dim=0))


class TransformerWeightGenerator(nn.Module):
    """DOFA's generator (zhu-xlab/DOFA, TorchGeo's dofa.py), written from its published definition:
    one nn.TransformerEncoderLayer (GELU, post-norm, no dropout) over [128 weight tokens; band
    features; bias token]; fc_weight(out[bands] + features), fc_bias(out[-1])."""

    def __init__(self, wv_dim, dim, patch, num_heads=4, wt_num=128):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model=wv_dim, nhead=num_heads, activation="gelu", norm_first=False,
                                           batch_first=False, dropout=0.0)
        self.transformer_encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fc_weight = nn.Linear(wv_dim, patch * patch * dim)
        self.fc_bias = nn.Linear(wv_dim, dim)
        self.wt_num = wt_num
        self.weight_tokens = nn.Parameter(torch.randn(wt_num, wv_dim) * 0.02)
        self.bias_token = nn.Parameter(torch.randn(1, wv_dim) * 0.02)

    def forward(self, h):
        x = torch.cat([self.weight_tokens, h, self.bias_token], dim=0)
        out = self.transformer_encoder(x[:, None, :])[:, 0, :]  # [S, batch = 1, E]
        return self.fc_weight(out[self.wt_num:-1] + h), self.fc_bias(out[-1])


class WavelengthEmbed(nn.Module):
    """generator "mlp" (padding 0) or "dofa" (DOFA's transformer generator, conv padding 1)."""

    def __init__(self, wv_dim, dim, patch, scaler=0.01, generator="mlp", padding=None):
        super().__init__()
        self.wv_dim, self.dim, self.patch, self.scaler = wv_dim, dim, patch, scaler
        self.padding = padding if padding is not None else (1 if generator == "dofa" else 0)
        self.fclayer = FCResLayer(wv_dim)
        self.weight_generator = (TransformerWeightGenerator(wv_dim, dim, patch) if generator == "dofa"
                                 else WeightGenerator(wv_dim, dim, patch))

    def forward(self, x, wavelengths_um):
        C = x.shape[0]
        e = sincos_1d(torch.tensor(wavelengths_um, dtype=torch.float32) * 1000, self.wv_dim)
        h = self.fclayer(e)
        k, bias = self.weight_generator(h)  # [C, p*p*D], [D]
        kernel = k.view(C, self.patch, self.patch, self.dim).permute(3, 0, 1, 2)
        y = F.conv2d(x[None], kernel * self.scaler, bias * self.scaler, stride=self.patch, padding=self.padding)[0]
        return y.flatten(1).transpose(0, 1)


class BandGroupEmbed(nn.Module):
    def __init__(self, group_sizes, dim, patch):
        super().__init__()
        self.proj = nn.ModuleList([PatchEmbed(c, dim, patch) for c in group_sizes])
        self.group_embed = nn.Parameter(torch.randn(len(group_sizes), dim) * 0.02)

    def named_weights(self, prefix="patch_embed."):
        out = {}
        for g, pe in enumerate(self.proj):
            out["%s%d.proj.weight" % (prefix, g)] = pe.projection.weight.detach().clone()
            out["%s%d.proj.bias" % (prefix, g)] = pe.projection.bias.detach().clone()
        out["group_embed"] = self.group_embed.detach().clone()
        return out

    def forward(self, xs):  # list of [C_g, H, W]
        return torch.cat([pe(x) + self.group_embed[g] for g, (pe, x) in enumerate(zip(self.proj, xs))], dim=0)
