#!/usr/bin/python3
"""Parity fixtures of the decoder runtime (issue 16): tiny seeded random Qwen2 / LLaMA models
written as Hugging Face model folders, and what tools/reference/hf_decoder.py computes on them.

    /usr/bin/python3 tools/reference/fixtures_decoder.py --out build/fixtures           # write
    /usr/bin/python3 tools/reference/fixtures_decoder.py --check                        # self-checks only
    /usr/bin/python3 tools/reference/make_fixtures.py --out build/fixtures --include fixtures_decoder

In make_fixtures.py's default set (tests/lm/test_decoder.cpp, ctest decoder_parity, reads them).
About 3.5 MB and 2 s.

Every case <c> is a folder <out>/<c>/ as save_pretrained writes it (config.json with the real
field names, generation_config.json, model.safetensors or model-00001-of-00002.safetensors +
model-00002-of-00002.safetensors + model.safetensors.index.json; tensor metadata
{"format": "pt"}; a tied lm_head.weight is not saved) and a fixture file <out>/<c>.safetensors:

    __prompt_<i>__       I32 [T_i]       prompt i (i = 0, 1; the llama3 case also 2, 96 tokens)
    __logits_<i>__       F32 [T_i, V]    full-prefill logits of prompt i alone (no cache)
    __decode_logits__    F32 [16, V]     prompt 0 run as a prefill of 7 tokens, then 9 single-token
                                         decode steps on the KV cache (rows 0..6 from the prefill)
    __greedy_ids__       I32 [32]        32 greedy new tokens after prompt 0 (KV cache; each also
                                         the argmax of a full recompute)
    __greedy_logits__    F32 [32, V]     the logits each greedy token was chosen from
    __inv_freq__         F32 [rot / 2]   the rope inverse frequencies (llama3 scaling applied)
    __granularity__      I32 [n_prompts] G-MoE case only: the expert of each prompt (greedy and
                                         decode use prompt 0's)

Beam search (decoder_beam.safetensors, tests/lm/test_beam_search.cpp and the generate CLI check):
BEAM_CASES run tools/reference/beam_search.py (transformers 4.30-4.34's beam search, every step
recomputed without a cache) on the decoder_qwen2 / decoder_qwen2_moe folders; per case c:
__c<c>_prompt__ (I32), __c<c>_eos__ (I32: the stop ids), __c<c>_ids_<r>__ (I32: the r-th best
hypothesis, its stop id included), __c<c>_scores__ (F32: their scores); metadata c<c>_model,
_embedded (the prompt given as its embeddings, transformers' input_ids empty), _beams, _max_new,
_length_penalty, _early_stopping, _repetition_penalty, _min_new, _return, _steps, _min_gap. The
stop ids are picked from the tokens the search generates so that hypotheses finish early, one is
skipped for its rank or the stopping rule ends the search where possible, and every comparison
that decides the result (beam_search.py's margins: the last continuing candidate against the
next, the stop-id rank cut, hypotheses against the worst kept, the stopping tests, the returned
order) has a margin above 1e-4.

Metadata (strings): reference, upstream, model_dir, model_type, weights_dtype, seed,
prompt_lengths, prefill_tokens 7, decode_steps 9, greedy_tokens 32, greedy_min_margin (smallest
top-1 / top-2 logit gap over the greedy steps), router_min_margin (Qwen2-MoE: smallest softmax gap
at any routing decision over all evaluated tokens), the tolerances below.

| case | model_type | layers | FFN | other |
|---|---|---|---|---|
| decoder_qwen2 | qwen2 | 2 | dense | tied embeddings, q/k/v bias, fp32 |
| decoder_qwen2_bf16 | qwen2 | 2 | dense | tied, BF16 checkpoint (every tensor) |
| decoder_llama | llama | 2 | dense | untied, no bias, sharded (2 files + index) |
| decoder_llama3 | llama | 2 | dense | rope_scaling llama3 (factor 4, low 1, high 4, original 64), tied, theta 5e5 |
| decoder_qwen2_moe | qwen2_moe | 3 | sparse in layers 0 and 2, dense in 1 (mlp_only_layers [1]) | E 8, top-2, norm_topk_prob true, shared expert + sigmoid gate, untied |
| decoder_mixtral | mixtral | 2 | MixtralSparseMoeBlock (block_sparse_moe: gate, experts.{e}.w1/w2/w3) | E 8, top-2 renormalised, no biases, untied |
| decoder_qwen2_gmoe | qwen2 (LlavaQwenGMoeForCausalLM) | 2 | G-MoE, 3 experts | tied; prompt 0 granularity 2, prompt 1 granularity 1 |

All: hidden 64, 4 heads (hd 16), 2 KV heads, intermediate 128, vocab 256, max_position 128.
Expected values are fp32 computations; for the bf16 case from the bf16-rounded weights widened to
fp32 (as moe computes; HF running the model in bf16 would round activations too).

Tolerances the C++ side is expected to meet (issue 16): logits within 1e-4 relative (max abs
difference over max |logit|) of __logits_<i>__; the KV-cache path within 1e-5 of recomputing the
whole sequence (here the two agree within 1e-6); greedy ids identical to __greedy_ids__
(greedy_min_margin says how safe that is); two sequences of different lengths in one batch equal
to each alone (within the same 1e-5). Random weights are scaled (see randomize: embeddings
N(0, 0.25), layer outputs weighted up, an untied lm_head of gain 4) so logits spread over ~15
units, greedy decoding does not just repeat a token, and a seed is taken only when every greedy
step's top-1 / top-2 gap exceeds 1e-2, the 32 greedy tokens hold at least 4 distinct ids and every routing decision's softmax gap exceeds 1e-4.

Self-checks (run on every write; --check runs them in a temporary folder): KV-cache path ==
recompute within 1e-6 (relative) in fp32; batched left- and right-padded prefill and batched
left-padded decode == each sequence alone within 1e-6; greedy ids == argmax of full recomputes;
tied embeddings really tied (one parameter, no lm_head.weight in the file, and changing the
embedding changes the logits the same way); llama3 scaling changes inv_freq only where the
wavelength is at least original/high_freq_factor, divides by factor past original/low_freq_factor
and interpolates between; the written folders (single and sharded, fp32 and bf16) load back
through safetensors_io.load_file into models with bit-identical logits; G-MoE experts differ; the
partial-rotary path rotates only the first dims.
"""

