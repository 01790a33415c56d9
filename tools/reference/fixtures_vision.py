"""Parity fixtures of the vision encoders (tools/reference/vision_vit.py, vision_swin.py), written
by make_fixtures.py through write(w). Each case stores the module's weights under their real
checkpoint names, the input images (__images__ [B, Cin, H, W], or per modality __images_<m>__)
and the reference outputs:

  vision_pos_resize     __grid__ [16, 8] (4 x 4) and its bicubic resizes __out_6x5__, __out_3x3__,
                        __out_7x7__ (F.interpolate bicubic, align_corners=False)
  vision_timm_vit       timm ViT (img 32, patch 8, width 64, 2 blocks, 4 heads, MLP 128, layer
                        scale): __output__ [B*T, C], __hidden_<i>__ (HF numbering), and at
                        48 x 48 (position grid resized 4 x 4 -> 6 x 6) __images_48__ / __output_48__
  vision_eva_vit        LAVIS EVA ViT (q_bias / v_bias, no final norm; width 64, MLP 176)
  vision_siglip         HF SigLIP vision_model (img 30, patch 7: 4 x 4 grid, the conv floors;
                        width 48, 4 heads of 12, MLP 100, tanh GELU, 3 layers): __output__ = raw
                        output of the first 2 layers (RSUniVLM's use), __output_full__ = 3 layers
                        + post_layernorm, __hidden_<i>__
  vision_siglip_block   one SigLIP layer at full width (1152, 16 heads of 72, MLP 4304); weights
                        from vision_vit.det_tensor (not stored: the C++ test regenerates them),
                        input __x__ [2 * 24, 1152] (2 sequences of 24 tokens), __output__
  vision_swin_dense     RingMoE Swin, dense MLP (img 32, patch 4, C 16, depths [2, 2, 2], heads
                        [2, 4, 8], window 4: stage 0 shifted + masked, stage 1 window = resolution
                        (shift 0), stage 2 window clipped to 2); 2 modalities (3 and 4 channels),
                        images 2 + 1; __output__, __block_<k>__
  vision_swin_moe       the same encoder with RingMoE's Moe_modal in every block (4 modalities
                        of 3 / 8 / 3 / 4 channels, one image each; 4 modal + 4 collaborative
                        experts + 1 shared, top-1, capacity factor 1.2, tanh GELU); the input is
                        redrawn until every routing decision of every block has a top-1/top-2
                        logit gap > 1e-3; metadata lists the dropped tokens per block
"""

import copy
import math

import torch

import ringmoe_moe
import vision_swin
import vision_vit
from safetensors_io import state_dict_tensors

MARGIN = 1e-3


def case_pos_resize(w):
    g = torch.Generator().manual_seed(100)
    grid = torch.randn(16, 8, generator=g)
    extra = {"__grid__": grid}
    for nh, nw in ((6, 5), (3, 3), (7, 7)):
        extra["__out_%dx%d__" % (nh, nw)] = vision_vit.resize_pos_grid(grid, 4, 4, nh, nw).contiguous()
    w.write("vision_pos_resize", {}, extra, dict(reference="F.interpolate bicubic align_corners=False", gh=4, gw=4))


def case_timm(w):
    torch.manual_seed(0)
    m = vision_vit.TimmVit(img=32, patch=8, dim=64, depth=2, heads=4, mlp_hidden=128, layer_scale=True).eval()
    vision_vit.init_random(m, torch.Generator().manual_seed(101))
    g = torch.Generator().manual_seed(102)
    images = torch.randn(2, 3, 32, 32, generator=g)
    images48 = torch.randn(1, 3, 48, 48, generator=g)
    hidden = []
    with torch.no_grad():
        y = m(images, hidden)
        y48 = m(images48)
        # PyTorch's bf16 module (the Hugging Face way: module.to(torch.bfloat16), bf16 input).
        yb = copy.deepcopy(m).to(torch.bfloat16)(images.to(torch.bfloat16)).float()
    extra = {"__images__": images, "__output__": y.reshape(-1, 64).contiguous(), "__images_48__": images48,
             "__output_48__": y48.reshape(-1, 64).contiguous(),
             "__output_bf16_module__": yb.reshape(-1, 64).contiguous()}
    for i, h in enumerate(hidden):
        extra["__hidden_%d__" % i] = h.reshape(-1, 64).contiguous()
    w.write("vision_timm_vit", state_dict_tensors(m), extra,
            dict(reference="vision_vit.TimmVit", img=32, patch=8, width=64, depth=2, heads=4, mlp=128,
                 layer_scale=True))


