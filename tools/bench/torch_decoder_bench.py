#!/usr/bin/python3
"""PyTorch reference loop of the decoder benchmark (issue 16): prefill and greedy decode of a
Hugging Face Qwen2 / LLaMA / Qwen2-MoE model folder with tools/reference/hf_decoder.py (the
mirror of transformers' modeling_qwen2 / modeling_llama / qwen2_moe, eager attention, a KV cache
of per-layer (k, v) tensors grown by torch.cat as HF's DynamicCache does).

    /usr/bin/python3 tools/bench/torch_decoder_bench.py ~/.cache/moe/models/qwen2-0.5b-random \
        [--dtype bf16 fp32] [--threads 1 2] [--prefill 512] [--decode 64] [--reps 3] > torch_decoder.jsonl

For every (dtype, thread count) one JSON line:

    name            decoder/<folder name>/pp:<prefill>/tg:<decode>/dtype:<d>/threads:<n>
    prefill_tok_s   prefill tokens / seconds of the prefill call (median over --reps; _best: the best)
    decode_tok_s    decode tokens / seconds of the decode loop (median; _best)
    prefill_s, decode_s, prefill_s_all, decode_s_all   the times behind them
    threads, dtype, torch, mkldnn (torch.backends.mkldnn.is_available()), mkldnn_enabled,
    blas_info, blas_lib, blas_threads, env    what computed it (common.torch_info)
    max_rss_gb, load_s, params, greedy_ids (the first 16 decoded ids of the last repetition)

What is timed, per repetition, under torch.no_grad():
  prefill  one forward of the <prefill> prompt ids from an empty cache, then lm_head on the last
           position only and its argmax (what generate() does with logits_to_keep=1 and what
           llama.cpp computes; --all-logits applies lm_head to every position, as transformers
           before 4.45 did);
  decode   <decode> steps, each one forward of the previous greedy token on the cache, lm_head,
           argmax (the first decoded token comes from the prefill's logits, as in generate()).
The prompt is <prefill> ids drawn uniformly from the vocabulary with a fixed seed (llama-bench
also times random tokens), or --prompt-ids. One untimed warm-up (a 32-token prefill and 4 decode
steps) precedes the repetitions at each thread count.

dtype bf16: the model built by hf_decoder.from_pretrained(folder, torch.bfloat16) (weights,
activations and KV cache in bf16; RMSNorm and softmax in fp32 inside, as HF); fp32: widened to
float32. Loading uses hf_decoder.from_pretrained as it is (it builds the model in fp32 and reads
the file into memory): about 3x the checkpoint's fp32 size at peak (max_rss_gb).

Environment: common.bench_env() (re-exec before torch is imported: OMP_WAIT_POLICY=PASSIVE,
OPENBLAS_NUM_THREADS = the largest --threads, glibc malloc thresholds), then per run
torch.set_num_threads(n) and openblas_set_num_threads(n) (common.set_threads).
"""

import argparse
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import common  # noqa: E402

common.bench_env()  # before torch: OpenBLAS / OpenMP / glibc read their variables at start-up

import torch  # noqa: E402

import hf_decoder  # noqa: E402
from common import emit, set_threads, torch_info, warn_if_reference_blas  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def max_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)


@torch.no_grad()
def run_once(model, prompt, n_decode, all_logits=False, granularity=None):
    """-> (prefill seconds, decode seconds, greedy ids)."""
    ids = prompt[None]
    t0 = time.perf_counter()
    h, cache = model.model(ids, granularity=granularity)
    logits = model.lm_head(h if all_logits else h[:, -1:])
    nxt = int(torch.argmax(logits[0, -1]))
    t1 = time.perf_counter()
    out = [nxt]
    for _ in range(n_decode):
        h, cache = model.model(torch.tensor([[nxt]]), past_key_values=cache, granularity=granularity)
        nxt = int(torch.argmax(model.lm_head(h[:, -1:])[0, -1]))
        out.append(nxt)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="Hugging Face model folder (config.json + safetensors)")
    ap.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["bf16"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of prefill + decode (median reported)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random prompt")
    ap.add_argument("--prompt-ids", help="comma-separated prompt ids instead of a random prompt")
    ap.add_argument("--all-logits", action="store_true", help="lm_head on every prefill position")
    ap.add_argument("--granularity", type=int, default=0, help="G-MoE models only: the expert of the request")
    ap.add_argument("--no-warmup", action="store_true")
    args = ap.parse_args(argv)

    folder = os.path.abspath(os.path.expanduser(args.folder))
    warn_if_reference_blas(torch)
    for dname in args.dtype:
        t0 = time.perf_counter()
        model = hf_decoder.from_pretrained(folder, DTYPES[dname]).eval()
        load_s = time.perf_counter() - t0
        cfg = model.config
        if args.prompt_ids:
            prompt = torch.tensor([int(x) for x in args.prompt_ids.split(",")], dtype=torch.long)
        else:
            g = torch.Generator().manual_seed(args.seed)
            prompt = torch.randint(0, cfg.vocab_size, (args.prefill,), generator=g)
        n_params = sum(p.numel() for p in model.parameters())
        gran = args.granularity if cfg.gmoe_experts else None
        for n in args.threads:
            set_threads(torch, n)
            if not args.no_warmup:
                run_once(model, prompt[:32], 4, granularity=gran)
            pre, dec, ids = [], [], None
            for _ in range(args.reps):
                p, d, ids = run_once(model, prompt, args.decode, args.all_logits, gran)
                pre.append(p)
                dec.append(d)
            p_med, d_med = statistics.median(pre), statistics.median(dec)
            rec = {
                "name": "decoder/%s/pp:%d/tg:%d/dtype:%s/threads:%d" % (os.path.basename(folder), len(prompt),
                                                                      args.decode, dname, n),
                "impl": "torch", "model": folder, "model_type": cfg.model_type, "dtype": dname, "threads": n,
                "prefill_tokens": len(prompt), "decode_tokens": args.decode,
                "prefill_tok_s": len(prompt) / p_med, "decode_tok_s": args.decode / d_med if args.decode else None,
                "prefill_tok_s_best": len(prompt) / min(pre),
                "decode_tok_s_best": args.decode / min(dec) if args.decode else None,
                "prefill_s": p_med, "decode_s": d_med, "prefill_s_all": pre, "decode_s_all": dec,
                "reps": args.reps, "all_logits": args.all_logits, "params": n_params, "load_s": round(load_s, 2),
                "granularity": gran, "mkldnn_enabled": bool(torch.backends.mkldnn.enabled), "greedy_ids": ids[:16],
                "max_rss_gb": round(max_rss_gb(), 3),
            }
            rec.update(torch_info(torch))
            emit(rec)
        del model


if __name__ == "__main__":
    main()
