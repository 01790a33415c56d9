#!/usr/bin/python3
"""PyTorch baseline of bench/bench_hierarchical.cpp: RingMoE's hierarchical MoE layer as the
reference tools/reference/ringmoe_moe.py computes it (MindSpore Moe_modal semantics).

    /usr/bin/python3 tools/bench/torch_hierarchical.py [--threads 1 2] [--reps 5] [--stock-reps 2]
                                                       [--skip-stock] [--shapes stage1 stage3]
                                                       > torch_hierarchical.jsonl

The module is ringmoe_moe.MoeModal as written, with dispatch="loop" (the official-style loop:
per routed group, the router GEMM, fp32 softmax, argmax, cumsum positions and capacity; then for
every expert torch.nonzero on its kept tokens, index_select, the expert FFN
(x @ W1[e] + b1 -> tanh GELU -> @ W2[e] + b2), times the combine weight, index_add_), plus the
shared expert over all tokens, summed. Shapes and names are those of bench_hierarchical.cpp:

    hier/moe/stage1/C:448/F:1792/T:9216/threads:<n>    4 modalities x 1 image of 48 x 48 tokens
    hier/moe/stage3/C:1792/F:7168/T:576/threads:<n>    4 modalities x 1 image of 12 x 12 tokens

4 modal experts per modality, 4 collaborative, 1 shared; top-1, capacity factor 1.2,
renormalised combine. Weights uniform +-1/sqrt(fan_in) (ringmoe_moe.init_weights), x ~ N(0, 1).

Two implementations ("impl"):
  torch         the reference as written: its matmuls go to the BLAS PyTorch was built with;
                Debian's python3-torch 1.13 links libblas.so.3, by default the reference
                (netlib) BLAS, a few GFLOP/s and single-threaded (run with 1 thread only).
  torch_onednn  the same code with every expert's two matmuls + bias done by
                torch.utils.mkldnn MkldnnLinear (oneDNN's JIT fp32 GEMM, the fastest fp32 path
                this PyTorch has): same function, the routing / dispatch code unchanged.

GFLOP/s counts the useful expert FLOPs only, 3 FFNs per token x 2 GEMMs x 2*C*F (as the C++
benchmark). Timing: torch.no_grad(), torch.set_num_threads(n), warm-up, then --reps repetitions
(--stock-reps for the slow stock variant); time_ms is the median, min_time_ms the best.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "reference"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.utils.mkldnn  # noqa: E402,F401

import ringmoe_moe  # noqa: E402
import torch_vision  # noqa: E402
from common import emit, measure, torch_info  # noqa: E402

SHAPES = [
    # name, C, F, tokens per image
    ("stage1", 448, 1792, 48 * 48),
    ("stage3", 1792, 7168, 12 * 12),
]
MODALITIES = 4
SEED = 4242


class OneDnnMLP(nn.Module):
    """A ringmoe_moe.MLP whose experts run as MkldnnLinear pairs (weights [out, in], fp32 or
    bf16 with fp32 activations)."""

    def __init__(self, mlp, dtype=torch.float32):
        super().__init__()
        self.gelu_kind = mlp.gelu_kind
        E = mlp.mapping.expert_num
        maps, projs = [], []
        for e in range(E):
            maps.append(self._linear(mlp.mapping, e, dtype))
            projs.append(self._linear(mlp.projection, e, dtype))
        self.maps = nn.ModuleList(maps)
        self.projs = nn.ModuleList(projs)

    @staticmethod
    def _linear(lin, e, dtype):
        w = lin.weight[e] if lin.expert_num > 1 else lin.weight  # [in, out]
        b = lin.bias[0, e, 0] if lin.expert_num > 1 else lin.bias
        m = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            m.weight.copy_(w.t())
            m.bias.copy_(b)
        return torch_vision.mkldnn_linear(m, dtype)

    def expert(self, x, e=0):
        return self.projs[e](ringmoe_moe.gelu(self.maps[e](x), self.gelu_kind))

    def forward(self, x):
        return self.expert(x, 0)


def to_onednn(mod, dtype=torch.float32):
    """Replaces mod's expert MLPs (in place) by OneDnnMLP; the routers stay as they are."""
    for m in range(len(mod.special_ffn)):
        mod.special_ffn[m] = OneDnnMLP(mod.special_ffn[m], dtype)
    mod.cross_ffn = OneDnnMLP(mod.cross_ffn, dtype)
    mod.public_ffn = OneDnnMLP(mod.public_ffn, dtype)
    return mod


