"""The BLIP-2 / InstructBLIP Q-Former as LAVIS builds it (lavis/models/blip2_models/Qformer.py), for
inference: the reference of include/vision/qformer.hpp.

LAVIS's Qformer.py is transformers' BERT (4.x) with cross-attention every `cross_attention_freq`
layers and a second FFN (intermediate_query / output_query) for the first `query_length` rows.
These modules mirror its structure and names, so that a parent holding

    self.Qformer.bert = BertModel(cfg)          # Qformer = BertLMHeadModel in LAVIS; .cls unused
    self.query_tokens = nn.Parameter(torch.zeros(1, Q, cfg.hidden_size))

has exactly the checkpoint's state_dict names:

    query_tokens                                               [1, Q, H]
    Qformer.bert.embeddings.word_embeddings.weight             [V, H]
    Qformer.bert.embeddings.position_embeddings.weight         [P, H]
    Qformer.bert.embeddings.LayerNorm.{weight, bias}           [H]
    Qformer.bert.embeddings.position_ids                       [1, P] int64 buffer
    Qformer.bert.encoder.layer.{i}.attention.self.{query,key,value}.{weight [H, H], bias}
    Qformer.bert.encoder.layer.{i}.attention.output.dense.*, .attention.output.LayerNorm.*
    (i % cross_attention_freq == 0)
    Qformer.bert.encoder.layer.{i}.crossattention.self.query.* [H, H],
                                   crossattention.self.{key,value}.weight [H, encoder_width],
                                   crossattention.output.dense.*, crossattention.output.LayerNorm.*
    Qformer.bert.encoder.layer.{i}.intermediate.dense.* [I, H], output.dense.* [H, I], output.LayerNorm.*
    Qformer.bert.encoder.layer.{i}.intermediate_query.dense.*, output_query.dense.*, output_query.LayerNorm.*

Math (eval mode, no padding: LAVIS's attention masks are all ones, which add 0):

    embeddings = LN(cat(query_embeds, word_embeddings(ids) + position_embeddings(0 .. T-1)))
                 (text positions start at 0; no token types; LN(query_embeds) without text)
    layer i:   h = LN(h + dense(MHA(h, h)))                           over all Q + T rows
               q = h[:Q];  q = LN(q + dense(MHA(q, image)))           if layer i has cross-attention
               q = LN(q + output_query(GELU(intermediate_query(q))))
               t = h[Q:];  t = LN(t + output(GELU(intermediate(t))))
               h = cat(q, t)
    MHA: softmax(q k^T / sqrt(head_dim)) v per head (heads split head-major), GELU exact (erf).

API:
    QFormerConfig(...)                 sizes (defaults: InstructBLIP's, bert-base + 1408-wide image)
    BertModel(cfg)                     .forward(query_embeds [B, Q, H], input_ids [B, T] or None,
                                       encoder_hidden_states [B, N, encoder_width]) -> [B, Q + T, H]
    QFormer(cfg)                       holder with .Qformer.bert and .query_tokens (the
                                       checkpoint's names); .forward(input_ids, image_embeds) runs the
                                       Q-Former on the query tokens (InstructBLIP's call)
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class QFormerConfig:
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    encoder_width: int = 1408
    cross_attention_freq: int = 2
    num_query_tokens: int = 32
    vocab_size: int = 30523  # bert-base-uncased (30522) + "[DEC]"
    add_cross_attention: bool = True


class BertEmbeddings(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.register_buffer("position_ids", torch.arange(cfg.max_position_embeddings).expand((1, -1)))

    def forward(self, input_ids=None, query_embeds=None, past_key_values_length=0):
        seq_length = input_ids.size(1) if input_ids is not None else 0
        position_ids = self.position_ids[:, past_key_values_length:seq_length + past_key_values_length].clone()
        if input_ids is not None:
            embeddings = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
            if query_embeds is not None:
                embeddings = torch.cat((query_embeds, embeddings), dim=1)
        else:
            embeddings = query_embeds
        return self.LayerNorm(embeddings)


class BertSelfAttention(nn.Module):
    def __init__(self, cfg, is_cross_attention):
        super().__init__()
        self.num_attention_heads = cfg.num_attention_heads
        self.attention_head_size = cfg.hidden_size // cfg.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        kv_width = cfg.encoder_width if is_cross_attention else cfg.hidden_size
        self.query = nn.Linear(cfg.hidden_size, self.all_head_size)
        self.key = nn.Linear(kv_width, self.all_head_size)
        self.value = nn.Linear(kv_width, self.all_head_size)

    def transpose_for_scores(self, x):
        return x.view(x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None):
        if encoder_hidden_states is not None:
            key_layer = self.transpose_for_scores(self.key(encoder_hidden_states))
            value_layer = self.transpose_for_scores(self.value(encoder_hidden_states))
            attention_mask = encoder_attention_mask
        else:
            key_layer = self.transpose_for_scores(self.key(hidden_states))
            value_layer = self.transpose_for_scores(self.value(hidden_states))
        query_layer = self.transpose_for_scores(self.query(hidden_states))
        scores = torch.matmul(query_layer, key_layer.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = nn.Softmax(dim=-1)(scores)
        context = torch.matmul(probs, value_layer).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size()[:-2] + (self.all_head_size,))


class BertSelfOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class BertAttention(nn.Module):
    def __init__(self, cfg, is_cross_attention=False):
        super().__init__()
        self.self = BertSelfAttention(cfg, is_cross_attention)
        self.output = BertSelfOutput(cfg)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None):
        ctx = self.self(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask)
        return self.output(ctx, hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, hidden_states):
        return F.gelu(self.dense(hidden_states))  # exact (erf), BERT's "gelu"


class BertOutput(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class BertLayer(nn.Module):
    def __init__(self, cfg, layer_num):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.layer_num = layer_num
        self.has_cross_attention = cfg.add_cross_attention and layer_num % cfg.cross_attention_freq == 0
        if self.has_cross_attention:
            self.crossattention = BertAttention(cfg, is_cross_attention=True)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)
        self.intermediate_query = BertIntermediate(cfg)
        self.output_query = BertOutput(cfg)

    def feed_forward_chunk(self, x):
        return self.output(self.intermediate(x), x)

    def feed_forward_chunk_query(self, x):
        return self.output_query(self.intermediate_query(x), x)

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                query_length=0):
        attention_output = self.attention(hidden_states, attention_mask)
        if query_length > 0:
            query_attention_output = attention_output[:, :query_length, :]
            if self.has_cross_attention:
                assert encoder_hidden_states is not None, "encoder_hidden_states must be given for cross-attention layers"
                query_attention_output = self.crossattention(query_attention_output, attention_mask,
                                                             encoder_hidden_states, encoder_attention_mask)
            layer_output = self.feed_forward_chunk_query(query_attention_output)
            if attention_output.shape[1] > query_length:
                layer_output_text = self.feed_forward_chunk(attention_output[:, query_length:, :])
                layer_output = torch.cat([layer_output, layer_output_text], dim=1)
        else:
            layer_output = self.feed_forward_chunk(attention_output)
        return layer_output


class BertEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg, i) for i in range(cfg.num_hidden_layers)])

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                query_length=0):
        for layer in self.layer:
            hidden_states = layer(hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                                  query_length)
        return hidden_states


class BertModel(nn.Module):
    """LAVIS's BertModel(add_pooling_layer=False) as the Q-Former's `.bert`: forward returns the
    last hidden state [B, Q + T, H]. Masks: LAVIS passes all-ones masks for unpadded inputs, whose
    extended form (1 - mask) * -10000 adds 0; attention_mask [B, Q + T] / encoder_attention_mask
    [B, N] of 0/1 may be given for padded batches."""

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)

    @staticmethod
    def _extended(mask, dtype):
        return None if mask is None else (1.0 - mask[:, None, None, :].to(dtype)) * -10000.0

    def forward(self, query_embeds, input_ids=None, encoder_hidden_states=None, attention_mask=None,
                encoder_attention_mask=None):
        query_length = query_embeds.shape[1] if query_embeds is not None else 0
        h = self.embeddings(input_ids=input_ids, query_embeds=query_embeds)
        return self.encoder(h, self._extended(attention_mask, h.dtype), encoder_hidden_states,
                            self._extended(encoder_attention_mask, h.dtype), query_length)


class _QformerHolder(nn.Module):
    """LAVIS's BertLMHeadModel as InstructBLIP keeps it: only .bert is used (.cls = None)."""

    def __init__(self, cfg):
        super().__init__()
        self.bert = BertModel(cfg)


class QFormer(nn.Module):
    """The Q-Former part of an InstructBLIP model: state_dict names "Qformer.bert.*" and
    "query_tokens". forward(input_ids [B, T] or None, image_embeds [B, N, encoder_width]) ->
    [B, Q + T, H] (the query rows first)."""

    def __init__(self, cfg=None):
        super().__init__()
        cfg = cfg or QFormerConfig()
        self.config = cfg
        self.Qformer = _QformerHolder(cfg)
        self.query_tokens = nn.Parameter(torch.zeros(1, cfg.num_query_tokens, cfg.hidden_size))

    def forward(self, input_ids, image_embeds):
        B = image_embeds.shape[0]
        q = self.query_tokens.expand(B, -1, -1)
        return self.Qformer.bert(q, input_ids=input_ids, encoder_hidden_states=image_embeds)
