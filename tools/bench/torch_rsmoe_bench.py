#!/usr/bin/python3
"""PyTorch reference of the RS-MoE benchmark (issue 18): the InstructBLIP encoder and the three
LoRA experts' decode of a random 1B RS-MoE folder, with tools/reference/rsmoe.py (LAVIS's
Blip2VicunaInstruct mirror) and hf_decoder.py's LLaMA, PEFT-style unmerged LoRA, on PyTorch's CPU
kernels (bf16 linears: oneDNN on this CPU).

    /usr/bin/python3 tools/bench/torch_rsmoe_bench.py ~/.cache/moe/models/random-rsmoe-1b-bench \\
        [--threads 1 2] [--decode 16] [--reps 2] [--new-tokens 48] [--no-caption] > torch_rsmoe.jsonl

The request is bench/bench_rsmoe.cpp's: the same synthetic [3, 224, 224] pixels (pixels() below),
and per expert e the same fixed Q-Former ids ([CLS] 101, 28 ids, [SEP] 102) and LLM ids (128000 +
28 ids): qformer_ids(e) / llm_ids(e), the C++ formulas. Each expert's LLM input is
cat(llm_proj(Q-Former(query_tokens, its ids, image)[:32]), embed(its LLM ids)): 61 rows.

Records (one JSON line each):
    rsmoe/torch/encoder/<dtype>/threads:<n>   dtype fp32 and bf16 (the encoder cast with
                  .to(torch.bfloat16), pixels too): image_embeds (EVA ViT-g + ln_vision) + ONE
                  Q-Former pass with expert 0's ids; seconds (median over --reps after one warm-up;
                  _best, _all), vision_s, qformer_s
    rsmoe/torch/decode/sequential/threads:<n>   bf16: the three experts decoded one after the other,
                  each on its own KV cache (per layer (k, v) grown by torch.cat) with its adapter
                  active: step_s = one greedy step of each of the three (forward of the previous
                  token, lm_head on the last row, argmax), median over --decode steps x --reps;
                  tokens/s = 3 / step_s
    rsmoe/torch/caption/threads:<n>  (the largest thread count; --no-caption skips it) one caption end
                  to end as LAVIS's generate computes it per expert, the experts one after the other:
                  image_embeds once, per expert its Q-Former pass + llm_proj, prefill of its 61 rows,
                  --new-tokens greedy tokens with HF's repetition penalty 1.5 and no stop; seconds,
                  vision_s, qformer_s, prefill_s, decode_s
    every record: peak_rss_mb (ru_maxrss: the process's peak so far), rss_mb, torch / BLAS /
                  environment (common.torch_info)

The LLM: ONE base LLaMA (hf_decoder.from_pretrained in bf16; the tied lm_head) whose seven target
Linears per layer are wrapped by MultiLoraLinear below: the base Linear plus the three adapters'
A [r, in] and B [out, r] (bf16, as PEFT's model.to(bfloat16) holds them), one active at a time;
forward = base(x) + B(A(x)) * scaling, peft.tuners.lora.Linear's arithmetic (lora.LoraLinear
holds one adapter; this holds three so that the base is not copied per expert as
rsmoe.load_folder does). Memory: the fp32 encoder (4 GB) is cast to bf16 after its fp32 runs.
Environment: common.bench_env() (re-exec before torch is imported), torch.set_num_threads(n).
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import common  # noqa: E402

common.bench_env()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import hf_decoder  # noqa: E402
import lora  # noqa: E402
import rsmoe  # noqa: E402
from common import emit, peak_rss_mb, rss_mb, set_threads, torch_info, trim, warn_if_reference_blas  # noqa: E402
from safetensors_io import load_file  # noqa: E402

EXPERTS = 3
TEXT_IDS = 28


def qformer_ids(e):
    """bench_rsmoe.cpp's qformer_ids(e)."""
    return [101] + [2000 + 37 * i + 101 * e for i in range(TEXT_IDS)] + [102]


def llm_ids(e):
    """bench_rsmoe.cpp's llm_ids(e)."""
    return [128000] + [1000 + 53 * i + 211 * e for i in range(TEXT_IDS)]


def pixels(size):
    """bench_rsmoe.cpp's image_pixels: [1, 3, S, S] in about [-1, 1]."""
    c = torch.arange(3).view(3, 1, 1)
    y = torch.arange(size).view(1, size, 1)
    x = torch.arange(size).view(1, 1, size)
    return ((x * (c + 1) + y * (3 - c) + 40 * c) % 256).float().div(127.5).sub(1.0)[None]


