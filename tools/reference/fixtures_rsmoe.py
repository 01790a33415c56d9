#!/usr/bin/python3
"""Parity fixtures of the assembled RS-MoE (issue 18): tiny seeded models written as RS-MoE model
folders (rs/rsmoe/config.hpp), and what tools/reference/rsmoe.py computes on them.

    /usr/bin/python3 tools/reference/make_fixtures.py --out build/fixtures   (default set)

Cases (each a folder <out>/<case>/ and a file <out>/<case>.safetensors):

  rsmoe_tiny        text router, three LoRA experts over one LLaMA base (PEFT folders):
                    expert 0 gate/up/down r 1 alpha 8 (RS-MoE's released setting), expert 1
                    q/v/gate/down r 4 alpha 16, expert 2 all seven targets r 2 with rslora
  rsmoe_tiny_soft   soft router (router.* in model.safetensors, prompts of Lp = 3), the same experts
  rsmoe_tiny_llm    text router, three separate LLMs of different sizes (hidden 64 / 48 / 64 with
                    3 layers), each with its own llm_proj.safetensors
  rsmoe_tiny_soft_llm  soft router over the same kind of separate LLMs (each expert's prompt
                    projected to its own LLM's width)

Folder: rsmoe.json; model.safetensors with LAVIS's names (visual_encoder.*, ln_vision.*,
Qformer.bert.* with the position_ids buffer, query_tokens, llm_proj.* / router.*); llm/ (HF
LLaMA folder) and experts/<name>/ (PEFT adapter folders, or HF folders + llm_proj.safetensors).

Fixture tensors:
    __image__               U8  [23, 37, 3]   the raw RGB image
    __pixels__              F32 [3, 28, 28]   blip_image_eval (PIL bicubic, ToTensor, CLIP Normalize)
    __image_embeds__        F32 [17, 48]      ln_vision(visual_encoder(pixels))
    __qformer_ids_<e>__     I32 [T_e]         expert e's Q-Former ids (text router; soft: the global
                                              instruction's, the same for every e)
    __llm_ids_<e>__         I32 [n_e]         expert e's LLM text ids (first: 2, LAVIS's bos "</s>")
    __query_output_<e>__    F32 [8 + T_e, 32] the Q-Former's last hidden state
    __inputs_<e>__          F32 [rows_e, H_e] expert e's LLM input embeddings
    __logits_<e>__          F32 [rows_e, V]   all positions' logits of expert e on its input
    __greedy_ids_<e>__      I32 [<= 16]       greedy with repetition penalty 1.5 over the generated
                                              ids, eos 2 stops (KV cache)
    __greedy_logits_<e>__   F32 [m, V]        the raw logits each greedy token came from
    __beam_ids_<e>__        I32 [<= 16]       LAVIS's generation: 5 beams, repetition penalty 1.5,
                                              min_length 1, eos 2 (beam_search.py: transformers'
                                              beam search); the best hypothesis, eos included
    __beam_score_<e>__      F32 [1]           its score (summed log-probabilities / length)
    __weights__             F32 [3]           soft router: the experts' weights
Metadata: instruction (the global instruction; each expert's text is its template in rsmoe.json
with {instruction} replaced), texts_<e>, tolerances.

Tiny sizes: EVA 28 px / patch 7 (4 x 4 + CLS = 17 tokens), width 48, 2 blocks, 4 heads, MLP 100;
Q-Former hidden 32, 2 layers (cross-attention in layer 0), 4 heads, intermediate 64, 8 queries,
vocab 120, 40 positions; LLaMA hidden 64, 2 layers, 4 heads / 2 KV, intermediate 128, vocab 256.
Tolerances the C++ side meets: pixels bit-identical; image embeds, Q-Former outputs, inputs and
logits within 1e-4 relative (max abs difference / max |reference|); greedy and beam ids identical.
"""

import copy
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures_decoder  # noqa: E402
import hf_decoder  # noqa: E402
import lora  # noqa: E402
import qformer  # noqa: E402
import beam_search  # noqa: E402
import rsmoe  # noqa: E402
import vision_vit  # noqa: E402
from safetensors_io import save_file  # noqa: E402

IN_DEFAULT_SET = True

S = 28
VISION = dict(img=S, patch=7, dim=48, depth=2, heads=4, mlp_hidden=100)
QCFG = qformer.QFormerConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                             max_position_embeddings=40, encoder_width=48, cross_attention_freq=2,
                             num_query_tokens=8, vocab_size=120)
