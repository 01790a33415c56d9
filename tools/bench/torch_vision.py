#!/usr/bin/python3
"""PyTorch 1.13 baselines of bench/bench_vision.cpp, under the same benchmark names.

  vision/vit_b16/batch:<B>/w:<w>/threads:<n>   impl "torch": torchvision.models.vit_b_16 as it is
                                               (random init, eval, no_grad, head included: 0.3 %
                                               of the FLOPs), batch 1 and 8; impl "torch_onednn":
                                               tools/reference/vision_vit.TimmVit at ViT-B/16 sizes
                                               with every nn.Linear / Conv2d converted by
                                               torch.utils.mkldnn.to_mkldnn (bf16: bf16 weights,
                                               fp32 activations), batch 1 and 8
  vision/siglip_block/T:729/w:<w>/threads:<n>  tools/reference/vision_vit.SiglipLayer (HF SigLIP layer)
  vision/swin_stage1/batch:1/w:<w>/threads:<n> tools/reference/vision_swin: 2 RingMoE Swin blocks at
                                               C 896, 24 x 24, window 12 (second shifted), dense MLP,
                                               + PatchMerging (torch_onednn: its Linears as nn.Linear)
Every row is timed in four configurations: impl "torch" w:f32 (the stock module; its Linears
go to libblas.so.3: OpenBLAS once scripts/install-deps.sh ran, else the 2 GFLOP/s reference BLAS,
with a warning), "torch" w:bf16 (the Hugging Face way: module.to(torch.bfloat16), bf16 input),
"torch_onednn" w:f32 and w:bf16 (above). After each thread count one summary line per row
(impl "fastest", name without w:) lists every configuration's median and names the fastest;
tools/bench/vision_report.py compares moe with it. Environment, warm-up: tools/bench/common.py
(bench_env, measure: one warm-up call, then --reps repetitions of at least --min-time s).

    /usr/bin/python3 tools/bench/torch_vision.py [--threads 1 2] [--only vit_b16] [--batches 1 8]
                                                 [--skip-bf16] [--skip-stock]

Prints one JSON object per line (tools/bench/common.py): name, impl, w, median / min seconds per
call.
"""

import argparse
import copy
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "reference"))

import common  # noqa: E402

if __name__ == "__main__":
    common.bench_env()  # before torch: OpenBLAS / OpenMP / glibc read their variables at start-up

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.utils.mkldnn  # noqa: E402,F401

from common import emit, fastest, measure, set_threads, torch_info, warn_if_reference_blas  # noqa: E402
import ringmoe_moe  # noqa: E402
import vision_swin  # noqa: E402
import vision_vit  # noqa: E402


def run(name, fn, args, impl, reps=None, rows=None):
    with torch.no_grad():
        med, mn, _ = measure(fn, reps=reps or args.reps, min_time=args.min_time)
    w = name.split("/w:")[1].split("/")[0]
    rec = dict(name=name, impl=impl, w=w, median_s=med, min_s=mn)
    rec.update(torch_info(torch))
    emit(rec)
    if rows is not None:  # the row: the name without its w:
        rows.setdefault(name.replace("/w:%s" % w, ""), []).append(rec)
    return rec


def stock(module, dtype):
    """The module as it is (dtype f32), or the Hugging Face way for bf16: a bf16 copy."""
    return module if dtype == torch.float32 else copy.deepcopy(module).to(dtype)


def mkldnn_linear(linear, dtype):
    """torch.utils.mkldnn.MkldnnLinear(linear, dtype), then `linear`'s dense weights released:
    MkldnnLinear copies them, but torch.jit keeps `linear` alive (1.13), which would otherwise
    cost every converted layer its fp32 copy too."""
    m = torch.utils.mkldnn.MkldnnLinear(linear, dtype)
    linear.weight.data = torch.empty(0)
    if linear.bias is not None:
        linear.bias.data = torch.empty(0)
    return m


def onednn(module, dtype, copy_first=True):
    """Every nn.Linear as oneDNN's (torch.utils.mkldnn.MkldnnLinear) with weights in dtype; the
    patch-embedding conv too in fp32 (MkldnnConv2d has no bf16 path in 1.13: it stays a plain,
    fp32 conv there, 0.3 % of the FLOPs). copy_first=False converts `module` in place (for
    models whose weights do not fit in memory twice)."""
    m = copy.deepcopy(module) if copy_first else module
    if dtype == torch.float32:
        return torch.utils.mkldnn.to_mkldnn(m)

    def rec(mod):
        for name, child in list(mod.named_children()):
            if isinstance(child, nn.Linear):
                setattr(mod, name, mkldnn_linear(child, dtype))
            else:
                rec(child)
        return mod

    return rec(m)