import argparse
import copy
import json
import math
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hf_decoder  # noqa: E402
from safetensors_io import load_file  # noqa: E402

IN_DEFAULT_SET = True

V, H, NH, NKV, I, MAXPOS = 256, 64, 4, 2, 128, 128
PREFILL, DECODE, GREEDY = 7, 9, 32
REL_TOL_CHECK = 1e-6
GREEDY_MARGIN = 1e-2  # smallest top-1 / top-2 logit gap of a greedy step accepted (else: next seed)
MIN_DISTINCT = 4  # greedy output with fewer distinct tokens (a loop on one token) tests little: next seed
ROUTER_MARGIN = 1e-4  # smallest softmax gap at a routing decision accepted (else: next seed)


def base_config(model_type, layers=2, **kw):
    d = {
        "architectures": [{"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM",
                           "qwen2_moe": "Qwen2MoeForCausalLM", "mixtral": "MixtralForCausalLM"}[model_type]],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": H,
        "initializer_range": 0.02,
        "intermediate_size": I,
        "max_position_embeddings": MAXPOS,
        "model_type": model_type,
        "num_attention_heads": NH,
        "num_hidden_layers": layers,
        "num_key_value_heads": NKV,
        "rope_scaling": None,
        "use_cache": True,
        "vocab_size": V,
    }
    if model_type in ("qwen2", "qwen2_moe"):
        d.update(max_window_layers=layers, rms_norm_eps=1e-6, rope_theta=1000000.0, sliding_window=MAXPOS,
                 use_sliding_window=False, tie_word_embeddings=True)
    if model_type == "llama":
        d.update(attention_bias=False, head_dim=H // NH, mlp_bias=False, pretraining_tp=1, rms_norm_eps=1e-5,
                 rope_theta=10000.0, tie_word_embeddings=False)
    if model_type == "mixtral":
        d.update(rms_norm_eps=1e-5, rope_theta=1000000.0, num_local_experts=8, num_experts_per_tok=2,
                 output_router_logits=False, router_aux_loss_coef=0.02, sliding_window=None,
                 tie_word_embeddings=False)
    if model_type == "qwen2_moe":
        d.update(decoder_sparse_step=1, mlp_only_layers=[], moe_intermediate_size=32, num_experts=8,
                 num_experts_per_tok=2, norm_topk_prob=True, output_router_logits=False,
                 router_aux_loss_coef=0.001, shared_expert_intermediate_size=64, qkv_bias=True,
                 tie_word_embeddings=False)
    d.update(kw)
    return d


