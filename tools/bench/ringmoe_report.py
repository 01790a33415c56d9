#!/usr/bin/python3
"""Joins bench_ringmoe's Google Benchmark JSON with torch_ringmoe.py's JSON lines (a results
directory of bench/run_ringmoe.sh) into the Markdown of docs/benchmarks.md ("RingMoE end to end"),
with the issue's targets (stdlib only).

    /usr/bin/python3 tools/bench/ringmoe_report.py <results dir>

Times are the best repetition (the minimum; median in brackets): on a shared VM the minimum is
the least disturbed measurement. Speed-up = PyTorch best / moe best. "fastest" = the fastest of
PyTorch's configurations (stock / oneDNN x fp32 / bf16) at the same model, image and threads,
whatever its weights; "same w" columns compare with the same weights.

The files are read with report.py's readers (read_gbench, load_jsonl); report.py's load_gbench
keeps the median aggregate only, while this table needs every repetition (the minimum).
"""

import os
import statistics
import sys

from report import W_RE, load_jsonl, read_gbench


def load_ours(path):
    """name -> best / median ms over the repetitions (aggregates skipped), their count, and the
    GFLOP/s and params counters of the last repetition."""
    records, _ = read_gbench(path)
    runs = {}
    extra = {}
    for name, b in records:
        if b.get("run_type") == "aggregate":
            continue
        ms = b["real_time"] if b.get("time_unit") == "ms" else b["real_time"] / 1e6
        runs.setdefault(name, []).append(ms)
        extra[name] = dict(gflops=b.get("GFLOP/s", 0.0), params=b.get("params", 0.0))
    return {n: dict(best=min(v), median=statistics.median(v), n=len(v), **extra[n]) for n, v in runs.items()}


def load_torch(path):
    """(name, impl) -> best / median ms of torch_ringmoe.py's records ({} when the file is missing)."""
    return {key: dict(best=r["min_s"] * 1e3, median=r["median_s"] * 1e3) for key, r in load_jsonl(path).items()
            if not r.get("summary") and "min_s" in r}


def fastest(torch, name):
    """(best ms, label) of PyTorch's fastest configuration in name's row: any weights, stock or
    oneDNN, same model, image and threads; (None, None) when none was run."""
    row = W_RE.sub("", name)
    best = (None, None)
    for (n, impl), r in torch.items():
        if W_RE.sub("", n) == row and (best[0] is None or r["best"] < best[0]):
            best = (r["best"], "%s %s" % ({"torch": "stock", "torch_onednn": "oneDNN"}.get(impl, impl),
                                          W_RE.search(n).group(0)[3:]))
    return best


def fmt(x):
    return "-" if x is None else ("%.0f" % x if x >= 100 else "%.1f" % x)


def main():
    d = sys.argv[1]
    ours = load_ours(os.path.join(d, "bench_ringmoe.json"))
    torch = load_torch(os.path.join(d, "torch_ringmoe.jsonl"))
    print("| benchmark | params | moe ms best (median) | images/s | GFLOP/s | torch fastest ms (config) | "
          "**moe / fastest** | torch oneDNN ms (same w) | moe / oneDNN | torch stock ms (same w) | moe / stock |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, o in ours.items():
        t1 = torch.get((n, "torch_onednn"))
        t2 = torch.get((n, "torch"))
        fa, fa_label = fastest(torch, n)
        print("| `%s` | %.3gB | %s (%s) | %.3f | %.1f | %s | %s | %s | %s | %s | %s |" % (
            n, o["params"] / 1e9, fmt(o["best"]), fmt(o["median"]), 1e3 / o["best"], o["gflops"],
            "-" if fa is None else "%s (%s)" % (fmt(fa), fa_label), ("%.2fx" % (fa / o["best"])) if fa else "-",
            fmt(t1["best"]) if t1 else "-", ("%.2fx" % (t1["best"] / o["best"])) if t1 else "-",
            fmt(t2["best"]) if t2 else "-", ("%.2fx" % (t2["best"] / o["best"])) if t2 else "-"))
    key = "ringmoe/folded_1b/img:224/w:bf16-dot-packed/threads:2"
    if key in ours:  # issue 14's targets: <= 0.75 s per image, >= 1.3x PyTorch's fastest
        o = ours[key]["best"]
        fa, fa_label = fastest(torch, key)
        print()
        print("- 1B folded, 224, bf16-dot-packed, 2 threads: %.3f s per image (target <= 0.75 s): %s" %
              (o / 1e3, "MET" if o <= 750 else "NOT MET"))
        if fa:
            print("- same vs PyTorch's fastest configuration in this run (%s): %.2fx (target >= 1.3x): %s" %
                  (fa_label, fa / o, "MET" if fa / o >= 1.3 else "NOT MET"))
    key = "ringmoe/folded_1b/img:224/w:bf16/threads:2"
    if key in ours:
        o = ours[key]["best"]
        print()
        print("- 1B folded, 224, bf16, 2 threads: %.2f s per image (target <= 1.0 s): %s" %
              (o / 1e3, "MET" if o <= 1000 else "NOT MET"))
        t = torch.get((key, "torch_onednn"))
        if t:
            print("- same vs PyTorch 1.13 (oneDNN, bf16 weights): %.2fx (target >= 1.5x): %s" %
                  (t["best"] / o, "MET" if t["best"] / o >= 1.5 else "NOT MET"))
        fa, fa_label = fastest(torch, key)
        if fa:
            print("- same vs PyTorch 1.13's fastest configuration in this run (%s, 2 threads): %.2fx "
                  "(target >= 1.5x): %s" % (fa_label, fa / o, "MET" if fa / o >= 1.5 else "NOT MET"))


if __name__ == "__main__":
    main()
