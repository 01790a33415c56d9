#!/usr/bin/python3
"""The decoder benchmark's table (issue 16): moe (bench/bench_decoder.cpp), llama.cpp
(bench/peers/llama_cpp.sh) and PyTorch (tools/bench/torch_decoder_bench.py) side by side, per
model and thread count. Standard library only.

    /usr/bin/python3 tools/bench/decoder_report.py RESULTS_DIR

RESULTS_DIR as bench/run_decoder.sh writes it (any part may be missing: its columns show "-"):
    bench_decoder.json                     Google Benchmark JSON (median of the repetitions when
                                           there are several)
    llama_cpp/llama-bench-<model>.json     llama-bench -o json: n_prompt > 0 = prefill, n_gen > 0 =
                                           decode from an empty context (avg_ts)
    llama_cpp/llama-batched-bench-<model>.jsonl   llama-batched-bench jsonl lines: speed_pp,
                                           speed_tg = decode after the prompt (median of the runs)
    torch-<model>.jsonl                    torch_decoder_bench.py lines (dtype bf16: prefill_tok_s,
                                           decode_tok_s)

Columns: tokens/s of prefill (P-token prompt, last-token logits) and decode (single-token greedy
steps after the prompt); moe/llama.cpp decode is taken against batched-bench's decode after the
prompt (the same context as moe's and PyTorch's decode), or against llama-bench's decode from an
empty context where batched-bench is missing (marked *). bound = moe's decode tokens/s / (this
run's read bandwidth / bytes a step reads), and in brackets against the read bandwidth measured
right after each repetition (adjacent_bound_fraction, seconds from the figure); gemm = moe's prefill GFLOP/s / the library's GEMM
GFLOP/s on [512, 896] x [896, 4864] at the same thread count; rss / budget = VmRSS after decode /
(model.safetensors + KV cache + 100 MB), MB. moe's bf16_dot policy (bench names with
/w:bf16-dot/) shows as the rows "<model> (bf16-dot)", beside the same llama.cpp and PyTorch
figures.
"""
import glob
import json
import os
import re
import statistics
import sys

from report import gbench_medians

NAME = re.compile(r"^decoder/(?P<model>[^/]+)/(?P<kind>prefill|decode)/.*threads:(?P<t>\d+)")
BOUND = re.compile(r"^decoder/(?P<kind>bandwidth|gemm)/.*threads:(?P<t>\d+)")


def moe_results(path):
    """{(model, kind, threads): record}, {(bandwidth|gemm, threads): record}: the median
    aggregate when present, else the median of the iterations by real_time."""
    if not os.path.exists(path):
        return {}, {}
    medians = gbench_medians(path)
    models, bounds = {}, {}
    for name, b in medians.items():
        m = NAME.match(name)
        if m:
            w = re.search(r"/w:([^/]+)/", name)
            model = m["model"] + (f" ({w.group(1)})" if w else "")
            models[(model, m["kind"], int(m["t"]))] = b
            continue
        m = BOUND.match(name)
        if m:
            bounds[(m["kind"], int(m["t"]))] = b
    return models, bounds


def llama_results(d):
    """{(model, threads): {"pp": .., "tg": .., "bpp": .., "btg": ..}}"""
    out = {}
    for path in glob.glob(os.path.join(d, "llama-bench-*.json")):
        model = os.path.basename(path)[len("llama-bench-"):-len(".json")]
        try:
            rows = json.load(open(path))
        except ValueError:
            continue
        for r in rows:
            rec = out.setdefault((model, int(r["n_threads"])), {})
            if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
                rec["pp"] = r["avg_ts"]
                rec["pp_n"] = r["n_prompt"]
            elif r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0:
                rec["tg"] = r["avg_ts"]
    for path in glob.glob(os.path.join(d, "llama-batched-bench-*.jsonl")):
        model = os.path.basename(path)[len("llama-batched-bench-"):-len(".jsonl")]
        rows = []
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
        for t in sorted({int(r["n_threads"]) for r in rows}):
            rs = [r for r in rows if int(r["n_threads"]) == t]
            rec = out.setdefault((model, t), {})
            rec["bpp"] = statistics.median(r["speed_pp"] for r in rs)
            rec["btg"] = statistics.median(r["speed_tg"] for r in rs)
            rec["b_runs"] = len(rs)
    return out


