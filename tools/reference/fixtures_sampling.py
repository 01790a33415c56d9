#!/usr/bin/python3
"""Sampling fixture: Hugging Face transformers' logits processors applied to seeded logits, for
include/lm/decoder/sampling.hpp (tests/lm/test_lm_sampling.cpp, [sampling-reference]).

    /usr/bin/python3 tools/reference/fixtures_sampling.py --out build/fixtures   # or make_fixtures.py

In make_fixtures.py's default set (IN_DEFAULT_SET = True): one small file, well under a second.

The processors are re-written here from transformers' src/transformers/generation/logits_process.py
at aa5108b449965084a90a4c8ce130a156aebf28f1 (transformers is not installed here): the arithmetic of
RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper and
MinPLogitsWarper is copied line for line (filter_value -inf, min_tokens_to_keep 1), and chained as
GenerationMixin._get_logits_processor builds them (src/transformers/generation/utils.py at
000034a44ef887621d9b36001a5eb7c46e64cb3f): repetition penalty (when != 1); then, only when sampling
(do_sample; here temperature > 0), temperature (!= 1), top-k (!= 0), top-p (< 1), min-p.

sampling.safetensors holds, for every case c = 0 .. cases-1:

    __logits_<c>__     F32 [V]   the input logits (one sequence)
    __context_<c>__    I32 [n]   the sequence so far (prompt + generated; repeated ids on purpose)
    __options_<c>__    F32 [5]   temperature, top_k, top_p, min_p, repetition_penalty (as float32,
                                 exactly what SamplingOptions holds; temperature 0 = greedy)
    __expected_<c>__   F32 [V]   the processed logits (-inf = removed)
    __argmax_<c>__     I32 [1]   torch.argmax of __expected_<c>__ (the first maximum)

Metadata: cases, name_<c>, reference, upstream, tie_note_<c> where a case's ties make torch's
default (unstable) sort matter.

Ties: TopPLogitsWarper sorts with torch.sort (stable=False). The reference below sorts with
stable=True, which is what moe does (ascending by (logit, id)); for every case the script also runs
the default sort and records whether the result differs (metadata tie_note_<c>): it does not for the
hand-made tie cases (short rows, which torch 1.13 sorts stably in practice) and may for the large
tied row, where only the stable order is reproducible.

Margins: random cases are redrawn (next seed) until no top-p or min-p decision lies within 1e-5
(relative) of its threshold, so the expected -inf pattern does not depend on fp32 rounding (moe
computes those probabilities in double, torch in fp32).
"""

import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

IN_DEFAULT_SET = True

REFERENCE = "transformers src/transformers/generation/logits_process.py"
UPSTREAM = ("huggingface/transformers logits_process.py@aa5108b449965084a90a4c8ce130a156aebf28f1, "
            "utils.py@000034a44ef887621d9b36001a5eb7c46e64cb3f")
MARGIN = 1e-5


# --------------------------------------------------------------------------------------------
# transformers' processors (scores: [batch, V], input_ids: [batch, n])


def repetition_penalty(input_ids, scores, penalty):
    """RepetitionPenaltyLogitsProcessor.__call__ (prompt_ignore_length None)."""
    score = torch.gather(scores, 1, input_ids)
    # if score < 0 then repetition penalty has to be multiplied to reduce the token probabilities
    score = torch.where(score < 0, score * penalty, score / penalty)
    scores_processed = scores.scatter(1, input_ids, score)
    return scores_processed


def temperature(scores, t):
    """TemperatureLogitsWarper.__call__."""
    scores_processed = scores / t
    return scores_processed


def top_k(scores, k, filter_value=-float("Inf"), min_tokens_to_keep=1):
    """TopKLogitsWarper.__init__ (max with min_tokens_to_keep) and __call__."""
    k = max(k, min_tokens_to_keep)
    k = min(k, scores.size(-1))  # Safety check
    # Remove all tokens with a probability less than the last token of the top-k
    indices_to_remove = scores < torch.topk(scores, k)[0][..., -1, None]
    scores_processed = scores.masked_fill(indices_to_remove, filter_value)
    return scores_processed


