#!/usr/bin/python3
"""PyTorch 1.13 baselines of bench/bench_ringmoe.cpp, under the same benchmark names.

  ringmoe/folded_1b/img:<S>/w:<w>/threads:<n>   tools/reference/vision_swin.SwinEncoder at the
        RingMoE size (C 448, depths 2-2-18-2, heads 14-28-56-112, one optical patch embedding) with
        a dense GELU-tanh MLP per block: the 1B folded model. S = 192 (window 12) and 224 (window 7).
        impl "torch_onednn": every Linear as oneDNN's (torch.utils.mkldnn; bf16 = bf16 weights,
        fp32 activations); impl "torch": the module as it is, fp32 (its Linears go to
        libblas.so.3: OpenBLAS once scripts/install-deps.sh ran; the reference BLAS, 2 GFLOP/s
        and minutes per image, otherwise: a warning is printed) and bf16 the Hugging Face way
        (module.to(torch.bfloat16), bf16 input). bf16 runs at --bf16-threads (default: --threads;
        on a CPU without AVX-512 BF16, bf16 GEMMs take about a minute per image there).
  ringmoe/single_modality/img:<S>/w:bf16/threads:<n>   the single-modality sub-model (6.5B): the
        same encoder with tools/reference/ringmoe_moe.MoeModal in every block (one modality: 4 modal
        + 4 collaborative + 1 shared expert, top-1, capacity 1.2, the reference's loop dispatch),
        impl "torch_onednn" with every expert and every other Linear as oneDNN bf16 (fp32
        activations), routers fp32; and impl "torch" w:bf16, the reference's code with every
        parameter in bf16 and a bf16 input. Its fp32 weights (26 GB) do not fit in this machine's
        23 GiB, so each block's MoE is converted to bf16 as soon as it is built (--skip-single:
        not run; one timed call per configuration after the warm-up).

Every row (name without w:) thus has up to four configurations; after each model one summary line
per row (impl "fastest") lists every configuration's best time and names the fastest, which
tools/bench/ringmoe_report.py compares moe with. --skip-stock leaves the stock ones out.
The oneDNN configurations convert activations to and from oneDNN's layout in every Linear
(MkldnnLinear allocates fresh tensors every call: PyTorch's API has no way around it); the
environment (tools/bench/common.py, bench_env) keeps glibc from returning freed memory, so those
allocations reuse pages instead of faulting in new ones (12.5 us per page on this VM), and the
input list is built once, outside the timed call.

    /usr/bin/python3 tools/bench/torch_ringmoe.py [--threads 1 2] [--images 192 224] [--skip-stock]
                                                  [--skip-single] [--skip-folded] [--reps 3]

Prints one JSON object per line (tools/bench/common.py): name, impl, w, median / min seconds per call.
"""

import argparse
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "reference"))

import common  # noqa: E402

common.bench_env()  # before torch: OpenBLAS / OpenMP / glibc read their variables at start-up

import torch  # noqa: E402

from common import emit, fastest, measure, set_threads, torch_info, warn_if_reference_blas  # noqa: E402
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


def single_modality_stock_bf16(image):
    """The single-modality sub-model the Hugging Face way (every parameter bf16 but the routers'
    (fp32, as HF keeps gates), bf16 input, the reference's own code), built without ever holding all its fp32 weights: each block's MoE is
    cast to bf16 as it is created."""
    def factory(i, C, F_):
        moe = ringmoe_moe.MoeModal(hidden=C, ffn_hidden=F_, modal_num=1, specific_expert_num=4, cross_expert_num=4,
                                   expert_num=8, num_experts_chosen=1, capacity_factor=1.2, gelu_kind="tanh").eval()
        return torch_hierarchical.to_bf16_keep_routers(torch_vision.init_small(moe))

    return torch_hierarchical.to_bf16_keep_routers(encoder(image, factory))


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


def timed(name, fn, impl, reps, min_time, rows):
    with torch.no_grad():
        med, mn, _ = measure(fn, reps=reps, min_time=min_time)
    w = name.split("/w:")[1].split("/")[0]
    rec = dict(name=name, impl=impl, w=w, median_s=med, min_s=mn)
    rec.update(torch_info(torch))
    emit(rec)
    rows.setdefault(name.replace("/w:%s" % w, ""), []).append(rec)


def time_threads(prefix, wn, m, inp, impl, threads, args, rows, reps=None):
    for t in threads:
        set_threads(torch, t)
        timed("%s/w:%s/threads:%d" % (prefix, wn, t), lambda: m(inp), impl, reps or args.reps, args.min_time, rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--images", type=int, nargs="+", default=[192, 224])
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--bf16-threads", type=int, nargs="+", default=None, help="default: --threads")
    ap.add_argument("--skip-stock", action="store_true",
                    help="leave the stock module (fp32 and bf16) out: then the fastest named is not PyTorch's")
    ap.add_argument("--stock", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old commands
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--skip-single", action="store_true", help="skip the single-modality sub-model")
    ap.add_argument("--skip-folded", action="store_true", help="skip the 1B folded model")
    args = ap.parse_args()
    bf16_threads = args.bf16_threads or args.threads
    warn_if_reference_blas(torch)
    torch.manual_seed(0)
    dtypes = [("f32", torch.float32)] + ([] if args.skip_bf16 else [("bf16", torch.bfloat16)])
    for image in ([] if args.skip_folded else args.images):
        rows = {}
        prefix = "ringmoe/folded_1b/img:%d" % image
        enc = folded_1b(image)
        x = torch.randn(1, 3, image, image)
        inp = [(x, 0)]  # built once: the timed call is the forward alone
        for wn, dt in dtypes:
            m = torch_vision.onednn(enc, dt)
            time_threads(prefix, wn, m, inp, "torch_onednn", args.threads if wn == "f32" else bf16_threads, args, rows)
            del m
        if not args.skip_stock:
            time_threads(prefix, "f32", enc, inp, "torch", args.threads, args, rows)
            if not args.skip_bf16:  # the Hugging Face way; in place (last use of enc): no second copy
                enc = enc.to(torch.bfloat16)
                time_threads(prefix, "bf16", enc, [(x.to(torch.bfloat16), 0)], "torch", bf16_threads, args, rows)
        del enc
        for t in sorted(set(args.threads) | set(bf16_threads)):
            row = "%s/threads:%d" % (prefix, t)
            if row in rows:
                fastest(rows[row], row, key="min_s")
    if not args.skip_single and not args.skip_bf16:
        for image in args.images:
            rows = {}
            prefix = "ringmoe/single_modality/img:%d" % image
            x = torch.randn(1, 3, image, image)
            m = single_modality_bf16(image)
            time_threads(prefix, "bf16", m, [(x, 0)], "torch_onednn", bf16_threads, args, rows, reps=1)
            del m
            if not args.skip_stock:
                m = single_modality_stock_bf16(image)
                time_threads(prefix, "bf16", m, [(x.to(torch.bfloat16), 0)], "torch", bf16_threads, args, rows, reps=1)
                del m
            for t in bf16_threads:
                row = "%s/threads:%d" % (prefix, t)
                if row in rows:
                    fastest(rows[row], row, key="min_s")

if __name__ == "__main__":
    main()
