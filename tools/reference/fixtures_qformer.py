"""Parity fixture of the BLIP-2 / InstructBLIP Q-Former (tools/reference/qformer.py, LAVIS's
Qformer.py), written by make_fixtures.py through write(w); tests/parity/test_parity_qformer.cpp
reads it.

  qformer_tiny   hidden 32, 3 layers (cross-attention in layers 0 and 2: freq 2), 4 heads of 8,
                 intermediate 64, encoder_width 48, 8 query tokens, vocab 120, 40 positions,
                 LayerNorm eps 1e-12; seeded random weights with non-trivial LayerNorms. Weights
                 under LAVIS's names ("Qformer.bert.*", "query_tokens", and the I64 buffer
                 "Qformer.bert.embeddings.position_ids" [1, 40] that real checkpoints carry):
    __image__              F32 [21, 48]    image embeddings (the ViT's output)
    __image_2__            F32 [17, 48]    a second image
    __ids__                I32 [7]         Q-Former text ids
    __out_queries__        F32 [8, 32]     queries only (no text), image 1
    __out_text__           F32 [15, 32]    queries + text, image 1
    __out_text_image_2__   F32 [15, 32]    queries + text, image 2
    __out_text_bf16w__     F32 [15, 32]    queries + text, image 1, every Linear weight rounded to
                                           bf16 (biases, embeddings, norms fp32), computed in fp32:
                                           what moe's Linear<bf16> computes
"""

import copy
import math

import torch

import qformer
from safetensors_io import state_dict_tensors

IN_DEFAULT_SET = True


def init_random(module, g):
    """Linear weights uniform +-1/sqrt(fan_in), biases +-0.1, LayerNorm gamma 1 +- 0.3, beta +-0.2,
    embeddings and query tokens N(0, 0.5^2)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "embeddings" in name and p.dim() == 2 or name == "query_tokens":
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif p.dim() == 2:
                b = 1.0 / math.sqrt(p.shape[1])
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * b)
            elif "LayerNorm" in name and name.endswith("weight"):
                p.copy_(1.0 + (torch.rand(p.shape, generator=g) * 2 - 1) * 0.3)
            elif "LayerNorm" in name:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.2)
            else:
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * 0.1)


def bf16_linear_weights(model):
    """A copy whose nn.Linear weights are rounded to bf16 (kept fp32)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(mod.weight.to(torch.bfloat16).float())
    return m


def case_tiny(w):
    cfg = qformer.QFormerConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                                max_position_embeddings=40, layer_norm_eps=1e-12, encoder_width=48,
                                cross_attention_freq=2, num_query_tokens=8, vocab_size=120)
    torch.manual_seed(0)
    m = qformer.QFormer(cfg).eval()
    init_random(m, torch.Generator().manual_seed(301))
    g = torch.Generator().manual_seed(302)
    image = torch.randn(21, 48, generator=g)
    image2 = torch.randn(17, 48, generator=g)
    ids = torch.randint(0, cfg.vocab_size, (7,), generator=g)
    ids[0], ids[-1] = 0, cfg.vocab_size - 1  # both ends of the vocabulary
    with torch.no_grad():
        out_q = m(None, image[None])[0]
        out_t = m(ids[None], image[None])[0]
        out_t2 = m(ids[None], image2[None])[0]
        out_b = bf16_linear_weights(m)(ids[None], image[None])[0]
    assert out_q.shape == (8, 32) and out_t.shape == (15, 32)
    # the text changes the query rows (self-attention over all rows), the image changes them too
    assert float((out_t[:8] - out_q).abs().max()) > 1e-2
    assert float((out_t2[:8] - out_t[:8]).abs().max()) > 1e-2
    weights = state_dict_tensors(m)
    assert weights["Qformer.bert.embeddings.position_ids"].dtype == torch.int64
    assert not any(k.startswith("Qformer.bert.encoder.layer.1.crossattention") for k in weights)
    extra = {"__image__": image, "__image_2__": image2, "__ids__": ids.to(torch.int32),
             "__out_queries__": out_q.contiguous(), "__out_text__": out_t.contiguous(),
             "__out_text_image_2__": out_t2.contiguous(), "__out_text_bf16w__": out_b.contiguous()}
    meta = dict(reference="qformer.QFormer", upstream="LAVIS lavis/models/blip2_models/Qformer.py (BertModel)",
                hidden=32, layers=3, heads=4, intermediate=64, encoder_width=48, cross_attention_freq=2,
                query_tokens=8, vocab=120, max_positions=40, eps=1e-12, bf16w_rel_gap="%.3e" % float(
                    (out_b - out_t).norm() / out_t.norm()))
    w.write("qformer_tiny", weights, extra, meta)


def write(w):
    case_tiny(w)