def kept_fraction(info):
    groups = [info["cross"]] + list(info["special"])
    kept = sum(int(r["kept"].sum()) for r in groups)
    asked = sum(r["kept"].numel() for r in groups)
    return kept / asked


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.0)
    ap.add_argument("--stock-reps", type=int, default=2, help="repetitions of the slow stock (reference BLAS) runs")
    ap.add_argument("--skip-stock", action="store_true", help="only the oneDNN variant")
    ap.add_argument("--shapes", nargs="+", default=[s[0] for s in SHAPES])
    ap.add_argument("--scale", type=int, default=1, help="divide C, F and the tokens by this (smoke tests)")
    args = ap.parse_args()
    info = torch_info(torch)

    for name, C, F_, N in SHAPES:
        if name not in args.shapes:
            continue
        C, F_, N = C // args.scale, F_ // args.scale, N // args.scale
        T = MODALITIES * N
        shape = f"{name}/C:{C}/F:{F_}/T:{T}"
        flops = 3.0 * 2.0 * 2.0 * T * C * F_
        mod = ringmoe_moe.MoeModal(hidden=C, ffn_hidden=F_, modal_num=MODALITIES, specific_expert_num=4,
                                   cross_expert_num=4, expert_num=8, num_experts_chosen=1, capacity_factor=1.2,
                                   aux_loss_factor=0.001, renormalize=True, gelu_kind="tanh", dispatch="loop").eval()
        ringmoe_moe.init_weights(mod, torch.Generator().manual_seed(SEED))
        x = torch.randn(MODALITIES, N, C, generator=torch.Generator().manual_seed(SEED + 99))
        common = {"T": T, "C": C, "F": F_, "modalities": MODALITIES, "experts": "4+4+1", "k": 1,
                  "capacity_factor": 1.2, "flops": flops, **info}
        with torch.no_grad():
            ref = None
            if not args.skip_stock:
                torch.set_num_threads(1)
                # tens of seconds per call: one warm-up call (also the reference output), then
                # --stock-reps timed calls
                ref, _, inf = mod(x)
                times = []
                for _ in range(max(1, args.stock_reps)):
                    t0 = time.perf_counter()
                    mod(x)
                    times.append(time.perf_counter() - t0)
                med, best = statistics.median(times), min(times)
                emit({"name": f"hier/moe/{shape}/threads:1", "impl": "torch", "threads": 1, "time_ms": med * 1e3,
                      "min_time_ms": best * 1e3, "GFLOP/s": flops / med * 1e-9, "best_GFLOP/s": flops / best * 1e-9,
                      "tokens_per_second": T / med, "reps": len(times), "kept": kept_fraction(inf), **common})
            to_onednn(mod)
            for threads in args.threads:
                torch.set_num_threads(threads)
                y, _, inf = mod(x)
                err = None
                if ref is not None:
                    err = float(((y - ref).norm() / ref.norm()).item())
                med, best, times = measure(lambda: mod(x), reps=args.reps, min_time=args.min_time)
                emit({"name": f"hier/moe/{shape}/threads:{threads}", "impl": "torch_onednn", "threads": threads,
                      "time_ms": med * 1e3, "min_time_ms": best * 1e3, "GFLOP/s": flops / med * 1e-9,
                      "best_GFLOP/s": flops / best * 1e-9, "tokens_per_second": T / med, "reps": len(times),
                      "kept": kept_fraction(inf), "rel_err_vs_torch": err, **common})
        del mod


if __name__ == "__main__":
    main()
