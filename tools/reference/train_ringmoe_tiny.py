#!/usr/bin/python3
"""Trains the tiny RingMoE with the SimMIM objective on 64 x 64 crops of the real samples in
../shared/data/rs (a few CPU minutes), for the deployment chain on trained weights.

    nice /usr/bin/python3 tools/reference/train_ringmoe_tiny.py [--minutes 4] [--out build/ringmoe-tiny]
    /usr/bin/python3 tools/reference/train_ringmoe_tiny.py --steps 3 --out /tmp/x     # smoke run

Model: ringmoe_simmim.tiny_encoder() (image 64, patch 4, C 32, depths 2-2-2-2, heads 1-2-4-8,
window 4, Moe_modal in every block: 4 modal experts per modality + 4 collaborative + 1 shared,
top-1, capacity factor 1.2, tanh GELU) + encoder.mask_token + decoder_{m}; the objective of
ringmoe_simmim.SimMIM (mask patch 32, ratio 0.6; per-modality masked L1 / channels, summed over
modalities) plus the MoE auxiliary loss (0.001 per layer, as released). Top-1 with renormalised
combine weights gives every routed token weight exactly 1, so the routers learn only through the
auxiliary loss (the released behaviour, kept).

Data (modality index: what, bands, scaling; files held out from training in brackets):
  0 optical RGB      UC Merced aerial RGB (256 x 256) and EuroSAT RGB (64 x 64), uint8 / 255
                     [held out: airplane42, forest99, EuroSAT SeaLake_3000]
  1 SAR-L1           none: the folder has no complex quad-pol SAR (Sentinel-1 GRD is detected
                     power in dB, no phase), so this branch (patch_embed1, decoder_1, the modality-1
                     experts and router) keeps its initial weights
  2 SAR-L2           Sentinel-1 GRD VV and VH in dB (each one sample, the band replicated to 3
                     channels), clipped to BigEarthNet's bounds (VV [-48, 6], VH [-42, 16]);
                     SSL4EO-S12 (264 x 264, 2 dates) and BigEarthNet (120 x 120)
                     [held out: SSL4EO date 20200903 and BigEarthNet]
  3 multispectral    Sentinel-2 B02, B03, B04, B08 as reflectance DN / 10000 (all products are from
                     before baseline 04.00): SSL4EO-S12 L2A (2 dates) and L1C (2 dates), 264 x 264;
                     EuroSAT MS (64 x 64); BigEarthNet L2A (120 x 120)
                     [held out: SSL4EO L1C 20200823, BigEarthNet, EuroSAT SeaLake_3000]
Every input is then standardised per band with the mean / std of the training crops (stored in
the checkpoint metadata and in norm_stats.json). Training crops are drawn at random positions
of the training images with random flips and 90-degree rotations; held-out crops are a fixed grid
of each held-out image (256 and 264: 4 x 4, 120: 2 x 2 at offsets 0 and 56, 64: the image).

Outputs in --out:
  ringmoe_tiny.safetensors   the trained model in RingMoE's MindSpore names (the layout of the
                             parity fixtures): encoder.* (rs::ringmoe::load_ringmoe_swin with the tiny
                             SwinConfig), encoder.mask_token, decoder_{m}.* (load_simmim_head);
                             metadata: configuration, normalisation statistics, steps, seed
  heldout_crops.safetensors  normalised held-out crops per modality, F32 [N, C, 64, 64] named
                             optical / sar_l2 / multispectral; metadata <name>_sources (JSON list of
                             "file@y,x"), modality_index, normalisation
  norm_stats.json            per-modality per-band mean / std (training crops)
  train_log.json             loss curve (every step: total, sim, aux, per-modality losses, lr),
                             held-out loss at intervals, per-expert usage at the end
Deterministic for a given --steps and --threads (seeds fixed). With --minutes, the step count is
fixed after timing the first 10 steps and recorded in train_log.json: --steps N reruns exactly.
Every Linear runs on torch's oneDNN GEMM through a small autograd function (Debian's torch uses
the reference BLAS, about 10x slower), checked against torch's own linear at start-up;
--plain-linear turns it off. AdamW (weight decay 0.05, none on norms / biases / mask token / bias
tables), peak lr 5e-4 with linear warm-up and cosine decay, gradient norm clipped at 3.
"""

import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ringmoe_moe  # noqa: E402
import ringmoe_simmim as rs  # noqa: E402
from safetensors_io import save_file  # noqa: E402

