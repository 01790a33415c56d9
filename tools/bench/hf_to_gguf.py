#!/usr/bin/python3
"""Hugging Face Qwen2 / Qwen2-MoE model folder -> GGUF for llama.cpp, with numpy and llama.cpp's
own gguf-py only (no transformers, torch, sentencepiece).

    PYTHONPATH=$LLAMA_CPP_SRC/gguf-py /usr/bin/python3 tools/bench/hf_to_gguf.py <folder> [--out F] [--outtype bf16]
    ... --check        also read the written file back (gguf.GGUFReader) and compare every tensor
                       bit for bit with the safetensors

Why not llama.cpp's convert_hf_to_gguf.py: it needs torch >= 2 / transformers (AutoTokenizer for
the vocabulary) and sentencepiece, none of which this machine has. This script writes what that
converter writes for Qwen2ForCausalLM (class Qwen2Model) and Qwen2MoeForCausalLM
(Qwen2MoeModel), checked against the converter of the snapshot it was written with
(ggerganov/llama.cpp c392e5094deaf2d1a7c18683214f007fad3fe42b, 2025-02-20):

* tensor names from gguf-py's TensorNameMap (the converter's map_tensor_name): token_embd,
  blk.N.attn_norm, attn_q/k/v (.weight, .bias), attn_output, ffn_norm, ffn_gate/up/down,
  output_norm, output; Qwen2-MoE: ffn_gate_inp (router), ffn_{gate,up,down}_exps (the experts of a
  layer stacked on a new leading axis, [E, out, in] in numpy order), ffn_gate_inp_shexp
  (shared_expert_gate, [1, H]) and ffn_{gate,up,down}_shexp;
* tensor types as the converter chooses them for --outtype bf16: 1-D tensors (norms, biases),
  *_norm.weight and ffn_gate_inp in F32 (widened exactly from bf16), every other weight BF16
  (the checkpoint's 16 bits copied, no rounding; F32 checkpoints are rounded as gguf-py rounds);
* metadata: general.architecture qwen2 / qwen2moe, general.type model, general.name,
  general.file_type (MOSTLY_BF16 = 32), general.quantization_version, {arch}.context_length,
  embedding_length, feed_forward_length, block_count, attention.head_count, head_count_kv,
  rope.freq_base, attention.layer_norm_rms_epsilon; Qwen2-MoE also expert_count,
  expert_used_count, expert_feed_forward_length, expert_shared_feed_forward_length;
* tokenizer (the converter's _set_vocab_gpt2 / get_vocab_base): tokenizer.ggml.model "gpt2",
  tokenizer.ggml.pre "qwen2" (what get_vocab_base_pre's hash names for Qwen2's tokenizer), one
  token per id up to vocab_size ([PAD<i>] / UNUSED for ids with no token), token_type NORMAL for
  the BPE vocabulary, CONTROL for special added tokens (and added tokens that look special,
  <|...|>), USER_DEFINED for the other added tokens; merges, special token ids, add_bos and the
  chat template through gguf-py's SpecialVocab (tokenizer.json + tokenizer_config.json).

One deviation: llama.cpp's qwen2moe loader requires output.weight (it has no tied-embedding
fallback, unlike qwen2's), and the converter would write none for a tied checkpoint (a tied
lm_head is not in the file), so the resulting GGUF would not load. For a tied qwen2_moe folder
this script writes output.weight as a copy of the embedding: the same values, 272 MB more file
and memory at Qwen2's vocabulary.

Memory: the safetensors are memory-mapped and tensors are streamed into the file one at a time
(one layer's stacked experts at most), so resident memory stays small whatever the model size.
"""

import argparse
import json
import os
import struct
import sys
import types
from pathlib import Path

import numpy as np

if "sentencepiece" not in sys.modules:
    # gguf/vocab.py imports SentencePieceProcessor at module level; only the SentencePiece vocab
    # class uses it, and nothing here does. A stub lets `import gguf` work without the package.
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        _stub = types.ModuleType("sentencepiece")

        class _NoSentencePiece:
            def __init__(self, *a, **kw):
                raise ImportError("sentencepiece is not installed")

        _stub.SentencePieceProcessor = _NoSentencePiece
        sys.modules["sentencepiece"] = _stub

try:
    import gguf
except ImportError as e:
    raise SystemExit("cannot import gguf (%s): set PYTHONPATH=$LLAMA_CPP_SRC/gguf-py" % e)


# --------------------------------------------------------------------------------------------
# safetensors, memory-mapped

_ST_DTYPES = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}