def torch_results(d):
    """{(model, threads): record} for dtype bf16."""
    out = {}
    for path in glob.glob(os.path.join(d, "torch-*.jsonl")):
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("dtype") != "bf16" or "prefill_tok_s" not in r:
                continue
            model = os.path.basename(r.get("model", "")) or r["name"].split("/")[1]
            out[(model, int(r["threads"]))] = r
    return out


def fmt(x, digits=1):
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    d = argv[1]
    moe, bounds = moe_results(os.path.join(d, "bench_decoder.json"))
    llama = llama_results(os.path.join(d, "llama_cpp"))
    torch = torch_results(d)
    keys = sorted({(m, t) for (m, _, t) in moe} | set(llama) | set(torch))
    base = lambda model: model.split(" (")[0]  # "<model> (bf16-dot)": the same peers
    print("| model | threads | prefill moe | llama.cpp | PyTorch | moe / llama.cpp | moe / PyTorch "
          "| decode moe | llama.cpp tg (empty) | llama.cpp after prompt | PyTorch | moe / llama.cpp | moe / PyTorch "
          "| bound (adjacent) | gemm | rss / budget MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for model, t in keys:
        p = moe.get((model, "prefill", t), {})
        dec = moe.get((model, "decode", t), {})
        lc = llama.get((base(model), t), {})
        tr = torch.get((base(model), t), {})
        mp, md = p.get("tokens/s"), dec.get("tokens/s")
        tp, td = tr.get("prefill_tok_s"), tr.get("decode_tok_s")
        l_dec = lc.get("btg") if lc.get("btg") is not None else lc.get("tg")
        star = "" if lc.get("btg") is not None or l_dec is None else "*"
        rss = f"{dec['rss_mb']:.0f} / {dec['budget_mb']:.0f}" if "rss_mb" in dec else "-"
        bound = fmt(dec.get("bound_fraction"), 2)
        if dec.get("adjacent_bound_fraction") is not None:
            bound += f" ({dec['adjacent_bound_fraction']:.2f})"
        print(f"| {model} | {t} | {fmt(mp)} | {fmt(lc.get('pp'))} | {fmt(tp)} | {ratio(mp, lc.get('pp'))} | {ratio(mp, tp)} "
              f"| {fmt(md, 2)} | {fmt(lc.get('tg'), 2)} | {fmt(lc.get('btg'), 2)} | {fmt(td, 2)} | {ratio(md, l_dec)}{star} "
              f"| {ratio(md, td)} | {bound} | {fmt(p.get('gemm_fraction'), 2)} | {rss} |")
    notes = []
    for t in sorted({t for (_, t) in bounds}):
        bw, gm = bounds.get(("bandwidth", t)), bounds.get(("gemm", t))
        parts = []
        if bw:
            parts.append(f"read bandwidth {bw['bytes_per_second'] / 1e9:.1f} GB/s")
        if gm:
            parts.append(f"GEMM [512, 896] x [896, 4864] bf16 {gm['GFLOP/s']:.1f} GFLOP/s")
        notes.append(f"{t} thread{'s' if t > 1 else ''}: " + ", ".join(parts))
    for (model, kind, t), b in sorted(moe.items()):
        if kind == "decode" and t == 1:
            notes.append(f"{model}: decode reads {b['weight_bytes_per_token'] / 1e6:.0f} MB of weights + "
                         f"{b['kv_bytes_per_token'] / 1e6:.1f} MB of KV cache per token (context {b['context']:.0f})")
    if any(lc.get("btg") is None and lc.get("tg") is not None for lc in llama.values()):
        notes.append("* llama.cpp decode from an empty context (no batched-bench result)")
    for (model, t), r in sorted(torch.items()):
        if t == 1:
            notes.append(f"PyTorch {r.get('torch', '?')}, {model}: max RSS {r.get('max_rss_gb', '-')} GB, "
                         f"mkldnn {r.get('mkldnn_enabled', '?')}, BLAS {os.path.basename(str(r.get('blas_lib', '?')))}")
    print()
    for n in notes:
        print(f"- {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
