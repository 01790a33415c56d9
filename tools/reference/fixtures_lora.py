#!/usr/bin/python3
"""Parity fixtures of the decoder's LoRA adapters: a tiny seeded LLaMA base as a Hugging Face model
folder, three PEFT adapter folders over it (tools/reference/lora.py), and what the base with each
adapter computes (tools/reference/hf_decoder.py).

    /usr/bin/python3 tools/reference/fixtures_lora.py --out build/fixtures
    /usr/bin/python3 tools/reference/make_fixtures.py --out build/fixtures    (in the default set)

tests/lm/test_lora.cpp reads them (ctest lora_parity). About 0.6 MB and 2 s.

Written:
    <out>/lora_base/               config.json + model.safetensors: LLaMA, hidden 64, 2 layers, 4
                                   heads / 2 KV heads, intermediate 128, vocab 256, untied, fp32
    <out>/lora_adapter_<k>/        adapter_config.json + adapter_model.safetensors (PEFT names,
                                   base_model.model.model.layers.{l}.<module>.lora_{A,B}.weight)
        k = 0: gate_proj, up_proj, down_proj; r 1, lora_alpha 8 (RS-MoE's released setting)
        k = 1: q_proj, v_proj, gate_proj, down_proj; r 4, lora_alpha 16
        k = 2: all seven linears ("all-linear" spelled out); r 2, lora_alpha 8, use_rslora
    <out>/lora_lavis.safetensors   adapter 0 as a LAVIS / RS-MoE training checkpoint holds it:
                                   llm_model.base_model.model.model.layers.{l}.mlp.gate_proj.lora_A.default.weight
                                   beside the wrapped base weights (...gate_proj.base_layer.weight)
                                   and an unrelated tensor (visual_encoder.x)
    <out>/lora.safetensors         the expected values:
        __prompt_<i>__                I32 [T_i]     i = 0, 1, 2 (lengths 13, 8, 5)
        __logits_<k>_<i>__            F32 [T_i, V]  prompt i alone on base + adapter k, every position
        __greedy_ids_<k>_<i>__        I32 [16]      16 greedy tokens after prompt i (KV cache)
        __greedy_logits_<k>_<i>__     F32 [16, V]   the logits each was chosen from
        __base_greedy_ids_<i>__       I32 [16]      the base alone (the adapters change them)
    metadata: seeds, greedy_min_margin (smallest top-1 / top-2 gap over all greedy steps),
    adapter_parameters_<k>, tolerances.

lora_A is PEFT's init (kaiming uniform), lora_B random instead of zero: N(0, 1) * 0.6 /
(scaling * sqrt(r)), so each adapted projection moves by a fraction of its base output. Seeds are
taken only when every greedy step's top-1 / top-2 gap exceeds 1e-2 and each adapter changes the
greedy tokens of every prompt (else the next seed; fails loudly after 20).

Self-checks: merging (lora.merge_lora) equals the unmerged model within 1e-5; the adapter folders
load back (lora.load_adapter) into bit-identical logits; the KV-cache greedy logits equal a full
recompute within 1e-5.
"""

import argparse
import copy
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures_decoder  # noqa: E402
import hf_decoder  # noqa: E402
import lora  # noqa: E402
from safetensors_io import save_file  # noqa: E402

IN_DEFAULT_SET = True

