"""RS-MoE as the library builds it (reference for the parity tests; PyTorch 1.13).

Released parts, mirroring LAVIS's Blip2VicunaInstruct (lavis/models/blip2_models/
blip2_vicuna_instruct.py, the InstructBLIP baseline that RS-MoE's repository ships), module
structure and parameter names:

  Blip2VicunaInstruct
    .visual_encoder   EVA ViT-g (lavis/models/eva_vit.py; vision_vit.TimmVit(eva=True), no final norm)
    .ln_vision        LayerNorm(width), eps 1e-5
    .Qformer.bert     the Q-Former (qformer.BertModel: cross-attention every 2nd layer, query FFNs)
    .query_tokens     [1, Q, 768]
    .llm_proj         Linear(768, LLM width)
    .llm_model        a LLaMA (hf_decoder.DecoderForCausalLM; the library keeps it in its own
                      Hugging Face folder, with PEFT adapters beside it)

  generate() facts kept (LAVIS): image_embeds = ln_vision(visual_encoder(image)); the instruction
  is tokenized for the Q-Former by bert-base-uncased ([CLS] ... [SEP], truncated to max_txt_len)
  and fed with the query tokens (text_Qformer.input_ids, attention masks all ones for one
  unpadded prompt); inputs_llm = llm_proj(last_hidden_state[:, :Q]); the LLM's input embeddings
  are cat(inputs_llm, embed_tokens(llm_ids)), positions 0..n-1; llm_ids start with the
  tokenizer's bos (LAVIS sets Vicuna's bos_token to "</s>", id 2). Generation here is greedy
  with HF's repetition penalty over the generated tokens (generate() is called with
  inputs_embeds only, so input_ids holds just the generated ids): score < 0 ? score * p : score / p.
  LAVIS's default is 5-beam search with penalty 1.5; beams are not mirrored (the library decodes
  greedily or samples).

The MoE block (not released; the library's design after the paper's description, docs/rsmoe.md):
  * text router (reading a): each expert e gets its own sub-instruction text (a template over the
    global instruction), run through the instruction-aware Q-Former: its own visual tokens
    llm_proj_e(Qformer(query_tokens, ids_e, image)[:Q]), then its text.
  * soft router (reading b, moe::InstructionRouter): u = [mean of the global instruction's
    Q-Former text rows; mean of its query rows]; w = softmax(gate(u)); a_e = softmax(mix_e(u));
    prompt_e = (sum_p a_e,p bank[p]) proj_e^T [Lp, d_e]; expert e's input is
    cat(inputs_llm_e, prompt_e, embed(llm_ids)).
  * experts: LoRA adapters over one base LLM (lora.py), or separate LLMs (each with its own llm_proj).
  * each expert decodes greedily on its own; the aggregator joins the texts (not mirrored here).
"""

import torch
from torch import nn

import hf_decoder
import qformer
import vision_vit


class Blip2VicunaInstruct(nn.Module):
    """The InstructBLIP encoder side with LAVIS names; llm_proj maps to `llm_width`."""

    def __init__(self, vision, qcfg, llm_width):
        super().__init__()
        self.visual_encoder = vision_vit.TimmVit(img=vision["img"], patch=vision["patch"], dim=vision["dim"],
                                                 depth=vision["depth"], heads=vision["heads"],
                                                 mlp_hidden=vision["mlp_hidden"], eva=True, final_norm=False)
        self.ln_vision = nn.LayerNorm(vision["dim"], eps=1e-5)
        self.Qformer = qformer._QformerHolder(qcfg)
        self.query_tokens = nn.Parameter(torch.zeros(1, qcfg.num_query_tokens, qcfg.hidden_size))
        self.llm_proj = nn.Linear(qcfg.hidden_size, llm_width)

    def image_embeds(self, pixels):
        """[B, 3, S, S] -> [B, N, width] (ln_vision(visual_encoder(image)))."""
        return self.ln_vision(self.visual_encoder(pixels))

    def qformer_output(self, image_embeds, qformer_ids):
        """One image [N, width] and one instruction's ids [T] -> last hidden state [Q + T, 768]."""
        q = self.query_tokens
        ids = None if qformer_ids is None else torch.as_tensor(qformer_ids, dtype=torch.long)[None]
        return self.Qformer.bert(q, input_ids=ids, encoder_hidden_states=image_embeds[None])[0]

    def inputs_llm(self, image_embeds, qformer_ids, proj=None):
        """[Q, llm width]: llm_proj of the query rows."""
        out = self.qformer_output(image_embeds, qformer_ids)[:self.query_tokens.shape[1]]
        return (proj or self.llm_proj)(out)


