#!/usr/bin/env python3
"""ctest `example: generate vs the reference`: runs examples/generate greedily on the decoder
fixtures (tools/reference/fixtures_decoder.py) and compares the generated ids with the
reference's 32 greedy tokens (hf_decoder.greedy: the KV-cache loop of transformers' models).

  check_generate_cli.py GENERATE_EXE FIXTURE_DIR

Every case (single-file, sharded, LLaMA-3 rope scaling, Qwen2-MoE, G-MoE with its granularity),
with --weights f32 and bf16 (the bf16 case's weights are stored bf16: identical ids expected),
at 1 and 2 threads; the JSON output's fields are checked too. Exit 0 when all match, 1 with the
first differences otherwise, 77 without the fixtures. Standard library only (reads the fixture
safetensors header and its I32 tensors directly).
"""
import json
import os
import struct
import subprocess
import sys

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
                p = subprocess.run(args, capture_output=True, timeout=300)
                if p.returncode != 0:
                    print("FAIL %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.decode(errors="replace")))
                    bad += 1
                    continue
                out = json.loads(p.stdout)
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
    print("%d failure(s)" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
