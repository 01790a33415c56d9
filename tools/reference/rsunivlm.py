"""RSUniVLM as its released code computes it (reference for the parity tests; PyTorch 1.13).

Mirrors xuliu-cyber/RSUniVLM (a trimmed LLaVA-NeXT), module structure and parameter names:

  LlavaQwenGMoeForCausalLM                 llava/model/language_model/llava_qwen_gmoe.py
    .model = LlavaQwenGMoeModel            Qwen2Model whose layers are Qwen2GMoEDecoderLayer
      .embed_tokens, .layers.{i}.{input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
       mlp.{0,1,2}.{gate,up,down}_proj}, .norm          (hf_decoder.py: transformers' modeling_qwen2)
      .vision_tower = SigLipVisionTower    llava/model/multimodal_encoder/siglip_encoder.py
        .vision_tower = SigLipVisionModel  .vision_model.{embeddings, encoder.layers.{k}, post_layernorm}
      .mm_projector = Sequential(Linear, GELU, Linear)   multimodal_projector/builder.py, mlp2x_gelu
      .image_newline [H]                   llava_arch.py (mm_patch_merge_type contains "unpad")
    .lm_head

Forward facts kept (llava_arch.py, LlavaMetaForCausalLM):
  * encode_images(images) = mm_projector(vision_tower(images)); the tower deletes its last encoder
    layer at load time (`del self.vision_tower.vision_model.encoder.layers[-1:]`) and returns
    hidden_states[-1] of what is left: the raw last-layer output, no post_layernorm.
  * prepare_inputs_labels_for_multimodal: a single-tile image (image_feature.shape[0] == 1) takes
    the "single image operations" branch: its 729 (here grid^2) features then image_newline.
    Each IMAGE_TOKEN_INDEX (-200) in the ids is replaced by the next image's features, images
    consumed in order across the batch; the text pieces are embedded by embed_tokens of their
    concatenation; sequences are right-padded (tokenizer_padding_side "right") with an attention
    mask and position ids 0..n-1.
  * granularity (0 image, 1 region, 2 pixel) picks ONE expert of every layer's mlp for the whole
    sequence (Qwen2GMoEDecoderLayer), per batch element here.
  * The image processor (SigLipImageProcessor): RGB uint8 -> PIL resize to (S, S) with
    Image.BICUBIC -> * (1/255) (in float64, then float32) -> (x - 0.5) / 0.5 -> CHW.

Where this departs from the released demo: the demo's process_images uses the config's
image_aspect_ratio (anyres_max_9: extra high-resolution tiles); this reference, like the
library, takes the base 384 x 384 tile only (730 embeddings per image), as the issue specifies.
"""


import numpy as np
import torch
from torch import nn

import hf_decoder
import vision_vit

IMAGE_TOKEN_INDEX = -200


def preprocess(image_u8, size):
    """SigLipImageProcessor on one RGB uint8 image [h, w, 3] -> float32 [3, size, size]."""
    from PIL import Image
    pil = Image.fromarray(np.ascontiguousarray(image_u8), mode="RGB")
    if pil.size != (size, size):
        pil = pil.resize((size, size), resample=Image.BICUBIC)
    arr = np.asarray(pil)
    x = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)           # transformers' rescale
    x = (x - np.array([0.5] * 3, dtype=np.float32)) / np.array([0.5] * 3, dtype=np.float32)  # normalize
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), torch.from_numpy(np.array(arr))


class SigLipVisionModel(vision_vit.SiglipVisionModel):
    def forward(self, images):
        hidden = []
        self.vision_model(images, hidden=hidden)
        return hidden


class SigLipVisionTower(nn.Module):
    def __init__(self, img, patch, dim, depth, heads, mlp_hidden):
        super().__init__()
        self.vision_tower = SigLipVisionModel(img=img, patch=patch, dim=dim, depth=depth, heads=heads,
                                              mlp_hidden=mlp_hidden)
        del self.vision_tower.vision_model.encoder.layers[-1:]  # load_model(): the last layer goes

    def forward(self, images):
        return self.vision_tower(images)[-1]