class MultiLoraLinear(nn.Module):
    """A base nn.Linear with several PEFT LoRA adapters, one active: base(x) + B(A(x)) * scaling."""

    def __init__(self, base_layer, scaling):
        super().__init__()
        self.base_layer = base_layer
        self.scaling = scaling
        self.a, self.b = [], []  # per adapter: A [r, in], B [out, r]
        self.active = -1

    def forward(self, x):
        y = self.base_layer(x)
        if self.active < 0:
            return y
        return y + F.linear(F.linear(x, self.a[self.active]), self.b[self.active]) * self.scaling


def build_llm(folder, cfg, dtype):
    """The base LLaMA in `dtype` with every expert's adapter wrapped around its targets -> (llm, wrappers)."""
    llm = hf_decoder.from_pretrained(os.path.join(folder, cfg["experts"]["base"]), compute_dtype=dtype).eval()
    trim()
    wraps = {}
    for e, m in enumerate(cfg["experts"]["members"]):
        d = os.path.join(folder, m["path"])
        with open(os.path.join(d, "adapter_config.json")) as f:
            ac = json.load(f)
        scaling = ac["lora_alpha"] / ac["r"]
        tensors = load_file(os.path.join(d, "adapter_model.safetensors"))
        for l, layer in enumerate(llm.model.layers):
            for parent_name, parent in (("self_attn", layer.self_attn), ("mlp", layer.mlp)):
                for t in ac["target_modules"]:
                    if not hasattr(parent, t):
                        continue
                    name = "model.layers.%d.%s.%s" % (l, parent_name, t)
                    if name not in wraps:
                        wraps[name] = MultiLoraLinear(getattr(parent, t), scaling)
                        setattr(parent, t, wraps[name])
                    w = wraps[name]
                    if len(w.a) != e:
                        raise ValueError("%s: adapter %d missing" % (name, len(w.a)))
                    w.a.append(tensors[lora.PEFT_PREFIX + name + ".lora_A.weight"].to(dtype))
                    w.b.append(tensors[lora.PEFT_PREFIX + name + ".lora_B.weight"].to(dtype))
    return llm, list(wraps.values())


def activate(wraps, e):
    for w in wraps:
        w.active = e


@torch.no_grad()
def encode(enc, pix, ids):
    """-> (vision seconds, qformer seconds, Q-Former output)."""
    t0 = time.perf_counter()
    emb = enc.image_embeds(pix)[0]
    t1 = time.perf_counter()
    out = enc.qformer_output(emb, ids)
    return t1 - t0, time.perf_counter() - t1, out


@torch.no_grad()
def expert_input(enc, llm, emb, e):
    """Expert e's LLM input [1, 61, H] (rsmoe.inputs_llm + llm_inputs)."""
    return rsmoe.llm_inputs(llm, [enc.inputs_llm(emb, qformer_ids(e))], llm_ids(e))


@torch.no_grad()
def prefill(llm, x):
    h, cache = llm.model(inputs_embeds=x)
    return llm.lm_head(h[:, -1:])[0, -1], cache


@torch.no_grad()
def step(llm, nxt, cache):
    h, cache = llm.model(torch.tensor([[nxt]]), past_key_values=cache)
    return llm.lm_head(h[:, -1:])[0, -1], cache


def encoder_records(enc, pix, dtype_name, threads, reps):
    for n in threads:
        set_threads(torch, n)
        encode(enc, pix, qformer_ids(0))  # warm-up
        runs = [encode(enc, pix, qformer_ids(0))[:2] for _ in range(reps)]
        tot = [v + q for v, q in runs]
        rec = {"name": "rsmoe/torch/encoder/%s/threads:%d" % (dtype_name, n), "impl": "torch", "dtype": dtype_name,
               "threads": n, "reps": reps, "seconds": statistics.median(tot), "seconds_best": min(tot),
               "seconds_all": tot, "vision_s": statistics.median(v for v, _ in runs),
               "qformer_s": statistics.median(q for _, q in runs),
               "peak_rss_mb": round(peak_rss_mb(), 1), "rss_mb": round(rss_mb(), 1),
               "mkldnn_enabled": bool(torch.backends.mkldnn.enabled)}
        rec.update(torch_info(torch))
        emit(rec)