def llm_inputs(llm, parts, llm_ids):
    """cat(parts..., embed_tokens(llm_ids)) as [1, n, H]."""
    text = llm.model.embed_tokens(torch.as_tensor(llm_ids, dtype=torch.long))
    return torch.cat(list(parts) + [text])[None]


@torch.no_grad()
def greedy(llm, inputs_embeds, n, repetition_penalty=1.0, eos=None):
    """Greedy decoding after an embedded prompt [1, T, H] with HF's repetition penalty over the
    generated ids -> (ids [m], the raw step logits [m, V]); stops after eos when given."""
    logits, cache = llm(inputs_embeds=inputs_embeds)
    out, steps = [], []
    for _ in range(n):
        last = logits[0, -1]
        steps.append(last.clone())
        scores = last.clone()
        if repetition_penalty != 1.0 and out:
            idx = torch.tensor(sorted(set(out)))
            s = scores[idx]
            scores[idx] = torch.where(s < 0, s * repetition_penalty, s / repetition_penalty)
        nxt = int(torch.argmax(scores))
        out.append(nxt)
        if eos is not None and nxt == eos:
            break
        logits, cache = llm(torch.tensor([[nxt]]), past_key_values=cache)
    return torch.tensor(out, dtype=torch.long), torch.stack(steps)


def soft_route(router, text_rows, query_rows):
    """moe::InstructionRouter's math (all experts active): -> (weights [E], prompts: list of [Lp, d_e])."""
    u = torch.cat((text_rows.mean(0), query_rows.mean(0))).double()
    w = torch.softmax(router["gate_w"].double() @ u + router["gate_b"].double(), 0)
    prompts = []
    for e in range(w.shape[0]):
        a = torch.softmax(router["mix_w"][e].double() @ u + router["mix_b"][e].double(), 0).float()
        mixed = torch.einsum("p,pld->ld", a, router["bank"])
        prompts.append(mixed @ router["proj"][e].t())
    return w.float(), prompts


def read_config(folder):
    """rsmoe.json of an RS-MoE folder as a dict."""
    import json
    import os

    with open(os.path.join(folder, "rsmoe.json")) as f:
        return json.load(f)


def load_encoder(folder, cfg, llm_width):
    """The folder's Blip2VicunaInstruct (model.safetensors, LAVIS names) in fp32, llm_proj to llm_width."""
    import os

    from safetensors_io import load_file

    v, q = cfg["vision"], cfg["qformer"]
    vision = dict(img=v["image_size"], patch=v["patch_size"], dim=v["hidden_size"], depth=v["num_hidden_layers"],
                  heads=v["num_attention_heads"], mlp_hidden=v["intermediate_size"])
    qcfg = qformer.QFormerConfig(hidden_size=q["hidden_size"], num_hidden_layers=q["num_hidden_layers"],
                                 num_attention_heads=q["num_attention_heads"], intermediate_size=q["intermediate_size"],
                                 max_position_embeddings=q["max_position_embeddings"],
                                 layer_norm_eps=q["layer_norm_eps"], encoder_width=q["encoder_width"],
                                 cross_attention_freq=q["cross_attention_freq"], num_query_tokens=q["num_query_token"],
                                 vocab_size=q["vocab_size"])
    enc = Blip2VicunaInstruct(vision, qcfg, llm_width).eval()
    sd = {k: t.float() for k, t in load_file(os.path.join(folder, "model.safetensors")).items()}
    sd.setdefault("Qformer.bert.embeddings.position_ids", enc.Qformer.bert.embeddings.position_ids)
    sd["Qformer.bert.embeddings.position_ids"] = sd["Qformer.bert.embeddings.position_ids"].long()
    enc.load_state_dict(sd, strict=True)
    return enc


def load_folder(folder):
    """An RS-MoE folder with LoRA experts (rs/rsmoe/config.hpp's layout) in fp32:
    -> (config dict, Blip2VicunaInstruct, [expert LLM with its adapter] per expert)."""
    import copy
    import os

    import lora

    cfg = read_config(folder)
    if cfg["experts"]["kind"] != "lora":
        raise NotImplementedError("load_folder reads LoRA experts")
    base = hf_decoder.from_pretrained(os.path.join(folder, cfg["experts"]["base"])).eval()
    enc = load_encoder(folder, cfg, base.config.hidden_size)
    experts = []
    for m in cfg["experts"]["members"]:
        e = copy.deepcopy(base)
        lora.load_adapter(e, os.path.join(folder, m["path"]))
        experts.append(e.float().eval())
    return cfg, enc, experts