GREEDY = 16
PENALTY = 1.5
EOS = 2
BEAMS = 5  # LAVIS's num_beams
LP = 3  # soft prompt length
INSTRUCTION = "Take a look at this image and describe what you notice."
EXPERTS = [
    ("theme", "experts/theme", "{instruction} Focus on the overall theme."),
    ("objects", "experts/objects", "{instruction} Focus on the objects."),
    ("relations", "experts/relations", "{instruction} Focus on the relations."),
]
ADAPTERS = [  # (targets, r, alpha, rslora)
    (["gate_proj", "up_proj", "down_proj"], 1, 8, False),
    (["q_proj", "v_proj", "gate_proj", "down_proj"], 4, 16, False),
    (list(lora.TARGETS), 2, 4, True),
]


def rel(a, b):
    return fixtures_decoder.rel(a, b)


def blip_pixels(image_u8):
    """LAVIS blip_image_eval: PIL bicubic to S x S, ToTensor (/255 in float32), CLIP Normalize."""
    from PIL import Image
    pil = Image.fromarray(np.ascontiguousarray(image_u8), mode="RGB").resize((S, S), resample=Image.BICUBIC)
    x = torch.from_numpy(np.array(pil)).permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    return x.sub(mean).div(std)


def encoder(seed, llm_width):
    enc = rsmoe.Blip2VicunaInstruct(VISION, QCFG, llm_width).eval()
    g = torch.Generator().manual_seed(seed)
    vision_vit.init_random(enc.visual_encoder, g)
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name.startswith("visual_encoder."):
                continue
            if name.endswith("LayerNorm.weight") or name == "ln_vision.weight":
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 2 and "embeddings" not in name:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
        enc.llm_proj.weight.mul_(fixtures_decoder.EMBED_STD)  # visual tokens on the embeddings' scale
    return enc


def llm(seed, **kw):
    cfg = hf_decoder.DecoderConfig(fixtures_decoder.base_config("llama", **kw))
    return fixtures_decoder.randomize(hf_decoder.DecoderForCausalLM(cfg), seed).eval()


def with_adapter(base, k, seed):
    targets, r, alpha, rs = ADAPTERS[k]
    m = copy.deepcopy(base)
    lora.apply_lora(m, targets, r, alpha, use_rslora=rs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, lora.LoraLinear):
                A, B = mod.lora_A["default"].weight, mod.lora_B["default"].weight
                A.copy_(torch.randn(A.shape, generator=g) / math.sqrt(A.shape[1]))
                B.copy_(0.6 * torch.randn(B.shape, generator=g) / math.sqrt(B.shape[1]) / mod.scaling["default"])
    return m, lora.lora_config(targets, r, alpha, use_rslora=rs)


