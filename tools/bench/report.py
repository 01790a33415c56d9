#!/usr/bin/python3
"""Joins the C++ benchmark results (Google Benchmark JSON) with the PyTorch baselines (JSON
lines) and prints Markdown tables: ours, PyTorch, ratios, fraction of the read-once bandwidth
(routing), fraction of the dense GEMM throughput and the 2-thread speed-up (layer), and the
targets of the performance issue, met or not.

    /usr/bin/python3 tools/bench/report.py RESULTS_DIR [-o report.md]

RESULTS_DIR holds routing.json, layer.json (bench binaries, --benchmark_out_format=json),
torch_routing.jsonl, torch_layer.jsonl (tools/bench/torch_*.py) and ggml_layer.jsonl
(bench/peers/run_ggml.sh); missing files are skipped. Layer rows are compared with PyTorch's
fastest configuration at the same shape and thread count (any weights, stock or oneDNN).
Standard library only.
"""

import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = "."


# ------------------------------------------------------------------------------------------ io
def read_gbench(path):
    """A Google Benchmark JSON file (--benchmark_out_format=json) as ([(name, record), ...] in
    file order, runs and aggregates alike, context). name is the record's run_name (else its name)
    without a trailing /real_time or /process_time, so repetitions and aggregates of one
    benchmark share it. Raises OSError when the file is missing (see load_gbench)."""
    with open(path) as f:
        data = json.load(f)
    records = [(re.sub(r"/(real_time|process_time)$", "", b.get("run_name", b["name"])), b)
               for b in data.get("benchmarks", [])]
    return records, data.get("context", {})


def load_gbench(path):
    """name -> record (median aggregate when repetitions were run, else the mean of the runs)."""
    if not os.path.exists(path):
        return {}, {}
    records, context = read_gbench(path)
    runs, medians, cvs = {}, {}, {}
    for name, b in records:
        if b.get("error_occurred"):
            medians[name] = {"error": b.get("error_message", "error")}
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = b
            elif b.get("aggregate_name") == "cv":
                cvs[name] = b.get("real_time")
        else:
            runs.setdefault(name, []).append(b)
    out = dict(medians)
    for name, rs in runs.items():
        if name not in out:  # no aggregates: average the runs
            rec = dict(rs[0])
            for key, v in rs[0].items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    rec[key] = sum(r[key] for r in rs) / len(rs)
            out[name] = rec
    for name, cv in cvs.items():
        if name in out:
            out[name]["cv"] = cv
    for rec in out.values():  # times in seconds
        if "real_time" in rec:
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[rec.get("time_unit", "ns")]
            rec["seconds"] = rec["real_time"] * scale
    return out, context


