#!/usr/bin/python3
"""The RSUniVLM benchmark's table (issue 17): moe (bench/bench_rsunivlm.cpp) beside the PyTorch
reference (tools/bench/torch_rsunivlm_bench.py), per thread count, with the issue's three
targets as ratios. Standard library only.

    /usr/bin/python3 tools/bench/rsunivlm_report.py RESULTS_DIR

RESULTS_DIR as bench/run_rsunivlm.sh writes it (a missing part shows "-"):
    bench_rsunivlm.json     Google Benchmark JSON (the median aggregate when there are several
                            repetitions, else the median run by real time)
    torch_rsunivlm.jsonl    torch_rsunivlm_bench.py lines (ttft_s, decode_tok_s, rss_mb, peak_rss_mb)
    load.txt                commit, CPU, load averages (printed under the table)

Columns: TTFT = time to first token of one 384 x 384 image + 20-token question (770 rows; moe:
vision = embed, i.e. SigLIP + projector + splice, and the language model's prefill; PyTorch the
same split); speedup = PyTorch TTFT / moe TTFT (target >= 2); decode tokens/s after the prompt;
bound = this run's read bandwidth / bytes a decode step reads (one G-MoE expert, lm_head, KV),
fraction = moe decode / bound (target >= 0.85); moe weights: bf16 (fp32 arithmetic on the
bf16 weights) or bf16-dot (activations rounded to bf16, vdpbf16ps, as PyTorch's bf16 linears); RSS = moe's peak resident set (VmHWM) / budget =
model.safetensors + 1 GB (target <=), MB = 10^6 bytes; PyTorch's steady RSS and peak beside it.
"""
import json
import os
import re
import sys

from report import gbench_medians, print_run_footer

NAME = re.compile(r"^rsunivlm/(?P<kind>bandwidth|ttft|decode)/.*threads:(?P<t>\d+)")
POLICY = re.compile(r"/w:([^/]+)/")


def moe_results(path):
    """{(kind, policy, threads): record} (policy "bf16" or "bf16-dot"; bandwidth: "-"): median
    aggregate, else the median run by real_time."""
    medians = gbench_medians(path)
    out = {}
    for name, b in medians.items():
        m = NAME.match(name)
        if m:
            w = POLICY.search(name)
            pol = "-" if m["kind"] == "bandwidth" else (w.group(1) if w else "bf16")
            out[(m["kind"], pol, int(m["t"]))] = b
    return out


def torch_results(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                r = json.loads(line)
                out[r["threads"]] = r
    return out


def f(v, fmt="%.2f"):
    return "-" if v is None else fmt % v


def ratio(a, b, fmt="%.2fx"):
    return "-" if a is None or b in (None, 0) else fmt % (a / b)


def main():
    d = sys.argv[1]
    moe = moe_results(os.path.join(d, "bench_rsunivlm.json"))
    pt = torch_results(os.path.join(d, "torch_rsunivlm.jsonl"))
    threads = sorted({t for _, _, t in moe} | set(pt))
    policies = sorted({p for k, p, _ in moe if k != "bandwidth"}) or ["bf16"]
    print("| moe weights | threads | TTFT moe s (vision + prefill) | TTFT PyTorch s (vision + prefill) | speedup (>= 2) "
          "| decode moe tok/s | decode PyTorch tok/s | moe / PyTorch | bound tok/s (GB/s) | fraction (>= 0.85) "
          "| moe RSS peak / budget MB | PyTorch RSS / peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for pol, t in [(pol, t) for pol in policies for t in threads]:
        tt, dc, p = moe.get(("ttft", pol, t)), moe.get(("decode", pol, t)), pt.get(t)
        m_ttft = tt["seconds"] if tt else None
        m_split = " (%.2f + %.2f)" % (tt["vision_s"], tt["prefill_s"]) if tt else ""
        p_ttft = p["ttft_s"] if p else None
        p_split = " (%.2f + %.2f)" % (p["vision_s"], p["ttft_s"] - p["vision_s"]) if p else ""
        m_dec = dc["tokens/s"] if dc else None
        p_dec = p["decode_tok_s"] if p else None
        bound = dc["bound_tok/s"] if dc else None
        bw = " (%.1f)" % dc["bandwidth_GB/s"] if dc else ""
        mem = next((r for r in (dc, tt) if r), None)
        rss = "%.0f / %.0f" % (mem["rss_peak_mb"], mem["budget_mb"]) if mem else "-"
        prss = "%.0f / %.0f" % (p["rss_mb"], p["peak_rss_mb"]) if p else "-"
        print("| %s | %d | %s%s | %s%s | %s | %s | %s | %s | %s%s | %s | %s | %s |" % (
            pol, t, f(m_ttft), m_split, f(p_ttft), p_split, ratio(p_ttft, m_ttft), f(m_dec), f(p_dec), ratio(m_dec, p_dec),
            f(bound), bw, ratio(m_dec, bound, "%.2f"), rss, prss))
    dc = next((moe[k] for k in sorted(moe) if k[0] == "decode"), None)
    tt = next((moe[k] for k in sorted(moe) if k[0] == "ttft"), None)
    if dc or tt:
        r = dc or tt
        extra = ("; a decode step reads %.0f MB of weights + %.1f MB of KV cache (context %.0f)" % (
            dc["weight_bytes_per_token"] * 1e-6, dc["kv_bytes_per_token"] * 1e-6, dc["context"]) if dc else "")
        print("\nrows %s%s; moe RSS after the run %.0f MB" % (f(tt["rows"], "%.0f") if tt else "-", extra, r["rss_mb"]))
    print_run_footer(d, "bench_rsunivlm.json")

if __name__ == "__main__":
    main()