def image(seed):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 256, (23, 37, 3), generator=g, dtype=torch.int64)
    yy = torch.arange(23)[:, None, None] * 7
    xx = torch.arange(37)[None, :, None] * 5
    return ((base // 2 + yy + xx) % 256).to(torch.uint8)


def ids(g, n, lo, hi, first=None):
    t = torch.randint(lo, hi, (n,), generator=g)
    if first is not None:
        t[0] = first
    return t


def save_state(tensors, path):
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, {"format": "pt"})


def encoder_tensors(enc):
    sd = {k: v.detach().clone() for k, v in enc.state_dict().items()}
    sd["Qformer.bert.embeddings.position_ids"] = sd["Qformer.bert.embeddings.position_ids"].to(torch.int64)
    return sd


def config_json(router, kind, members):
    return {
        "architectures": ["RsMoe"],
        "vision": {"image_size": S, "patch_size": VISION["patch"], "hidden_size": VISION["dim"],
                   "num_hidden_layers": VISION["depth"], "num_attention_heads": VISION["heads"],
                   "intermediate_size": VISION["mlp_hidden"], "layer_norm_eps": 1e-6},
        "ln_vision_eps": 1e-5,
        "max_txt_len": 128,
        "qformer": {"hidden_size": QCFG.hidden_size, "num_hidden_layers": QCFG.num_hidden_layers,
                    "num_attention_heads": QCFG.num_attention_heads, "intermediate_size": QCFG.intermediate_size,
                    "max_position_embeddings": QCFG.max_position_embeddings, "layer_norm_eps": 1e-12,
                    "encoder_width": QCFG.encoder_width, "cross_attention_freq": QCFG.cross_attention_freq,
                    "num_query_token": QCFG.num_query_tokens, "vocab_size": QCFG.vocab_size},
        "router": router,
        "experts": {"kind": kind, "base": "llm",
                    "members": [{"name": n, "path": p, "instruction": t} for n, p, t in members]},
        "aggregator": {"type": "concat", "separator": " "},
        "llm_bos": "</s>",
        "instruction": INSTRUCTION,
    }


def run_expert(model, parts, llm_ids):
    with torch.no_grad():
        x = rsmoe.llm_inputs(model, parts, llm_ids)
        logits = model(inputs_embeds=x)[0][0]
    gids, glog = rsmoe.greedy(model, x, GREEDY, PENALTY, EOS)
    return x[0], logits, gids, glog


def case(w, name, router, kind, seed):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed + 7)
    raw = image(seed + 1)
    pixels = blip_pixels(raw.numpy())
    folder = os.path.join(w.out, name)
    os.makedirs(os.path.join(folder, "experts"), exist_ok=True)
    texts = [t.replace("{instruction}", INSTRUCTION) for _, _, t in EXPERTS]

    if kind == "lora":
        base = llm(seed + 2)
        models, cfgs = zip(*[with_adapter(base, k, seed + 10 + k) for k in range(3)])
        widths = [base.config.hidden_size] * 3
        enc = encoder(seed + 3, widths[0])
        projs = [enc.llm_proj] * 3
    else:
        models = [llm(seed + 20), llm(seed + 21, hidden_size=48, head_dim=12, intermediate_size=96),
                  llm(seed + 22, layers=3)]
        widths = [m.config.hidden_size for m in models]
        enc = encoder(seed + 3, widths[0])
        projs = []
        for k, m in enumerate(models):
            p = torch.nn.Linear(QCFG.hidden_size, widths[k])
            with torch.no_grad():
                p.weight.copy_(fixtures_decoder.EMBED_STD * torch.randn(p.weight.shape, generator=g)
                               / math.sqrt(QCFG.hidden_size))
                p.bias.copy_(0.1 * torch.randn(p.bias.shape, generator=g))
            projs.append(p)

    router_w = None
    if router == "soft":
        E, P, du = 3, 4, 2 * QCFG.hidden_size
        router_w = {
            "gate_w": torch.randn(E, du, generator=g) / math.sqrt(du),
            "gate_b": 0.1 * torch.randn(E, generator=g),
            "mix_w": torch.randn(E, P, du, generator=g) / math.sqrt(du),
            "mix_b": 0.1 * torch.randn(E, P, generator=g),
            "bank": torch.randn(P, LP, 16, generator=g),
            "proj": [fixtures_decoder.EMBED_STD * torch.randn(widths[e], 16, generator=g) / 4 for e in range(E)],
        }

    extra = {"__image__": raw.contiguous(), "__pixels__": pixels.contiguous()}
    with torch.no_grad():
        emb = enc.image_embeds(pixels[None])[0]
    extra["__image_embeds__"] = emb.contiguous()
    margins, beam_gaps = [], []
    if router == "soft":
        q_ids = ids(g, 12, 3, QCFG.vocab_size, first=101 % QCFG.vocab_size)
        l_ids = ids(g, 10, 3, fixtures_decoder.V, first=2)
        with torch.no_grad():
            qo = enc.qformer_output(emb, q_ids)
            weights, prompts = rsmoe.soft_route(router_w, qo[QCFG.num_query_tokens:], qo[:QCFG.num_query_tokens])
        extra["__weights__"] = weights
    for e in range(3):
        if router == "text":
            q_ids = ids(g, 8 + 2 * e, 3, QCFG.vocab_size)
            l_ids = ids(g, 9 + e, 3, fixtures_decoder.V, first=2)
            with torch.no_grad():
                qo = enc.qformer_output(emb, q_ids)
        with torch.no_grad():
            vis = projs[e](qo[:QCFG.num_query_tokens])
        parts = [vis] + ([prompts[e]] if router == "soft" else [])
        x, logits, gids, glog = run_expert(models[e], parts, l_ids)
        margins.append(hf_decoder.top2_margin(glog))
        extra["__qformer_ids_%d__" % e] = q_ids.to(torch.int32)
        extra["__llm_ids_%d__" % e] = l_ids.to(torch.int32)
        extra["__query_output_%d__" % e] = qo.contiguous()
        extra["__inputs_%d__" % e] = x.contiguous()
        extra["__logits_%d__" % e] = logits.contiguous()
        extra["__greedy_ids_%d__" % e] = gids.to(torch.int32)
        extra["__greedy_logits_%d__" % e] = glog.contiguous()
        # LAVIS's generation: 5 beams, repetition penalty 1.5, min_length 1 (inputs_embeds only:
        # transformers' input_ids hold the generated ids alone)
        with torch.no_grad():
            def next_logits(gens, m=models[e], x=x):
                return torch.stack([m(inputs_embeds=torch.cat((x, m.model.embed_tokens(
                    torch.tensor(g, dtype=torch.long))))[None])[0][0, -1] for g in gens])
            gaps = []
            (bscore, bids), = beam_search.beam_search(next_logits, [], BEAMS, GREEDY, [EOS], 1.0, False, PENALTY, 1, 1,
                                                      gaps)[0]
        beam_gaps.append(min(gaps))
        extra["__beam_ids_%d__" % e] = torch.tensor(bids, dtype=torch.int32)
        extra["__beam_score_%d__" % e] = torch.tensor([bscore], dtype=torch.float32)

    # the folder
    with open(os.path.join(folder, "rsmoe.json"), "w") as f:
        f.write(json.dumps(config_json(router, kind, EXPERTS), indent=2) + "\n")
    tensors = encoder_tensors(enc)
    if kind == "llm":
        tensors = {k: v for k, v in tensors.items() if not k.startswith("llm_proj.")}
    if router_w is not None:
        tensors.update({"router.gate.weight": router_w["gate_w"], "router.gate.bias": router_w["gate_b"],
                        "router.mix.weight": router_w["mix_w"], "router.mix.bias": router_w["mix_b"],
                        "router.bank": router_w["bank"]})
        for e in range(3):
            tensors["router.proj.%d.weight" % e] = router_w["proj"][e]
    save_state(tensors, os.path.join(folder, "model.safetensors"))
    if kind == "lora":
        hf_decoder.save_pretrained(base, os.path.join(folder, "llm"), torch.float32)
        for e, (n, p, _) in enumerate(EXPERTS):
            lora.save_adapter(models[e], os.path.join(folder, p), cfgs[e])
    else:
        for e, (n, p, _) in enumerate(EXPERTS):
            hf_decoder.save_pretrained(models[e], os.path.join(folder, p), torch.float32)
            save_state({"llm_proj.weight": projs[e].weight.detach(), "llm_proj.bias": projs[e].bias.detach()},
                       os.path.join(folder, p, "llm_proj.safetensors"))

    # self-checks: the experts differ; a greedy token is the argmax of a full recompute
    if kind == "lora":
        with torch.no_grad():
            plain = base(inputs_embeds=extra["__inputs_0__"][None])[0][0]
        assert rel(plain, extra["__logits_0__"]) > 1e-2, "adapter 0 changes nothing"
    meta = dict(reference="rsmoe.Blip2VicunaInstruct + lora.LoraLinear", model_dir=name, seed=seed, router=router,
                experts=kind, instruction=INSTRUCTION, greedy_tokens=GREEDY, repetition_penalty=PENALTY, eos=EOS,
                greedy_min_margin="%.4g" % min(margins), tol_rel="1e-4", pixels="bit-identical",
                beams=BEAMS, beam_min_gap="%.4g" % min(beam_gaps),
                greedy="identical ids")
    for e in range(3):
        meta["texts_%d" % e] = texts[e]
    w.write(name, {}, extra, meta)
    print("  %s: seed %d, greedy margin %.3g, greedy lengths %s" % (
        name, seed, min(margins), [int(extra["__greedy_ids_%d__" % e].numel()) for e in range(3)]))
    return min(margins)


def write(w):
    for name, router, kind in (("rsmoe_tiny", "text", "lora"), ("rsmoe_tiny_soft", "soft", "lora"),
                               ("rsmoe_tiny_llm", "text", "llm"), ("rsmoe_tiny_soft_llm", "soft", "llm")):
        for attempt in range(10):
            seed = 4242 + 1000 * attempt
            if case(w, name, router, kind, seed) > fixtures_decoder.GREEDY_MARGIN:
                break
            print("  %s: near-tie at seed %d; next seed" % (name, seed))
        else:
            raise RuntimeError(name + ": no seed without near-ties")
