#!/usr/bin/python3
"""Writes the PyTorch parity fixtures that tests/parity/*.cpp compare moe against.

    /usr/bin/python3 tools/reference/make_fixtures.py --out build/fixtures

One safetensors file per case (<case>.safetensors). Each holds the module's weights under their
real checkpoint names (with a realistic prefix), and:

    __input__          F32 [T, d]   the input tokens
    __output__         F32 [T, d]   the reference output
    __router_logits__  F32 [T, E]   the router logits
    __topk_ids__       I32 [T, k]   chosen experts; best first for references that sort
                                    (torch.topk sorted=True); for unsorted references
                                    (DeepSeek-V3, topk sorted=False) each row is sorted here by
                                    (weight desc, index asc) before saving
    __topk_weights__   F32 [T, k]   their combine weights, in the same order
    __kept__           I32 [T]      Switch only: 1 if the token fit in its expert's capacity
    __counts__         I32 [E]      Switch only: tokens kept per expert
    __aux_loss__       F32 []       softmax routers: HF load_balancing_loss_func
                                    (E * sum_e f_e P_e, f over the k choices, before capacity)
    __z_loss__         F32 []       softmax routers: mean_t logsumexp(logits_t)^2

RingMoE cases (ringmoe_moe, ringmoe_moe_rawprob: k = 1; ringmoe_moe_k2, ringmoe_moe_k2_rawprob:
k = 2, capacity factor 0.9; tools/reference/ringmoe_moe.py) hold __input__ / __output__ [B*N, C]
(the batch flattened, modality chunks in order), __aux_loss__ (the layer's
0.001 * (L_cross + mean_m L_special_m)) and, per routed group <g> = cross, special_0 ..
special_{M-1}: __<g>_logits__ F32 [T_g, E], __<g>_expert_ids__ I32 [T_g, k] (TopkRouter's
argmax per round), __<g>_weights__ F32 [T_g, k] (combine weight, 0 when dropped), __<g>_kept__
I32 [T_g] at k = 1, [T_g, k] for k > 1, __<g>_counts__ I32 [E] (kept per expert),
__<g>_group_loss__ F32 [] (sum_j mean_e(f_je P_je) * 8^2); metadata <g>_capacity, <g>_dropped
(dropped choices). The RSUniVLM case (rsunivlm_gmoe) holds
__request_offsets__ I32 [R + 1], __request_experts__ I32 [R] and the prompts as prompt_<r>.

The "__metadata__" map records the case's configuration (prefix, k, E, shapes, capacity factor,
...), all as strings. Everything runs in fp32 on the CPU, deterministically (fixed seeds). The
bf16 case stores bf16 weights and an expected output computed in fp32 from those bf16-rounded
weights.

Inputs are drawn so that no routing decision is a near-tie: for every token, the gap at each
decision boundary (consecutive chosen experts for sorted references, the last chosen vs. the
best rejected, DeepSeek's group boundary) must exceed MARGIN, otherwise the input is redrawn
with the next seed. A near-tie would make the chosen experts depend on summation order
(1e-7-level differences), which is not what these tests are about.
"""

import argparse
import copy
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from safetensors_io import load_file, save_file, state_dict_tensors  # noqa: E402
import deepseek  # noqa: E402
import mixtral  # noqa: E402
import qwen2_moe  # noqa: E402
import ringmoe_moe  # noqa: E402
import rs_moe_token  # noqa: E402
import rsunivlm_gmoe  # noqa: E402
import switch  # noqa: E402

MARGIN = 1e-4  # minimum gap (in logits / scores) at every routing decision boundary


# --------------------------------------------------------------------------------------------
# helpers


def hf_load_balancing_loss(router_logits, num_experts, top_k):
    """transformers' load_balancing_loss_func for one layer without an attention mask."""
    routing_weights = F.softmax(router_logits.float(), dim=-1)
    _, selected_experts = torch.topk(routing_weights, top_k, dim=-1)
    expert_mask = F.one_hot(selected_experts, num_experts)
    tokens_per_expert = torch.mean(expert_mask.float(), dim=0)  # [k, E]
    router_prob_per_expert = torch.mean(routing_weights, dim=0)  # [E]
    overall_loss = torch.sum(tokens_per_expert * router_prob_per_expert.unsqueeze(0))
    return overall_loss * num_experts


def router_z_loss(router_logits):
    """ST-MoE / transformers router_z_loss_func: mean_t logsumexp(logits_t)^2."""
    log_z = torch.logsumexp(router_logits.float(), dim=-1)
    return torch.sum(log_z ** 2) / router_logits.shape[0]


