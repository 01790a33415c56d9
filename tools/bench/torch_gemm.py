#!/usr/bin/python3
"""PyTorch baseline of bench/bench_gemm.cpp: one Linear (no bias) at the GEMM shapes, one thread.

    /usr/bin/python3 tools/bench/torch_gemm.py [--threads 1] [--reps 5] [--min-time 0.3] > torch_gemm.jsonl

Rows are named as bench_gemm's shapes (gemm/torch/M:<M>/K:<K>/N:<N>): y[M, N] = x[M, K] . W^T with
W [N, K] stored as nn.Linear stores it. Four configurations per row (impl, w):
  torch f32           F.linear in fp32 (the BLAS PyTorch was built with: OpenBLAS once
                      libopenblas0-pthread is installed)
  torch bf16          the Hugging Face way: weight and input bf16 (oneDNN's bf16 GEMM, vdpbf16ps
                      on AVX-512 BF16 CPUs), output bf16
  torch_onednn f32    torch.utils.mkldnn.MkldnnLinear on an mkldnn tensor (oneDNN fp32)
  torch_onednn bf16   MkldnnLinear with bf16 weights (to_mkldnn(dtype=torch.bfloat16))
One summary line per row (impl "fastest") names the fastest. Environment and timing as the other
baselines (common.bench_env: OMP_WAIT_POLICY=PASSIVE, OPENBLAS_NUM_THREADS, glibc keeps memory;
warm-up, median of --reps repetitions). The counter GFLOP/s = 2 M K N / time.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

common.bench_env(thread_flags=("--threads",), default_threads=1)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.mkldnn as mkldnn_utils  # noqa: E402

from common import emit, fastest, measure, set_threads, torch_info, warn_if_reference_blas  # noqa: E402

# bench_gemm.cpp's kLayerShapes and kShapes (M, K, N).
SHAPES = [(128, 768, 3072), (128, 3072, 768), (197, 768, 3072), (197, 3072, 768), (197, 768, 2304),
          (3136, 448, 1792), (196, 1792, 7168), (49, 3584, 14336)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3)
    args = ap.parse_args()
    warn_if_reference_blas(torch)
    info = torch_info(torch)
    torch.manual_seed(0)
    for threads in args.threads:
        set_threads(torch, threads)
        for M, K, N in SHAPES:
            row = "gemm/torch/M:%d/K:%d/N:%d" % (M, K, N)
            x = torch.randn(M, K)
            lin = torch.nn.Linear(K, N, bias=False).eval()
            flops = 2.0 * M * K * N
            recs = []

            def run(impl, w, fn):
                with torch.no_grad():
                    med, mn, _ = measure(fn, args.reps, args.min_time)
                r = {"name": row, "impl": impl, "w": w, "threads": threads, "median_s": med, "min_s": mn,
                     "gflops": flops / med * 1e-9, **info}
                emit(r)
                recs.append(r)

            w32 = lin.weight.detach()
            run("torch", "f32", lambda: F.linear(x, w32))
            wb, xb = w32.to(torch.bfloat16), x.to(torch.bfloat16)
            run("torch", "bf16", lambda: F.linear(xb, wb))
            with torch.no_grad():
                m32 = mkldnn_utils.to_mkldnn(torch.nn.Sequential(lin)).eval()
                mb = mkldnn_utils.to_mkldnn(torch.nn.Sequential(lin), torch.bfloat16).eval()
                xm = x.to_mkldnn()
            run("torch_onednn", "f32", lambda: m32(xm))
            run("torch_onednn", "bf16", lambda: mb(xm))
            fastest(recs, row + "/threads:%d" % threads)


if __name__ == "__main__":
    main()
