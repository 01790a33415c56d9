"""RingMoE's hierarchical multi-modal MoE layer (MindSpore `Moe_modal`), in PyTorch.

Mirrors `ringmoe_framework/models/layers/moe_modal.py` (classes Moe_modal, Router, TopkRouter)
and `models/layers/mlp.py` (MLP) of the released RingMoE code as that code computes it
(../shared/docs/reference-systems.md and weight-names.md, section 1), with one data-parallel
group (dp = 1: one capacity per routed group for the whole batch / modality chunk) and fp32
everywhere (the released MLP casts its input to fp16 on Ascend; moe's parity is fp32).

Parameter names (MindSpore attribute paths), relative to a block prefix
`encoder.layers.{i}.blocks.{j}.mlp.`; M modalities, E_s experts per modality, E_c collaborative
experts, C hidden, F = 4C:

    special_router.{m}.dense.weight     [E_s, C]        nn.Dense [out, in], no bias
    special_ffn.{m}.mapping.weight      [E_s, C, F]     [E, in, out] (transpose_b=False)
    special_ffn.{m}.mapping.bias        [1, E_s, 1, F]
    special_ffn.{m}.projection.weight   [E_s, F, C]
    special_ffn.{m}.projection.bias     [1, E_s, 1, C]
    cross_router.dense.weight           [E_c, C]
    cross_ffn.{mapping,projection}.*    as special_ffn.{m}, with E_c experts
    public_ffn.mapping.weight           [C, F]          one expert: 2-D [in, out]
    public_ffn.mapping.bias             [F]
    public_ffn.projection.weight        [F, C]
    public_ffn.projection.bias          [C]

Forward, x [B, N, C] (B images of N tokens; the batch is ordered by modality, B = M * b):

  * cross:   all B*N tokens through cross_router / cross_ffn (one routed group);
  * public:  all tokens through public_ffn (always on, weight 1);
  * special: the batch is split along axis 0 into M equal chunks; chunk m (its images' tokens,
             in order) goes through special_router.{m} / special_ffn.{m} (one routed group each);
  * output = special + cross + public (MindSpore's order of the additions).

A routed group of T tokens and E experts (TopkRouter.construct, k = num_experts_chosen: 1 in
RingMoE's configuration, any k here; moe's CapacityPriority::sequential):
    logits   = x_fp32 @ W^T;  prob = softmax(logits)                     (fp32)
    for each choice j < k, every token's choice j before any token's choice j + 1:
        prob     = prob * (1 - experts KEPT so far)   (a dropped choice is not masked, so the
                   token's later choices ask the same full expert and are dropped too)
        e_j      = argmax(prob)  (ties: the lower index),  gate_j = prob[e_j]
        mask_j   = one_hot(e_j)                                         BEFORE capacity
        loss    += mean_e(mean_t(mask_j) * mean_t(prob / (sum(prob) + 1e-9))) * c * c
        position = exclusive cumsum of mask_j over tokens (+ the counts of earlier choices)
        kept_j   = position < capacity,  capacity = ceil(k * T * capacity_factor / E)
    combine weight of (t, j) = gate_j * kept_j, then (renormalize=True, the released code)
                      divided by (sum over the token's choices + 1e-9): a kept top-1 token
                      gets exactly 1.0 in fp32, a dropped one 0;  renormalize=False keeps
                      the raw probability gate_j * kept_j (the Switch convention).
    y[t] = sum_j w(t, j) * expert_{e_j}(x[t]);  a token dropped by every choice gets 0 from
    this group (it still gets the other branches).
  c is moe_config.expert_num (8 in RingMoE's config), not the group's expert count.
  Expert FFN (MLP): h = GELU(x @ mapping.weight[e] + mapping.bias[0, e, 0]);
                    y = h @ projection.weight[e] + projection.bias[0, e, 0].
  GELU: MindSpore nn.GELU() defaults to approximate=True, the tanh form (inferred from the
  MindSpore 2.x defaults; `gelu="erf"` selects the exact form).

Auxiliary loss: each group's loss is multiplied by aux_loss_factor (0.001); the layer's is
    0.001 * L_cross + (sum_m 0.001 * L_special_m) / M.

Two ways of computing the same function (`dispatch`):
  "loop"   per expert: gather its kept tokens, run the FFN, scatter-add weight * output (the
           PyTorch idiom; what the benchmark times);
  "dense"  MindSpore's: one-hot dispatch / combine tensors [T, E, capacity], expert inputs
           [E, capacity, C] by einsum, batched FFN over every capacity slot (empty ones too),
           combine by einsum. make_fixtures.py checks that both agree.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def expert_capacity(k, tokens, capacity_factor, experts):
    """mindspore.parallel._transformer.moe.calculate_expert_capacity: ceil(k * T * cf / E)."""
    res = k * tokens * capacity_factor / experts
    res_int = int(res)
    return res_int + 1 if res - res_int > 0 else res_int


def gelu(x, kind):
    if kind == "tanh":
        return F.gelu(x, approximate="tanh")
    if kind == "erf":
        return F.gelu(x)
    raise ValueError("gelu must be 'tanh' or 'erf', got %r" % (kind,))


class Dense(nn.Module):
    """mindspore.nn.Dense(has_bias=False): weight [out, in], y = x @ W^T."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))

    def forward(self, x):
        return F.linear(x, self.weight)