def min_sorted_gap(values, first, count):
    """Smallest gap between consecutive sorted (desc) values at positions first..first+count."""
    s = torch.sort(values, dim=-1, descending=True).values
    return float((s[:, first:first + count] - s[:, first + 1:first + count + 1]).min())


def softmax_topk_margin(logits, k):
    """Gaps among the k chosen (order is compared) and between the k-th and the (k+1)-th."""
    E = logits.shape[1]
    return min_sorted_gap(logits, 0, min(k, E - 1))


def draw_input(T, d, seed, accept, tries=200):
    """The first input x ~ N(0, 1) [T, d] (seeds seed, seed+1, ...) that `accept(x)` accepts."""
    for i in range(tries):
        g = torch.Generator().manual_seed(seed + i)
        x = torch.randn(T, d, generator=g)
        if accept(x):
            return x, seed + i
    raise RuntimeError("no input without near-ties in %d tries (seed %d)" % (tries, seed))


def init_linear_like(t, fan_in, g):
    """Uniform +-1/sqrt(fan_in), torch.nn.Linear's default scale, from generator g."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        t.copy_(torch.rand(t.shape, generator=g) * 2 * bound - bound)


def meta_str(d):
    return {k: (("true" if v else "false") if isinstance(v, bool) else str(v)) for k, v in d.items()}


def sort_rows_by_weight(ids, weights):
    """Sorts each row by (weight desc, index asc); returns (ids, weights)."""
    ids_out = torch.empty_like(ids)
    w_out = torch.empty_like(weights)
    for t in range(ids.shape[0]):
        pairs = sorted(zip(weights[t].tolist(), ids[t].tolist()), key=lambda p: (-p[0], p[1]))
        ids_out[t] = torch.tensor([p[1] for p in pairs], dtype=ids.dtype)
        w_out[t] = torch.tensor([p[0] for p in pairs], dtype=weights.dtype)
    return ids_out, w_out


class Writer:
    def __init__(self, out):
        self.out = out
        self.written = []

    def write(self, case, weights, extra, metadata):
        tensors = dict(weights)
        for k, v in extra.items():
            assert k not in tensors, k
            tensors[k] = v
        path = os.path.join(self.out, case + ".safetensors")
        save_file(tensors, path, meta_str(metadata))
        # Round-trip self-check of the writer on the real file.
        back = load_file(path)
        assert set(back) == set(tensors), case
        for k, v in tensors.items():
            assert back[k].dtype == v.dtype and torch.equal(back[k], v.contiguous()), (case, k)
        self.written.append((case, path, len(tensors), os.path.getsize(path)))
        return path


# --------------------------------------------------------------------------------------------
# cases


class Fp32Gate(torch.nn.Module):
    """A router gate that stays fp32 inside a bf16 module (fp32 logits from a bf16 input)."""

    def __init__(self, gate):
        super().__init__()
        self.gate = gate

    def forward(self, x):
        return self.gate(x.float())


def case_mixtral(w, name, weights_dtype, seed, T=64, d=64, F_=128, E=8, k=2):
    torch.manual_seed(seed)
    cfg = mixtral.MixtralConfig(hidden_size=d, intermediate_size=F_, num_local_experts=E, num_experts_per_tok=k)
    block = mixtral.MixtralSparseMoeBlock(cfg).eval()
    if weights_dtype == torch.bfloat16:
        # The checkpoint holds bf16 weights; the expected output is computed in fp32 from them.
        block = block.to(torch.bfloat16)
    prefix = "model.layers.0.block_sparse_moe."
    weights = state_dict_tensors(block, prefix)
    block = block.float()

    def accept(x):
        with torch.no_grad():
            return softmax_topk_margin(block.gate(x), k) > MARGIN

    x, used_seed = draw_input(T, d, seed + 1000, accept)
    with torch.no_grad():
        y, logits = block(x)
        _, rw, sel = block.route(x)
    extra = {
        "__input__": x,
        "__output__": y,
        "__router_logits__": logits,
        "__topk_ids__": sel.to(torch.int32),
        "__topk_weights__": rw,
        "__aux_loss__": hf_load_balancing_loss(logits, E, k).reshape(()),
        "__z_loss__": router_z_loss(logits).reshape(()),
    }
    if weights_dtype == torch.bfloat16:
        # PyTorch's bf16 module (the Hugging Face way: module.to(torch.bfloat16), bf16 input)
        # with its router gate kept in fp32 (as moe's Bf16DotMath keeps routers, and Switch
        # Transformer's selective precision does), on the input rounded to bf16.
        xb = x.to(torch.bfloat16).float()
        with torch.no_grad():
            assert softmax_topk_margin(block.gate(xb), k) > MARGIN, "near-tie on the bf16 input"
            bb = copy.deepcopy(block).to(torch.bfloat16)
            bb.gate = Fp32Gate(block.gate)
            yb, _ = bb(xb.to(torch.bfloat16))
        extra["__input_bf16__"] = xb
        extra["__output_bf16_module__"] = yb.float()
    meta = dict(reference="mixtral", upstream="transformers MixtralSparseMoeBlock", prefix=prefix, k=k,
                num_experts=E, hidden_size=d, intermediate_size=F_, tokens=T, seed=seed, input_seed=used_seed,
                weights_dtype=("bf16" if weights_dtype == torch.bfloat16 else "f32"), sorted_topk=True)
    w.write(name, weights, extra, meta)


def case_switch(w, name, seed, T=64, d=64, F_=128, E=8, cf=1.0):
    torch.manual_seed(seed)
    cfg = switch.SwitchConfig(d_model=d, d_ff=F_, num_experts=E, capacity_factor=cf)
    mlp = switch.SwitchSparseMLP(cfg).eval()
    # A sharper router than the default init, so that some experts overflow their capacity.
    with torch.no_grad():
        mlp.router.classifier.weight.mul_(3.0)
    prefix = "encoder.block.1.layer.1.mlp."
    weights = state_dict_tensors(mlp, prefix)
    capacity = mlp.router.expert_capacity(T)

    def accept(x):
        with torch.no_grad():
            kept, _, logits, _ = mlp.router(x)
        counts = kept.sum(0)
        load = F.one_hot(logits.argmax(-1), E).sum(0)
        # near-tie free, some tokens dropped, some experts under capacity
        return (min_sorted_gap(logits, 0, 1) > MARGIN and int((load > capacity).sum()) > 0
                and int((counts < capacity).sum()) > 0)

    x, used_seed = draw_input(T, d, seed + 1000, accept)
    with torch.no_grad():
        y, logits, expert_index, probs, kept_mask = mlp(x)
    kept = kept_mask.sum(-1).to(torch.int32)
    counts = kept_mask.sum(0).to(torch.int32)
    assert int((kept == 0).sum()) > 0
    assert torch.all(y[kept == 0] == 0)
    extra = {
        "__input__": x,
        "__output__": y,
        "__router_logits__": logits,
        "__topk_ids__": expert_index.to(torch.int32).reshape(T, 1),
        "__topk_weights__": probs.reshape(T, 1),
        "__kept__": kept,
        "__counts__": counts,
        "__aux_loss__": hf_load_balancing_loss(logits, E, 1).reshape(()),
        "__z_loss__": router_z_loss(logits).reshape(()),
    }
    meta = dict(reference="switch", upstream="Mesh-TF/GShard top-1 with capacity; HF SwitchTransformers names",
                prefix=prefix, k=1, num_experts=E, hidden_size=d, intermediate_size=F_, tokens=T,
                capacity_factor=cf, capacity=capacity, dropped=int((kept == 0).sum()), seed=seed,
                input_seed=used_seed, weights_dtype="f32", sorted_topk=True, dropped_tokens="zero")
    w.write(name, weights, extra, meta)


def deepseek_decisions(moe, x):
    """(group boundary gap, selection boundary gap, masked-score matrix) of the router on x."""
    g = moe.gate
    with torch.no_grad():
        logits = torch.nn.functional.linear(x, g.weight)
        scores = logits.sigmoid()
        sfc = scores + g.e_score_correction_bias.unsqueeze(0)
        G = g.n_group
        group_scores = sfc.view(-1, G, g.n_routed_experts // G).topk(2, dim=-1)[0].sum(-1)
        gs = torch.sort(group_scores, dim=-1, descending=True).values
        group_gap = float((gs[:, g.topk_group - 1] - gs[:, g.topk_group]).min()) if g.topk_group < G else 1.0
        group_idx = torch.topk(group_scores, k=g.topk_group, dim=-1, sorted=False)[1]
        gm = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
        sm = gm.unsqueeze(-1).expand(-1, G, g.n_routed_experts // G).reshape(-1, g.n_routed_experts)
        masked = sfc.masked_fill(~sm.bool(), 0.0)
        ms = torch.sort(masked, dim=-1, descending=True).values
        sel_gap = float((ms[:, g.top_k - 1] - ms[:, g.top_k]).min()) if g.top_k < g.n_routed_experts else 1.0
    return group_gap, sel_gap, masked, sfc, sm.bool(), scores


def case_deepseek(w, name, seed, bias, T=64, d=64, F_=32, E=16, k=4, n_group=4, topk_group=2, scale=2.5,
                  n_shared=1, check=None):
    torch.manual_seed(seed)
    cfg = deepseek.DeepseekV3Config(hidden_size=d, moe_intermediate_size=F_, n_routed_experts=E,
                                    num_experts_per_tok=k, n_group=n_group, topk_group=topk_group,
                                    routed_scaling_factor=scale, norm_topk_prob=True, n_shared_experts=n_shared)
    moe = deepseek.DeepseekV3MoE(cfg).eval()
    g = torch.Generator().manual_seed(seed + 7)
    init_linear_like(moe.gate.weight, d, g)  # torch.empty in transformers; initialised here
    with torch.no_grad():
        moe.gate.e_score_correction_bias.copy_(bias)
    prefix = "model.layers.3.mlp."
    weights = state_dict_tensors(moe, prefix)

    def accept(x):
        group_gap, sel_gap, *_ = deepseek_decisions(moe, x)
        return group_gap > MARGIN and sel_gap > MARGIN

    x, used_seed = draw_input(T, d, seed + 1000, accept)
    with torch.no_grad():
        y, idx, tw, logits = moe(x)
    if check is not None:
        check(moe, x, idx)
    ids_sorted, w_sorted = sort_rows_by_weight(idx, tw)
    extra = {
        "__input__": x,
        "__output__": y,
        "__router_logits__": logits,
        "__topk_ids__": ids_sorted.to(torch.int32),
        "__topk_weights__": w_sorted,
    }
    meta = dict(reference="deepseek_v3", upstream="transformers DeepseekV3MoE + DeepseekV3TopkRouter (noaux_tc)",
                prefix=prefix, k=k, num_experts=E, n_group=n_group, topk_group=topk_group,
                routed_scaling_factor=scale, norm_topk_prob=True, n_shared_experts=n_shared, hidden_size=d,
                moe_intermediate_size=F_, tokens=T, seed=seed, input_seed=used_seed, weights_dtype="f32",
                sorted_topk=False, topk_order="weight desc, index asc", group_mask_value="0.0",
                renorm_eps="1e-20")
    w.write(name, weights, extra, meta)


def check_bias_matters(moe, x, idx):
    """The bias and the group limit both change the choice for some tokens."""
    _, _, _, sfc, _, scores = deepseek_decisions(moe, x)
    k = moe.gate.top_k
    chosen = [set(r) for r in idx.tolist()]
    plain_biased = [set(r) for r in torch.topk(sfc, k, dim=-1)[1].tolist()]
    unbiased = [set(r) for r in torch.topk(scores, k, dim=-1)[1].tolist()]
    n_group_effect = sum(a != b for a, b in zip(chosen, plain_biased))
    n_bias_effect = sum(a != b for a, b in zip(chosen, unbiased))
    assert n_group_effect > 0 and n_bias_effect > 0, (n_group_effect, n_bias_effect)
    print("  deepseek_v3_bias: group limit changes %d tokens' choice, bias changes %d" % (n_group_effect,
                                                                                        n_bias_effect))


def check_mask_zero_matters(moe, x, idx):
    """Masked experts (score 0.0) are chosen over allowed experts with negative biased scores."""
    _, _, masked, sfc, allowed, _ = deepseek_decisions(moe, x)
    k = moe.gate.top_k
    n = 0
    with_inf = torch.topk(sfc.masked_fill(~allowed, float("-inf")), k, dim=-1)[1]
    for t in range(x.shape[0]):
        chosen = set(idx[t].tolist())
        if chosen != set(with_inf[t].tolist()):
            n += 1
        # every chosen masked expert ties at 0.0; the chosen set must still be unique
        assert any(not bool(allowed[t, e]) for e in chosen)
    assert n == x.shape[0], n
    print("  deepseek_v3_mask0: masked (0.0) experts chosen for all %d tokens" % n)


def case_qwen2(w, name, seed, T=64, d=64, F_=64, Fs=128, E=8, k=2, norm_topk_prob=False):
    torch.manual_seed(seed)
    cfg = qwen2_moe.Qwen2MoeConfig(hidden_size=d, moe_intermediate_size=F_, shared_expert_intermediate_size=Fs,
                                   num_experts=E, num_experts_per_tok=k, norm_topk_prob=norm_topk_prob)
    block = qwen2_moe.Qwen2MoeSparseMoeBlock(cfg).eval()
    prefix = "model.layers.0.mlp."
    weights = state_dict_tensors(block, prefix)

    def accept(x):
        with torch.no_grad():
            return softmax_topk_margin(block.gate(x), k) > MARGIN

    x, used_seed = draw_input(T, d, seed + 1000, accept)
    with torch.no_grad():
        y, logits = block(x)
        _, rw, sel = block.route(x)
    extra = {
        "__input__": x,
        "__output__": y,
        "__router_logits__": logits,
        "__topk_ids__": sel.to(torch.int32),
        "__topk_weights__": rw,
        "__aux_loss__": hf_load_balancing_loss(logits, E, k).reshape(()),
        "__z_loss__": router_z_loss(logits).reshape(()),
    }
    meta = dict(reference="qwen2_moe", upstream="transformers Qwen2MoeSparseMoeBlock", prefix=prefix, k=k,
                num_experts=E, norm_topk_prob=norm_topk_prob, hidden_size=d, moe_intermediate_size=F_,
                shared_expert_intermediate_size=Fs, tokens=T, seed=seed, input_seed=used_seed, weights_dtype="f32",
                sorted_topk=True)
    w.write(name, weights, extra, meta)


def case_rs_moe(w, name, seed, T=64, d=64, E=4, k=2, n_shared=2):
    torch.manual_seed(seed)
    moe = rs_moe_token.TokenMoE(dim=d, num_experts=E, top_k=k, num_shared_experts=n_shared).eval()
    prefix = "model.layers.0.moe."
    weights = state_dict_tensors(moe, prefix)

    def accept(x):
        with torch.no_grad():
            return softmax_topk_margin(moe.gate(x), k) > MARGIN

    x, used_seed = draw_input(T, d, seed + 1000, accept)
    with torch.no_grad():
        y, logits, rw, sel = moe(x)
    extra = {
        "__input__": x,
        "__output__": y,
        "__router_logits__": logits,
        "__topk_ids__": sel.to(torch.int32),
        "__topk_weights__": rw,
        "__aux_loss__": hf_load_balancing_loss(logits, E, k).reshape(()),
        "__z_loss__": router_z_loss(logits).reshape(()),
    }
    meta = dict(reference="rs_moe_token", upstream="RS-MoE released token MoE (Linear gate, GELU MLP experts)",
                prefix=prefix, k=k, num_experts=E, num_shared_experts=n_shared, hidden_size=d,
                intermediate_size=4 * d, tokens=T, seed=seed, input_seed=used_seed, weights_dtype="f32",
                sorted_topk=True, gate_bias=True)
    w.write(name, weights, extra, meta)


def ringmoe_group_tensors(tag, r):
    """The __<tag>_*__ tensors of one RingMoE routed group (routing dict of MoeModal.route).
    kept is [T] at k = 1 (the original format) and [T, k] for k > 1."""
    k = r["kept"].shape[1]
    return {
        "__%s_logits__" % tag: r["logits"],
        "__%s_expert_ids__" % tag: r["expert_ids"].to(torch.int32),
        "__%s_weights__" % tag: r["weights"],
        "__%s_kept__" % tag: (r["kept"][:, 0] if k == 1 else r["kept"]).to(torch.int32),
        "__%s_counts__" % tag: r["counts"].to(torch.int32),
        "__%s_group_loss__" % tag: r["loss"].reshape(()),
    }


def ringmoe_old_rule(mod, x):
    """What moe computed before it followed the released TopkRouter at k > 1: top-k by
    probability, weights renormalised over the top-k BEFORE capacity (or raw), capacity in token
    order with a token's choices together, Switch loss from first choices only. Returns
    (y [B, N, C], aux) for Moe_modal's forward on x [B, N, C]."""
    B, N, C = x.shape

    def group(router, ffn, xg):
        T = xg.shape[0]
        logits = router(xg)
        E = logits.shape[1]
        prob = F.softmax(logits, dim=-1)
        vals, ids = torch.topk(prob, mod.k, dim=-1)
        weights = vals / vals.sum(-1, keepdim=True) if mod.renormalize else vals
        capacity = ringmoe_moe.expert_capacity(mod.k, T, mod.capacity_factor, E)
        kept = torch.zeros(T, mod.k, dtype=torch.bool)
        count = [0] * E
        for t in range(T):
            for j in range(mod.k):
                e = int(ids[t, j])
                if count[e] < capacity:
                    kept[t, j] = True
                    count[e] += 1
        y = mod._combine_loop(ffn, xg, dict(logits=logits, expert_ids=ids, kept=kept, weights=weights))
        f = F.one_hot(ids[:, 0], E).to(prob.dtype).mean(0)
        loss = torch.mean(f * prob.mean(0)) * mod.expert_num * mod.expert_num
        return y, loss

    flat = x.reshape(-1, C)
    y, loss = group(mod.cross_router, mod.cross_ffn, flat)
    aux = mod.aux_loss_factor * loss
    y = y + mod.public_ffn(flat)
    b = B // mod.modal_num
    special, special_aux = [], torch.zeros(())
    for m in range(mod.modal_num):
        ym, lm = group(mod.special_router[m], mod.special_ffn[m], x[m * b:(m + 1) * b].reshape(-1, C))
        special.append(ym)
        special_aux = special_aux + mod.aux_loss_factor * lm
    return (torch.cat(special, 0) + y).reshape(B, N, C), aux + special_aux / mod.modal_num