LENGTHS = (13, 8, 5)
GREEDY = 16
MARGIN = 1e-2
ADAPTERS = [
    dict(target_modules=["gate_proj", "up_proj", "down_proj"], r=1, lora_alpha=8, use_rslora=False),
    dict(target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"], r=4, lora_alpha=16, use_rslora=False),
    dict(target_modules=list(lora.TARGETS), r=2, lora_alpha=8, use_rslora=True),
]


def with_adapter(base, spec, seed):
    m = copy.deepcopy(base)
    torch.manual_seed(seed)  # lora_A's kaiming init
    lora.apply_lora(m, spec["target_modules"], spec["r"], spec["lora_alpha"], spec["use_rslora"])
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _, mod in lora.lora_modules(m):
            a = mod.adapter_name
            b = mod.lora_B[a].weight
            b.copy_(torch.randn(b.shape, generator=g) * 0.6 / (mod.scaling[a] * mod.r[a] ** 0.5))
    return m.eval()


def run(model, prompts):
    with torch.no_grad():
        full = [model(p[None])[0][0] for p in prompts]
        greedy = [hf_decoder.greedy(model, p, GREEDY) for p in prompts]
    return full, greedy


def write(w):
    torch.set_num_threads(1)
    out = w.out
    for attempt in range(20):
        seed = 1701 + 100 * attempt
        base = fixtures_decoder.build(fixtures_decoder.base_config("llama"), seed, torch.float32)
        prompts = fixtures_decoder.prompts_for(seed + 1, LENGTHS)
        _, base_greedy = run(base, prompts)
        models = [with_adapter(base, spec, seed + 10 + 2 * k) for k, spec in enumerate(ADAPTERS)]
        results = [run(m, prompts) for m in models]
        margin = min(hf_decoder.top2_margin(sl) for _, gr in [(None, base_greedy)] + results for _, sl in gr)
        changed = all(not torch.equal(gr[i][0], base_greedy[i][0]) for _, gr in results for i in range(len(prompts)))
        if margin > MARGIN and changed:
            break
        print("  lora: seed %d: greedy margin %.2e, adapters change every prompt's tokens: %s; next seed"
              % (seed, margin, changed))
    else:
        raise RuntimeError("lora: no seed where every adapter changes the greedy tokens without near-ties")

    # self-checks: merged == unmerged, KV cache == recompute
    for m, (full, greedy) in zip(models, results):
        merged = lora.merge_lora(copy.deepcopy(m))
        assert not lora.lora_modules(merged)
        with torch.no_grad():
            for p, f in zip(prompts, full):
                e = fixtures_decoder.rel(merged(p[None])[0][0], f)
                assert e < 1e-5, ("merged", e)
            for p, (ids, sl) in zip(prompts, greedy):
                seq = torch.cat((p, ids))
                rec = m(seq[None])[0][0, len(p) - 1:-1]
                assert torch.equal(rec.argmax(-1), ids)
                assert fixtures_decoder.rel(rec, sl) < 1e-5

    hf_decoder.save_pretrained(base, os.path.join(out, "lora_base"))
    for k, (m, spec) in enumerate(zip(models, ADAPTERS)):
        folder = os.path.join(out, "lora_adapter_%d" % k)
        cfg = lora.lora_config(spec["target_modules"], spec["r"], spec["lora_alpha"], spec["use_rslora"],
                               base_model_name_or_path="lora_base")
        lora.save_adapter(m, folder, cfg)
        back = lora.load_adapter(hf_decoder.from_pretrained(os.path.join(out, "lora_base")), folder)
        with torch.no_grad():
            for p in prompts:
                assert torch.equal(back(p[None])[0], m(p[None])[0]), ("reload", k)

    # adapter 0 inside a LAVIS-style full checkpoint
    lavis = lora.lora_state_dict(models[0], prefix=lora.LAVIS_PREFIX, keep_adapter_name=True)
    for n, mod in lora.lora_modules(models[0]):
        lavis[lora.LAVIS_PREFIX + n + ".base_layer.weight"] = mod.base_layer.weight.detach().clone()
    lavis["visual_encoder.x"] = torch.zeros(4)
    save_file(lavis, os.path.join(out, "lora_lavis.safetensors"), {"format": "pt"})

    extra = {"__prompt_%d__" % i: p.to(torch.int32) for i, p in enumerate(prompts)}
    for i, (ids, _) in enumerate(base_greedy):
        extra["__base_greedy_ids_%d__" % i] = ids.to(torch.int32)
    meta = dict(reference="hf_decoder + lora (PEFT LoraLayer)", base_dir="lora_base", seed=seed,
                prompt_lengths=",".join(str(n) for n in LENGTHS), greedy_tokens=GREEDY,
                greedy_min_margin="%.4g" % margin, tol_logits_rel="1e-4", tol_merged_rel="1e-5",
                greedy="identical ids")
    for k, (full, greedy) in enumerate(results):
        for i in range(len(prompts)):
            extra["__logits_%d_%d__" % (k, i)] = full[i].float().contiguous()
            extra["__greedy_ids_%d_%d__" % (k, i)] = greedy[i][0].to(torch.int32)
            extra["__greedy_logits_%d_%d__" % (k, i)] = greedy[i][1].float().contiguous()
        meta["adapter_parameters_%d" % k] = sum(p.numel() for n, p in models[k].named_parameters() if "lora_" in n)
        meta["adapter_%d" % k] = json.dumps(ADAPTERS[k], sort_keys=True)
    w.write("lora", {}, extra, meta)
    print("  lora: seed %d, greedy margin %.3g, adapter parameters %s" % (
        seed, margin, [meta["adapter_parameters_%d" % k] for k in range(3)]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output directory (a temporary one without it: self-checks only)")
    args = ap.parse_args(argv)
    from make_fixtures import Writer
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        os.makedirs(out, exist_ok=True)
        w = Writer(out)
        write(w)
        for case, path, n, size in w.written:
            print("wrote %-20s %3d tensors %8d bytes  %s" % (case, n, size, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