def case_eva(w):
    m = vision_vit.TimmVit(img=32, patch=8, dim=64, depth=2, heads=4, mlp_hidden=176, eva=True,
                           final_norm=False).eval()
    vision_vit.init_random(m, torch.Generator().manual_seed(111))
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(112))
    hidden = []
    with torch.no_grad():
        y = m(images, hidden)
    extra = {"__images__": images, "__output__": y.reshape(-1, 64).contiguous()}
    for i, h in enumerate(hidden):
        extra["__hidden_%d__" % i] = h.reshape(-1, 64).contiguous()
    w.write("vision_eva_vit", state_dict_tensors(m, "visual_encoder."), extra,
            dict(reference="vision_vit.TimmVit(eva=True)", img=32, patch=8, width=64, depth=2, heads=4, mlp=176))


def case_siglip(w):
    m = vision_vit.SiglipVisionModel(img=30, patch=7, dim=48, depth=3, heads=4, mlp_hidden=100).eval()
    vision_vit.init_random(m, torch.Generator().manual_seed(121))
    images = torch.randn(2, 3, 30, 30, generator=torch.Generator().manual_seed(122))
    hidden = []
    with torch.no_grad():
        y = m.vision_model(images, keep=2, hidden=hidden)
        y_full = m.vision_model(images, keep=None, post_norm=True)
    extra = {"__images__": images, "__output__": y.reshape(-1, 48).contiguous(),
             "__output_full__": y_full.reshape(-1, 48).contiguous()}
    for i, h in enumerate(hidden):
        extra["__hidden_%d__" % i] = h.reshape(-1, 48).contiguous()
    w.write("vision_siglip", state_dict_tensors(m), extra,
            dict(reference="vision_vit.SiglipVisionModel", img=30, patch=7, width=48, depth=3, keep=2, heads=4,
                 mlp=100))


def siglip_block_weights(C, F_):
    """(name, shape, seed, kind) in the order the C++ test regenerates them."""
    return [("layer_norm1.weight", (C,), 1, "norm_w"), ("layer_norm1.bias", (C,), 2, "bias"),
            ("self_attn.q_proj.weight", (C, C), 3, "w"), ("self_attn.q_proj.bias", (C,), 4, "bias"),
            ("self_attn.k_proj.weight", (C, C), 5, "w"), ("self_attn.k_proj.bias", (C,), 6, "bias"),
            ("self_attn.v_proj.weight", (C, C), 7, "w"), ("self_attn.v_proj.bias", (C,), 8, "bias"),
            ("self_attn.out_proj.weight", (C, C), 9, "w"), ("self_attn.out_proj.bias", (C,), 10, "bias"),
            ("layer_norm2.weight", (C,), 11, "norm_w"), ("layer_norm2.bias", (C,), 12, "bias"),
            ("mlp.fc1.weight", (F_, C), 13, "w"), ("mlp.fc1.bias", (F_,), 14, "bias"),
            ("mlp.fc2.weight", (C, F_), 15, "w"), ("mlp.fc2.bias", (C,), 16, "bias")]


def det_param(shape, seed, kind):
    if kind == "w":
        return vision_vit.det_tensor(shape, seed, vision_vit.pow2_scale(shape[1]))
    v = vision_vit.det_tensor(shape, seed, 1.0).double()
    if kind == "norm_w":
        return (1.0 + v * 0.125).float()
    return (v * 0.0625).float()


def case_siglip_block(w):
    C, F_, H = 1152, 4304, 16
    layer = vision_vit.SiglipLayer(C, H, F_).eval()
    sd = {n: det_param(s, seed, kind) for n, s, seed, kind in siglip_block_weights(C, F_)}
    layer.load_state_dict(sd)
    x = torch.randn(2, 24, C, generator=torch.Generator().manual_seed(131))
    with torch.no_grad():
        y = layer(x)
    w.write("vision_siglip_block", {}, {"__x__": x.reshape(-1, C), "__output__": y.reshape(-1, C).contiguous()},
            dict(reference="vision_vit.SiglipLayer, det_tensor weights", width=C, heads=H, mlp=F_, tokens=24,
                 sequences=2))