def ringmoe_drop_pattern(r):
    """(first choices dropped, tokens that keep their first choice but lose their second) of one
    routed group; the second is 0 at k = 1."""
    kept = r["kept"]
    first = int((~kept[:, 0]).sum())
    keep1_lose2 = int((kept[:, 0] & ~kept[:, 1]).sum()) if kept.shape[1] > 1 else 0
    return first, keep1_lose2


def case_ringmoe(w, name, seed, renormalize, C=32, F_=128, M=4, Es=4, Ec=4, images=2, N=24, cf=1.2,
                 router_scale=3.0, k=1):
    """RingMoE's Moe_modal: M modalities x `images` images of N tokens each (48 tokens per
    modality), 4 modal + 4 collaborative experts + 1 shared, top-k (num_experts_chosen), capacity
    factor cf. At k > 1 the input is drawn so that, in the collaborative group and in at least
    two modalities, some first choices are dropped (so the token's second choice asks the same
    expert and is dropped too) and some tokens keep their first choice but lose their second
    (renormalised weight exactly 1, not p1 / (p1 + p2)); and the layer's output and aux loss must
    differ from ringmoe_old_rule's."""
    mod = ringmoe_moe.MoeModal(hidden=C, ffn_hidden=F_, modal_num=M, specific_expert_num=Es, cross_expert_num=Ec,
                               expert_num=8, num_experts_chosen=k, capacity_factor=cf, aux_loss_factor=0.001,
                               renormalize=renormalize, gelu_kind="tanh").eval()
    ringmoe_moe.init_weights(mod, torch.Generator().manual_seed(seed), router_scale=router_scale)
    prefix = "encoder.layers.0.blocks.1.mlp."
    weights = state_dict_tensors(mod, prefix)
    B = M * images

    def routings(x):
        with torch.no_grad():
            flat = x.reshape(-1, C)
            groups = [("cross", mod.route(mod.cross_router, flat))]
            for m in range(M):
                xm = x[m * images:(m + 1) * images].reshape(-1, C)
                groups.append(("special_%d" % m, mod.route(mod.special_router[m], xm)))
        return groups

    def accept(x2d):
        x = x2d.reshape(B, N, C)
        groups = routings(x)
        if min(min_sorted_gap(r["logits"], 0, min(k, r["logits"].shape[1] - 1)) for _, r in groups) <= MARGIN:
            return False
        if k > 1:
            pat = [ringmoe_drop_pattern(r) for _, r in groups]
            # first choices dropped, and first kept / second dropped, in the collaborative group
            # and in at least two modalities each
            return (pat[0][0] > 0 and pat[0][1] > 0 and sum(p[0] > 0 for p in pat[1:]) >= 2
                    and sum(p[1] > 0 for p in pat[1:]) >= 2)
        drops = [int((~r["kept"]).sum()) for _, r in groups]
        under = [int((r["counts"] < r["capacity"]).sum()) for _, r in groups]
        # overflow in the collaborative group and in at least two modalities; spare room somewhere
        return drops[0] > 0 and sum(d > 0 for d in drops[1:]) >= 2 and all(u > 0 for u in under)

    x2d, used_seed = draw_input(B * N, C, seed + 1000, accept)
    x = x2d.reshape(B, N, C)
    with torch.no_grad():
        y, aux, info = mod(x)
        mod.dispatch = "dense"  # MindSpore's dispatch/combine tensors: the same function
        y_dense, aux_dense, info_dense = mod(x)
        mod.dispatch = "loop"
        for kind in ("erf",):  # the GELU form matters at this tolerance
            for ffn in list(mod.special_ffn) + [mod.cross_ffn, mod.public_ffn]:
                ffn.gelu_kind = kind
            y_erf, _, _ = mod(x)
            for ffn in list(mod.special_ffn) + [mod.cross_ffn, mod.public_ffn]:
                ffn.gelu_kind = "tanh"
    assert torch.allclose(y_dense, y, rtol=1e-5, atol=1e-6), float((y_dense - y).abs().max())
    assert float(aux_dense) == float(aux)
    gelu_gap = float((y_erf - y).norm() / y.norm())
    assert gelu_gap > 1e-4, gelu_gap
    old_gap = aux_old_gap = None
    if k > 1:
        # The fixture must catch the rule moe used before (token-order capacity, weights
        # renormalised before capacity, first-choice loss): both output and loss differ.
        with torch.no_grad():
            y_old, aux_old = ringmoe_old_rule(mod, x)
        old_gap = float((y_old - y).norm() / y.norm())
        aux_old_gap = abs(float(aux_old) - float(aux)) / abs(float(aux))
        assert old_gap > 1e-3 and aux_old_gap > 1e-2, (old_gap, aux_old_gap)
    groups = [("cross", info["cross"])] + [("special_%d" % m, r) for m, r in enumerate(info["special"])]
    extra = {"__input__": x2d, "__output__": y.reshape(B * N, C), "__aux_loss__": aux.reshape(())}
    meta = dict(reference="ringmoe_moe", upstream="RingMoE Moe_modal / TopkRouter / MLP (MindSpore), dp = 1",
                prefix=prefix, modalities=M, images_per_modality=images, batch=B, tokens_per_image=N,
                tokens=B * N, hidden_size=C, ffn_size=F_, specific_expert_num=Es, cross_expert_num=Ec, k=k,
                capacity_factor=cf, renormalize=renormalize, gelu="tanh", aux_constant=8, aux_loss_factor=0.001,
                seed=seed, input_seed=used_seed, weights_dtype="f32", gelu_erf_rel_gap="%.3e" % gelu_gap)
    if k > 1:
        meta.update(old_rule_output_rel_gap="%.3e" % old_gap, old_rule_aux_rel_gap="%.3e" % aux_old_gap)
    for tag, r in groups:
        extra.update(ringmoe_group_tensors(tag, r))
        dropped = int((~r["kept"]).sum())  # dropped choices
        meta["%s_capacity" % tag] = r["capacity"]
        meta["%s_dropped" % tag] = dropped
        kept = r["kept"]
        if renormalize and k == 1:  # the released convention: kept top-1 tokens weigh exactly 1, dropped ones 0
            assert torch.equal(r["weights"][:, 0], kept[:, 0].float()), tag
        elif renormalize:  # a token that keeps only its first choice weighs exactly 1 there
            only_first = kept[:, 0] & ~kept[:, 1:].any(1)
            assert torch.equal(r["weights"][only_first, 0], torch.ones(int(only_first.sum()))), tag
            assert torch.equal(r["weights"][~kept], torch.zeros(int((~kept).sum()))), tag
        else:
            assert torch.equal(r["weights"], torch.where(kept, r["gate"], torch.zeros(())))
        if k > 1:
            # a dropped choice makes the token's later choices ask the same expert (dropped too)
            for j in range(1, k):
                again = ~kept[:, j - 1]
                assert torch.equal(r["expert_ids"][again, j], r["expert_ids"][again, j - 1]), tag
                assert not bool(kept[again, j].any()), tag
    print("  %s: capacity %s, dropped %s (cross, special 0..%d)" % (
        name, [r["capacity"] for _, r in groups], [int((~r["kept"]).sum()) for _, r in groups], M - 1))
    if k > 1:
        print("  %s: (first choices dropped, first kept + second dropped) %s; old rule: output rel gap %.3e, "
              "aux rel gap %.3e" % (name, [ringmoe_drop_pattern(r) for _, r in groups], old_gap, aux_old_gap))
    w.write(name, weights, extra, meta)


