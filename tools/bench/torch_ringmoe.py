#!/usr/bin/python3
"""PyTorch 1.13 baselines of bench/bench_ringmoe.cpp, under the same benchmark names.

  ringmoe/folded_1b/img:<S>/w:<w>/threads:<n>   tools/reference/vision_swin.SwinEncoder at the
        RingMoE size (C 448, depths 2-2-18-2, heads 14-28-56-112, one optical patch embedding) with
        a dense GELU-tanh MLP per block: the 1B folded model. S = 192 (window 12) and 224 (window 7).
        impl "torch_onednn": every Linear as oneDNN's (torch.utils.mkldnn; bf16 = bf16 weights,
        fp32 activations), the fastest path this PyTorch has. bf16 runs at --bf16-threads (default
        1 2; on a CPU without AVX-512 BF16, oneDNN's bf16 GEMM takes about a minute per image:
        pass --bf16-threads 2 there); impl "torch": the module as it is
        (Debian's PyTorch links the reference BLAS: about 2 GFLOP/s, minutes per image), only
        with --stock, f32, one timed call.
  ringmoe/single_modality/img:<S>/w:bf16/threads:<n>   the single-modality sub-model (6.5B): the
        same encoder with tools/reference/ringmoe_moe.MoeModal in every block (one modality: 4 modal
        + 4 collaborative + 1 shared expert, top-1, capacity 1.2, the reference's loop dispatch),
        impl "torch_onednn" with every expert and every other Linear as oneDNN bf16 (fp32
        activations), routers fp32. Its fp32 weights (26 GB) do not fit in this machine's 23 GiB,
        so each block's MoE is converted to bf16 as soon as it is built (--skip-single: not run).

    /usr/bin/python3 tools/bench/torch_ringmoe.py [--threads 1 2] [--images 192 224] [--stock]

Prints one JSON object per line (tools/bench/common.py): name, impl, median / min seconds per call.
"""

import argparse
import os
import sys

import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "reference"))

from common import emit, measure, torch_info  # noqa: E402
import ringmoe_moe  # noqa: E402
import torch_hierarchical  # noqa: E402
import torch_vision  # noqa: E402
import vision_swin  # noqa: E402


def encoder(image, mlp_factory):
    """The RingMoE-size Swin encoder (one optical patch embedding) at `image` px, each block's MLP
    from mlp_factory, weights N(0, 0.02), Linears as nn.Linear."""
    window = 7 if image == 224 else 12
    enc = vision_swin.SwinEncoder(img=image, patch=4, in_chans=(3,), dim=448, depths=(2, 2, 18, 2),
                                  heads=(14, 28, 56, 112), window=window, mlp_ratio=4, mlp_factory=mlp_factory)
    return torch_vision.as_nn_linear(torch_vision.init_small(enc.eval()))


def folded_1b(image):
    return encoder(image, vision_swin.dense_mlp("tanh"))


def single_modality_bf16(image):
    """The single-modality sub-model with bf16 oneDNN weights, built without ever holding all its
    fp32 weights: the MLP factory converts each block's MoE as it is created."""
    def factory(i, C, F_):
        moe = ringmoe_moe.MoeModal(hidden=C, ffn_hidden=F_, modal_num=1, specific_expert_num=4, cross_expert_num=4,
                                   expert_num=8, num_experts_chosen=1, capacity_factor=1.2, gelu_kind="tanh").eval()
        return torch_hierarchical.to_onednn(torch_vision.init_small(moe), torch.bfloat16)

    # init_small over the whole encoder touches only what is still dense (the converted experts are
    # oneDNN buffers, not parameters): attention, mergings, norms, routers.
    return torch_vision.onednn(encoder(image, factory), torch.bfloat16, copy_first=False)


def timed(name, fn, impl, reps, min_time):
    with torch.no_grad():
        med, mn, _ = measure(fn, reps=reps, min_time=min_time)
    rec = dict(name=name, impl=impl, median_s=med, min_s=mn)
    rec.update(torch_info(torch))
    emit(rec)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--images", type=int, nargs="+", default=[192, 224])
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--bf16-threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--stock", action="store_true", help="also time the stock module once (minutes)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--skip-single", action="store_true", help="skip the single-modality sub-model")
    ap.add_argument("--skip-folded", action="store_true", help="skip the 1B folded model")
    args = ap.parse_args()
    torch.manual_seed(0)
    dtypes = [("f32", torch.float32)] + ([] if args.skip_bf16 else [("bf16", torch.bfloat16)])
    for image in ([] if args.skip_folded else args.images):
        enc = folded_1b(image)
        x = torch.randn(1, 3, image, image)
        for wn, dt in dtypes:
            m = torch_vision.onednn(enc, dt)
            for t in (args.threads if wn == "f32" else args.bf16_threads):
                torch.set_num_threads(t)
                name = "ringmoe/folded_1b/img:%d/w:%s/threads:%d" % (image, wn, t)
                timed(name, lambda: m([(x, 0)]), "torch_onednn", args.reps, args.min_time)
            del m
        if args.stock:
            for t in args.threads:
                torch.set_num_threads(t)
                timed("ringmoe/folded_1b/img:%d/w:f32/threads:%d" % (image, t), lambda: enc([(x, 0)]), "torch", 1, 0.0)
        del enc
    if not args.skip_single:
        for image in args.images:
            m = single_modality_bf16(image)
            x = torch.randn(1, 3, image, image)
            for t in args.bf16_threads:
                torch.set_num_threads(t)
                timed("ringmoe/single_modality/img:%d/w:bf16/threads:%d" % (image, t), lambda: m([(x, 0)]),
                      "torch_onednn", 1, args.min_time)
            del m


if __name__ == "__main__":
    main()