def gbench_medians(path):
    """name -> record of a Google Benchmark JSON file: the median aggregate when repetitions were
    run, else the median run by real_time (an odd count: the middle one; even: the faster middle
    one); failed runs left out, names without /real_time and /iterations:N. The decoder and
    RSUniVLM reports read their benchmark files with it. {} when the file is missing."""
    if not os.path.exists(path):
        return {}
    runs, medians = {}, {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("error_occurred"):
            continue
        name = re.sub(r"/iterations:\d+", "", b.get("run_name", b["name"]).replace("/real_time", ""))
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[name] = b
        else:
            runs.setdefault(name, []).append(b)
    for name, rs in runs.items():
        if name not in medians:
            rs = sorted(rs, key=lambda r: r["real_time"])
            medians[name] = rs[(len(rs) - 1) // 2]
    return medians


def print_run_footer(d, gbench_json):
    """Under a report's tables: the SIMD path and CPUs from the Google Benchmark file
    `gbench_json` of results folder d, and d's load.txt (commit, CPU, load averages), each when
    present."""
    bj = os.path.join(d, gbench_json)
    if os.path.exists(bj):
        with open(bj) as f:
            ctx = json.load(f).get("context", {})
        print("\nmoe SIMD path: %s; Google Benchmark: %s CPUs at %s MHz" % (
            ctx.get("moe.simd", "?"), ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?")))
    load = os.path.join(d, "load.txt")
    if os.path.exists(load):
        with open(load) as f:
            print("\n```\n" + f.read().rstrip() + "\n```")


def load_jsonl(path):
    """(name, impl) -> record."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if "time_ns" in r:
                r["seconds"] = r["time_ns"] * 1e-9
            elif "time_ms" in r:
                r["seconds"] = r["time_ms"] * 1e-3
            out[(r["name"], r.get("impl", "torch"))] = r
    return out


W_RE = re.compile(r"/w:[^/]+")
IMPL_LABEL = {"torch": "stock", "torch_onednn": "oneDNN", "ggml": "ggml"}


def fastest_of(recs, name, field="seconds"):
    """The fastest baseline configuration of `name`'s row: the smallest `field` over every record
    of recs ((name, impl) -> record, the summary lines skipped) whose name equals `name` once the
    /w:<weights> parts are dropped, i.e. any weights and any impl at the same shape and thread
    count. Returns (value, "stock bf16"-style label) or (None, None)."""
    row = W_RE.sub("", name)
    best, label = None, None
    for (n, impl), r in recs.items():
        if r.get("summary") or r.get(field) is None or W_RE.sub("", n) != row:
            continue
        if best is None or r[field] < best:
            w = W_RE.search(n)
            best, label = r[field], "%s %s" % (IMPL_LABEL.get(impl, impl), w.group(0)[3:] if w else "")
    return best, label


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return ""


# ------------------------------------------------------------------------------- formatting
def fmt(v, digits=3):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits - 1}f}" if a >= 1 else f"{v:.{digits}g}"


def pct(v):
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if abs(v) < 0.1 else f"{100 * v:.0f}%"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def get(d, key, field="seconds"):
    r = d.get(key)
    return None if r is None or "error" in r else r.get(field)


# ---------------------------------------------------------------------------------- sections
def machine_section(ctx_r, ctx_l, torch_recs):
    lines = []
    model = sh("lscpu | sed -n 's/^Model name:[ ]*//p'")
    cores = sh("nproc")
    flags = sh("grep -m1 '^flags' /proc/cpuinfo")
    has = lambda f: "yes" if re.search(rf"\b{f}\b", flags) else "no"  # noqa: E731
    l3 = sh("lscpu | sed -n 's/^L3 cache:[ ]*//p'")
    lines.append(f"- CPU: {model}, {cores} cores ({sh('lscpu | sed -n s/^Thread.s.*per.core:[[:space:]]*//p')} thread/core), "
                 f"L3 {l3}; AVX2 {has('avx2')}, FMA {has('fma')}, AVX-512F {has('avx512f')}, "
                 f"AVX-512 BF16 {has('avx512_bf16')}")
    ctx = ctx_l or ctx_r
    if ctx:
        lines.append(f"- Benchmark context: {ctx.get('date', '?')}, {ctx.get('mhz_per_cpu', '?')} MHz, "
                     f"moe SIMD {ctx.get('moe.simd', '?')}, Google Benchmark library build type "
                     f"{ctx.get('library_build_type', '?')}")
    busy_file = os.path.join(RESULTS, "busy.txt")
    if os.path.exists(busy_file):
        with open(busy_file) as f:
            steps = [ln.split() for ln in f if ln.strip()]
        lines.append("- CPU use by other processes, % of all cores (busy just before the step; while it ran at "
                     "normal priority + at nice > 0): "
                     + ", ".join(f"{s[0]} {s[1]}%" + (f"; {s[2]}% + {s[3]}%" if len(s) > 3 else "")
                                 for s in steps if len(s) >= 2))
    commit_file = os.path.join(RESULTS, "commit.txt")
    if os.path.exists(commit_file):  # written by run_all.sh when it ran
        with open(commit_file) as f:
            commit, dirty = (f.read().split() + ["?", "0"])[:2]
    else:
        commit = sh("git rev-parse --short HEAD") + " (at report time)"
        dirty = sh("git status --porcelain --untracked-files=no | wc -l")
    lines.append(f"- moe commit: {commit}" + (f" (+ uncommitted changes in {dirty} tracked files)"
                                               if dirty not in ("", "0") else ""))
    lines.append(f"- Compiler: {sh('c++ --version | head -1')}")
    t = next(iter(torch_recs.values()), None)
    blas = sh("readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu")
    if t:
        lines.append(f"- PyTorch {t.get('torch')} (BLAS_INFO={t.get('blas_info')}, libblas.so.3 -> {blas or '?'}; "
                     f"loaded: {t.get('blas_lib', '?')}, env {t.get('env', {})}), "
                     f"oneDNN available: {t.get('mkldnn')}")
    return "\n".join(lines)


def routing_section(ours, torch_r):
    rows = []
    keys = []
    for name in ours:
        m = re.match(r"route/fused/T:(\d+)/E:(\d+)/k:(\d+)$", name)
        if m:
            keys.append((int(m.group(2)), int(m.group(1)), int(m.group(3))))
    for E, T, k in sorted(keys):
        sk = f"T:{T}/E:{E}/k:{k}"
        fused, naive = f"route/fused/{sk}", f"route/naive/{sk}"
        rd = f"route/read_once/T:{T}/E:{E}"
        tf, tn, tr = get(ours, fused), get(ours, naive), get(ours, rd)
        tt = get(torch_r, (fused, "torch"))
        gbs = lambda t: None if t is None else T * E * 4 / t * 1e-9  # noqa: E731
        mtok = lambda t: None if t is None else T / t * 1e-6  # noqa: E731
        rows.append([str(T), str(E), str(k), fmt(tf * 1e6 if tf else None), mtok(tf), gbs(tf), gbs(tr),
                     pct(ratio(tr, tf)), mtok(tn), mtok(tt), ratio(tt, tf), ratio(tn, tf)])
    hdr = ["T", "E", "k", "ours µs", "ours Mtok/s", "ours GB/s", "read-once GB/s", "% of read-once",
           "naive Mtok/s", "PyTorch Mtok/s", "ours / PyTorch", "ours / naive"]
    return table(hdr, rows)


SHAPE_RE = re.compile(r"layer/moe/(.+)/w:([\w-]+)/threads:(\d+)$")


def layer_shapes(ours, torch_l):
    shapes = []
    for name in list(ours) + [n for n, _ in torch_l]:
        m = SHAPE_RE.match(name)
        if m and m.group(1) not in shapes:
            shapes.append(m.group(1))
    return shapes


def layer_section(ours, torch_l, ggml_l=None):
    ggml_l = ggml_l or {}
    out = []
    shapes = layer_shapes(ours, torch_l)
    rows = []
    for s in shapes:
        for w in ("f32", "bf16", "bf16-dot", "bf16-dot-packed"):
            for th in (1, 2):
                key = f"layer/moe/{s}/w:{w}/threads:{th}"
                t = get(ours, key)
                if t is None and not any(k[0] == key for k in torch_l):
                    continue
                gf = get(ours, key, "GFLOP/s")
                dense = get(ours, f"layer/dense/{s}/w:{w}/threads:{th}", "GFLOP/s")
                dense_f32_1 = get(ours, f"layer/dense/{s}/w:f32/threads:1", "GFLOP/s")
                t1 = get(ours, f"layer/moe/{s}/w:{w}/threads:1")
                tf32 = get(ours, f"layer/moe/{s}/w:f32/threads:{th}")
                stock = get(torch_l, (key, "torch"))
                onednn = get(torch_l, (key, "torch_onednn"))
                cv = get(ours, key, "cv")
                fast, fast_label = fastest_of(torch_l, key)
                gg = get(ggml_l, (key, "ggml"))
                tms = "-" if t is None else fmt(t * 1e3) + ("" if cv is None else f" ±{100 * cv:.0f}%")
                rows.append([s.split("/")[0], w, str(th), tms, gf, pct(ratio(gf, dense)),
                             pct(ratio(gf, dense_f32_1)), ratio(t1, t) if th > 1 else "-",
                             ratio(tf32, t) if w != "f32" else "-",
                             "-" if fast is None else f"{fmt(fast * 1e3)} ({fast_label})", ratio(fast, t),
                             fmt(onednn * 1e3 if onednn else None), ratio(onednn, t),
                             fmt(stock * 1e3 if stock else None), ratio(stock, t),
                             fmt(gg * 1e3 if gg else None), ratio(gg, t)])
    out.append(table(["shape", "weights", "threads", "ours ms (±cv)", "ours GFLOP/s", "% of dense (same w, threads)",
                      "% of dense f32 1 thread", "speed-up vs 1 thread", "speed-up vs f32",
                      "PyTorch fastest ms (config)", "**ours / fastest**", "HF loop oneDNN ms (same w)",
                      "ours / oneDNN", "HF loop stock ms (same w)", "ours / stock", "ggml ms (same w)",
                      "ours / ggml"], rows))

    # dense baselines
    rows = []
    for s in shapes:
        for w in ("f32", "bf16", "bf16-dot", "bf16-dot-packed"):
            for th in (1, 2):
                key = f"layer/dense/{s}/w:{w}/threads:{th}"
                gf = get(ours, key, "GFLOP/s")
                on = get(torch_l, (key, "torch_onednn"), "GFLOP/s")
                st = get(torch_l, (key, "torch"), "GFLOP/s")
                if gf is None and on is None and st is None:
                    continue
                rows.append([s.split("/")[0], w, str(th), gf, on, ratio(gf, on), st])
    out.append("\nDense baseline (one Linear pair over T * k rows, no activation), GFLOP/s:\n")
    out.append(table(["shape", "weights", "threads", "moe::cpu::linear", "torch oneDNN", "ours / oneDNN",
                      "torch stock F.linear"], rows))

    # where the time goes
    rows = []
    for s in shapes:
        for w in ("f32", "bf16", "bf16-dot", "bf16-dot-packed"):
            for th in (1, 2):
                tm = get(ours, f"layer/moe/{s}/w:{w}/threads:{th}")
                if tm is None:
                    continue
                tr = get(ours, f"layer/router/{s}/threads:1")
                tx = get(ours, f"layer/experts/{s}/w:{w}/threads:{th}")
                tf = get(ours, f"layer/ffn/{s}/w:{w}/threads:1") if th == 1 else None
                pc = None if tx is None or tf is None else tx - tf
                ms = lambda v: None if v is None else v * 1e3  # noqa: E731
                rows.append([s.split("/")[0], w, str(th), ms(tm), ms(tr), pct(ratio(tr, tm)), ms(tx),
                             ms(tf), ms(pc), pct(ratio(pc, tm)),
                             ms(None if tx is None else tm - tx - (tr or 0))])
    out.append("\nWhere the layer's time goes (ms; router measured at 1 thread; FFN = the expert GEMMs + "
               "activation over pre-permuted rows, 1 thread; permute + combine = experts - FFN):\n")
    out.append(table(["shape", "weights", "threads", "layer", "router", "router %", "experts (permute + FFN + "
                      "combine)", "FFN only", "permute + combine", "permute + combine %", "rest (layer - router - "
                      "experts)"], rows))
    tr_ours = [(s, get(ours, f"layer/router/{s}/threads:1"), get(torch_l, (f"layer/router/{s}/threads:1",
                                                                          "torch_onednn")),
                get(torch_l, (f"layer/router/{s}/threads:1", "torch"))) for s in shapes]
    out.append("\nRouter alone (gate GEMM + softmax/top-k/renormalise, 1 thread), ms:\n")
    out.append(table(["shape", "ours", "torch oneDNN", "torch stock"],
                     [[s.split("/")[0], None if a is None else a * 1e3, None if b is None else b * 1e3,
                       None if c is None else c * 1e3] for s, a, b, c in tr_ours]))
    return "\n".join(out)


def targets_section(ours, torch_r, torch_l, ggml_l=None):
    ggml_l = ggml_l or {}
    res = []

    def line(label, value, goal, ok, detail=""):
        state = "n/a" if ok is None else ("**met**" if ok else "**not met**")
        res.append([label, value, goal, state, detail])

    sk = "T:65536/E:64/k:8"
    tf, tt = get(ours, f"route/fused/{sk}"), get(torch_r, (f"route/fused/{sk}", "torch"))
    tr = get(ours, "route/read_once/T:65536/E:64")
    r = ratio(tt, tf)
    line("routing T=65536 E=64 k=8 vs PyTorch", f"{fmt(r)}x" if r else "-", ">= 50x", None if r is None else r >= 50)
    f = ratio(tr, tf)
    line("routing T=65536 E=64 k=8, fraction of read-once bandwidth", pct(f), ">= 60%",
         None if f is None else f >= 0.6,
         "" if tf is None or tr is None else f"{4 * 65536 * 64 / tf * 1e-9:.1f} of {4 * 65536 * 64 / tr * 1e-9:.1f} GB/s")

    s = "gelu_mlp/T:512/d:768/ffn:3072/E:8/k:2"
    key = f"layer/moe/{s}/w:f32/threads:1"
    t = get(ours, key)
    fast, fast_label = fastest_of(torch_l, key)
    r = ratio(fast, t)
    line("layer GELU f32 1 thread vs PyTorch's fastest configuration", f"{fmt(r)}x" if r else "-", ">= 1.6x",
         None if r is None else r >= 1.6, f"fastest: {fast_label}" if fast_label else "")
    for impl, label in (("torch_onednn", "oneDNN Linear, f32"), ("torch", "stock Linear, f32")):
        r = ratio(get(torch_l, (key, impl)), t)
        line(f"layer GELU f32 1 thread vs HF loop ({label})", f"{fmt(r)}x" if r else "-", ">= 1.6x",
             None if r is None else r >= 1.6)
    for w in ("f32", "bf16", "bf16-dot", "bf16-dot-packed"):
        for th in (1, 2):
            k2 = f"layer/moe/{s}/w:{w}/threads:{th}"
            r = ratio(get(ggml_l, (k2, "ggml")), get(ours, k2))
            if r is not None:
                line(f"layer GELU {w} {th} thread(s) vs ggml (mul_mat_id, same weights)", f"{fmt(r)}x", "-", None)
    for th in (1, 2):
        gk = f"layer/moe/{s}/w:f32/threads:{th}"
        f = ratio(get(ours, gk, "GFLOP/s"), get(ours, f"layer/dense/{s}/w:f32/threads:{th}", "GFLOP/s"))
        line(f"layer GELU f32 {th} thread(s), fraction of dense GEMM", pct(f), ">= 75%",
             None if f is None else f >= 0.75,
             f"{fmt(get(ours, gk, 'GFLOP/s'))} vs {fmt(get(ours, f'layer/dense/{s}/w:f32/threads:{th}', 'GFLOP/s'))} "
             "GFLOP/s")
    for shape in layer_shapes(ours, torch_l):
        for th in (1, 2):
            r = ratio(get(ours, f"layer/moe/{shape}/w:f32/threads:{th}"),
                      get(ours, f"layer/moe/{shape}/w:bf16/threads:{th}"))
            line(f"bf16 weights vs f32, {shape.split('/')[0]}, {th} thread(s)", f"{fmt(r)}x" if r else "-", ">= 1.4x",
                 None if r is None else r >= 1.4)
    for shape in layer_shapes(ours, torch_l):
        for w in ("f32", "bf16", "bf16-dot", "bf16-dot-packed"):
            r = ratio(get(ours, f"layer/moe/{shape}/w:{w}/threads:1"), get(ours, f"layer/moe/{shape}/w:{w}/threads:2"))
            line(f"2 threads vs 1, {shape.split('/')[0]} {w}", f"{fmt(r)}x" if r else "-", ">= 1.6x",
                 None if r is None else r >= 1.6)
    return table(["target", "measured", "goal", "state", "detail"], res)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="directory with routing.json, layer.json, torch_*.jsonl")
    ap.add_argument("-o", "--output", help="also write the report here")
    args = ap.parse_args()
    global RESULTS
    d = RESULTS = args.results
    ours_r, ctx_r = load_gbench(os.path.join(d, "routing.json"))
    ours_l, ctx_l = load_gbench(os.path.join(d, "layer.json"))
    torch_r = load_jsonl(os.path.join(d, "torch_routing.jsonl"))
    torch_l = load_jsonl(os.path.join(d, "torch_layer.jsonl"))
    ggml_l = load_jsonl(os.path.join(d, "ggml_layer.jsonl"))

    parts = ["# moe benchmark report", "", machine_section(ctx_r, ctx_l, {**torch_r, **torch_l}), ""]
    if ours_r or torch_r:
        parts += ["## Routing: softmax -> top-k -> renormalise, fp32 logits, 1 thread", "",
                  "ours = moe::cpu::topk_route; read-once = a vectorised sum over the same logits "
                  "(bandwidth bound); % of read-once = read-once time / ours time; naive = scalar "
                  "softmax + std::partial_sort; PyTorch = torch.softmax + torch.topk + renormalise.", "",
                  routing_section(ours_r, torch_r), ""]
    if ours_l or torch_l:
        parts += ["## MoE layer forward (router + experts + combine)", "",
                  "GFLOP/s counts the useful expert FLOPs only (2*T*k*2*d*F GELU-MLP, 2*T*k*3*d*F SwiGLU; "
                  "the router GEMM is not counted). Dense = one Linear pair over T*k rows with the same "
                  "FLOPs (moe::cpu::linear; 2 threads: linear_parallel). HF loop = MixtralSparseMoeBlock-style "
                  "PyTorch; oneDNN = its nn.Linear converted with torch.utils.mkldnn.to_mkldnn, stock = "
                  "plain nn.Linear (Debian's PyTorch: libblas.so.3, OpenBLAS after scripts/install-deps.sh). PyTorch bf16: stock = the whole "
                  "module in bf16; oneDNN = bf16 expert weights, fp32 activations. PyTorch fastest = the "
                  "fastest of the four PyTorch configurations (stock / oneDNN x f32 / bf16) at the same shape "
                  "and thread count, whatever its weights: ours / fastest is the honest ratio. ggml = "
                  "ggml_mul_mat_id's MoE graph (bench/peers/ggml_moe_layer.cpp), same weights.", "",
                  layer_section(ours_l, torch_l, ggml_l), ""]
    parts += ["## Targets", "", targets_section({**ours_r, **ours_l}, torch_r, torch_l, ggml_l), ""]
    text = "\n".join(parts)
    sys.stdout.write(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