def case_rsunivlm(w, name, seed, H=64, I=160):
    """RSUniVLM G-MoE FFN: 3 SwiGLU experts, one per request by the prompt's task tag; three
    requests of different granularities in one batch."""
    torch.manual_seed(seed)
    ffn = rsunivlm_gmoe.GMoEFFN(hidden_size=H, intermediate_size=I, num_experts=3).eval()
    prefix = "model.layers.3.mlp."
    weights = ffn.state_dict_named(prefix)
    prompts = ["<image>\n[VG] Where is the airplane parked next to the hangar?",
               "<image>\n[CAP] Describe this remote sensing image in detail.",
               "<image>\n[SEG] Segment the water bodies in this image."]
    lengths = [20, 13, 31]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    g = torch.Generator().manual_seed(seed + 1000)
    x = torch.randn(offsets[-1], H, generator=g)
    with torch.no_grad():
        y, chosen = ffn(x, offsets, prompts)
        # every expert gives a different answer: the choice is what is tested
        for r in range(len(prompts)):
            a, b = offsets[r], offsets[r + 1]
            for e in range(3):
                if e != chosen[r]:
                    assert not torch.allclose(ffn.forward_one(x[a:b], e), y[a:b], rtol=1e-3)
    assert sorted(chosen) == [0, 1, 2], chosen
    extra = {
        "__input__": x,
        "__output__": y,
        "__request_offsets__": torch.tensor(offsets, dtype=torch.int32),
        "__request_experts__": torch.tensor(chosen, dtype=torch.int32),
    }
    meta = dict(reference="rsunivlm_gmoe", upstream="RSUniVLM Qwen2GMoEDecoderLayer.mlp (3 x Qwen2MLP), app.py tags",
                prefix=prefix, requests=len(prompts), num_experts=3, hidden_size=H, intermediate_size=I,
                tokens=offsets[-1], seed=seed, input_seed=seed + 1000, weights_dtype="f32")
    for r, p in enumerate(prompts):
        meta["prompt_%d" % r] = p
    w.write(name, weights, extra, meta)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--include", action="append", default=[], metavar="MODULE",
                    help="also run an opt-in fixtures_<family> module (IN_DEFAULT_SET = False), e.g. fixtures_decoder")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    t0 = time.time()
    w = Writer(args.out)

    case_mixtral(w, "mixtral_f32", seed=1, weights_dtype=torch.float32)
    case_mixtral(w, "mixtral_bf16", seed=2, weights_dtype=torch.bfloat16)
    case_switch(w, "switch_cf1", seed=3, cf=1.0)
    # Realistic e_score_correction_bias: small, random.
    case_deepseek(w, "deepseek_v3", seed=4, bias=torch.randn(16, generator=torch.Generator().manual_seed(40)) * 0.05)
    # A large bias: it changes the chosen groups and experts (weights still from unbiased scores).
    case_deepseek(w, "deepseek_v3_bias", seed=5,
                  bias=torch.randn(16, generator=torch.Generator().manual_seed(50)) * 0.5, check=check_bias_matters)
    # Masked experts score 0.0, so they beat allowed experts whose biased score is negative.
    # E = 8 in 4 groups of 2; groups 0, 1 always win (bias +3.5), the weaker of groups 2, 3 is
    # masked; experts 1 and 3 always score < -0.5: with k = 6 the two masked experts (0.0) fill
    # the last two places. With -inf masking, experts 1 and 3 would be chosen instead.
    case_deepseek(w, "deepseek_v3_mask0", seed=6, E=8, k=6, n_group=4, topk_group=3, scale=1.0,
                  bias=torch.tensor([3.5, -1.5, 3.5, -1.5, 0.0, 0.0, 0.0, 0.0]), check=check_mask_zero_matters)
    case_qwen2(w, "qwen2_moe", seed=7)
    case_rs_moe(w, "rs_moe_token", seed=8)
    case_ringmoe(w, "ringmoe_moe", seed=9, renormalize=True)
    case_ringmoe(w, "ringmoe_moe_rawprob", seed=10, renormalize=False)
    # k = 2 (num_experts_chosen = 2), capacity factor 0.6 (capacity 15 of 48 tokens per modal
    # expert, 58 of 192 per collaborative one; with these balanced routers a first choice
    # overflows only below about 0.7): the released TopkRouter's sequential capacity,
    # repeat-after-drop and renormalisation over the kept choices all matter.
    case_ringmoe(w, "ringmoe_moe_k2", seed=12, renormalize=True, k=2, cf=0.6)
    case_ringmoe(w, "ringmoe_moe_k2_rawprob", seed=13, renormalize=False, k=2, cf=0.6)
    case_rsunivlm(w, "rsunivlm_gmoe", seed=11)

    # Further families live in their own modules, tools/reference/fixtures_<family>.py, each
    # with write(w): the vision encoders, the remote-sensing adapters, the RingMoE model. A module
    # with IN_DEFAULT_SET = False (the decoder models) runs only when --include names it.
    import glob
    import importlib
    here = os.path.dirname(os.path.abspath(__file__))
    for path in sorted(glob.glob(os.path.join(here, "fixtures_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        mod = importlib.import_module(name)
        if getattr(mod, "IN_DEFAULT_SET", True) or name in args.include:
            mod.write(w)

    for case, path, n, size in w.written:
        print("wrote %-20s %3d tensors %8d bytes  %s" % (case, n, size, path))
    print("%d fixtures in %.1f s" % (len(w.written), time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
