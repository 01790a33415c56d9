#!/usr/bin/python3
"""The int8 reference: moe's symmetric int8 quantiser and its W8A8 / weight-only Linear, written
from the definition in docs/scaling.md ("The int8 format"), in PyTorch, independently of the C++
kernels.

    quantize(v, group)           per block (a row, or `group` consecutive inputs of it):
                                 s = amax / 127, q = rint(v * (127 / amax)), |q| <= 127 (amax 0: 0)
    Int8Linear(q, s, group, mode) mode "dot" (W8A8: activations quantised per token the same
                                 way, exact integer sums, then
                                     per channel: fma(float(acc), sx * s, bias)
                                     grouped:     fma(sx, sum_g float(acc_g) * s_g, bias))
                                 or "weight_only" (x @ (s * q.float()).T + bias)

The fused multiply-add is computed in float64 and rounded once to float32 (the float64 product of
two floats is exact; the sum rounds at 2^-53, then to float32: equal to a true fma except in rare
double-rounding ties). Integer sums are float64 matmuls of integer-valued tensors (exact below
2^53: |acc| <= 127 * 127 * K).
"""

import torch


def quantize(v, group=0):
    """v [..., out, in] float -> (q int8 [..., out, in], s float32 [..., out] or [..., out, in / group])."""
    v = v.float()
    K = v.shape[-1]
    G = K if group == 0 else group
    assert K % G == 0 and (group == 0 or group % 32 == 0), (K, group)
    blocks = v.reshape(*v.shape[:-1], K // G, G)
    amax = blocks.abs().amax(dim=-1, keepdim=True)
    zero = amax == 0
    inv = torch.where(zero, torch.zeros_like(amax), 127.0 / torch.where(zero, torch.ones_like(amax), amax))
    s = torch.where(zero, torch.zeros_like(amax), amax / 127.0)
    q = torch.round(blocks * inv).clamp(-127, 127).to(torch.int8).reshape(v.shape)
    s = s.squeeze(-1)
    if group == 0:
        s = s.squeeze(-1)
    return q, s.float()


def dequantize(q, s, group=0):
    K = q.shape[-1]
    G = K if group == 0 else group
    if group == 0:
        return s.unsqueeze(-1) * q.float()
    return (s.unsqueeze(-1) * q.float().reshape(*q.shape[:-1], K // G, G)).reshape(q.shape)


def fma32(a, b, c):
    """float32(a * b + c) computed in float64 (see the module comment)."""
    return (a.double() * b.double() + c.double()).float()


class Int8Linear(torch.nn.Module):
    def __init__(self, q, s, group=0, bias=None, mode="dot"):
        super().__init__()
        self.q, self.s, self.group, self.bias, self.mode = q, s, group, bias, mode

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1]).float()
        N, K = self.q.shape
        c = torch.zeros(x.shape[0], N) if self.bias is None else self.bias.float().expand(x.shape[0], N)
        if self.mode == "weight_only":
            y = x @ dequantize(self.q, self.s, self.group).T + c
            return y.reshape(*shape[:-1], N)
        qx, sx = quantize(x, 0)  # per token: sx [M]
        if self.group == 0:
            acc = (qx.double() @ self.q.double().T).float()  # exact integers, then float(acc)
            y = fma32(acc, (sx[:, None] * self.s[None, :]), c)
        else:
            G = self.group
            t = torch.zeros(x.shape[0], N, dtype=torch.float64)
            for g in range(K // G):
                acc = (qx[:, g * G:(g + 1) * G].double() @ self.q[:, g * G:(g + 1) * G].double().T).float()
                t += acc.double() * self.s[None, :, g].double()
            y = fma32(sx[:, None].expand_as(t), t.float(), c)
        return y.reshape(*shape[:-1], N)