CROP = 64
MODALITY_NAMES = {0: "optical", 1: "sar_l1", 2: "sar_l2", 3: "multispectral"}
IN_CHANS = (3, 8, 3, 4)
S1_BOUNDS = {"VV": (-48.0, 6.0), "VH": (-42.0, 16.0)}


# ------------------------------------------------------------------------------------ data
def _rel(path, root):
    return os.path.relpath(path, root)


def load_images(root):
    """-> {modality: {"train": [(name, array [C, H, W] float32)], "heldout": [...]}}."""
    import tifffile
    from PIL import Image

    data = {m: {"train": [], "heldout": []} for m in (0, 2, 3)}

    def add(m, path, arr, heldout):
        data[m]["heldout" if heldout else "train"].append((_rel(path, root), arr.astype(np.float32)))

    # optical RGB
    for p in sorted(glob.glob(os.path.join(root, "UCMerced_LandUse/Images/*/*.tif"))):
        a = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
        add(0, p, a, os.path.basename(p) in ("airplane42.tif", "forest99.tif"))
    for p in sorted(glob.glob(os.path.join(root, "EuroSAT_RGB/*/*.jpg"))):
        a = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
        add(0, p, a, "SeaLake" in p)
    # SAR-L2: Sentinel-1 VV / VH dB, replicated to 3 channels
    s1 = sorted(glob.glob(os.path.join(root, "SSL4EO-S12/s1/*/*/V[VH].tif")))
    s1 += sorted(glob.glob(os.path.join(root, "BigEarthNet/BigEarthNet-S1/*/*/*_V[VH].tif")))
    for p in s1:
        pol = "VV" if p.endswith("VV.tif") else "VH"
        a = np.clip(tifffile.imread(p).astype(np.float32), *S1_BOUNDS[pol])
        add(2, p, np.repeat(a[None], 3, 0), "20200903" in p or "BigEarthNet" in p)
    # multispectral: B02, B03, B04, B08 reflectance
    for d in sorted(glob.glob(os.path.join(root, "SSL4EO-S12/s2[ac]/*/*/"))):
        a = np.stack([tifffile.imread(os.path.join(d, b + ".tif")) for b in ("B2", "B3", "B4", "B8")])
        add(3, d.rstrip("/"), a / 10000.0, "s2c" in d and "20200823" in d)
    for d in sorted(glob.glob(os.path.join(root, "BigEarthNet/BigEarthNet-S2/*/*/"))):
        stem = os.path.join(d, os.path.basename(d.rstrip("/")))
        a = np.stack([tifffile.imread(stem + "_" + b + ".tif") for b in ("B02", "B03", "B04", "B08")])
        add(3, d.rstrip("/"), a / 10000.0, True)
    for p in sorted(glob.glob(os.path.join(root, "EuroSAT_MS/*/*.tif"))):
        a = tifffile.imread(p).transpose(2, 0, 1)  # B01..B12, B8A: B02 = 1, B03 = 2, B04 = 3, B08 = 7
        add(3, p, a[[1, 2, 3, 7]] / 10000.0, "SeaLake" in p)
    for m in data:
        if not data[m]["train"] or not data[m]["heldout"]:
            raise SystemExit("train_ringmoe_tiny: modality %s has no %s images under %s" % (
                MODALITY_NAMES[m], "training" if not data[m]["train"] else "held-out", root))
    return data


def grid_offsets(size):
    if size == CROP:
        return [0]
    if size >= 4 * CROP:
        o = (size - 4 * CROP) // 2
        return [o + i * CROP for i in range(4)]
    return [0, size - CROP]


def heldout_crops(items):
    crops, names = [], []
    for name, a in items:
        for y in grid_offsets(a.shape[1]):
            for x in grid_offsets(a.shape[2]):
                crops.append(a[:, y:y + CROP, x:x + CROP])
                names.append("%s@%d,%d" % (name, y, x))
    return np.stack(crops), names


def norm_stats(items):
    """Per-band mean / std over every pixel of the training images (equal to the statistics of all
    their crops in the limit; computed once)."""
    C = items[0][1].shape[0]
    s = np.zeros(C, np.float64)
    s2 = np.zeros(C, np.float64)
    n = 0
    for _, a in items:
        v = a.reshape(C, -1).astype(np.float64)
        s += v.sum(1)
        s2 += (v * v).sum(1)
        n += v.shape[1]
    mean = s / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 1e-12))
    return mean, std