def randomize(model, seed):
    """Non-trivial weights: embeddings N(0, EMBED_STD^2), lm_head (untied) N(0, (LM_HEAD_GAIN^2 / H)),
    o_proj / down_proj N(0, OUT_GAIN^2 / fan_in), other linears N(0, 1 / fan_in), norms 1 + 0.1 N,
    biases 0.1 N. The layers' outputs outweigh the embedding in the residual stream, so a tied
    model does not just repeat its last token under greedy decoding."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head appears once (as the embedding)
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(EMBED_STD * torch.randn(p.shape, generator=g))
            else:
                gain = LM_HEAD_GAIN if name == "lm_head.weight" else \
                    OUT_GAIN if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
                p.copy_(gain * torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
    return model


EMBED_STD, LM_HEAD_GAIN, OUT_GAIN = 0.5, 4.0, 2.0


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def prompts_for(seed, lengths):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, V, (n,), generator=g) for n in lengths]


# --------------------------------------------------------------------------------------------
# checks


def check_batch_equals_alone(model, prompts, grans, tol):
    """Left- and right-padded batched prefill, and left-padded batched decode, == each alone."""
    a, b = prompts[0], prompts[1]
    T = max(len(a), len(b))
    with torch.no_grad():
        alone = [model(p[None], granularity=[g])[0][0] for p, g in zip((a, b), grans)]
        for side in ("left", "right"):
            ids = torch.zeros(2, T, dtype=torch.long)
            mask = torch.zeros(2, T, dtype=torch.long)
            for r, p in enumerate((a, b)):
                sl = slice(T - len(p), T) if side == "left" else slice(0, len(p))
                ids[r, sl] = p
                mask[r, sl] = 1
            logits, cache = model(ids, attention_mask=mask, granularity=list(grans))
            for r, p in enumerate((a, b)):
                sl = slice(T - len(p), T) if side == "left" else slice(0, len(p))
                e = rel(logits[r, sl], alone[r])
                assert e < tol, (side, r, e)
            if side == "left":  # decode 4 more tokens for both, batched, against each alone
                nxt = [torch.randint(3, V, (4,), generator=torch.Generator().manual_seed(99 + r)) for r in range(2)]
                for t in range(4):
                    mask = torch.cat((mask, torch.ones(2, 1, dtype=torch.long)), dim=1)
                    step = torch.tensor([[nxt[0][t]], [nxt[1][t]]])
                    logits, cache = model(step, attention_mask=mask, past_key_values=cache, granularity=list(grans))
                for r, p in enumerate((a, b)):
                    full = model(torch.cat((p, nxt[r]))[None], granularity=[grans[r]])[0][0, -1]
                    e = rel(logits[r, -1], full)
                    assert e < tol, ("batched decode", r, e)


def check_tied(model, folder):
    if not model.config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
        return
    assert model.lm_head.weight is model.model.embed_tokens.weight
    names = set(hf_decoder.read_checkpoint(folder))
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    m2 = hf_decoder.from_pretrained(folder)
    assert m2.lm_head.weight is m2.model.embed_tokens.weight
    x = torch.tensor([[7, 8, 9]])  # tokens other than 5: only the output side of the tie sees the change
    with torch.no_grad():
        h, _ = m2.model(x, granularity=[0])
        before = m2(x, granularity=[0])[0][0]
        m2.model.embed_tokens.weight[5].add_(1.0)
        after = m2(x, granularity=[0])[0][0]
    other = torch.arange(V) != 5
    assert torch.equal(before[:, other], after[:, other])
    assert rel(after[:, 5] - before[:, 5], h[0].sum(-1)) < 1e-4, "lm_head does not follow the embedding"


def check_llama3_inv_freq(cfg):
    rs = cfg.rope_scaling
    base = hf_decoder.rope_inv_freq(hf_decoder.DecoderConfig(dict(cfg.raw, rope_scaling=None)))[0]
    scaled = hf_decoder.rope_inv_freq(cfg)[0]
    wavelen = 2 * math.pi / base
    hi = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    lo = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    kinds = []
    for j in range(len(base)):
        if wavelen[j] < hi:
            assert scaled[j] == base[j], j
            kinds.append("kept")
        elif wavelen[j] > lo:
            assert torch.isclose(scaled[j], base[j] / rs["factor"], rtol=1e-6), j
            kinds.append("divided")
        else:
            assert base[j] / rs["factor"] < scaled[j] < base[j] or math.isclose(wavelen[j], hi), j
            kinds.append("smoothed")
    # the case is built so that all three bands occur
    assert set(kinds) == {"kept", "divided", "smoothed"}, kinds
    return kinds


def check_partial_rotary():
    cfg = hf_decoder.DecoderConfig(base_config("llama", partial_rotary_factor=0.5))
    rot = hf_decoder.RotaryEmbedding(cfg)
    assert rot.inv_freq.numel() == 4  # hd 16 * 0.5 / 2
    q = torch.randn(1, NH, 5, 16)
    k = torch.randn(1, NKV, 5, 16)
    cos, sin = rot(q, torch.arange(5)[None])
    q2, k2 = hf_decoder.apply_rotary_pos_emb(q, k, cos, sin)
    assert torch.equal(q2[..., 8:], q[..., 8:]) and torch.equal(k2[..., 8:], k[..., 8:])
    assert not torch.allclose(q2[..., 1:, :8], q[..., 1:, :8])
    full = hf_decoder.apply_rotary_pos_emb(q[..., :8], k[..., :8], cos, sin)
    assert torch.equal(q2[..., :8], full[0])


def check_reload(model, folder, prompts, grans, dtype):
    m2 = hf_decoder.from_pretrained(folder)
    back = hf_decoder.read_checkpoint(folder)
    ref = hf_decoder.checkpoint_tensors(model, dtype)
    assert set(back) == set(ref)
    for k, v in ref.items():
        assert back[k].dtype == dtype and torch.equal(back[k], v), k
    with torch.no_grad():
        for p, g in zip(prompts, grans):
            assert torch.equal(m2(p[None], granularity=[g])[0], model(p[None], granularity=[g])[0])
    if os.path.exists(os.path.join(folder, "model.safetensors.index.json")):
        with open(os.path.join(folder, "model.safetensors.index.json")) as f:
            index = json.load(f)
        total = sum(t.numel() * t.element_size() for t in back.values())
        assert index["metadata"]["total_size"] == total
        files = sorted(set(index["weight_map"].values()))
        assert files == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"], files
        for fname in files:
            part, meta = load_file(os.path.join(folder, fname), with_metadata=True)
            assert meta == {"format": "pt"}
            assert all(index["weight_map"][n] == fname for n in part)


# --------------------------------------------------------------------------------------------
# cases


def build(cfg_dict, seed, dtype):
    cfg = hf_decoder.DecoderConfig(cfg_dict)
    model = randomize(hf_decoder.DecoderForCausalLM(cfg).eval(), seed)
    if dtype != torch.float32:  # expected values from the rounded weights, computed in fp32
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(dtype).float())
    return model


def make_case(out, name, cfg_dict, seed, dtype=torch.float32, shard=False, lengths=(16, 11), grans=(None, None),
              w=None):
    """Writes <out>/<name>/ and the fixture <out>/<name>.safetensors; returns a summary line."""
    for attempt in range(20):
        s = seed + 1000 * attempt
        model = build(cfg_dict, s, dtype)
        prompts = prompts_for(s + 1, lengths)
        g0 = grans[0]
        with torch.no_grad():
            full = [model(p[None], granularity=[g])[0][0] for p, g in zip(prompts, grans)]
            ids, step_logits = hf_decoder.greedy(model, prompts[0], GREEDY, granularity=[g0])
            gm = hf_decoder.top2_margin(step_logits)
            rm = None
            if cfg_dict["model_type"] in ("qwen2_moe", "mixtral"):  # every routing decision of every evaluated token
                k = cfg_dict["num_experts_per_tok"]
                for p in list(prompts) + [torch.cat((prompts[0], ids))]:
                    model(p[None])
                    rm = min([hf_decoder.router_margin(r, k) for r in model.router_logits().values()]
                             + ([] if rm is None else [rm]))
        distinct = len(set(ids.tolist()))
        if gm > GREEDY_MARGIN and (rm is None or rm > ROUTER_MARGIN) and distinct >= MIN_DISTINCT:
            break
        print("  %s: seed %d: greedy margin %.2e, router margin %s, %d distinct greedy tokens; next seed"
              % (name, s, gm, rm, distinct))
    else:
        raise RuntimeError(name + ": no seed without near-ties")

    with torch.no_grad():
        dec = hf_decoder.prefill_then_decode(model, prompts[0][:PREFILL + DECODE], PREFILL, granularity=[g0])
        e = rel(dec, full[0][:PREFILL + DECODE])
        assert e < REL_TOL_CHECK, (name, "kv", e)
        # greedy == argmax of full recomputes
        seq = torch.cat((prompts[0], ids))
        recompute = model(seq[None], granularity=[g0])[0][0, len(prompts[0]) - 1:-1]
        assert torch.equal(recompute.argmax(-1), ids), name
        assert rel(recompute, step_logits) < REL_TOL_CHECK, name
    # Batch == alone: in fp64 (the masking and positions exactly right, to 1e-12) and in fp32 within
    # the C++ side's 1e-5 (fp32 batched matmuls and the MoE's token grouping reorder sums: ~1e-6).
    check_batch_equals_alone(copy.deepcopy(model).double(), [p for p in prompts], grans, 1e-12)
    check_batch_equals_alone(model, prompts, grans, 1e-5)
    m64 = copy.deepcopy(model).double()
    with torch.no_grad():
        e64 = rel(hf_decoder.prefill_then_decode(m64, prompts[0][:PREFILL + DECODE], PREFILL, granularity=[g0]),
                  m64(prompts[0][None, :PREFILL + DECODE], granularity=[g0])[0][0])
    assert e64 < 1e-12, (name, "kv fp64", e64)

    folder = os.path.join(out, name)
    tensors = hf_decoder.checkpoint_tensors(model, dtype)
    shards = None
    if shard:  # as max_shard_size would cut it: the first half of the names in file 1
        names = list(tensors)
        cut = names.index("model.layers.1.input_layernorm.weight")
        shards = [names[:cut], names[cut:]]
    hf_decoder.save_pretrained(model, folder, dtype, shards=shards,
                               generation_config={"bos_token_id": cfg_dict["bos_token_id"],
                                                  "eos_token_id": cfg_dict["eos_token_id"]})
    check_reload(model, folder, prompts, grans, dtype)
    check_tied(model, folder)

    extra = {"__prompt_%d__" % i: p.to(torch.int32) for i, p in enumerate(prompts)}
    extra.update({"__logits_%d__" % i: l.float().contiguous() for i, l in enumerate(full)})
    extra["__decode_logits__"] = dec.float().contiguous()
    extra["__greedy_ids__"] = ids.to(torch.int32)
    extra["__greedy_logits__"] = step_logits.float().contiguous()
    extra["__inv_freq__"] = model.model.rotary_emb.inv_freq.float().clone()
    if grans[0] is not None:
        extra["__granularity__"] = torch.tensor(grans, dtype=torch.int32)
    meta = dict(reference="hf_decoder", model_dir=name, model_type=cfg_dict["model_type"],
                upstream="transformers modeling_%s (see hf_decoder.py)" % cfg_dict["model_type"],
                weights_dtype=hf_decoder._dtype_name(dtype), seed=s, prompt_seed=s + 1,
                prompt_lengths=",".join(str(n) for n in lengths), prefill_tokens=PREFILL, decode_steps=DECODE,
                greedy_tokens=GREEDY, greedy_min_margin="%.4g" % gm,
                tol_logits_rel="1e-4", tol_kv_vs_recompute="1e-5", greedy="identical ids")
    if rm is not None:
        meta["router_min_margin"] = "%.4g" % rm
    if grans[0] is not None:
        meta.update({"granularity_%d" % i: g for i, g in enumerate(grans)})
    if w is not None:
        w.write(name, {}, extra, meta)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    return "%-20s %s, seed %d, %d KB, greedy margin %.3g%s" % (
        name, cfg_dict["model_type"], s, size // 1024, gm, "" if rm is None else ", router margin %.3g" % rm)


def write(w):
    """make_fixtures.py's entry point (with --include fixtures_decoder)."""
    torch.set_num_threads(1)
    out = w.out
    check_partial_rotary()
    lines = []
    lines.append(make_case(out, "decoder_qwen2", base_config("qwen2"), seed=1601, w=w))
    lines.append(make_case(out, "decoder_qwen2_bf16", base_config("qwen2"), seed=1602, dtype=torch.bfloat16, w=w))
    lines.append(make_case(out, "decoder_llama", base_config("llama"), seed=1603, shard=True, w=w))
    l3 = base_config("llama", rope_theta=500000.0, tie_word_embeddings=True,
                     rope_scaling={"factor": 4.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                   "original_max_position_embeddings": 64, "rope_type": "llama3"})
    kinds = check_llama3_inv_freq(hf_decoder.DecoderConfig(l3))
    lines.append(make_case(out, "decoder_llama3", l3, seed=1604, lengths=(16, 11, 96), grans=(None,) * 3, w=w))
    lines.append(make_case(out, "decoder_qwen2_moe", base_config("qwen2_moe", layers=3, mlp_only_layers=[1]),
                           seed=1605, w=w))
    lines.append(make_case(out, "decoder_mixtral", base_config("mixtral"), seed=1607, w=w))
    gm = base_config("qwen2", architectures=[hf_decoder.GMOE_ARCHITECTURE])
    lines.append(make_case(out, "decoder_qwen2_gmoe", gm, seed=1606, grans=(2, 1), w=w))
    check_gmoe_experts_differ(os.path.join(out, "decoder_qwen2_gmoe"))
    lines.append(make_beam_cases(out, w))
    print("  decoder: llama3 inv_freq bands %s" % ",".join(kinds))
    for line in lines:
        print("  " + line)


