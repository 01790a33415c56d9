#!/usr/bin/python3
"""PyTorch reference of the RSUniVLM benchmark (issue 17): time to first token and greedy decode
of a full-size RSUniVLM folder with tools/reference/rsunivlm.py (LlavaQwenGMoeForCausalLM, the
mirror of LLaVA-NeXT's llava_qwen_gmoe on hf_decoder's Qwen2), in bf16 (PyTorch's bf16 linears
run on oneDNN on this CPU).

    /usr/bin/python3 tools/bench/torch_rsunivlm_bench.py ~/.cache/moe/models/random-rsunivlm-full \
        [--threads 1 2] [--decode 32] [--reps 2] [--image PATH] > torch_rsunivlm.jsonl

The request is bench/bench_rsunivlm.cpp's: PROMPT_IDS below (the same list as its kPromptIds: one
-200 image placeholder and a 20-token question in the qwen_1_5 chat layout; 770 rows) and the same
image (UC Merced airplane00.tif read with PIL, rsunivlm.preprocess = SigLIP's processor; the
C++ side's pixels are bit-identical, tests/rs) or, without the data folder, the same synthetic
256 x 256 pattern. Granularity 0.

For every thread count one JSON line:
    name          rsunivlm/torch/threads:<n>
    ttft_s        time to first token (median over --reps; ttft_s_all, ttft_s_best): encode
                  (SigLIP + projector + image_newline) + splice (prepare_inputs_embeds) + the
                  language model on the 770 rows from an empty cache + lm_head on the last row +
                  argmax (what generate() computes; rsunivlm.greedy_multimodal applies lm_head to
                  every row, which a generation does not need)
    vision_s      its prepare_inputs_embeds part (median)
    decode_tok_s  --decode greedy steps / their seconds (median; _best), each one forward of the
                  previous token on the KV cache (per-layer (k, v) grown by torch.cat), lm_head, argmax
    rows, threads, greedy_ids (the first 8), peak_rss_mb (ru_maxrss: the process's peak, the
    loading included), rss_mb (VmRSS after the runs, the load's freed heap trimmed), load_s, torch / BLAS / environment (common.torch_info)

Loading: the model is built in fp32 (random init, ~6.6 GB), cast to bfloat16, then the bf16
tensors of safetensors_io.load_file are copied in (load_state_dict); the peak is therefore far
above the steady state (rss_mb is the comparable figure, peak_rss_mb what the process needed).
One untimed warm-up (the full prompt, 2 decode steps) precedes the repetitions at each thread
count. Environment: common.bench_env() (re-exec before torch is imported), torch.set_num_threads(n).
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hf_decoder  # noqa: E402
import rsunivlm  # noqa: E402
from common import emit, peak_rss_mb, rss_mb, set_threads, torch_info, trim, warn_if_reference_blas  # noqa: E402
from safetensors_io import load_file  # noqa: E402

# bench/bench_rsunivlm.cpp's kPromptIds (keep the two lists equal)
PROMPT_IDS = [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198,
              151644, 872, 198, -200, 198,
              58, 31400, 60, 60785, 419, 2168, 304, 7716, 13, 3555,
              525, 279, 1887, 6171, 11, 862, 10468, 323, 7987, 30,
              151645, 198, 151644, 77091, 198]
GRANULARITY = 0
DEFAULT_IMAGE = os.path.join(os.environ.get("MOE_RS_DATA", "/work/shared/data/rs"),
                             "UCMerced_LandUse/Images/airplane/airplane00.tif")


def image_u8(path):
    """[h, w, 3] uint8: the file (PIL) or bench_rsunivlm.cpp's synthetic pattern."""
    if path and os.path.exists(path):
        from PIL import Image
        return np.asarray(Image.open(path).convert("RGB")), path
    h = w = 256
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * (c + 1) + y * (3 - c) + 40 * c) % 256 for c in range(3)]
    return np.stack(planes, axis=-1).astype(np.uint8), "synthetic 256x256"


