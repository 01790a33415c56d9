#!/usr/bin/python3
"""The RS-MoE benchmark's tables (issue 18): moe (bench/bench_rsmoe.cpp) beside the PyTorch
reference (tools/bench/torch_rsmoe_bench.py), per weight policy and thread count, with the
issue's targets as ratios. Standard library only.

    /usr/bin/python3 tools/bench/rsmoe_report.py RESULTS_DIR

RESULTS_DIR as bench/run_rsmoe.sh writes it (a missing part shows "-"):
    bench_rsmoe.json     Google Benchmark JSON (report.gbench_medians: the median aggregate, else
                         the median run)
    torch_rsmoe.jsonl    torch_rsmoe_bench.py lines
    load.txt             commit, CPU, load averages (printed under the tables)

Table 1, per moe weight policy (bf16: fp32 arithmetic on bf16 weights; bf16-dot: activations
rounded to bf16, vdpbf16ps, as PyTorch's bf16 oneDNN linears) and thread count:
  encoder  EVA ViT-g + ln_vision + one Q-Former pass on one 224 image (moe split vision + Q-Former);
           speedup = PyTorch / moe, against PyTorch bf16 (target >= 1.5) and fp32
  decode   one step of the three LoRA experts (3 tokens): moe batched (one Step of three, the base
           read once), moe sequential (three single-sequence steps), PyTorch (the three experts
           one after the other, unmerged LoRA, bf16); batched / sequential (target >= 2),
           batched / PyTorch (target >= 3); bound = this run's read bandwidth / bytes the batched
           step reads (base weights once + three adapters + KV), fraction = batched / bound
Table 2: the caption end to end (48 new tokens per expert, 2 threads): moe's stages, PyTorch's
(the experts one after the other, as LAVIS generates), the speedup, and moe's peak RSS against the
weight files + 1 GB (target <=; MB = 10^6 bytes).
"""
import os
import re
import sys

from report import gbench_medians, load_jsonl, print_run_footer

NAME = re.compile(r"^rsmoe/(?P<kind>bandwidth|encoder|decode/batched|decode/sequential|caption)(/w:(?P<w>[^/]+))?"
                  r"/threads:(?P<t>\d+)")


def moe_results(path):
    """{(kind, policy, threads): record}; policy "bf16" or "bf16-dot" ("-" for the bandwidth)."""
    out = {}
    for name, b in gbench_medians(path).items():
        m = NAME.match(name)
        if m:
            pol = "-" if m["kind"] == "bandwidth" else (m["w"] or "bf16")
            out[(m["kind"], pol, int(m["t"]))] = b
    return out


def seconds(b):
    """A Google Benchmark record's real time per iteration in seconds."""
    return b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]


def f(v, fmt="%.2f"):
    return "-" if v is None else fmt % v


def ratio(a, b, fmt="%.2fx"):
    return "-" if a is None or b in (None, 0) else fmt % (a / b)


def main():
    d = sys.argv[1]
    moe = moe_results(os.path.join(d, "bench_rsmoe.json"))
    pt = {name: r for (name, _), r in load_jsonl(os.path.join(d, "torch_rsmoe.jsonl")).items()}
    threads = sorted({t for k, _, t in moe if k != "caption"} | {r["threads"] for r in pt.values()
                                                                  if "/caption/" not in r["name"]})
    policies = sorted({p for k, p, _ in moe if k != "bandwidth"}) or ["bf16"]

    print("| moe weights | threads | encoder moe s (vision + Q-Former) | PyTorch bf16 s | speedup (>= 1.5) "
          "| PyTorch fp32 s | speedup | batched step ms (tok/s) | sequential step ms (tok/s) "
          "| batched / sequential (>= 2) | PyTorch step ms (tok/s) | batched / PyTorch (>= 3) "
          "| bound tok/s (GB/s) | fraction |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for pol, t in [(pol, t) for pol in policies for t in threads]:
        enc, bat, seq = (moe.get((k, pol, t)) for k in ("encoder", "decode/batched", "decode/sequential"))
        pb, pf = pt.get("rsmoe/torch/encoder/bf16/threads:%d" % t), pt.get("rsmoe/torch/encoder/fp32/threads:%d" % t)
        pdec = pt.get("rsmoe/torch/decode/sequential/threads:%d" % t)
        m_enc = enc["seconds"] if enc else None
        split = " (%.2f + %.2f)" % (enc["vision_s"], enc["qformer_s"]) if enc else ""
        p_b, p_f = (pb["seconds"] if pb else None), (pf["seconds"] if pf else None)
        b_s, s_s = (seconds(bat) if bat else None), (seconds(seq) if seq else None)
        p_s = pdec["step_s"] if pdec else None

        def step(s, r):
            return "-" if s is None else "%.0f (%.2f)" % (s * 1e3, 3 / s)

        bound = bat["bound_tok/s"] if bat else None
        bw = " (%.1f)" % bat["bandwidth_GB/s"] if bat else ""
        print("| %s | %d | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%s | %s |" % (
            pol, t, f(m_enc), split, f(p_b), ratio(p_b, m_enc), f(p_f), ratio(p_f, m_enc), step(b_s, bat),
            step(s_s, seq), ratio(s_s, b_s), step(p_s, pdec), ratio(p_s, b_s), f(bound), bw,
            ratio(bat["tokens/s"], bound, "%.2f") if bat else "-"))
    bat = next((moe[k] for k in sorted(moe) if k[0] == "decode/batched"), None)
    seq = next((moe[k] for k in sorted(moe) if k[0] == "decode/sequential"), None)
    if bat and seq:
        print("\nA batched step reads %.0f MB (the base's weights once, the three adapters' %.0f MB, KV %.1f MB at "
              "context %.0f per sequence); the sequential three read %.0f MB (the base three times): %.2fx as much, "
              "the batched / sequential ratio of a bandwidth-bound decode." % (
                  bat["bytes_per_step"] * 1e-6, bat["adapter_bytes"] * 1e-6, 3 * bat["kv_bytes_per_token"] * 1e-6,
                  bat["context"], seq["bytes_per_step"] * 1e-6, seq["bytes_per_step"] / bat["bytes_per_step"]))

    print("\n| caption, 48 tokens x 3 experts | threads | seconds | vision | Q-Former + router | prefill | decode "
          "| decode tok/s | PyTorch / moe | peak RSS / budget MB (<=) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    caps = sorted((k, r) for k, r in moe.items() if k[0] == "caption")
    pcap = [r for r in pt.values() if "/caption/" in r["name"]]
    for (_, pol, t), r in caps:
        p = next((x for x in pcap if x["threads"] == t), None)
        print("| moe %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %.0f / %.0f |" % (
            pol, t, r["seconds"], r["vision_s"], r["qformer_s"], r["prefill_s"], r["decode_s"], r["decode_tok/s"],
            ratio(p["seconds"] if p else None, r["seconds"]), r["rss_peak_mb"], r["budget_mb"]))
    for p in pcap:
        print("| PyTorch bf16 | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | - | %.0f (peak; steady %.0f) |" % (
            p["threads"], p["seconds"], p["vision_s"], p["qformer_s"], p["prefill_s"], p["decode_s"],
            p["decode_tokens"] / p["decode_s"], p["peak_rss_mb"], p["rss_mb"]))

    print_run_footer(d, "bench_rsmoe.json")

if __name__ == "__main__":
    main()
