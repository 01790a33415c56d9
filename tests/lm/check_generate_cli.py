#!/usr/bin/env python3
"""ctest `example: generate vs the reference`: runs examples/generate greedily on the decoder
fixtures (tools/reference/fixtures_decoder.py) and compares the generated ids with the
reference's 32 greedy tokens (hf_decoder.greedy: the KV-cache loop of transformers' models).

  check_generate_cli.py GENERATE_EXE FIXTURE_DIR [QUANTIZE_EXE]

Every case (single-file, sharded, LLaMA-3 rope scaling, Qwen2-MoE, G-MoE with its granularity),
with --weights f32 and bf16 (the bf16 case's weights are stored bf16: identical ids expected),
at 1 and 2 threads; the JSON output's fields are checked too. Exit 0 when all match, 1 with the
first differences otherwise, 77 without the fixtures. Standard library only (reads the fixture
safetensors header and its I32 tensors directly).

Beam search: the id-prompt cases of decoder_beam.safetensors (tools/reference/beam_search.py,
transformers' beam search) run with --beams, --length-penalty, --early-stopping,
--repeat-penalty, --min-new-tokens and --stop-id: the best hypothesis' ids identical, its score
within 1e-4 relative.

With QUANTIZE_EXE (examples/quantize), each case is also quantised into a temporary folder and
generated with --weights int8 from it and from the float folder (quantised at load): the same
quantiser and kernels, so the ids must be identical (they are not compared with the float
reference's, from which W8A8 may differ).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

CASES = ["decoder_qwen2", "decoder_qwen2_bf16", "decoder_llama", "decoder_llama3", "decoder_qwen2_moe", "decoder_mixtral",
         "decoder_qwen2_gmoe"]


def read_i32(path, names):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name in names:
            if name not in header:
                continue
            e = header[name]
            assert e["dtype"] == "I32", (path, name)
            b, end = e["data_offsets"]
            f.seek(base + b)
            raw = f.read(end - b)
            out[name] = list(struct.unpack("<%di" % (len(raw) // 4), raw))
        return out


def run_json(args):
    """The CLI's --json object, or None (the failure printed)."""
    r = subprocess.run(args, capture_output=True, timeout=300)
    if r.returncode != 0:
        print("FAIL %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.decode(errors="replace")))
        return None
    return json.loads(r.stdout)


def main():
    exe, fixtures = sys.argv[1], sys.argv[2]
    if not os.path.exists(os.path.join(fixtures, "decoder_qwen2.safetensors")):
        print("no decoder fixtures in %s (ctest reference_fixtures writes them): skipped" % fixtures)
        return 77
    bad = 0
    for case in CASES:
        t = read_i32(os.path.join(fixtures, case + ".safetensors"), ["__prompt_0__", "__greedy_ids__", "__granularity__"])
        prompt, want = t["__prompt_0__"], t["__greedy_ids__"]
        extra = ["--granularity", str(t["__granularity__"][0])] if "__granularity__" in t else []
        for weights in ("f32", "bf16"):
            for threads in ("1", "2"):
                args = [exe, "--model", os.path.join(fixtures, case), "--ids", ",".join(map(str, prompt)), "--temp", "0",
                        "-n", str(len(want)), "--weights", weights, "--threads", threads, "--json", "--ignore-eos"] + extra
                out = run_json(args)
                if out is None:
                    bad += 1
                    continue
                # the bf16 runs of an fp32 checkpoint round the weights: ids may differ there
                exact = weights == "f32" or case == "decoder_qwen2_bf16"
                ok = out["prompt_ids"] == prompt and out["stop"] == "max_new_tokens" and \
                    out["decode_tokens"] == len(want) - 1 and out["prefill_tokens"] == len(prompt) and \
                    out["threads"] == int(threads) and (out["ids"] == want if exact else len(out["ids"]) == len(want))
                print("%s %-20s weights %-4s threads %s: %s" % ("ok  " if ok else "FAIL", case, weights, threads,
                                                                  out["ids"][:8]))
                if not ok:
                    print("  expected %s\n  got      %s" % (want, out["ids"]))
                    bad += 1
    bad += check_beams(exe, fixtures)
    if len(sys.argv) > 3:
        bad += check_int8(exe, sys.argv[3], fixtures)
    print("%d failure(s)" % bad)
    return 1 if bad else 0


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def check_beams(exe, fixtures):
    path = os.path.join(fixtures, "decoder_beam.safetensors")
    header, base = read_header(path)
    meta = header["__metadata__"]
    bad = 0
    for c in range(int(meta["cases"])):
        p = "c%d_" % c
        if meta[p + "embedded"] == "true":
            continue  # the CLI takes ids
        t = read_i32(path, ["__%sprompt__" % p, "__%seos__" % p, "__%sids_0__" % p])
        b, _ = header["__%sscores__" % p]["data_offsets"]
        with open(path, "rb") as f:
            f.seek(base + b)
            want_score = struct.unpack("<f", f.read(4))[0]
        early = {"heuristic": "heuristic", "first_complete": "first", "never": "never"}[meta[p + "early_stopping"]]
        args = [exe, "--model", os.path.join(fixtures, meta[p + "model"]), "--ids", ",".join(map(str, t["__%sprompt__" % p])),
                "-n", meta[p + "max_new"], "--beams", meta[p + "beams"], "--length-penalty", meta[p + "length_penalty"],
                "--early-stopping", early, "--repeat-penalty", meta[p + "repetition_penalty"],
                "--min-new-tokens", meta[p + "min_new"], "--ignore-eos", "--weights", "f32", "--json"]
        for e in t["__%seos__" % p]:
            args += ["--stop-id", str(e)]
        out = run_json(args)
        if out is None:
            bad += 1
            continue
        want = t["__%sids_0__" % p]
        ok = out["ids"] == want and abs(out["score"] - want_score) <= 1e-4 * abs(want_score) and \
            out["beams"] == int(meta[p + "beams"])
        print("%s beam case %d (%s beams, %s): %s score %.6f" % ("ok  " if ok else "FAIL", c, meta[p + "beams"], early,
                                                                 out["ids"][:8], out["score"]))
        if not ok:
            print("  expected %s score %.6f\n  got      %s" % (want, want_score, out))
            bad += 1
    return bad


def check_int8(exe, quantize, fixtures):
    bad = 0
    with tempfile.TemporaryDirectory(prefix="moe_generate_int8_") as tmp:
        for case in CASES:
            t = read_i32(os.path.join(fixtures, case + ".safetensors"), ["__prompt_0__", "__granularity__"])
            q = os.path.join(tmp, case)
            p = subprocess.run([quantize, os.path.join(fixtures, case), q], capture_output=True, timeout=300)
            if p.returncode != 0 or b"int8:" not in p.stdout:
                print("FAIL quantize %s: exit %d: %s%s" % (case, p.returncode, p.stdout.decode(errors="replace"),
                                                          p.stderr.decode(errors="replace")))
                bad += 1
                continue
            extra = ["--granularity", str(t["__granularity__"][0])] if "__granularity__" in t else []
            ids = {}
            for model in (os.path.join(fixtures, case), q):
                for threads in ("1", "2"):
                    args = [exe, "--model", model, "--ids", ",".join(map(str, t["__prompt_0__"])), "--temp", "0",
                            "-n", "16", "--weights", "int8", "--threads", threads, "--json", "--ignore-eos"] + extra
                    out = run_json(args)
                    if out is None:
                        bad += 1
                        continue
                    ids[(model, threads)] = out["ids"]
            runs = list(ids.values())
            ok = len(runs) == 4 and all(len(x) == 16 and x == runs[0] for x in runs)
            print("%s %-20s weights int8, quantised folder = quantised at load, 1 = 2 threads: %s" % (
                "ok  " if ok else "FAIL", case, runs[0][:8] if runs else None))
            if not ok:
                print("  got %s" % ids)
                bad += 1
    return bad


if __name__ == "__main__":
    sys.exit(main())
