#!/usr/bin/python3
"""PyTorch baseline of bench/bench_routing.cpp: softmax -> top-k -> renormalise, fp32, 1 thread.

    /usr/bin/python3 tools/bench/torch_routing.py [--threads 1] [--reps 5] [--min-time 0.2] > torch_routing.jsonl

One JSON line per shape, named route/fused/T:../E:../k:.. (impl "torch"), with the median time
per call in ns, tokens/s and bytes/s (logit bytes read, T * E * 4). Logits are N(0, 1) from a
fixed seed (not the same numbers as the C++ benchmark; the work does not depend on them).
One configuration only: the router's logits are fp32 and softmax / topk use no BLAS and no
oneDNN, so stock fp32 is PyTorch's fastest here. Environment: tools/bench/common.py (bench_env).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

common.bench_env(default_threads=1)  # before torch: OpenMP / glibc read their variables at start-up

import torch  # noqa: E402

from common import emit, measure, set_threads, torch_info  # noqa: E402

TOKENS = [1, 32, 512, 8192, 65536]
EXPERTS_K = [(8, 2), (64, 8), (128, 8), (256, 8)]


def route(logits, k):
    p = torch.softmax(logits, dim=-1)
    w, ids = torch.topk(p, k, dim=-1)
    w = w / w.sum(dim=-1, keepdim=True)
    return w, ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.2)
    args = ap.parse_args()
    set_threads(torch, args.threads)
    info = torch_info(torch)
    gen = torch.Generator().manual_seed(20240607)
    with torch.no_grad():
        for E, k in EXPERTS_K:
            full = torch.randn(max(TOKENS), E, generator=gen, dtype=torch.float32)
            for T in TOKENS:
                logits = full[:T].contiguous()
                med, best, times = measure(lambda: route(logits, k), reps=args.reps, min_time=args.min_time)
                emit({
                    "name": f"route/fused/T:{T}/E:{E}/k:{k}",
                    "impl": "torch",
                    "T": T, "E": E, "k": k,
                    "threads": args.threads,
                    "time_ns": med * 1e9,
                    "min_time_ns": best * 1e9,
                    "tokens_per_second": T / med,
                    "bytes_per_second": T * E * 4 / med,
                    "reps": len(times),
                    **info,
                })


if __name__ == "__main__":
    main()