def top_p(scores, p, filter_value=-float("Inf"), min_tokens_to_keep=1, stable=True):
    """TopPLogitsWarper.__call__; stable=False is transformers' torch.sort call exactly."""
    p = float(p)
    sorted_logits, sorted_indices = torch.sort(scores, descending=False, stable=stable)
    cumulative_probs = sorted_logits.softmax(dim=-1).cumsum(dim=-1)

    # Remove tokens with cumulative top_p above the threshold (token with 0 are kept)
    sorted_indices_to_remove = cumulative_probs <= (1 - p)
    # Keep at least min_tokens_to_keep
    sorted_indices_to_remove[..., -min_tokens_to_keep:] = 0

    # scatter sorted tensors to original indexing
    indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)
    scores_processed = scores.masked_fill(indices_to_remove, filter_value)
    return scores_processed


def min_p(scores, mp, filter_value=-float("Inf"), min_tokens_to_keep=1):
    """MinPLogitsWarper.__call__."""
    # Convert logits to probabilities
    probs = torch.softmax(scores, dim=-1)
    # Get the probability of the top token for each sequence in the batch
    top_probs, _ = probs.max(dim=-1, keepdim=True)
    # Calculate the actual min_p threshold by scaling min_p with the top token's probability
    scaled_min_p = mp * top_probs
    # Create a mask for tokens that have a probability less than the scaled min_p
    tokens_to_remove = probs < scaled_min_p

    sorted_indices = torch.argsort(scores, descending=True, dim=-1)
    sorted_indices_to_remove = torch.gather(tokens_to_remove, dim=-1, index=sorted_indices)
    # Keep at least min_tokens_to_keep
    sorted_indices_to_remove[..., :min_tokens_to_keep] = False

    indices_to_remove = sorted_indices_to_remove.scatter(1, sorted_indices, sorted_indices_to_remove)
    scores_processed = scores.masked_fill(indices_to_remove, filter_value)
    return scores_processed


def chain(logits, context, opt, stable=True, margins=None):
    """_get_logits_processor's order on one sequence; opt = (t, k, p, min_p, penalty) as floats.
    margins (a list) receives the relative distance of every top-p / min-p decision from its
    threshold, computed in double."""
    t, k, p, mp, pen = opt
    scores = logits.clone().unsqueeze(0)
    input_ids = context.long().unsqueeze(0)
    if pen != 1.0:
        scores = repetition_penalty(input_ids, scores, pen)
    if t == 0.0:  # do_sample=False: no warpers
        return scores[0]
    if t != 1.0:
        scores = temperature(scores, t)
    if k != 0:
        scores = top_k(scores, int(k))
    if p < 1.0:
        if margins is not None:
            margins.append(top_p_margin(scores[0], p))
        scores = top_p(scores, p, stable=stable)
    if mp > 0.0:  # transformers also builds MinPLogitsWarper(0.0), which removes nothing
        if margins is not None:
            margins.append(min_p_margin(scores[0], mp))
        scores = min_p(scores, mp)
    return scores[0]


def top_p_margin(row, p):
    """Smallest relative distance of a sorted cumulative probability (double) from 1 - p."""
    x = row.double()
    srt = torch.sort(x, stable=True).values
    cum = torch.softmax(srt, -1).cumsum(-1)[:-1]
    thr = float(torch.tensor(1 - float(p), dtype=torch.float32))
    finite = cum[cum > 0]
    if finite.numel() == 0:
        return math.inf
    return float(((finite - thr).abs() / thr).min())


def min_p_margin(row, mp):
    """Smallest relative distance of exp(logit - max) (double) from min_p, over finite logits but
    the maxima (exp(0) = 1 >= min_p: always kept, exactly)."""
    x = row.double()
    x = x[torch.isfinite(x)]
    r = torch.exp(x - x.max())
    r = r[r < 1]
    return float(((r - mp).abs() / mp).min()) if r.numel() else math.inf


# --------------------------------------------------------------------------------------------
# cases


def f32(v):
    """v rounded to float32, as a Python float (what SamplingOptions holds)."""
    return float(torch.tensor(v, dtype=torch.float32))