class Checkpoint:
    """name -> (dtype name, shape, numpy view into a memmap) over model.safetensors or the shards
    of model.safetensors.index.json."""

    def __init__(self, folder):
        folder = Path(folder)
        index = folder / "model.safetensors.index.json"
        if index.exists():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = ["model.safetensors"]
        self.entries = {}
        self._maps = []
        for fname in files:
            path = folder / fname
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n).decode("utf-8"))
            mm = np.memmap(path, dtype=np.uint8, mode="r")
            self._maps.append(mm)
            base = 8 + n
            for name, e in header.items():
                if name == "__metadata__":
                    continue
                if e["dtype"] not in _ST_DTYPES:
                    raise ValueError("%s: unsupported dtype %s" % (name, e["dtype"]))
                if name in self.entries:
                    raise ValueError("%s in two shards" % name)
                b, end = e["data_offsets"]
                self.entries[name] = (e["dtype"], tuple(e["shape"]), mm, base + b, base + end)

    def names(self):
        return list(self.entries)

    def dtype(self, name):
        return self.entries[name][0]

    def shape(self, name):
        return self.entries[name][1]

    def raw(self, name):
        """The stored elements (BF16 as uint16 bits), shaped, read-only, no copy."""
        dt, shape, mm, b, end = self.entries[name]
        return mm[b:end].view(_ST_DTYPES[dt]).reshape(shape)


def to_f32(dtype, a):
    if dtype == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def to_type(dtype, a, qtype):
    """Array `a` (stored as `dtype`) in GGML type qtype: (numpy array to write, its element shape)."""
    if qtype == gguf.GGMLQuantizationType.F32:
        return np.ascontiguousarray(to_f32(dtype, a))
    if qtype == gguf.GGMLQuantizationType.BF16:
        if dtype == "BF16":
            return np.ascontiguousarray(a)  # the checkpoint's bits, unchanged
        # gguf-py's rounding (ggml_compute_fp32_to_bf16), as the converter does
        return gguf.quants.quantize(to_f32(dtype, a), qtype).view(np.uint16).reshape(a.shape)
    if qtype == gguf.GGMLQuantizationType.F16:
        return np.ascontiguousarray(to_f32(dtype, a).astype(np.float16))
    raise ValueError(qtype)


# --------------------------------------------------------------------------------------------
# the model

ARCHS = {"qwen2": gguf.MODEL_ARCH.QWEN2, "qwen2_moe": gguf.MODEL_ARCH.QWEN2MOE}
OUTTYPES = {
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "f32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
}


