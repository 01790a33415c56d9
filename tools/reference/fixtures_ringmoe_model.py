"""Parity fixtures of the whole RingMoE model (tools/reference/ringmoe_model.py), written by
make_fixtures.py through write(w):

  ringmoe_model_tiny    the tiny configuration (img 64, C 32, depths 2-2-2-2, heads 1-2-4-8,
                        window 4; 4 modalities x 4 modal + 4 collaborative + 1 shared experts,
                        top-1, capacity factor 1.2, tanh GELU) with a classification head
                        (10 classes) and a segmentation head (5 classes) on stage 1; all four
                        modalities in one batch, IMAGES_PER_MODALITY images each, ordered by
                        modality. Weight matrices (every tensor of rank >= 2 except the routers
                        and the bias tables) are rounded to bf16 and stored as BF16, so the C++
                        side runs the same weights with W = float and W = bf16; everything else
                        is F32. The input is redrawn until every routing decision of every block
                        has a top-1/top-2 logit gap > 1e-3 (routing independent of summation
                        order); capacity overflow happens (metadata dropped_per_block).
                        Tensors: __images_<m>__, __features__ [B * 4, 256], __logits__ [B, 10],
                        __seg__ [B, 5, 64, 64], __block_<k>__ [B * R^2, C] (k = 0..7).
  ringmoe_model_folded  the tiny folded model (one dense MLP per block) of one modality (SAR-L1,
                        8 channels), F32 weights, both heads (segmentation on the last stage);
                        __images_0__, __features__, __logits__, __seg__, __block_<k>__.
"""

import math

import torch

import ringmoe_model
import ringmoe_moe
from safetensors_io import state_dict_tensors

MARGIN = 1e-3
IMAGES_PER_MODALITY = 2
ROUTER_SCALE = 3.0


def init_model(model, g, router_scale=ROUTER_SCALE):
    """Deterministic weights: LayerNorm gamma 1 +- 0.1, beta / biases +- 0.1, bias tables
    N(0, 0.5^2), matrices uniform +- 1/sqrt(fan_in); MoE layers ringmoe_moe.init_weights."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".mlp." in name and ("special" in name or "cross" in name or "public" in name):
                continue  # MoE layers below
            if name.endswith("gamma"):
                p.copy_(1.0 + (torch.rand(p.shape, generator=g) * 2 - 1) * 0.1)
            elif name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif p.dim() >= 2:
                if p.dim() == 4:  # conv [C, Cin, p, p]
                    fan_in = p[0].numel()
                elif ".mlp.mapping" in name or ".mlp.projection" in name:  # dense MLP [in, out]
                    fan_in = p.shape[0]
                else:  # [out, in]
                    fan_in = p.shape[1]
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) / math.sqrt(fan_in))
            else:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.1)
        for mod in model.modules():
            if isinstance(mod, ringmoe_moe.MoeModal):
                ringmoe_moe.init_weights(mod, g, router_scale=router_scale)


def is_bf16_weight(name, p):
    return p.dim() >= 2 and not name.endswith("dense.weight") and not name.endswith("relative_position_bias_table")


def round_to_bf16(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if is_bf16_weight(name, p):
                p.copy_(p.to(torch.bfloat16).float())


def _record_gaps(model):
    gaps = []
    for mod in model.modules():
        if isinstance(mod, ringmoe_moe.MoeModal):
            orig = mod.route

            def route(router, x, orig=orig):
                r = orig(router, x)
                top2 = torch.topk(r["logits"], 2, dim=-1).values
                gaps.append(float((top2[:, 0] - top2[:, 1]).min()))
                return r

            mod.route = route
    return gaps


def _flat(t):
    return t.reshape(-1, t.shape[-1]).contiguous()


def case_tiny(w):
    model = ringmoe_model.tiny(num_classes=10, seg_classes=5, seg_stage=1).eval()
    init_model(model, torch.Generator().manual_seed(600))
    round_to_bf16(model)
    gaps = _record_gaps(model)
    chans = [c for _, c in ringmoe_model.MODALITIES]
    for attempt in range(200):
        g = torch.Generator().manual_seed(601 + attempt)
        ims = [torch.randn(IMAGES_PER_MODALITY, c, 64, 64, generator=g) for c in chans]
        gaps.clear()
        blocks = []
        with torch.no_grad():
            out = model([(im, m) for m, im in enumerate(ims)], blocks)
        if min(gaps) > MARGIN:
            break
    else:
        raise RuntimeError("no RingMoE input without near-ties")
    drops = []
    for blk in [b for st in model.encoder.layers for b in st.blocks]:
        _, _, info = blk.last_moe
        drops.append(sum(int((~r["kept"]).sum()) for r in [info["cross"]] + info["special"]))
    assert sum(drops) > 0, drops
    weights = state_dict_tensors(model)
    for k in list(weights):
        if is_bf16_weight(k, weights[k]):
            weights[k] = weights[k].to(torch.bfloat16)
    extra = {"__features__": _flat(out["features"]), "__logits__": out["logits"].contiguous(),
             "__seg__": out["seg"].contiguous()}
    for m, im in enumerate(ims):
        extra["__images_%d__" % m] = im
    for k, b in enumerate(blocks):
        extra["__block_%d__" % k] = _flat(b)
    print("  ringmoe_model_tiny: input seed %d, min routing gap %.2e, dropped per block %s" % (
        601 + attempt, min(gaps), drops))
    w.write("ringmoe_model_tiny", weights, extra,
            dict(reference="ringmoe_model.RingMoE (tiny)", config="tiny", num_classes=10, seg_classes=5, seg_stage=1,
                 images_per_modality=IMAGES_PER_MODALITY, input_seed=601 + attempt, min_gap=min(gaps),
                 dropped_per_block=",".join(map(str, drops)), weights="bf16-rounded matrices (BF16), rest F32"))


def case_folded(w):
    model = ringmoe_model.tiny(modalities=(("sar-l1", 8),), ffn="dense", num_classes=7, seg_classes=3).eval()
    init_model(model, torch.Generator().manual_seed(700))
    g = torch.Generator().manual_seed(701)
    im = torch.randn(2, 8, 64, 64, generator=g)
    blocks = []
    with torch.no_grad():
        out = model([(im, 0)], blocks)
    extra = {"__images_0__": im, "__features__": _flat(out["features"]), "__logits__": out["logits"].contiguous(),
             "__seg__": out["seg"].contiguous()}
    for k, b in enumerate(blocks):
        extra["__block_%d__" % k] = _flat(b)
    w.write("ringmoe_model_folded", state_dict_tensors(model), extra,
            dict(reference="ringmoe_model.RingMoE (tiny, ffn dense, sar-l1)", config="tiny_folded(sar-l1)",
                 num_classes=7, seg_classes=3, seg_stage=-1))


def write(w):
    case_tiny(w)
    case_folded(w)
