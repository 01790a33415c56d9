#!/usr/bin/python3
"""Joins bench_vision's Google Benchmark JSON with torch_vision.py's JSON lines and prints the
Markdown tables of docs/benchmarks.md ("Vision encoders") with the target check (stdlib only).

    /usr/bin/python3 tools/bench/vision_report.py <bench_vision.json> <torch_vision.jsonl>

Every row is compared with PyTorch's fastest configuration in the same run (torch_vision.py times
stock and oneDNN, fp32 and bf16), and with the same-weights stock / oneDNN runs.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import W_RE  # noqa: E402


def load_ours(path):
    with open(path) as f:
        doc = json.load(f)
    out = {}
    for b in doc["benchmarks"]:
        name = b.get("run_name", b["name"]).replace("/real_time", "")
        agg = b.get("aggregate_name")
        if agg not in (None, "median"):
            continue
        if agg is None and name in out:
            continue
        ms = b["real_time"] if b.get("time_unit") == "ms" else b["real_time"] / 1e6
        out[name] = dict(ms=ms, gflops=b.get("GFLOP/s", 0.0) / 1e9 if b.get("GFLOP/s", 0) > 1e6 else b.get("GFLOP/s", 0.0),
                         cv=None)
        if agg == "median":
            out[name]["agg"] = True
    for b in doc["benchmarks"]:
        if b.get("aggregate_name") == "cv":
            name = b.get("run_name", b["name"]).replace("/real_time", "")
            if name in out:
                out[name]["cv"] = b["real_time"] * 100
    return out, doc.get("context", {})


def load_torch(path):
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                if r.get("summary") or "median_s" not in r:
                    continue
                out[(r["name"], r["impl"])] = r["median_s"] * 1e3
    return out


def fastest(torch, name):
    """(ms, label) of PyTorch's fastest configuration in name's row: any weights (stock or oneDNN,
    f32 or bf16) at the same model, batch and thread count; (None, None) when there is none."""
    row = W_RE.sub("", name)
    best = (None, None)
    for (n, impl), ms in torch.items():
        if W_RE.sub("", n) == row and (best[0] is None or ms < best[0]):
            best = (ms, "%s %s" % ({"torch": "stock", "torch_onednn": "oneDNN"}.get(impl, impl),
                                   W_RE.search(n).group(0)[3:]))
    return best


def fmt(v, nd=3):
    if v is None:
        return "-"
    return ("%%.%dg" % nd) % v


def main(argv):
    ours, ctx = load_ours(argv[1])
    torch = load_torch(argv[2])
    print("Context: %s, %s MHz, %d CPUs\n" % (ctx.get("date", "?"), ctx.get("mhz_per_cpu", "?"), ctx.get("num_cpus", 0)))
    print("Ratios are speed-ups (PyTorch ms / ours ms). PyTorch fastest = the fastest of PyTorch's "
          "configurations (stock / oneDNN x f32 / bf16) at the same model, batch and threads, whatever "
          "its weights.\n")
    print("| benchmark | ours ms (±cv) | ours GFLOP/s | PyTorch fastest ms (config) | **ours / fastest** | "
          "PyTorch oneDNN ms (same w) | ours / oneDNN | PyTorch stock ms (same w) | ours / stock |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in sorted(ours):
        o = ours[name]
        od = torch.get((name, "torch_onednn"))
        st = torch.get((name, "torch"))
        fa, fa_label = fastest(torch, name)
        cv = " ±%.0f%%" % o["cv"] if o.get("cv") is not None else ""
        print("| %s | %s%s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, fmt(o["ms"], 4), cv, fmt(o["gflops"]), "-" if fa is None else "%s (%s)" % (fmt(fa, 4), fa_label),
            fmt(fa / o["ms"] if fa else None), fmt(od, 4), fmt(od / o["ms"] if od else None),
            fmt(st, 4), fmt(st / o["ms"] if st else None)))

    def get(n):
        return ours.get(n, {}).get("ms")

    print("\nTargets (ViT-B/16 at 224, batch 1):\n")
    base = "vision/vit_b16/batch:1/w:%s/threads:%d"
    f1, b1, f2 = get(base % ("f32", 1)), get(base % ("bf16", 1)), get(base % ("f32", 2))
    rows = []
    fa, fa_label = fastest(torch, base % ("f32", 1))
    if fa and f1:
        rows.append(("fp32, 1 thread vs PyTorch's fastest configuration (%s)" % fa_label, fa / f1, 1.4))
    if fa and b1:
        rows.append(("bf16 weights, 1 thread vs PyTorch's fastest configuration (%s)" % fa_label, fa / b1, 2.5))
    for ref_impl, label in (("torch", "stock torchvision vit_b_16"), ("torch_onednn", "oneDNN (to_mkldnn) ViT-B/16")):
        ref = torch.get((base % ("f32", 1), ref_impl))
        if ref and f1:
            rows.append(("fp32, 1 thread vs PyTorch %s" % label, ref / f1, 1.4))
        if ref and b1:
            rows.append(("bf16 weights, 1 thread vs PyTorch fp32 %s" % label, ref / b1, 2.5))
    if f1 and f2:
        rows.append(("fp32, 2 threads vs 1 thread (ours)", f1 / f2, 1.7))
    b2 = get(base % ("bf16", 2))
    if b1 and b2:
        rows.append(("bf16, 2 threads vs 1 thread (ours)", b1 / b2, 1.7))
    # Issue 14: the bf16 compute policy against PyTorch's fastest, at 1 and 2 threads.
    for th in (1, 2):
        d = get(base % ("bf16-dot-packed", th))
        fb, fb_label = fastest(torch, base % ("f32", th))
        if d and fb:
            rows.append(("bf16-dot-packed, %d thread(s) vs PyTorch's fastest (%s)" % (th, fb_label), fb / d, 1.3))
    print("| target | measured | threshold | met |")
    print("|---|---|---|---|")
    for what, v, thr in rows:
        print("| %s | %.2fx | %.1fx | %s |" % (what, v, thr, "yes" if v >= thr else "no"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
