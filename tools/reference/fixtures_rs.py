"""Parity fixtures of the remote-sensing adapters and resampling (include/rs/), written by
make_fixtures.py (which imports every fixtures_<family>.py and calls write(w)).

rs_ringmoe_embed   encoder.patch_embed{0..3}.* and one input per modality:
                   __input_<m>__ [C, H, W], __output_<m>__ [N, D]; metadata bands_<m>, modality_<m>
rs_dofa_embed      patch_embed.fclayer.*, patch_embed.weight_generator.*; two band subsets of
                   Sentinel-2 (one set of weights): __input_<i>__, __output_<i>__, bands_<i>
rs_dofa_transformer  DOFA's transformer weight generator (patch_embed.weight_generator.
                   transformer_encoder.layers.0.*, weight_tokens, bias_token), conv padding 1
rs_satmae_embed    patch_embed.{g}.proj.*, group_embed; __input__ (10 S2 bands), __output__
rs_resample        __input__ [C, H, W] and torch.nn.functional.interpolate of it:
                   __bilinear__ (align_corners=False), __nearest__ (mode "nearest-exact")
"""

import torch
import torch.nn.functional as F

import rs_adapters

S2_WAVELENGTHS = {"B01": 0.4427, "B02": 0.4927, "B03": 0.5598, "B04": 0.6646, "B05": 0.7041, "B06": 0.7405,
                  "B07": 0.7828, "B08": 0.8328, "B8A": 0.8647, "B09": 0.9451, "B10": 1.3735, "B11": 1.6137,
                  "B12": 2.2024}


def image(g, c, h, w, scale=1.0):
    return (torch.rand(c, h, w, generator=g) * 2 - 1) * scale


def write(w):
    torch.manual_seed(51)
    g = torch.Generator().manual_seed(52)

    # RingMoE per-modality patch embeddings, D = 32, p = 4.
    ring = rs_adapters.RingMoEPatchEmbeds(dim=32, patch=4).eval()
    with torch.no_grad():
        for pe in ring.embeds:  # non-trivial LayerNorm affine
            pe.norm.weight.copy_(1 + 0.1 * torch.randn(32, generator=g))
            pe.norm.bias.copy_(0.1 * torch.randn(32, generator=g))
    bands = {0: ["R", "G", "B"],
             1: ["HH_re", "HH_im", "HV_re", "HV_im", "VH_re", "VH_im", "VV_re", "VV_im"],
             2: ["VV"],
             3: ["B02", "B03", "B04", "B08"]}
    modality = {0: "optical", 1: "sar_complex", 2: "sar", 3: "multispectral"}
    extra, meta = {}, dict(reference="rs_adapters.RingMoEPatchEmbeds", dim=32, patch=4, norm_eps="1e-6")
    with torch.no_grad():
        for m in range(4):
            x = image(g, len(bands[m]), 16, 24)
            extra["__input_%d__" % m] = x
            extra["__output_%d__" % m] = ring(x, m)
            meta["bands_%d" % m] = ",".join(bands[m])
            meta["modality_%d" % m] = modality[m]
    w.write("rs_ringmoe_embed", ring.named_weights("encoder."), extra, meta)

    # DOFA-style wavelength-conditioned embedding: E = 32, D = 24, p = 4; two band subsets.
    dofa = rs_adapters.WavelengthEmbed(wv_dim=32, dim=24, patch=4).eval()
    weights = {"patch_embed." + k: v.detach().clone() for k, v in dofa.state_dict().items()}
    subsets = [["B04", "B03", "B02"], ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]]
    extra, meta = {}, dict(reference="rs_adapters.WavelengthEmbed", wv_dim=32, dim=24, patch=4, scaler="0.01")
    with torch.no_grad():
        for i, bs in enumerate(subsets):
            x = image(g, len(bs), 12, 16)
            extra["__input_%d__" % i] = x
            extra["__output_%d__" % i] = dofa(x, [S2_WAVELENGTHS[b] for b in bs])
            meta["bands_%d" % i] = ",".join(bs)
    w.write("rs_dofa_embed", weights, extra, meta)

    # DOFA's transformer generator (weight names as in DOFA's checkpoints), conv padding 1:
    # E = 32 (4 heads), feed-forward 2048 (nn.TransformerEncoderLayer's default, as DOFA),
    # D = 24, p = 4, 128 weight tokens; two band subsets, one of them not a multiple of p.
    dofa = rs_adapters.WavelengthEmbed(wv_dim=32, dim=24, patch=4, generator="dofa").eval()
    weights = {"patch_embed." + k: v.detach().clone() for k, v in dofa.state_dict().items()}
    subsets = [["B04", "B03", "B02", "B08"], ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]]
    sizes = [(16, 16), (13, 18)]
    extra, meta = {}, dict(reference="rs_adapters.WavelengthEmbed(generator='dofa')", wv_dim=32, dim=24, patch=4,
                           heads=4, ff=2048, weight_tokens=128, padding=1, scaler="0.01")
    with torch.no_grad():
        for i, bs in enumerate(subsets):
            x = image(g, len(bs), *sizes[i])
            extra["__input_%d__" % i] = x
            extra["__output_%d__" % i] = dofa(x, [S2_WAVELENGTHS[b] for b in bs])
            meta["bands_%d" % i] = ",".join(bs)
    w.write("rs_dofa_transformer", weights, extra, meta)

    # SatMAE-style groups on 10 S2 bands (input in ESA order, grouped by name).
    groups = [["B02", "B03", "B04", "B08"], ["B05", "B06", "B07", "B8A"], ["B11", "B12"]]
    order = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    sat = rs_adapters.BandGroupEmbed([len(x) for x in groups], dim=16, patch=4).eval()
    x = image(g, len(order), 8, 12)
    with torch.no_grad():
        xs = [x[[order.index(b) for b in grp]] for grp in groups]
        y = sat(xs)
    w.write("rs_satmae_embed", sat.named_weights("patch_embed."), {"__input__": x, "__output__": y},
            dict(reference="rs_adapters.BandGroupEmbed", dim=16, patch=4, bands=",".join(order),
                 groups=";".join(",".join(grp) for grp in groups)))

    # Resampling: 20 m -> 10 m (x2), 60 m -> 10 m (x6), and a non-integer downsampling.
    extra = {}
    x = image(g, 2, 10, 14, scale=1000.0)
    for name, size in (("up2", (20, 28)), ("up6", (60, 84)), ("down", (7, 9))):
        extra["__bilinear_%s__" % name] = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        extra["__nearest_%s__" % name] = F.interpolate(x[None], size=size, mode="nearest-exact")[0]
    extra["__input__"] = x
    w.write("rs_resample", {}, extra, dict(reference="torch.nn.functional.interpolate", torch=torch.__version__))
