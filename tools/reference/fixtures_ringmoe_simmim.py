"""Parity fixture of RingMoE's SimMIM objective (tools/reference/ringmoe_simmim.py), written by
make_fixtures.py through write(w).

  ringmoe_simmim   the tiny RingMoE (image 64, patch 4, C 32, depths 2-2-2-2, heads 1-2-4-8,
                   window 4; Moe_modal in every block: 4 modal + 4 collaborative + 1 shared
                   experts, top-1, capacity factor 1.2, tanh GELU) with encoder.mask_token and
                   decoder_{0..3}; two images of each of the four modalities in one batch
                   (3, 8, 3, 4 channels), each with its SimMIM mask (mask patch 32, ratio 0.6:
                   3 of the 4 cells of a 64 x 64 image).
     __images_<m>__        F32 [2, cin_m, 64, 64]
     __mask_<m>__          I32 [2, 16, 16]          model-patch mask (1 = masked)
     __rec_<m>__           F32 [2, cin_m, 64, 64]   decoder + DepthToSpace(32) output
     __loss_<m>__          F32 []                   the modality's loss (SAR-L1: span target)
     __loss_sar_l1_channels__, __loss_sar_l1_both__  the SAR-L1 loss with the other targets
     __sim__ / __aux__ / __total__                 sum of the modality losses, the MoE aux loss
                                                   (sum over blocks), their sum
   The input is redrawn until every routing decision of every block has a top-1 / top-2 logit
   gap above 1e-3 (metadata input_seed), so the experts chosen do not depend on summation order.
"""

import math

import numpy as np
import torch

import ringmoe_moe
import ringmoe_simmim as rs
from safetensors_io import state_dict_tensors

MARGIN = 1e-3
IN_CHANS = (3, 8, 3, 4)
PER_MODALITY = 2


def init_model(model, g):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".mlp." in name:
                continue  # ringmoe_moe.init_weights below
            if name.endswith("gamma"):
                p.copy_(1.0 + (torch.rand(p.shape, generator=g) * 2 - 1) * 0.1)
            elif name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif name.endswith("mask_token"):
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / math.sqrt(fan_in))
            else:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.1)
        for mod in model.modules():
            if isinstance(mod, ringmoe_moe.MoeModal):
                ringmoe_moe.init_weights(mod, g, router_scale=3.0)


def record_gaps(model):
    gaps = []
    for mod in model.moe_layers():
        orig = mod.route

        def route(router, x, orig=orig):
            r = orig(router, x)
            top2 = torch.topk(r["logits"], 2, dim=-1).values
            gaps.append(float((top2[:, 0] - top2[:, 1]).min()))
            return r

        mod.route = route
    return gaps


def write(w):
    torch.manual_seed(0)
    model = rs.SimMIM(rs.tiny_encoder(), IN_CHANS).eval()
    init_model(model, torch.Generator().manual_seed(160))
    gen = rs.MaskGenerator(64, 32, 4, 0.6)
    masks = [torch.from_numpy(np.stack([gen(np.random.RandomState(170 + 10 * m + i)) for i in range(PER_MODALITY)]))
             for m in range(4)]
    assert all(int(mk.sum()) == PER_MODALITY * 3 * 64 for mk in masks)  # 3 cells of 8 x 8 patches
    gaps = record_gaps(model)
    for attempt in range(200):
        g = torch.Generator().manual_seed(161 + attempt)
        ims = [torch.randn(PER_MODALITY, c, 64, 64, generator=g) for c in IN_CHANS]
        gaps.clear()
        with torch.no_grad():
            out = model([(im, m) for m, im in enumerate(ims)], masks)
        if min(gaps) > MARGIN:
            break
    else:
        raise RuntimeError("no SimMIM input without routing near-ties")
    with torch.no_grad():
        m1 = rs.pixel_mask(masks[1], 4)
        l_chan = rs.modality_loss(1, ims[1], out["recs"][1], masks[1], 4, "channels")
        l_both = rs.modality_loss(1, ims[1], out["recs"][1], masks[1], 4, "both")
        # the hand formula, once more, for the optical branch
        ref0 = ((ims[0] - out["recs"][0]).abs() * rs.pixel_mask(masks[0], 4)).sum() / (
            rs.pixel_mask(masks[0], 4).sum() + 1e-5) / 3
        assert torch.allclose(ref0, out["losses"][0]), (ref0, out["losses"][0])
        del m1
    extra = {"__sim__": out["sim"].reshape(()), "__aux__": out["aux"].reshape(()).float(),
             "__total__": out["total"].reshape(()).float(),
             "__loss_sar_l1_channels__": l_chan.reshape(()), "__loss_sar_l1_both__": l_both.reshape(())}
    for m in range(4):
        extra["__images_%d__" % m] = ims[m]
        extra["__mask_%d__" % m] = masks[m].to(torch.int32).contiguous()
        extra["__rec_%d__" % m] = out["recs"][m].contiguous()
        extra["__loss_%d__" % m] = out["losses"][m].reshape(())
    weights = state_dict_tensors(model)
    print("  ringmoe_simmim: input seed %d, min routing gap %.2e, losses %s, aux %.4e" % (
        161 + attempt, min(gaps), ["%.4f" % float(l) for l in out["losses"]], float(out["aux"])))
    w.write("ringmoe_simmim", weights, extra,
            dict(reference="ringmoe_simmim.SimMIM (vision_swin.SwinEncoder + ChunkMoeModal)", img=64, patch=4,
                 dim=32, depths="2,2,2,2", heads="1,2,4,8", window=4, in_chans="3,8,3,4", gelu="tanh",
                 mask_patch=32, mask_ratio=0.6, encoder_stride=32, sar_l1_target="span",
                 images_per_modality=PER_MODALITY, input_seed=161 + attempt, min_gap="%.3e" % min(gaps)))