class Router(nn.Module):
    """Moe_modal's Router: a bias-free Dense to the group's experts (the TopkRouter part is in
    MoeModal.route)."""

    def __init__(self, hidden, experts):
        super().__init__()
        self.dense = Dense(hidden, experts)

    def forward(self, x):
        return self.dense(x.float())


class Linear(nn.Module):
    """RingMoE's Linear with transpose_b=False: weight [E, in, out] and bias [1, E, 1, out]
    (expert_num > 1), or weight [in, out] and bias [out] (expert_num == 1)."""

    def __init__(self, in_channels, out_channels, expert_num=1):
        super().__init__()
        self.expert_num = expert_num
        if expert_num > 1:
            self.weight = nn.Parameter(torch.empty(expert_num, in_channels, out_channels))
            self.bias = nn.Parameter(torch.empty(1, expert_num, 1, out_channels))
        else:
            self.weight = nn.Parameter(torch.empty(in_channels, out_channels))
            self.bias = nn.Parameter(torch.empty(out_channels))

    def expert(self, x, e):
        """Expert e on rows x [n, in]."""
        if self.expert_num > 1:
            return x @ self.weight[e] + self.bias[0, e, 0]
        return x @ self.weight + self.bias

    def batched(self, x):
        """All experts at once, x [E, n, in] -> [E, n, out] (BatchMatMul + bias broadcast)."""
        return torch.bmm(x, self.weight) + self.bias[0]


class MLP(nn.Module):
    """RingMoE's MLP: mapping (C -> F) + GELU, projection (F -> C); dropout off (inference)."""

    def __init__(self, hidden, ffn_hidden, expert_num=1, gelu_kind="tanh"):
        super().__init__()
        self.gelu_kind = gelu_kind
        self.mapping = Linear(hidden, ffn_hidden, expert_num)
        self.projection = Linear(ffn_hidden, hidden, expert_num)

    def expert(self, x, e=0):
        return self.projection.expert(gelu(self.mapping.expert(x, e), self.gelu_kind), e)

    def batched(self, x):
        return self.projection.batched(gelu(self.mapping.batched(x), self.gelu_kind))

    def forward(self, x):  # the shared (public) expert: expert_num == 1
        return self.expert(x, 0)


