#!/usr/bin/python3
"""PyTorch baseline of bench/bench_hierarchical.cpp: RingMoE's hierarchical MoE layer as the
reference tools/reference/ringmoe_moe.py computes it (MindSpore Moe_modal semantics).

    /usr/bin/python3 tools/bench/torch_hierarchical.py [--threads 1 2] [--reps 5] [--stock-reps 2]
                                                       [--skip-stock] [--skip-bf16] [--shapes stage1 stage3]
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

Four configurations ("impl"), each at every --threads:
  torch         the reference as written, fp32: its matmuls go to libblas.so.3 (Debian's
                python3-torch 1.13; OpenBLAS once scripts/install-deps.sh ran, else the
                reference BLAS, a few GFLOP/s: a warning is printed).
  torch_bf16    the same module the Hugging Face way: .to(torch.bfloat16), bf16 input, the
                routers kept fp32 (to_bf16_keep_routers).
  torch_onednn  the same code with every expert's two matmuls + bias done by
                torch.utils.mkldnn MkldnnLinear (oneDNN's JIT fp32 GEMM): same function, the
                routing / dispatch code unchanged.
  torch_onednn_bf16  the same with bf16 expert weights (fp32 activations).
After each thread count one summary line (impl "fastest") lists every configuration's best time
and names the fastest; run_hierarchical.sh's report compares moe with it.

GFLOP/s counts the useful expert FLOPs only, 3 FFNs per token x 2 GEMMs x 2*C*F (as the C++
benchmark). Timing: torch.no_grad(), set_threads(n) (torch and OpenBLAS), one warm-up call, then
--reps repetitions; time_ms is the median, min_time_ms the best. Environment: tools/bench/common.py.
"""

import argparse
import copy
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools", "reference"))

import common  # noqa: E402

if __name__ == "__main__":
    common.bench_env()  # before torch: OpenBLAS / OpenMP / glibc read their variables at start-up

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.utils.mkldnn  # noqa: E402,F401

import ringmoe_moe  # noqa: E402
import torch_vision  # noqa: E402
from common import emit, fastest, measure, set_threads, torch_info, warn_if_reference_blas  # noqa: E402

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


def to_bf16_keep_routers(mod):
    """The Hugging Face way to run a model in bf16 (module.to(torch.bfloat16), bf16 input), with
    the routers kept fp32 as HF keeps its gates' softmax fp32 (the reference's Router casts its
    input to fp32 and would reject bf16 weights). In place; returns mod."""
    mod.to(torch.bfloat16)
    for m in mod.modules():
        if isinstance(m, ringmoe_moe.Router):
            m.float()
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
    ap.add_argument("--stock-reps", type=int, default=None, help="repetitions of the stock runs (default --reps)")
    ap.add_argument("--skip-stock", action="store_true",
                    help="only the oneDNN configurations (then the fastest named is not PyTorch's fastest)")
    ap.add_argument("--skip-bf16", action="store_true")
    ap.add_argument("--shapes", nargs="+", default=[s[0] for s in SHAPES])
    ap.add_argument("--scale", type=int, default=1, help="divide C, F and the tokens by this (smoke tests)")
    args = ap.parse_args()
    info = torch_info(torch)
    warn_if_reference_blas(torch)

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
        common_rec = {"T": T, "C": C, "F": F_, "modalities": MODALITIES, "experts": "4+4+1", "k": 1,
                      "capacity_factor": 1.2, "flops": flops, **info}
        # impl -> (module, input, w); the stock f32 module's output is the reference
        configs = {}
        with torch.no_grad():
            ref = mod(x)[0]
            if not args.skip_stock:
                configs["torch"] = (mod, x, "f32")
                if not args.skip_bf16:
                    configs["torch_bf16"] = (to_bf16_keep_routers(copy.deepcopy(mod)), x.to(torch.bfloat16), "bf16")
            if not args.skip_bf16:
                configs["torch_onednn_bf16"] = (to_onednn(copy.deepcopy(mod), torch.bfloat16), x, "bf16")
            configs["torch_onednn"] = (to_onednn(mod if args.skip_stock else copy.deepcopy(mod)), x, "f32")
            for threads in args.threads:
                set_threads(torch, threads)
                recs = []
                for impl, (m, xin, w) in configs.items():
                    y, _, inf = m(xin)
                    err = float(((y.float() - ref).norm() / ref.norm()).item())
                    reps = args.stock_reps if (impl.startswith("torch") and "onednn" not in impl and args.stock_reps) \
                        else args.reps
                    med, best, times = measure(lambda: m(xin), reps=reps, min_time=args.min_time)
                    rec = {"name": f"hier/moe/{shape}/threads:{threads}", "impl": impl, "w": w, "threads": threads,
                           "time_ms": med * 1e3, "min_time_ms": best * 1e3, "GFLOP/s": flops / med * 1e-9,
                           "best_GFLOP/s": flops / best * 1e-9, "tokens_per_second": T / med, "reps": len(times),
                           "kept": kept_fraction(inf), "rel_err_vs_torch": err, **common_rec,
                           "blas_threads": common.blas_threads(), "torch_threads": torch.get_num_threads()}
                    emit(rec)
                    recs.append(rec)
                fastest(recs, f"hier/moe/{shape}/threads:{threads}", key="min_time_ms",
                        label=lambda r: r["impl"])
        del mod, configs

if __name__ == "__main__":
    main()