def as_nn_linear(module):
    """RingMoE's Linear ([out, in]) -> nn.Linear and its MindSpore-layout MLP ([in, out]) ->
    nn.Linear, GELU(tanh), nn.Linear, in place (same function), so that to_mkldnn converts them."""
    for name, child in list(module.named_children()):
        if isinstance(child, vision_swin.Linear):
            new = nn.Linear(child.weight.shape[1], child.weight.shape[0], bias=child.bias is not None)
            with torch.no_grad():
                new.weight.copy_(child.weight)
                if child.bias is not None:
                    new.bias.copy_(child.bias)
            setattr(module, name, new)
        elif isinstance(child, ringmoe_moe.MLP):
            C, F_ = child.mapping.weight.shape
            fc1, fc2 = nn.Linear(C, F_), nn.Linear(F_, C)
            with torch.no_grad():
                fc1.weight.copy_(child.mapping.weight.t())
                fc1.bias.copy_(child.mapping.bias)
                fc2.weight.copy_(child.projection.weight.t())
                fc2.bias.copy_(child.projection.bias)
            setattr(module, name, nn.Sequential(fc1, nn.GELU(approximate="tanh"), fc2))
        else:
            as_nn_linear(child)
    return module


def init_small(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape) * 0.02)
    return module


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", default="")
    ap.add_argument("--skip-stock", action="store_true",
                    help="skip the stock configurations (then the fastest named is not PyTorch's fastest)")
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="ViT-B/16 batch sizes")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.5)
    args = ap.parse_args()
    warn_if_reference_blas(torch)
    torch.manual_seed(0)
    dtypes = [("f32", torch.float32)] + ([] if args.skip_bf16 else [("bf16", torch.bfloat16)])
    for t in args.threads:
        set_threads(torch, t)
        th = "/threads:%d" % t
        rows = {}
        if "vit_b16" in args.only or not args.only:
            import torchvision
            vit = init_small(vision_vit.TimmVit(img=224, patch=16, dim=768, depth=12, heads=12,
                                                mlp_hidden=3072).eval())
            tv = None if args.skip_stock else torchvision.models.vit_b_16().eval()
            for B in args.batches:
                x = torch.randn(B, 3, 224, 224)
                for wn, dt in dtypes:
                    name = "vision/vit_b16/batch:%d/w:%s%s" % (B, wn, th)
                    if tv is not None:
                        m, xs = stock(tv, dt), x.to(dt)
                        run(name, lambda: m(xs), args, "torch", rows=rows)
                    m = onednn(vit, dt)
                    run(name, lambda: m(x), args, "torch_onednn", rows=rows)
                    del m
        if "siglip" in args.only or not args.only:
            layer = init_small(vision_vit.SiglipLayer(1152, 16, 4304).eval())
            x = torch.randn(1, 729, 1152)
            for wn, dt in dtypes:
                name = "vision/siglip_block/T:729/w:%s%s" % (wn, th)
                if not args.skip_stock:
                    m, xs = stock(layer, dt), x.to(dt)
                    run(name, lambda: m(xs), args, "torch", rows=rows)
                m = onednn(layer, dt)
                run(name, lambda: m(x), args, "torch_onednn", rows=rows)
        if "swin" in args.only or not args.only:
            blocks = [vision_swin.SwinBlock(896, 24, 28, 12, 0 if j == 0 else 6,
                                            vision_swin.dense_mlp("tanh")(1, 896, 3584)) for j in range(2)]
            stage = as_nn_linear(init_small(torch.nn.Sequential(*blocks, vision_swin.PatchMerging(896, 24)).eval()))
            x = torch.randn(1, 576, 896)
            for wn, dt in dtypes:
                name = "vision/swin_stage1/batch:1/w:%s%s" % (wn, th)
                if not args.skip_stock:
                    m, xs = stock(stage, dt), x.to(dt)
                    run(name, lambda: m(xs), args, "torch", rows=rows)
                m = onednn(stage, dt)
                run(name, lambda: m(x), args, "torch_onednn", rows=rows)
        for row, recs in rows.items():
            fastest(recs, row, key="median_s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