def _swin(mlp_factory, in_chans, seed):
    enc = vision_swin.SwinEncoder(img=32, patch=4, in_chans=in_chans, dim=16, depths=(2, 2, 2), heads=(2, 4, 8),
                                  window=4, mlp_ratio=4, mlp_factory=mlp_factory)
    top = vision_swin.Top(enc).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in top.named_parameters():
            if ".mlp." in name and ("special" in name or "cross" in name or "public" in name):
                continue  # MoE layers: ringmoe_moe.init_weights below
            if name.endswith("gamma"):
                p.copy_(1.0 + (torch.rand(p.shape, generator=g) * 2 - 1) * 0.1)
            elif name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif p.dim() >= 2:
                fan_in = p.shape[1] if "mapping" not in name and "projection.weight" not in name else p.shape[0]
                if "projection.weight" in name and p.dim() == 4:  # conv
                    fan_in = p[0].numel()
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / math.sqrt(fan_in))
            else:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.1)
        for mod in top.modules():
            if isinstance(mod, ringmoe_moe.MoeModal):
                ringmoe_moe.init_weights(mod, g, router_scale=3.0)
    return top


def case_swin_dense(w):
    top = _swin(vision_swin.dense_mlp("tanh"), (3, 4), 140)
    g = torch.Generator().manual_seed(141)
    im0 = torch.randn(2, 3, 32, 32, generator=g)
    im1 = torch.randn(1, 4, 32, 32, generator=g)
    blocks = []
    with torch.no_grad():
        y = top.encoder([(im0, 0), (im1, 1)], blocks)
    extra = {"__images_0__": im0, "__images_1__": im1, "__output__": y.reshape(-1, y.shape[-1]).contiguous()}
    for k, b in enumerate(blocks):
        extra["__block_%d__" % k] = b.reshape(-1, b.shape[-1]).contiguous()
    w.write("vision_swin_dense", state_dict_tensors(top), extra,
            dict(reference="vision_swin.SwinEncoder (dense MLP)", img=32, patch=4, dim=16, depths="2,2,2",
                 heads="2,4,8", window=4, in_chans="3,4", gelu="tanh"))


def _moe_margins(top):
    """Wraps every MoeModal.route to record the smallest top-1 / top-2 logit gap."""
    gaps = []
    for mod in top.modules():
        if isinstance(mod, ringmoe_moe.MoeModal):
            orig = mod.route

            def route(router, x, orig=orig):
                r = orig(router, x)
                top2 = torch.topk(r["logits"], 2, dim=-1).values
                gaps.append(float((top2[:, 0] - top2[:, 1]).min()))
                return r

            mod.route = route
    return gaps


def case_swin_moe(w):
    top = _swin(vision_swin.moe_mlp(4), (3, 8, 3, 4), 150)
    gaps = _moe_margins(top)
    for attempt in range(50):
        g = torch.Generator().manual_seed(151 + attempt)
        ims = [torch.randn(1, c, 32, 32, generator=g) for c in (3, 8, 3, 4)]
        gaps.clear()
        blocks = []
        with torch.no_grad():
            y = top.encoder([(im, m) for m, im in enumerate(ims)], blocks)
        if min(gaps) > MARGIN:
            break
    else:
        raise RuntimeError("no Swin MoE input without near-ties")
    drops = []
    for mod in top.modules():
        if isinstance(mod, vision_swin.SwinBlock):
            _, _, info = mod.last_moe
            drops.append(sum(int((~r["kept"]).sum()) for r in [info["cross"]] + info["special"]))
    assert sum(drops) > 0, drops  # capacity overflow happens somewhere
    extra = {"__output__": y.reshape(-1, y.shape[-1]).contiguous()}
    for m, im in enumerate(ims):
        extra["__images_%d__" % m] = im
    for k, b in enumerate(blocks):
        extra["__block_%d__" % k] = b.reshape(-1, b.shape[-1]).contiguous()
    print("  vision_swin_moe: input seed %d, min routing gap %.2e, dropped per block %s" % (
        151 + attempt, min(gaps), drops))
    w.write("vision_swin_moe", state_dict_tensors(top), extra,
            dict(reference="vision_swin.SwinEncoder (ringmoe_moe.MoeModal in every block)", img=32, patch=4, dim=16,
                 depths="2,2,2", heads="2,4,8", window=4, in_chans="3,8,3,4", gelu="tanh",
                 input_seed=151 + attempt, dropped_per_block=",".join(map(str, drops))))


def write(w):
    case_pos_resize(w)
    case_timm(w)
    case_eva(w)
    case_siglip(w)
    case_siglip_block(w)
    case_swin_dense(w)
    case_swin_moe(w)