class MoeModal(nn.Module):
    def __init__(self, hidden=448, ffn_hidden=None, modal_num=4, specific_expert_num=4, cross_expert_num=4,
                 expert_num=8, num_experts_chosen=1, capacity_factor=1.2, aux_loss_factor=0.001,
                 renormalize=True, gelu_kind="tanh", dispatch="loop"):
        super().__init__()
        ffn_hidden = ffn_hidden or 4 * hidden
        self.hidden = hidden
        self.modal_num = modal_num
        self.specific_expert_num = specific_expert_num
        self.cross_expert_num = cross_expert_num
        self.expert_num = expert_num  # the constant c of the aux loss (moe_config.expert_num)
        self.k = num_experts_chosen
        self.capacity_factor = capacity_factor
        self.aux_loss_factor = aux_loss_factor
        self.renormalize = renormalize
        self.dispatch = dispatch
        self.special_ffn = nn.ModuleList(
            [MLP(hidden, ffn_hidden, specific_expert_num, gelu_kind) for _ in range(modal_num)])
        self.special_router = nn.ModuleList([Router(hidden, specific_expert_num) for _ in range(modal_num)])
        self.cross_ffn = MLP(hidden, ffn_hidden, cross_expert_num, gelu_kind)
        self.cross_router = Router(hidden, cross_expert_num)
        self.public_ffn = MLP(hidden, ffn_hidden, 1, gelu_kind)

    # -------------------------------------------------------------------------------- routing
    def route(self, router, x):
        """TopkRouter.construct for one group, x [T, C]. Returns a dict: logits [T, E], prob,
        expert_ids [T, k] (int64), gate [T, k] (prob of the choice), kept [T, k] (bool),
        position [T, k], weights [T, k] (combine weights), counts [E] (kept per expert),
        capacity, loss (the group's loss before aux_loss_factor)."""
        T = x.shape[0]
        logits = router(x)
        E = logits.shape[1]
        capacity = expert_capacity(self.k, T, self.capacity_factor, E)
        prob = F.softmax(logits, dim=-1)
        accum_mask = torch.zeros_like(prob)
        mask_count = torch.zeros(E, dtype=prob.dtype)
        loss = torch.zeros((), dtype=torch.float32)
        ids, gates, kept, positions = [], [], [], []
        p = prob
        for j in range(self.k):
            p = p * (1.0 - accum_mask)
            e = torch.argmax(p, dim=-1)  # ArgMaxWithValue: the first maximum
            gate = p.gather(1, e.unsqueeze(1)).squeeze(1)
            mask = F.one_hot(e, E).to(prob.dtype)
            p_normal = p / (p.sum(-1, keepdim=True) + 1e-9)
            loss = loss + torch.mean(mask.mean(0) * p_normal.mean(0)) * self.expert_num * self.expert_num
            pos = torch.cumsum(mask, dim=0) - mask  # exclusive cumsum over tokens
            if j > 0:
                pos = pos + mask_count
            pos = pos * mask
            keep_mask = (pos < capacity).to(prob.dtype) * mask
            flat = keep_mask.sum(-1)
            accum_mask = accum_mask + keep_mask
            mask_count = mask_count + keep_mask.sum(0)
            ids.append(e)
            gates.append(gate * flat)
            kept.append(flat > 0)
            positions.append(pos.sum(-1))
        gates = torch.stack(gates, 1)
        weights = gates / (gates.sum(-1, keepdim=True) + 1e-9) if self.renormalize else gates
        expert_ids = torch.stack(ids, 1)
        kept = torch.stack(kept, 1)
        counts = torch.zeros(E, dtype=torch.int64)
        for j in range(self.k):
            counts += torch.bincount(expert_ids[:, j][kept[:, j]], minlength=E)
        return dict(logits=logits, prob=prob, expert_ids=expert_ids, gate=torch.gather(prob, 1, expert_ids),
                    kept=kept, position=torch.stack(positions, 1), weights=weights, counts=counts,
                    capacity=capacity, loss=loss)

    # ------------------------------------------------------------------------------ one group
    def group(self, router, ffn, x):
        """One routed group (Moe_modal._construct), x [T, C] -> (y [T, C], routing dict)."""
        r = self.route(router, x)
        if self.dispatch == "dense":
            y = self._combine_dense(ffn, x, r)
        else:
            y = self._combine_loop(ffn, x, r)
        return y, r

    def _combine_loop(self, ffn, x, r):
        y = torch.zeros_like(x)
        E = r["logits"].shape[1]
        for j in range(self.k):
            for e in range(E):
                rows = torch.nonzero((r["expert_ids"][:, j] == e) & r["kept"][:, j], as_tuple=True)[0]
                if rows.numel() == 0:
                    continue
                out = ffn.expert(x.index_select(0, rows), e)
                y.index_add_(0, rows, (out * r["weights"][rows, j:j + 1]).to(y.dtype))  # bf16 modules: HF casts too
        return y

    def _combine_dense(self, ffn, x, r):
        T, C = x.shape
        E, cap = r["logits"].shape[1], r["capacity"]
        combine = torch.zeros(T, E, cap)
        for j in range(self.k):
            t = torch.nonzero(r["kept"][:, j], as_tuple=True)[0]
            combine[t, r["expert_ids"][t, j], r["position"][t, j].long()] += r["weights"][t, j]
        dispatch = (combine != 0).to(x.dtype)
        expert_in = torch.einsum("tec,td->ecd", dispatch, x)  # [E, cap, C]
        expert_out = ffn.batched(expert_in)  # every slot, empty ones too
        return torch.einsum("tec,ecd->td", combine, expert_out)

    # ---------------------------------------------------------------------------------- layer
    def forward(self, x):
        """x [B, N, C] (batch ordered by modality, B divisible by M) ->
        (y [B, N, C], aux_loss, info) with info = {"cross": routing dict, "special": [dicts],
        "cross_loss", "special_loss": [..] (group losses before aux_loss_factor)}."""
        B, N, C = x.shape
        assert B % self.modal_num == 0, "the batch must split into %d equal modality chunks" % self.modal_num
        flat = x.reshape(-1, C)
        cross_out, cross_r = self.group(self.cross_router, self.cross_ffn, flat)
        cross_aux = self.aux_loss_factor * cross_r["loss"]
        public_out = self.public_ffn(flat)
        b = B // self.modal_num
        special_outs, special_rs = [], []
        special_aux = torch.zeros(())
        for m in range(self.modal_num):
            xm = x[m * b:(m + 1) * b].reshape(-1, C)
            ym, rm = self.group(self.special_router[m], self.special_ffn[m], xm)
            special_outs.append(ym)
            special_rs.append(rm)
            special_aux = special_aux + self.aux_loss_factor * rm["loss"]
        special_out = torch.cat(special_outs, 0)
        y = (special_out + cross_out) + public_out
        aux = cross_aux + special_aux / self.modal_num
        info = dict(cross=cross_r, special=special_rs, cross_loss=cross_r["loss"],
                    special_loss=[r["loss"] for r in special_rs])
        return y.reshape(B, N, C), aux, info


def init_weights(module, generator, router_scale=1.0):
    """Deterministic init: weights uniform +-1/sqrt(fan_in) (fan_in = the `in` axis), biases
    likewise small; router weights times router_scale (sharper routing -> overflow)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("dense.weight"):
                fan_in = p.shape[1]
                scale = router_scale
            elif p.dim() >= 2:  # [E, in, out] or [in, out]
                fan_in = p.shape[-2]
                scale = 1.0
            else:
                fan_in = p.shape[-1]
                scale = 1.0
            if name.endswith("bias"):
                fan_in = module.hidden
            bound = scale / math.sqrt(fan_in)
            p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)