# Beam search cases (decoder_beam.safetensors): (model folder, prompt index, given as embeddings,
# beams, max new tokens, length penalty, early stopping, repetition penalty, min new tokens,
# sequences returned, how many stop ids).
BEAM_CASES = [
    ("decoder_qwen2", 0, False, 4, 12, 1.0, False, 1.0, 0, 1, 1),
    ("decoder_qwen2", 1, False, 5, 10, 0.5, True, 1.5, 2, 2, 1),
    ("decoder_qwen2", 0, False, 3, 14, 2.0, "never", 1.0, 0, 3, 2),
    ("decoder_qwen2", 0, True, 5, 12, 1.0, False, 1.5, 1, 5, 1),  # LAVIS InstructBLIP settings (all 5 returned)
    ("decoder_qwen2_moe", 0, False, 4, 10, 1.0, False, 1.2, 0, 2, 1),
]
BEAM_GAP = 1e-4  # smallest accepted decision margin (fp32 rounding differs by ~1e-6)


def make_beam_cases(out, w):
    """Beam search (tools/reference/beam_search.py) on the written folders, each case with a stop
    id chosen so that hypotheses finish before max_new_tokens and no decision is nearly tied."""
    import beam_search
    tensors, meta = {}, dict(reference="beam_search.py (transformers 4.30-4.34 beam search)", cases=len(BEAM_CASES),
                             tol_scores_rel="1e-4", ids="identical")
    for c, (folder, pi, embedded, beams, max_new, lp, early, rep, min_new, ret, n_eos) in enumerate(BEAM_CASES):
        model = hf_decoder.from_pretrained(os.path.join(out, folder))
        prompt = load_file(os.path.join(out, folder + ".safetensors"))["__prompt_%d__" % pi].long()
        emb = model.model.embed_tokens(prompt)

        def next_logits(gens):
            rows = []
            for g in gens:
                if embedded:
                    x = torch.cat((emb, model.model.embed_tokens(torch.tensor(g, dtype=torch.long))))[None]
                    rows.append(model(inputs_embeds=x)[0][0, -1])
                else:
                    rows.append(model(torch.cat((prompt, torch.tensor(g, dtype=torch.long)))[None])[0][0, -1])
            return torch.stack(rows)

        input_ids = [] if embedded else prompt.tolist()
        with torch.no_grad():
            free, _, _ = beam_search.beam_search(next_logits, input_ids, beams, max_new, [], lp, early, rep, min_new,
                                              beams)
            # stop-id candidates: the tokens the free search's hypotheses hold, early ones first
            order = []
            for k in range(1, max_new):
                for _, g in free:
                    if k < len(g) and g[k] not in order:
                        order.append(g[k])
            order += [t for t in range(model.config.vocab_size) if t not in order]  # then any token
            # prefer stop ids that exercise the most: returned hypotheses ending with one, one
            # skipped for its rank, the stopping rule ending the search before max_new_tokens
            chosen, best_rank = None, -1
            for i, e in enumerate(order[:40]):
                eos = [e] + [x for x in order[i + 1:i + n_eos]]
                if len(eos) < n_eos:
                    continue
                gaps = []
                res, steps, st = beam_search.beam_search(next_logits, input_ids, beams, max_new, eos, lp, early, rep,
                                                         min_new, ret, gaps)
                ended = sum(1 for _, g in res if g and g[-1] in eos)
                rank = (ended > 0) + (st["skipped"] > 0) + st["early"]
                if st["finished"] and min(gaps) > BEAM_GAP and rank > best_rank:
                    chosen, best_rank = (eos, res, steps, min(gaps), ended, st), rank
                    if rank == 3:
                        break
            assert chosen is not None, ("beam case", c)
            print("    beam case %d: stop ids %s: %d of %d returned end with one, %d steps, %s, smallest gap %.3g"
                  % (c, chosen[0], chosen[4], len(chosen[1]), chosen[2], chosen[5], chosen[3]))
        eos, res, steps, gap = chosen[:4]
        tensors["__c%d_prompt__" % c] = prompt.to(torch.int32)
        tensors["__c%d_eos__" % c] = torch.tensor(eos, dtype=torch.int32)
        tensors["__c%d_scores__" % c] = torch.tensor([s for s, _ in res], dtype=torch.float32)
        for r, (_, g) in enumerate(res):
            tensors["__c%d_ids_%d__" % (c, r)] = torch.tensor(g, dtype=torch.int32)
        meta.update({"c%d_model" % c: folder, "c%d_embedded" % c: embedded, "c%d_beams" % c: beams,
                     "c%d_max_new" % c: max_new, "c%d_length_penalty" % c: lp,
                     "c%d_early_stopping" % c: {False: "heuristic", True: "first_complete"}.get(early, early),
                     "c%d_repetition_penalty" % c: rep, "c%d_min_new" % c: min_new, "c%d_return" % c: ret,
                     "c%d_steps" % c: steps, "c%d_min_gap" % c: "%.3g" % gap})
    w.write("decoder_beam", {}, tensors, meta)
    return "decoder_beam         %d beam-search cases" % len(BEAM_CASES)


def check_gmoe_experts_differ(folder):
    m = hf_decoder.from_pretrained(folder)
    p = torch.arange(3, 15)[None]
    with torch.no_grad():
        outs = [m(p, granularity=[g])[0] for g in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            assert rel(outs[a], outs[b]) > 1e-2, (a, b)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output directory (created if missing)")
    ap.add_argument("--check", action="store_true", help="run the self-checks (in a temporary folder without --out)")
    args = ap.parse_args(argv)
    if not args.out and not args.check:
        ap.error("give --out DIR and/or --check")
    from make_fixtures import Writer  # the same writer (and its round-trip check) as the other fixtures
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        os.makedirs(out, exist_ok=True)
        w = Writer(out)
        write(w)
        for case, path, n, size in w.written:
            print("wrote %-20s %3d tensors %8d bytes  %s" % (case, n, size, path))
        if args.check:
            print("decoder self-checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