class LlavaQwenGMoeForCausalLM(hf_decoder.DecoderForCausalLM):
    def __init__(self, cfg, vision):
        super().__init__(cfg)
        H = cfg.hidden_size
        self.model.vision_tower = SigLipVisionTower(**vision)
        self.model.mm_projector = nn.Sequential(nn.Linear(vision["dim"], H), nn.GELU(), nn.Linear(H, H))
        self.model.image_newline = nn.Parameter(torch.empty(H))

    def encode_images(self, images):
        return self.model.mm_projector(self.model.vision_tower(images))

    def image_features(self, images):
        """[n_images, grid^2 + 1, H]: each image's features then image_newline (the single-image branch)."""
        f = self.encode_images(images)
        nl = self.model.image_newline[None, None].expand(f.shape[0], 1, f.shape[2])
        return torch.cat((f, nl), dim=1)

    def prepare_inputs_embeds(self, input_ids, images):
        """input_ids: list of 1-D LongTensors with -200 placeholders; images [n, 3, S, S] in order.
        -> (inputs_embeds [B, T, H] right-padded with zeros, attention_mask [B, T], lengths)."""
        feats = self.image_features(images) if images is not None and len(images) else None
        embeds, k = [], 0
        for ids in input_ids:
            where = [-1] + torch.where(ids == IMAGE_TOKEN_INDEX)[0].tolist() + [ids.shape[0]]
            pieces = [ids[where[i] + 1:where[i + 1]] for i in range(len(where) - 1)]
            text = self.model.embed_tokens(torch.cat(pieces))
            text = torch.split(text, [p.shape[0] for p in pieces], dim=0)
            parts = []
            for i in range(len(pieces)):
                parts.append(text[i])
                if i < len(pieces) - 1:
                    parts.append(feats[k])
                    k += 1
            embeds.append(torch.cat(parts))
        if feats is not None and k != feats.shape[0]:
            raise ValueError("%d images for %d placeholders" % (feats.shape[0], k))
        T = max(e.shape[0] for e in embeds)
        H = embeds[0].shape[1]
        out = torch.zeros(len(embeds), T, H, dtype=embeds[0].dtype)
        mask = torch.zeros(len(embeds), T, dtype=torch.long)
        for b, e in enumerate(embeds):
            out[b, :e.shape[0]] = e
            mask[b, :e.shape[0]] = 1
        return out, mask, [e.shape[0] for e in embeds]

    def forward_multimodal(self, input_ids, images, granularity):
        """All positions' logits of each sequence: list of [T_b, V]."""
        x, mask, lengths = self.prepare_inputs_embeds(input_ids, images)
        pos = torch.arange(x.shape[1])[None].expand(x.shape[0], -1)
        logits, _ = self(inputs_embeds=x, attention_mask=mask, position_ids=pos, granularity=granularity)
        return [logits[b, :n] for b, n in enumerate(lengths)]


@torch.no_grad()
def greedy_multimodal(model, ids, images, granularity, n):
    """Greedy decoding on the KV cache after a multimodal prefill (one sequence)."""
    x, _, _ = model.prepare_inputs_embeds([ids], images)
    return hf_decoder.greedy(model, None, n, granularity=[granularity], inputs_embeds=x)


def parameter_count(text_cfg, vision):
    """Parameters as the checkpoint stores them (tied lm_head once; post_layernorm included)."""
    H, I, L, V = text_cfg["hidden_size"], text_cfg["intermediate_size"], text_cfg["num_hidden_layers"], \
        text_cfg["vocab_size"]
    hd = H // text_cfg["num_attention_heads"]
    kv = text_cfg["num_key_value_heads"] * hd
    layer = 2 * H + (H * H + H) + 2 * (kv * H + kv) + H * H + 3 * 3 * H * I
    lm = V * H + L * layer + H + (0 if text_cfg.get("tie_word_embeddings") else V * H)
    C, F, p, g = vision["dim"], vision["mlp_hidden"], vision["patch"], vision["img"] // vision["patch"]
    blocks = vision["depth"] - 1
    vis = C * 3 * p * p + C + g * g * C + blocks * (4 * C + 4 * C * C + 4 * C + 2 * C * F + F + C) + 2 * C
    proj = C * H + H + H * H + H
    return lm + vis + proj + H


def full_size_count():
    text = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, vocab_size=151936,
                num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=False)
    vision = dict(img=384, patch=14, dim=1152, depth=27, heads=16, mlp_hidden=4304)
    return parameter_count(text, vision)


assert full_size_count() == 1657325600, full_size_count()