def opts(t=1.0, k=0, p=1.0, mp=0.0, pen=1.0):
    return (f32(t), float(k), f32(p), f32(mp), f32(pen))


def random_case(seed, opt, V=1000, scale=3.0, n_ctx=40, neg_inf=0):
    """Logits ~ N(0, scale^2) (the first draw whose decisions all clear MARGIN), a context of
    n_ctx ids with repeats (positive and negative logits both penalized), neg_inf ids set to -inf."""
    for s in range(seed, seed + 200):
        g = torch.Generator().manual_seed(s)
        logits = torch.randn(V, generator=g) * scale
        if neg_inf:
            logits[torch.randperm(V, generator=g)[:neg_inf]] = -math.inf
        base = torch.randint(0, V, (n_ctx // 2,), generator=g)
        context = torch.cat([base, base[torch.randint(0, base.numel(), (n_ctx - n_ctx // 2,), generator=g)]])
        context = context[torch.randperm(context.numel(), generator=g)].to(torch.int32)
        margins = []
        chain(logits, context, opt, margins=margins)
        if all(m > MARGIN for m in margins):
            return logits, context, s
    raise RuntimeError("no draw without near-threshold decisions from seed %d" % seed)


def write(w):
    """make_fixtures.py's entry point."""
    cases = []  # (name, logits, context, opt)

    def add_random(name, seed, opt, **kw):
        logits, context, s = random_case(seed, opt, **kw)
        cases.append(("%s (seed %d)" % (name, s), logits, context, opt))

    # Each processor alone, then chains (V = 1000).
    add_random("repetition_penalty 1.3", 100, opts(pen=1.3))
    add_random("repetition_penalty 0.75 (reward)", 101, opts(pen=0.75))
    add_random("temperature 0.7", 102, opts(t=0.7))
    add_random("temperature 1.9", 103, opts(t=1.9))
    add_random("top_k 50", 104, opts(k=50))
    add_random("top_k 1", 105, opts(k=1))
    add_random("top_k 5000 > V", 106, opts(k=5000))
    add_random("top_p 0.9", 107, opts(p=0.9))
    add_random("top_p 0.5, temperature 1.5", 108, opts(t=1.5, p=0.5))
    add_random("top_p 0.01", 109, opts(p=0.01))
    add_random("min_p 0.05", 110, opts(mp=0.05))
    add_random("min_p 1.0", 111, opts(mp=1.0))
    add_random("all five", 112, opts(t=0.8, k=100, p=0.95, mp=0.02, pen=1.2))
    add_random("penalty 0.8, top_k 10, top_p 0.7", 113, opts(k=10, p=0.7, pen=0.8))
    add_random("temperature 0.6, top_p 0.8, min_p 0.1", 114, opts(t=0.6, p=0.8, mp=0.1))
    add_random("greedy + penalty 1.5 (no warpers)", 115, opts(t=0.0, k=3, p=0.5, mp=0.5, pen=1.5))
    add_random("100 ids already -inf, top_p 0.9, min_p 0.01", 116, opts(p=0.9, mp=0.01), neg_inf=100)
    add_random("vocab 151936 (Qwen2), all five", 117, opts(t=0.7, k=20, p=0.8, mp=0.05, pen=1.05), V=151936)

    # Hand-made ties (short rows).
    def add_hand(name, logits, context, opt):
        cases.append((name, torch.tensor(logits, dtype=torch.float32), torch.tensor(context, dtype=torch.int32), opt))

    add_hand("tie: top_p 0.5 on [1, 2, 3, 4]", [1, 2, 3, 4], [0], opts(p=0.5))
    add_hand("tie: top_k 1 on [4, 4, 1, 1]: both maxima kept", [4, 4, 1, 1], [2], opts(k=1))
    add_hand("tie: top_k 2 on [3, 1, 1, 1, 0]: every 1 kept", [3, 1, 1, 1, 0], [4], opts(k=2))
    add_hand("tie: top_p 0.5 on [2, 2, 2, 2]: ids 2, 3 kept", [2, 2, 2, 2], [1], opts(p=0.5))
    add_hand("tie: top_p 0.3 on [0, 3, 3, 1]: only id 2 kept", [0, 3, 3, 1], [0], opts(p=0.3))
    add_hand("tie: min_p 0.5 on [5, 5, 0, 4.5]", [5, 5, 0, 4.5], [3], opts(mp=0.5))
    add_hand("tie: penalty 2 on [-1, 1, 0, 2] context 0 1 2 0", [-1, 1, 0, 2], [0, 1, 2, 0], opts(pen=2.0))
    add_hand("tie: top_p 0.6 on 12 values in 3 tied groups",
             [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3], [5], opts(p=0.6))
    # A long row full of ties (values on a 0.25 grid): top-k and top-p cut through tied groups.
    g = torch.Generator().manual_seed(120)
    tied = torch.round(torch.randn(1000, generator=g) * 8) / 4
    cases.append(("tie: 1000 values on a 0.25 grid, top_k 37", tied, torch.tensor([1, 2, 3], dtype=torch.int32),
                  opts(k=37)))
    cases.append(("tie: 1000 values on a 0.25 grid, top_p 0.8", tied, torch.tensor([1, 2, 3], dtype=torch.int32),
                  opts(p=0.8)))

    extra, meta = {}, dict(reference=REFERENCE, upstream=UPSTREAM, cases=len(cases))
    for c, (name, logits, context, opt) in enumerate(cases):
        expected = chain(logits, context, opt, stable=True)
        default_sort = chain(logits, context, opt, stable=False)
        same = torch.equal(torch.isinf(expected), torch.isinf(default_sort)) and torch.equal(
            expected[torch.isfinite(expected)], default_sort[torch.isfinite(default_sort)])
        if not same:
            meta["tie_note_%d" % c] = "torch.sort(stable=False) keeps other tied tokens: reference uses stable=True"
        assert torch.isfinite(expected).any(), name
        extra["__logits_%d__" % c] = logits.to(torch.float32)
        extra["__context_%d__" % c] = context.to(torch.int32)
        extra["__options_%d__" % c] = torch.tensor(opt, dtype=torch.float32)
        extra["__expected_%d__" % c] = expected.to(torch.float32)
        extra["__argmax_%d__" % c] = torch.argmax(expected).reshape(1).to(torch.int32)
        meta["name_%d" % c] = name
    check_hand_examples(cases)
    w.write("sampling", {}, extra, meta)


def check_hand_examples(cases):
    """The hand-made tie cases against what the docs (and the unit test) say they keep."""
    want = {
        "tie: top_p 0.5 on [1, 2, 3, 4]": [False, False, False, True],
        "tie: top_k 1 on [4, 4, 1, 1]: both maxima kept": [True, True, False, False],
        "tie: top_k 2 on [3, 1, 1, 1, 0]: every 1 kept": [True, True, True, True, False],
        "tie: top_p 0.5 on [2, 2, 2, 2]: ids 2, 3 kept": [False, False, True, True],
        "tie: top_p 0.3 on [0, 3, 3, 1]: only id 2 kept": [False, False, True, False],
        "tie: min_p 0.5 on [5, 5, 0, 4.5]": [True, True, False, True],
    }
    for name, logits, context, opt in cases:
        if name in want:
            for stable in (True, False):
                kept = torch.isfinite(chain(logits, context, opt, stable=stable)).tolist()
                assert kept == want[name], (name, stable, kept)


class _Writer:
    """The same interface as make_fixtures.Writer, without importing every other reference."""

    def __init__(self, out):
        self.out = out
        self.written = []

    def write(self, case, weights, extra, metadata):
        from safetensors_io import load_file, save_file
        tensors = dict(weights)
        tensors.update(extra)
        path = os.path.join(self.out, case + ".safetensors")
        save_file(tensors, path, {k: str(v) for k, v in metadata.items()})
        back = load_file(path)
        assert set(back) == set(tensors) and all(torch.equal(back[k], v) for k, v in tensors.items()), case
        self.written.append((case, path, len(tensors), os.path.getsize(path)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    w = _Writer(args.out)
    write(w)
    for case, path, n, size in w.written:
        print("wrote %-20s %3d tensors %8d bytes  %s" % (case, n, size, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