class Plan:
    """The GGUF tensors in write order: (gguf name, producer() -> array in the checkpoint dtype,
    checkpoint dtype, numpy shape, GGML type)."""

    def __init__(self, ckpt, cfg, outtype):
        self.ckpt = ckpt
        self.cfg = cfg
        self.arch = ARCHS[cfg["model_type"]]
        self.n_layer = cfg["num_hidden_layers"]
        self.tmap = gguf.get_tensor_name_map(self.arch, self.n_layer)
        self.qtype = OUTTYPES[outtype][0]
        self.items = []
        self.sources = {}  # gguf name -> list of HF names it holds (for --check)
        self._build()

    def gguf_name(self, hf_name):
        new = self.tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise ValueError("cannot map tensor %r" % hf_name)
        return new

    def tensor_type(self, new_name, shape):
        # convert_hf_to_gguf.py Model.prepare_tensors
        if len(shape) <= 1 or new_name.endswith("_norm.weight"):
            return gguf.GGMLQuantizationType.F32
        if not new_name.endswith(".weight"):
            return gguf.GGMLQuantizationType.F32
        bid = None
        for part in new_name.split("."):
            if part.isdecimal():
                bid = int(part)
                break
        if bid is not None and new_name == gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.FFN_GATE_INP].format(bid=bid) + ".weight":
            return gguf.GGMLQuantizationType.F32
        return self.qtype

    def add(self, new_name, hf_names, producer, dtype, shape):
        self.items.append((new_name, producer, dtype, tuple(shape), self.tensor_type(new_name, shape)))
        self.sources[new_name] = hf_names

    def _build(self):
        ck, cfg = self.ckpt, self.cfg
        names = ck.names()
        moe = cfg["model_type"] == "qwen2_moe"
        expert_names = [n for n in names if ".mlp.experts." in n]
        plain = [n for n in names if n not in set(expert_names)]
        if "lm_head.weight" in plain and cfg.get("tie_word_embeddings"):
            plain.remove("lm_head.weight")  # tied: the same values as the embedding
        # the converter's order: the checkpoint's (sorted) names, a layer's stacked experts where
        # its last expert tensor comes
        done_layers = set()
        order = sorted(plain + expert_names)
        for n in order:
            if ".mlp.experts." in n:
                bid = int(n.split(".")[2])
                if bid in done_layers:
                    continue
                mine = [m for m in expert_names if m.startswith("model.layers.%d.mlp.experts." % bid)]
                if n != sorted(mine)[-1]:
                    continue
                done_layers.add(bid)
                self._add_experts(bid)
                continue
            self.add(self.gguf_name(n), [n], (lambda n=n: ck.raw(n)), ck.dtype(n), ck.shape(n))
        if moe and cfg.get("tie_word_embeddings") and "lm_head.weight" not in names:
            # llama.cpp's qwen2moe loader requires output.weight (see the module docstring)
            e = "model.embed_tokens.weight"
            self.add("output.weight", [e], (lambda: ck.raw(e)), ck.dtype(e), ck.shape(e))
        if moe:
            want = self.n_layer * 3 * cfg["num_experts"]
            if len(expert_names) != want:
                raise ValueError("expected %d expert tensors, found %d" % (want, len(expert_names)))

    def _add_experts(self, bid):
        ck, E = self.ckpt, self.cfg["num_experts"]
        for w in ("down_proj", "gate_proj", "up_proj"):  # the converter's order
            hf = ["model.layers.%d.mlp.experts.%d.%s.weight" % (bid, e, w) for e in range(E)]
            dts = {ck.dtype(h) for h in hf}
            shapes = {ck.shape(h) for h in hf}
            if len(dts) != 1 or len(shapes) != 1:
                raise ValueError("layer %d %s: experts differ in dtype or shape" % (bid, w))
            new = self.gguf_name("model.layers.%d.mlp.experts.%s.weight" % (bid, w))
            self.add(new, hf, (lambda hf=hf: np.stack([ck.raw(h) for h in hf])), dts.pop(), (E,) + shapes.pop())


def add_hparams(w, cfg, ftype):
    # convert_hf_to_gguf.py Model.set_gguf_parameters (+ Qwen2MoeModel's)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    if "intermediate_size" in cfg:
        w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg.get("num_key_value_heads", cfg["num_attention_heads"]))
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-6))
    if cfg.get("num_experts_per_tok") is not None:
        w.add_expert_used_count(cfg["num_experts_per_tok"])
    if cfg.get("head_dim") is not None:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    w.add_file_type(ftype)
    rs = cfg.get("rope_scaling")
    if rs and "factor" in rs:
        if rs.get("type", rs.get("rope_type")) != "yarn":
            raise ValueError("rope_scaling %r: not what Qwen2Model converts" % (rs,))
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rs["factor"])
        w.add_rope_scaling_orig_ctx_len(rs["original_max_position_embeddings"])
    if cfg["model_type"] == "qwen2_moe":
        w.add_expert_count(cfg["num_experts"])
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
        w.add_expert_shared_feed_forward_length(cfg["shared_expert_intermediate_size"])
        if cfg.get("norm_topk_prob"):
            print("warning: norm_topk_prob true: llama.cpp's qwen2moe graph (this snapshot) does not "
                  "renormalise the top-k weights", file=sys.stderr)
        if cfg.get("mlp_only_layers") or cfg.get("decoder_sparse_step", 1) != 1:
            raise ValueError("llama.cpp's qwen2moe has sparse FFNs in every layer")


def looks_special(tok):
    # convert_hf_to_gguf.py Model.does_token_look_special
    return (tok in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (tok.startswith("<|") and tok.endswith("|>"))
            or (tok.startswith("<\uff5c") and tok.endswith("\uff5c>"))
            or (tok.startswith("<unused") and tok.endswith(">")))


def add_vocab(w, folder, vocab_size):
    # convert_hf_to_gguf.py Model._set_vocab_gpt2 / get_vocab_base from tokenizer.json
    tj = json.loads((Path(folder) / "tokenizer.json").read_text(encoding="utf-8"))
    if tj["model"]["type"] != "BPE":
        raise ValueError("tokenizer.json: model type %s, expected BPE" % tj["model"]["type"])
    reverse = {i: t for t, i in tj["model"]["vocab"].items()}
    added = {a["id"]: a for a in tj.get("added_tokens", [])}
    for i, a in added.items():
        reverse[i] = a["content"]
    if max(reverse) >= vocab_size:
        raise ValueError("token id %d >= vocab_size %d" % (max(reverse), vocab_size))
    tokens, types_ = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append("[PAD%d]" % i)
            types_.append(gguf.TokenType.UNUSED)
        elif i in added:
            tok = reverse[i]
            tokens.append(tok)
            types_.append(gguf.TokenType.CONTROL if added[i].get("special") or looks_special(tok)
                          else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types_.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types_)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    special.add_to_gguf(w, quiet=True)
    return len(tokens), len(special.merges), dict(special.special_token_ids)


