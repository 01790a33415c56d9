#!/usr/bin/python3
"""PyTorch baseline of bench/bench_layer.cpp: the Hugging Face style sparse MoE block.

    /usr/bin/python3 tools/bench/torch_layer.py [--threads 1 2] [--reps 5] [--min-time 0.3]
                                                [--shapes gelu_mlp swiglu] > torch_layer.jsonl

The block is MixtralSparseMoeBlock's forward (transformers 4.3x): gate Linear(d, E, bias=False),
softmax in fp32, torch.topk, renormalise, one_hot expert mask, then for every expert:
torch.where on its mask, index_select of its tokens, the expert FFN, times the routing weight,
index_add_ into the output. Experts are GELU-MLP (fc1/fc2 with bias, exact GELU) or SwiGLU
(w2(silu(w1 x) * w3 x), no bias). Shapes and names are those of bench/bench_layer.cpp:

    layer/moe/<shape>/w:<f32|bf16>/threads:<n>     the block
    layer/dense/<shape>/w:<f32|bf16>/threads:<n>   F.linear pair (SwiGLU: three) over T * k rows
    layer/router/<shape>/threads:1                 gate + softmax + topk + renormalise

Four configurations per row (impl, w), all timed at every thread count:
  torch  f32    the modules as they are: nn.Linear -> F.linear -> the BLAS PyTorch was built with
                (Debian's python3-torch 1.13: BLAS_INFO=generic, libblas.so.3; with
                libopenblas0-pthread installed, OpenBLAS; without it the reference BLAS, about
                2 GFLOP/s: a warning is printed).
  torch  bf16   the Hugging Face way: the whole module and the input in bfloat16.
  torch_onednn f32   the module after torch.utils.mkldnn.to_mkldnn(): every nn.Linear becomes
                MkldnnLinear (oneDNN's JIT fp32 GEMM).
  torch_onednn bf16  to_mkldnn(experts, torch.bfloat16): bf16 expert weights, fp32 activations
                (what moe's bf16 weights do), the gate fp32.
After each thread count, one summary line per row (impl "fastest", name without w:) gives every
configuration's median and names the fastest; tools/bench/report.py compares with it.

Environment (common.bench_env, re-exec before torch is imported): OMP_WAIT_POLICY=PASSIVE,
OPENBLAS_NUM_THREADS = the largest --threads (lowered per run by openblas_set_num_threads), glibc
MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_ so freed memory is reused.
Timing: torch.no_grad(), one warm-up call, median of --reps repetitions of at least --min-time s
each. --skip-stock leaves the stock configurations out (then the fastest is not PyTorch's).
"""

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

common.bench_env()  # before torch: OpenBLAS / OpenMP / glibc read their variables at start-up

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.mkldnn  # noqa: E402,F401

from common import emit, fastest, measure, set_threads, torch_info, warn_if_reference_blas  # noqa: E402

SHAPES = [
    # name, T, d, F, E, k, glu
    ("gelu_mlp", 512, 768, 3072, 8, 2, False),
    ("swiglu", 512, 1024, 3584, 8, 2, True),
]


