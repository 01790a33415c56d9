"""PyTorch references of the remote-sensing adapters in include/rs/adapters.hpp.

PatchEmbed          nn.Conv2d(C, D, p, stride=p) (+ nn.LayerNorm(D, eps)), tokens flattened
                    row-major over the patch grid: [N, D] (RingMoE's PatchEmbed, timm's).
RingMoEPatchEmbeds  four PatchEmbeds (optical 3, SAR-L1 8, SAR-L2 3, multispectral 4 channels),
                    parameters named encoder.patch_embed{m}.projection.* / .norm.{gamma,beta}
                    as RingMoE's MindSpore checkpoint names them.
WavelengthEmbed     DOFA's Dynamic_MLP_OFA with the MLP part of its weight generator: the
                    sincos wavelength embedding (nm), FCResLayer, fc_weight -> kernel
                    view(C, p, p, D).permute(3, 0, 1, 2), fc_bias on the mean band feature,
                    conv2d with scaler 0.01.
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
    """DOFA's get_1d_sincos_pos_embed_from_grid_torch (float64 angles, here cast at the end)."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = pos.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).float()


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
    def __init__(self, wv_dim, dim, patch):
        super().__init__()
        self.fc_weight = nn.Linear(wv_dim, patch * patch * dim)
        self.fc_bias = nn.Linear(wv_dim, dim)


class WavelengthEmbed(nn.Module):
    def __init__(self, wv_dim, dim, patch, scaler=0.01):
        super().__init__()
        self.wv_dim, self.dim, self.patch, self.scaler = wv_dim, dim, patch, scaler
        self.fclayer = FCResLayer(wv_dim)
        self.weight_generator = WeightGenerator(wv_dim, dim, patch)

    def forward(self, x, wavelengths_um):
        C = x.shape[0]
        e = sincos_1d(torch.tensor(wavelengths_um, dtype=torch.float64) * 1000.0, self.wv_dim)
        h = self.fclayer(e)
        k = self.weight_generator.fc_weight(h)  # [C, p*p*D]
        kernel = k.view(C, self.patch, self.patch, self.dim).permute(3, 0, 1, 2)
        bias = self.weight_generator.fc_bias(h.mean(dim=0))
        y = F.conv2d(x[None], kernel * self.scaler, bias * self.scaler, stride=self.patch)[0]
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