def build(folder):
    with open(os.path.join(folder, "config.json")) as f:
        raw = json.load(f)
    vc = raw["vision_config"]
    cfg = hf_decoder.DecoderConfig(dict(raw, model_type="qwen2"))
    vision = dict(img=vc["image_size"], patch=vc["patch_size"], dim=vc["hidden_size"], depth=vc["num_hidden_layers"],
                  heads=vc["num_attention_heads"], mlp_hidden=vc["intermediate_size"])
    model = rsunivlm.LlavaQwenGMoeForCausalLM(cfg, vision).eval().to(torch.bfloat16)
    sd = load_file(os.path.join(folder, "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    del sd
    trim()  # the fp32 build's and the file's freed heap
    if missing or unexpected:
        raise ValueError("checkpoint names: missing %s, unexpected %s" % (missing[:3], unexpected[:3]))
    return model, vc["image_size"]


@torch.no_grad()
def run_once(model, ids, pix, n_decode):
    """-> (ttft seconds, vision seconds, decode seconds, greedy ids, rows)."""
    g = [GRANULARITY]
    t0 = time.perf_counter()
    x, _, _ = model.prepare_inputs_embeds([ids], pix)
    t1 = time.perf_counter()
    h, cache = model.model(inputs_embeds=x, granularity=g)
    nxt = int(torch.argmax(model.lm_head(h[:, -1:])[0, -1]))
    t2 = time.perf_counter()
    out = [nxt]
    for _ in range(n_decode):
        h, cache = model.model(torch.tensor([[nxt]]), past_key_values=cache, granularity=g)
        nxt = int(torch.argmax(model.lm_head(h[:, -1:])[0, -1]))
        out.append(nxt)
    t3 = time.perf_counter()
    return t2 - t0, t1 - t0, t3 - t2, out, x.shape[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="RSUniVLM folder (config.json + model.safetensors, bf16)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2, help="repetitions of TTFT + decode (median reported)")
    ap.add_argument("--image", default=DEFAULT_IMAGE)
    ap.add_argument("--no-warmup", action="store_true")
    args = ap.parse_args(argv)

    folder = os.path.abspath(os.path.expanduser(args.folder))
    warn_if_reference_blas(torch)
    t0 = time.perf_counter()
    model, size = build(folder)
    load_s = time.perf_counter() - t0
    img, how = image_u8(args.image)
    pix = rsunivlm.preprocess(img, size)[0][None].to(torch.bfloat16)
    ids = torch.tensor(PROMPT_IDS, dtype=torch.long)
    for n in args.threads:
        set_threads(torch, n)
        if not args.no_warmup:
            run_once(model, ids, pix, 2)
        ttft, vis, dec, out, rows = [], [], [], None, 0
        for _ in range(args.reps):
            t, v, d, out, rows = run_once(model, ids, pix, args.decode)
            ttft.append(t)
            vis.append(v)
            dec.append(d)
        d_med = statistics.median(dec)
        rec = {
            "name": "rsunivlm/torch/threads:%d" % n, "impl": "torch", "model": folder, "image": how, "dtype": "bf16",
            "threads": n, "rows": rows, "granularity": GRANULARITY, "reps": args.reps, "decode_tokens": args.decode,
            "ttft_s": statistics.median(ttft), "ttft_s_best": min(ttft), "ttft_s_all": ttft,
            "vision_s": statistics.median(vis),
            "decode_tok_s": args.decode / d_med if args.decode else None,
            "decode_tok_s_best": args.decode / min(dec) if args.decode else None, "decode_s_all": dec,
            "greedy_ids": out[:8], "load_s": round(load_s, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1), "rss_mb": round(rss_mb(), 1),
            "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
        }
        rec.update(torch_info(torch))
        emit(rec)


if __name__ == "__main__":
    main()