class Sampler:
    def __init__(self, items, mean, std, rng):
        self.items = [(n, (a - mean[:, None, None]) / std[:, None, None]) for n, a in items]
        self.weights = np.array([(a.shape[1] - CROP + 1) * (a.shape[2] - CROP + 1) for _, a in self.items], float)
        self.weights = np.sqrt(self.weights)  # big scenes more often, small ones still seen
        self.weights /= self.weights.sum()
        self.rng = rng

    def batch(self, n):
        out = []
        for _ in range(n):
            i = self.rng.choice(len(self.items), p=self.weights)
            a = self.items[i][1]
            y = self.rng.randint(0, a.shape[1] - CROP + 1)
            x = self.rng.randint(0, a.shape[2] - CROP + 1)
            c = a[:, y:y + CROP, x:x + CROP]
            if self.rng.rand() < 0.5:
                c = c[:, :, ::-1]
            c = np.rot90(c, self.rng.randint(4), axes=(1, 2))
            out.append(np.ascontiguousarray(c))
        return torch.from_numpy(np.stack(out).astype(np.float32))


# ------------------------------------------------------------------------- fast matmuls
# Debian's torch 1.13 multiplies with the reference BLAS (about 1 GFLOP/s); its oneDNN GEMM
# (torch._C._nn.mkldnn_linear, inference only) is about 10x faster. Training routes every Linear
# of the model (attention, merging, experts, routers) through this autograd function, whose
# three GEMMs (y = x W^T, dx = dy W, dW = dy^T x) all run on oneDNN. check_fast_linear() compares
# it with the plain torch path at start-up.
def _mk(a, w):
    """a [N, in] @ w[out, in]^T on oneDNN."""
    return torch._C._nn.mkldnn_linear(a.contiguous().to_mkldnn(), w.contiguous().to_mkldnn()).to_dense()


class _FastLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return _mk(x, w)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        gx = _mk(gy, w.t()) if ctx.needs_input_grad[0] else None
        gw = _mk(gy.t(), x.t()) if ctx.needs_input_grad[1] else None
        return gx, gw


def fast_linear(x, w, b=None):
    """x [..., in], w [out, in] -> x w^T + b."""
    shape = x.shape
    y = _FastLinear.apply(x.reshape(-1, shape[-1]), w)
    if b is not None:
        y = y + b
    return y.reshape(*shape[:-1], w.shape[0])


def use_fast_linear():
    import vision_swin
    vision_swin.Linear.forward = lambda self, x: fast_linear(x, self.weight, self.bias)
    ringmoe_moe.Dense.forward = lambda self, x: fast_linear(x, self.weight)

    def expert(self, x, e):
        if self.expert_num > 1:
            return fast_linear(x, self.weight[e].t(), self.bias[0, e, 0])
        return fast_linear(x, self.weight.t(), self.bias)

    ringmoe_moe.Linear.expert = expert


def check_fast_linear():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(37, 24, generator=g, requires_grad=True)
    w = torch.randn(40, 24, generator=g, requires_grad=True)
    b = torch.randn(40, generator=g, requires_grad=True)
    gy = torch.randn(37, 40, generator=g)
    y1 = fast_linear(x, w, b)
    d1 = torch.autograd.grad(y1, (x, w, b), gy)
    y2 = torch.nn.functional.linear(x, w, b)
    d2 = torch.autograd.grad(y2, (x, w, b), gy)
    for a, r in zip((y1,) + d1, (y2,) + d2):
        err = float((a - r).norm() / r.norm())
        if err > 1e-5:
            raise SystemExit("train_ringmoe_tiny: the oneDNN linear differs from torch's (rel %.2e)" % err)


# ----------------------------------------------------------------------------------- model
def build_model(seed):
    torch.manual_seed(seed)
    model = rs.SimMIM(rs.tiny_encoder(), IN_CHANS)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".mlp." in name:
                continue
            if name.endswith("gamma"):
                p.fill_(1.0)
            elif name.endswith("beta") or (name.endswith("bias") and "decoder" not in name):
                p.zero_()
            elif name.endswith("mask_token") or name.endswith("relative_position_bias_table") or p.dim() >= 2:
                if "decoder" in name:
                    continue  # nn.Conv2d's default init
                p.copy_(torch.nn.init.trunc_normal_(torch.empty(p.shape), std=0.02, a=-0.04, b=0.04))
        for mod in model.moe_layers():
            ringmoe_moe.init_weights(mod, g, router_scale=1.0)
            for ffn in list(mod.special_ffn) + [mod.cross_ffn, mod.public_ffn]:
                ffn.mapping.bias.zero_()
                ffn.projection.bias.zero_()
    return model