class MlpExpert(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.fc1 = nn.Linear(d, f)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(f, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGluExpert(nn.Module):  # MixtralBlockSparseTop2MLP
    def __init__(self, d, f):
        super().__init__()
        self.w1 = nn.Linear(d, f, bias=False)
        self.w2 = nn.Linear(f, d, bias=False)
        self.w3 = nn.Linear(d, f, bias=False)
        self.act_fn = nn.SiLU()

    def forward(self, x):
        return self.w2(self.act_fn(self.w1(x)) * self.w3(x))


class SparseMoeBlock(nn.Module):  # MixtralSparseMoeBlock.forward, 2-D input
    def __init__(self, d, f, E, k, glu):
        super().__init__()
        self.num_experts, self.top_k = E, k
        self.gate = nn.Linear(d, E, bias=False)
        self.experts = nn.ModuleList([(SwiGluExpert if glu else MlpExpert)(d, f) for _ in range(E)])

    def route(self, hidden_states):
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
        return routing_weights.to(hidden_states.dtype), selected_experts

    def forward(self, hidden_states):
        T, d = hidden_states.shape
        routing_weights, selected_experts = self.route(hidden_states)
        final = torch.zeros((T, d), dtype=hidden_states.dtype, device=hidden_states.device)
        expert_mask = F.one_hot(selected_experts, num_classes=self.num_experts).permute(2, 1, 0)
        for expert_idx in range(self.num_experts):
            idx, top_x = torch.where(expert_mask[expert_idx])
            if top_x.numel() == 0:  # MkldnnLinear rejects empty inputs
                continue
            current_state = hidden_states.index_select(0, top_x)
            current_hidden = self.experts[expert_idx](current_state) * routing_weights[top_x, idx, None]
            final.index_add_(0, top_x, current_hidden.to(hidden_states.dtype))
        return final


class Dense(nn.Module):
    """The dense baseline: expert 0's Linear layers over T * k rows, no activation."""

    def __init__(self, expert, glu):
        super().__init__()
        self.glu = glu
        self.expert = expert

    def forward(self, a):
        e = self.expert
        if self.glu:
            return e.w2(e.w1(a)), e.w3(a)
        return e.fc2(e.fc1(a))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--stock-reps", type=int, default=None,
                    help="repetitions of the stock runs (default --reps; fewer when torch has the reference BLAS)")
    ap.add_argument("--skip-stock", action="store_true",
                    help="only the oneDNN variants (then the fastest named is among those only: not a full baseline)")
    ap.add_argument("--shapes", nargs="+", default=[s[0] for s in SHAPES])
    args = ap.parse_args()
    info = torch_info(torch)
    warn_if_reference_blas(torch)
    torch.manual_seed(1234)

    for name, T, d, f, E, k, glu in SHAPES:
        if name not in args.shapes:
            continue
        shape = f"{name}/T:{T}/d:{d}/ffn:{f}/E:{E}/k:{k}"
        flops = 2.0 * T * k * (3 if glu else 2) * d * f
        block = SparseMoeBlock(d, f, E, k, glu).eval()
        x = torch.randn(T, d)
        a = torch.randn(T * k, d)

        with torch.no_grad():
            # to_mkldnn() replaces the children of the module it is given: convert copies.
            variants = {}  # (impl, w) -> module
            variants[("torch_onednn", "f32")] = torch.utils.mkldnn.to_mkldnn(copy.deepcopy(block))
            onednn_bf16 = copy.deepcopy(block)  # bf16 expert weights, the gate stays fp32 (as moe's)
            onednn_bf16.gate = torch.utils.mkldnn.to_mkldnn(onednn_bf16.gate)
            onednn_bf16.experts = torch.utils.mkldnn.to_mkldnn(onednn_bf16.experts, torch.bfloat16)
            variants[("torch_onednn", "bf16")] = onednn_bf16
            if not args.skip_stock:
                variants[("torch", "f32")] = block
                variants[("torch", "bf16")] = copy.deepcopy(block).to(torch.bfloat16)
            ref = block(x) if not args.skip_stock else None

            for threads in args.threads:
                set_threads(torch, threads)
                info["blas_threads"] = common.blas_threads()
                rows = {}  # row name (no w:) -> its records, one per configuration
                for (impl, w), mod in variants.items():
                    stock = impl == "torch"
                    xin = x.to(torch.bfloat16) if (stock and w == "bf16") else x
                    ain = a.to(torch.bfloat16) if (stock and w == "bf16") else a
                    reps = args.stock_reps if (stock and args.stock_reps) else args.reps
                    common_rec = {"impl": impl, "threads": threads, "w": w, "T": T, "d": d, "ffn": f, "E": E, "k": k,
                                  "flops": flops, **info}

                    y = mod(xin)
                    err = None
                    if ref is not None:
                        err = float(((y.float() - ref).abs().max() / ref.abs().max()).item())
                    med, best, times = measure(lambda: mod(xin), reps=reps, min_time=args.min_time)
                    rec = {"name": f"layer/moe/{shape}/w:{w}/threads:{threads}", "time_ms": med * 1e3,
                           "min_time_ms": best * 1e3, "GFLOP/s": flops / med * 1e-9, "tokens_per_second": T / med,
                           "reps": len(times), "max_rel_err_vs_torch_f32": err, **common_rec}
                    emit(rec)
                    rows.setdefault(f"layer/moe/{shape}/threads:{threads}", []).append(rec)

                    dense = Dense(mod.experts[0], glu)
                    med, best, times = measure(lambda: dense(ain), reps=reps, min_time=args.min_time)
                    rec = {"name": f"layer/dense/{shape}/w:{w}/threads:{threads}", "time_ms": med * 1e3,
                           "min_time_ms": best * 1e3, "GFLOP/s": flops / med * 1e-9, "reps": len(times),
                           **common_rec}
                    emit(rec)
                    rows.setdefault(f"layer/dense/{shape}/threads:{threads}", []).append(rec)

                    if threads == 1 and w == "f32":
                        med, best, times = measure(lambda: mod.route(xin), reps=args.reps, min_time=args.min_time)
                        emit({"name": f"layer/router/{shape}/threads:1", "time_ms": med * 1e3,
                              "min_time_ms": best * 1e3, "tokens_per_second": T / med, "reps": len(times),
                              **common_rec})
                for row, recs in rows.items():
                    fastest(recs, row, key="time_ms")

if __name__ == "__main__":
    main()
