#!/usr/bin/python3
"""Parity fixtures of the int8 policies: a Mixtral sparse MoE block (tools/reference/mixtral.py)
whose experts are int8 (tools/reference/int8.py: moe's quantiser and int8 Linear, from the
definition in docs/scaling.md), in the int8 checkpoint format moe reads.

    /usr/bin/python3 tools/reference/make_fixtures.py --out build/fixtures    (in the default set)

tests/parity/test_parity_int8.cpp reads them. About 0.3 MB.

Written, per case (mixtral_int8: one scale per output channel; mixtral_int8_g32: groups of 32):
    model.layers.0.block_sparse_moe.gate.weight          F32 [E, d]
    model.layers.0.block_sparse_moe.experts.{i}.w{1,2,3}.weight        I8 [out, in]
    model.layers.0.block_sparse_moe.experts.{i}.w{1,2,3}.weight_scale  F32 [out] or [out, in / 32]
    float.<the same expert names>                        F32: the weights before quantisation
    __input__ [T, d], __output__ [T, d]                  the block with int8_dot experts (W8A8)
    __output_weight_only__ [T, d]                        the block with int8_weight_only experts
    __output_f32__ [T, d]                                the float block (the quantisation error)
    metadata: prefix, k, group, tokens, seed, "moe.quantization" = "int8", "moe.int8.group".
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import int8  # noqa: E402
import make_fixtures  # noqa: E402
import mixtral  # noqa: E402

IN_DEFAULT_SET = True


def case(w, name, group, seed, T=48, d=64, F_=128, E=4, k=2):
    torch.manual_seed(seed)
    cfg = mixtral.MixtralConfig(hidden_size=d, intermediate_size=F_, num_local_experts=E, num_experts_per_tok=k)
    block = mixtral.MixtralSparseMoeBlock(cfg).eval()
    prefix = "model.layers.0.block_sparse_moe."

    def accept(x):
        with torch.no_grad():
            return make_fixtures.softmax_topk_margin(block.gate(x), k) > make_fixtures.MARGIN

    x, used_seed = make_fixtures.draw_input(T, d, seed + 1000, accept)
    with torch.no_grad():
        y_f32, _ = block(x)
    weights = {prefix + "gate.weight": block.gate.weight.detach().clone()}
    quantised = {}
    for i, ex in enumerate(block.experts):
        for lin in ("w1", "w2", "w3"):
            n = prefix + "experts.%d.%s.weight" % (i, lin)
            wf = getattr(ex, lin).weight.detach().clone()
            q, s = int8.quantize(wf, group)
            weights[n] = q
            weights[n + "_scale"] = s
            weights["float." + n] = wf
            quantised[(i, lin)] = (q, s)

    def run(mode):
        b = mixtral.MixtralSparseMoeBlock(cfg).eval()
        b.load_state_dict(block.state_dict())
        for (i, lin), (q, s) in quantised.items():
            setattr(b.experts[i], lin, int8.Int8Linear(q, s, group, mode=mode))
        with torch.no_grad():
            out, _ = b(x)
        return out

    y_dot, y_wo = run("dot"), run("weight_only")
    rel = float((y_dot - y_f32).norm() / y_f32.norm())
    assert rel < 0.05, rel  # int8 stays close to fp32
    extra = {"__input__": x, "__output__": y_dot, "__output_weight_only__": y_wo, "__output_f32__": y_f32}
    meta = {"reference": "mixtral + int8", "prefix": prefix, "k": k, "group": group, "tokens": T, "seed": seed,
            "input_seed": used_seed, "moe.quantization": "int8", "moe.int8.group": group,
            "int8_vs_f32_relative_error": "%.3e" % rel}
    w.write(name, weights, extra, meta)


def write(w):
    case(w, "mixtral_int8", 0, seed=31)
    case(w, "mixtral_int8_g32", 32, seed=32)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    wr = make_fixtures.Writer(a.out)
    write(wr)
    for c, p, n, size in wr.written:
        print("wrote %-20s %3d tensors %8d bytes  %s" % (c, n, size, p))