def expert_usage(model):
    """Per block: fraction of tokens whose top-1 choice is each expert (before capacity), for the
    collaborative group and each modality's group, from the last forward."""
    out = []
    for st in model.encoder.layers:
        for blk in st.blocks:
            info = blk.last_moe_info
            rec = {"cross": _fractions(info["cross"])}
            for m, r in enumerate(info["special"]):
                if r is not None:
                    rec["modal_%d" % m] = _fractions(r)
            out.append(rec)
    return out


def _fractions(r):
    E = r["logits"].shape[1]
    c = torch.bincount(r["expert_ids"][:, 0], minlength=E).double()
    kept = r["kept"][:, 0].double().mean()
    return {"choice": [round(float(v), 4) for v in (c / c.sum())], "kept": round(float(kept), 4)}


def keep_moe_info(model):
    """Makes every block keep its MoE routing info of the last forward (blk.last_moe_info)."""
    for st in model.encoder.layers:
        for blk in st.blocks:
            orig = blk.mlp.forward

            def fwd(x, orig=orig, blk=blk):
                y = orig(x)
                blk.last_moe_info = y[2]
                return y

            blk.mlp.forward = fwd


# ------------------------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data", default=os.path.normpath(os.path.join(here, "../../../shared/data/rs")),
                    help="the real samples folder (default: ../shared/data/rs from the project root)")
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "../../build/ringmoe-tiny")),
                    help="output directory (default: build/ringmoe-tiny)")
    ap.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget (default 4)")
    ap.add_argument("--steps", type=int, default=0, help="exact number of steps (overrides --minutes)")
    ap.add_argument("--batch", type=int, default=8, help="crops per modality per step (default 8)")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate (default 5e-4; 2e-3 made the SAR loss diverge)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a busy 2-core machine 2 threads spin and run several times slower)")
    ap.add_argument("--plain-linear", action="store_true", help="torch's own matmuls instead of oneDNN's")
    ap.add_argument("--eval-every", type=int, default=50, help="held-out loss every N steps (default 50)")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.data):
        print("train_ringmoe_tiny: data folder %s not found: nothing to train on (skipped)" % args.data)
        return 77
    torch.set_num_threads(args.threads)
    if not args.plain_linear:
        use_fast_linear()
        check_fast_linear()
    t_start = time.time()
    os.makedirs(args.out, exist_ok=True)

    data = load_images(args.data)
    present = sorted(data)
    stats, samplers, held, held_names = {}, {}, {}, {}
    rng = np.random.RandomState(args.seed)
    for m in present:
        mean, std = norm_stats(data[m]["train"])
        stats[MODALITY_NAMES[m]] = {"mean": [float(v) for v in mean], "std": [float(v) for v in std],
                                    "train_images": [n for n, _ in data[m]["train"]],
                                    "heldout_images": [n for n, _ in data[m]["heldout"]]}
        samplers[m] = Sampler(data[m]["train"], mean, std, np.random.RandomState(args.seed * 1000 + m + 1))
        crops, names = heldout_crops(data[m]["heldout"])
        held[m] = torch.from_numpy(((crops - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32))
        held_names[m] = names
    stats["bands"] = {"optical": ["R", "G", "B"], "sar_l2": ["S1 VV or VH dB (replicated)"] * 3,
                      "multispectral": ["B02", "B03", "B04", "B08"]}

    gen = rs.MaskGenerator(CROP, 32, 4, 0.6)
    mask_rng = np.random.RandomState(args.seed + 7)
    held_masks = {m: torch.from_numpy(np.stack([gen(np.random.RandomState(10000 + i)) for i in range(len(held[m]))]))
                  for m in present}

    model = build_model(args.seed)
    keep_moe_info(model)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.dim() < 2 or "mask_token" in n or "relative_position_bias_table" in n else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.999))

    def evaluate():
        model.eval()
        with torch.no_grad():
            batches = [(held[m], m) for m in present]
            out = model(batches, [held_masks[m] for m in present])
        model.train()
        return out

    log = dict(config=dict(img=64, patch=4, dim=32, depths=[2, 2, 2, 2], heads=[1, 2, 4, 8], window=4,
                           in_chans=list(IN_CHANS), experts="4 modal x 4 modalities + 4 collaborative + 1 shared",
                           top_k=1, capacity_factor=1.2, mask_patch=32, mask_ratio=0.6, batch_per_modality=args.batch,
                           lr=args.lr, weight_decay=0.05, seed=args.seed, threads=args.threads,
                           modalities_trained=[MODALITY_NAMES[m] for m in present]),
               steps=[], heldout=[])
    total_steps = args.steps if args.steps > 0 else None
    budget = args.minutes * 60.0
    t0 = time.time()
    step = 0
    while total_steps is None or step < total_steps:
        if total_steps is None and step == 10:
            per = (time.time() - t0) / 10.0
            total_steps = max(20, int(budget / (per * 1.08)))  # ~8 % for held-out evaluations
            print("timing: %.3f s/step -> %d steps in %.1f min" % (per, total_steps, args.minutes), flush=True)
        T = total_steps if total_steps is not None else 10 ** 9
        warm = max(1, min(50, T // 10))
        lr = args.lr * (step + 1) / warm if step < warm else \
            1e-5 + (args.lr - 1e-5) * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, T - warm)))
        for gr in opt.param_groups:
            gr["lr"] = lr
        batches = [(samplers[m].batch(args.batch), m) for m in present]
        masks = [torch.from_numpy(np.stack([gen(mask_rng) for _ in range(args.batch)])) for _ in present]
        out = model(batches, masks)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        rec = dict(step=step, lr=lr, total=float(out["total"]), sim=float(out["sim"]), aux=float(out["aux"]),
                   t=round(time.time() - t0, 2))
        for (img, m), l in zip(batches, out["losses"]):
            rec[MODALITY_NAMES[m]] = float(l)
        log["steps"].append(rec)
        if step % 10 == 0:
            print("step %4d  total %.4f  sim %.4f  aux %.4f  %s  lr %.2e  %.0fs" % (
                step, rec["total"], rec["sim"], rec["aux"],
                " ".join("%s %.4f" % (MODALITY_NAMES[m], rec[MODALITY_NAMES[m]]) for m in present), lr,
                time.time() - t0), flush=True)
        if step % args.eval_every == 0 or (total_steps is not None and step == total_steps - 1):
            ev = evaluate()
            e = dict(step=step, sim=float(ev["sim"]), aux=float(ev["aux"]))
            for m, l in zip(present, ev["losses"]):
                e[MODALITY_NAMES[m]] = float(l)
            log["heldout"].append(e)
            print("  held-out  sim %.4f  %s" % (e["sim"], " ".join(
                "%s %.4f" % (MODALITY_NAMES[m], e[MODALITY_NAMES[m]]) for m in present)), flush=True)
        step += 1
    train_s = time.time() - t0

    # per-expert usage on the held-out crops (top-1 choices before capacity; kept share)
    evaluate()
    usage = expert_usage(model)
    log["expert_usage_heldout"] = usage
    log["total_steps"] = step
    log["train_seconds"] = round(train_s, 1)

    meta = dict(log["config"])
    meta = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()}
    meta.update(format="RingMoE MindSpore names (encoder.*, encoder.mask_token, decoder_{m}.*)",
                normalisation=json.dumps({k: v for k, v in stats.items()}), steps=str(step),
                trained_by="tools/reference/train_ringmoe_tiny.py",
                sar_l1="not trained: no complex quad-pol SAR in the data (patch_embed1, decoder_1 and the "
                       "modality-1 experts / router keep their initial weights)")
    weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    ckpt = os.path.join(args.out, "ringmoe_tiny.safetensors")
    save_file(weights, ckpt, meta)
    hold = {MODALITY_NAMES[m]: held[m].contiguous() for m in present}
    hmeta = {"%s_sources" % MODALITY_NAMES[m]: json.dumps(held_names[m]) for m in present}
    hmeta.update(modality_index=json.dumps({MODALITY_NAMES[m]: m for m in present}),
                 normalisation=json.dumps(stats), normalised="true", crop=str(CROP),
                 layout="[N, C, 64, 64] float32, per-band standardised with the training statistics")
    hpath = os.path.join(args.out, "heldout_crops.safetensors")
    save_file(hold, hpath, hmeta)
    with open(os.path.join(args.out, "norm_stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)

    first, last = log["steps"][0], log["steps"][-1]
    print("trained %d steps in %.1f s: total loss %.4f -> %.4f; held-out sim %.4f -> %.4f" % (
        step, train_s, first["total"], last["total"], log["heldout"][0]["sim"], log["heldout"][-1]["sim"]))
    for k, u in enumerate(usage):
        print("block %d  cross %s  %s" % (k, u["cross"]["choice"], "  ".join(
            "%s %s" % (n, v["choice"]) for n, v in u.items() if n != "cross")))
    print("wrote %s\n      %s\n      %s\n      %s  (%.1f s in all)" % (
        ckpt, hpath, os.path.join(args.out, "norm_stats.json"), os.path.join(args.out, "train_log.json"),
        time.time() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