@torch.no_grad()
def decode_records(llm, wraps, inputs, threads, n_decode, reps):
    """The three experts one after the other, one greedy step each per timed step."""
    for n in threads:
        set_threads(torch, n)
        steps = []
        for rep in range(reps + 1):  # the first repetition is the warm-up
            state = []
            for e in range(EXPERTS):
                activate(wraps, e)
                lg, cache = prefill(llm, inputs[e])
                state.append([int(torch.argmax(lg)), cache])
            for _ in range(n_decode if rep else 2):
                t0 = time.perf_counter()
                for e in range(EXPERTS):
                    activate(wraps, e)
                    lg, state[e][1] = step(llm, state[e][0], state[e][1])
                    state[e][0] = int(torch.argmax(lg))
                if rep:
                    steps.append(time.perf_counter() - t0)
        med = statistics.median(steps)
        rec = {"name": "rsmoe/torch/decode/sequential/threads:%d" % n, "impl": "torch", "dtype": "bf16",
               "threads": n, "reps": reps, "decode_steps": n_decode, "prompt_rows": [int(x.shape[1]) for x in inputs],
               "step_s": med, "step_s_best": min(steps), "tokens/s": EXPERTS / med,
               "peak_rss_mb": round(peak_rss_mb(), 1), "rss_mb": round(rss_mb(), 1)}
        rec.update(torch_info(torch))
        emit(rec)


@torch.no_grad()
def caption_record(enc, llm, wraps, pix, n, new_tokens, penalty=1.5):
    """One caption end to end, the experts one after the other (LAVIS's generate per expert)."""
    set_threads(torch, n)
    t0 = time.perf_counter()
    emb = enc.image_embeds(pix)[0]
    t1 = time.perf_counter()
    inputs = [expert_input(enc, llm, emb, e) for e in range(EXPERTS)]
    t2 = time.perf_counter()
    prefill_s = decode_s = 0.0
    tokens = 0
    for e in range(EXPERTS):
        activate(wraps, e)
        ta = time.perf_counter()
        lg, cache = prefill(llm, inputs[e])
        tb = time.perf_counter()
        out = []
        for i in range(new_tokens):
            scores = lg.float().clone()
            if out:  # HF's repetition penalty over the generated ids
                idx = torch.tensor(sorted(set(out)))
                s = scores[idx]
                scores[idx] = torch.where(s < 0, s * penalty, s / penalty)
            out.append(int(torch.argmax(scores)))
            if i + 1 < new_tokens:
                lg, cache = step(llm, out[-1], cache)
        tc = time.perf_counter()
        prefill_s += tb - ta
        decode_s += tc - tb
        tokens += len(out)
    total = time.perf_counter() - t0
    rec = {"name": "rsmoe/torch/caption/threads:%d" % n, "impl": "torch", "dtype": "bf16", "threads": n,
           "seconds": total, "vision_s": t1 - t0, "qformer_s": t2 - t1, "prefill_s": prefill_s, "decode_s": decode_s,
           "decode_tokens": tokens, "peak_rss_mb": round(peak_rss_mb(), 1), "rss_mb": round(rss_mb(), 1)}
    rec.update(torch_info(torch))
    emit(rec)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="RS-MoE folder (random-rsmoe-1b-bench: rsmoe.json, model.safetensors, llm/, experts/)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--decode", type=int, default=16, help="timed decode steps (of all three experts) per repetition")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--no-caption", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], help="any of: encoder decode")
    args = ap.parse_args(argv)

    folder = os.path.abspath(os.path.expanduser(args.folder))
    warn_if_reference_blas(torch)
    cfg = rsmoe.read_config(folder)
    with open(os.path.join(folder, cfg["experts"]["base"], "config.json")) as f:
        width = json.load(f)["hidden_size"]
    enc = rsmoe.load_encoder(folder, cfg, width)
    trim()
    pix = pixels(cfg["vision"]["image_size"])
    if "encoder" not in args.skip:
        encoder_records(enc, pix, "fp32", args.threads, args.reps)
    enc = enc.to(torch.bfloat16)
    trim()
    pix = pix.to(torch.bfloat16)
    if "encoder" not in args.skip:
        encoder_records(enc, pix, "bf16", args.threads, args.reps)
    llm, wraps = build_llm(folder, cfg, torch.bfloat16)
    set_threads(torch, max(args.threads))
    with torch.no_grad():
        emb = enc.image_embeds(pix)[0]
        inputs = [expert_input(enc, llm, emb, e) for e in range(EXPERTS)]
    if "decode" not in args.skip:
        decode_records(llm, wraps, inputs, args.threads, args.decode, args.reps)
    if not args.no_caption:
        caption_record(enc, llm, wraps, pix, max(args.threads), args.new_tokens)


if __name__ == "__main__":
    main()