def convert(folder, out, outtype):
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") not in ARCHS:
        raise SystemExit("model_type %r: only qwen2 and qwen2_moe are converted" % cfg.get("model_type"))
    ckpt = Checkpoint(folder)
    plan = Plan(ckpt, cfg, outtype)
    arch_name = gguf.MODEL_ARCH_NAMES[plan.arch]
    tmp = Path(str(out) + ".part")
    w = gguf.GGUFWriter(path=None, arch=arch_name)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(folder.name)
    add_hparams(w, cfg, OUTTYPES[outtype][1])
    n_tok, n_merges, specials = add_vocab(w, folder, cfg["vocab_size"])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    el = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16,
          gguf.GGMLQuantizationType.BF16: np.uint16}
    for new, _, _, shape, qt in plan.items:
        nbytes = int(np.prod(shape)) * np.dtype(el[qt]).itemsize
        w.add_tensor_info(new, shape, np.dtype(el[qt]), nbytes, raw_dtype=qt)
    w.write_header_to_file(path=tmp)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for new, producer, dtype, shape, qt in plan.items:
        a = to_type(dtype, producer(), qt)
        assert a.shape == shape, (new, a.shape, shape)
        w.write_tensor_data(a)
    w.close()
    os.replace(tmp, out)
    return plan, n_tok, n_merges, specials


def check(out, plan):
    """Every tensor of the written file == the checkpoint's, bit for bit (after the exact widening
    to F32 where the type is F32)."""
    r = gguf.GGUFReader(out)
    got = {t.name: t for t in r.tensors}
    if set(got) != {it[0] for it in plan.items}:
        raise SystemExit("check FAILED: tensor names differ")
    for new, producer, dtype, shape, qt in plan.items:
        t = got[new]
        if t.tensor_type != qt:
            raise SystemExit("check FAILED: %s type %s, expected %s" % (new, t.tensor_type, qt))
        if tuple(int(d) for d in reversed(t.shape)) != shape and tuple(int(d) for d in t.shape) != shape[::-1]:
            raise SystemExit("check FAILED: %s shape %s, expected %s" % (new, list(t.shape), shape))
        want = to_type(dtype, producer(), qt)
        have = np.asarray(t.data).view(want.dtype).reshape(want.shape)
        if not np.array_equal(have.view(np.uint8), want.view(np.uint8)):
            raise SystemExit("check FAILED: %s data differ" % new)
    arch = r.fields["general.architecture"]
    return len(got), bytes(arch.parts[arch.data[0]]).decode()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="Hugging Face model folder (config.json, safetensors, tokenizer.json)")
    ap.add_argument("--out", help="output file (default <folder>/model-<outtype>.gguf)")
    ap.add_argument("--outtype", choices=sorted(OUTTYPES), default="bf16")
    ap.add_argument("--check", action="store_true", help="read the file back and compare every tensor")
    ap.add_argument("--list", action="store_true", help="print every tensor's name, type and shape")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.folder) / ("model-%s.gguf" % args.outtype)
    plan, n_tok, n_merges, specials = convert(args.folder, out, args.outtype)
    counts = {}
    for _, _, _, _, qt in plan.items:
        counts[qt.name] = counts.get(qt.name, 0) + 1
    print("%s: %s, %d tensors %s, %d tokens, %d merges, special ids %s, %.2f GB"
          % (out, gguf.MODEL_ARCH_NAMES[plan.arch], len(plan.items), counts, n_tok, n_merges, specials,
             os.path.getsize(out) / 1e9))
    if args.list:
        for new, _, _, shape, qt in plan.items:
            print("  %-32s %-5s %s  <- %s" % (new, qt.name, list(reversed(shape)), plan.sources[new][0]
                                               + (" (+%d)" % (len(plan.sources[new]) - 1) if len(plan.sources[new]) > 1 else "")))
    if args.check:
        n, arch = check(out, plan)
        print("check: %d tensors read back (%s) identical to the checkpoint" % (n, arch))


if __name__ == "__main__":
    main()
