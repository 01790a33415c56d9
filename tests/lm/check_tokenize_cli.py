#!/usr/bin/env python3
"""ctest `example: tokenize vs the JS reference`: runs examples/tokenize on the parity corpus and
compares its output with the reference's ids and decoded text (the fixture of tokenizer_reference).

  check_tokenize_cli.py TOKENIZE_EXE FIXTURE_DIR [NAME ...]

For each tokenizer NAME (default: qwen3 and bert-uncased): every corpus string through
`tokenize --jsonl` (ids, add_special_tokens=True), `--jsonl --no-special` (ids_plain), and the
ids_plain back through `--decode --jsonl` when the reference decoded without clean-up differences.
Exit 0 when everything matches, 1 with the first differences otherwise, 77 without the fixture.
"""
import json
import os
import subprocess
import sys


def run(exe, args, lines):
    p = subprocess.run([exe] + args, input="".join(l + "\n" for l in lines).encode(), capture_output=True, timeout=600)
    if p.returncode != 0:
        sys.exit(f"tokenize {' '.join(args)} exited with {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout.decode().split("\n")[:-1]


def main():
    exe, fixtures = sys.argv[1], os.path.join(sys.argv[2], "tokenizers")
    names = sys.argv[3:] or ["qwen3", "bert-uncased"]
    manifest_path = os.path.join(fixtures, "manifest.json")
    if not os.path.exists(manifest_path):
        print(f"no tokenizer fixtures at {manifest_path} (ctest tokenizer_reference writes them): skipped")
        return 77
    manifest = json.load(open(manifest_path, encoding="utf-8"))
    bad = 0
    for name in names:
        entry = manifest[name]
        rows = [json.loads(l) for l in open(os.path.join(fixtures, name + ".jsonl"), encoding="utf-8")]
        rows = [r for r in rows if "error" not in r]
        base = ["--tokenizer", entry["tokenizer_json"]] + (["--config", entry["tokenizer_config"]] if entry["tokenizer_config"] else [])
        texts = [json.dumps(r["text"], ensure_ascii=False) for r in rows]
        for flag, key in (([], "ids"), (["--no-special"], "ids_plain")):
            out = run(exe, base + ["--jsonl"] + flag, texts)
            for r, o in zip(rows, out):
                if json.loads(o) != r[key]:
                    bad += 1
                    if bad <= 10:
                        print(f"{name} {key}: {json.dumps(r['text'])}: tokenize gave {o}, reference {r[key]}")
            if len(out) != len(rows):
                bad += 1
                print(f"{name}: {len(out)} output lines for {len(rows)} inputs")
        # Decoding: the fixture decoded without the clean-up; compare where clean-up cannot matter.
        cleanup_safe = [r for r in rows if r["ids_plain"] and r["decoded"] == r["decoded"].replace(" .", ".")
                        .replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
                        .replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve").replace(" 're", "'re")]
        out = run(exe, base + ["--decode", "--jsonl"], [json.dumps(r["ids_plain"]) for r in cleanup_safe])
        for r, o in zip(cleanup_safe, out):
            if json.loads(o) != r["decoded"]:
                bad += 1
                if bad <= 10:
                    print(f"{name} decode: {r['ids_plain']}: tokenize gave {o}, reference {json.dumps(r['decoded'])}")
        print(f"{name}: {len(rows)} strings encoded twice, {len(cleanup_safe)} decoded")
    print("all match" if bad == 0 else f"{bad} differences")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
