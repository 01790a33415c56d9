"""RingMoE as a whole model in PyTorch: per-modality patch embeddings -> Swin encoder with the
hierarchical MoE (Moe_modal) or a dense MLP in every block -> output LayerNorm -> heads, with
the parameter names of the released MindSpore code (ringmoe_framework; ../shared/docs/
weight-names.md, section 1) and of include/rs/ringmoe/ (heads.hpp, model.hpp).

Top level (as SimMIM_Moe / FinetuneVit name their children):
    encoder.*        vision_swin.SwinEncoder: patch_embed{m}.*, layers.{i}.blocks.{j}.*,
                     layers.{i}.downsample.*, norm.*; each block's mlp.* is
                     ringmoe_moe.MoeModal (special_router.{m}, special_ffn.{m}, cross_router,
                     cross_ffn, public_ffn) or ringmoe_moe.MLP(expert_num=1) (mapping, projection)
    head.weight      [num_classes, C_last]  ([out, in], the released FinetuneVit.head: a Linear
    head.bias        [num_classes]           with transpose_b=True)
    seg_head.weight  [seg_classes, C_s]      this library's dense head (not in the released code)
    seg_head.bias    [seg_classes]

Forward (batches: list of (images [b, Cin_m, S, S], m) in order; the MoE needs the batch ordered
by modality in equal chunks, as the released layer splits it):
    features = encoder(batches)                                   [B, R_last^2, C_last]
    logits   = head(features.mean(1))                             [B, num_classes]
    seg      = F.interpolate(seg_head(f_s).transpose -> [B, K, R_s, R_s], size=(S, S),
                             mode="bilinear", align_corners=False)    [B, K, S, S]
    where f_s is the last stage's normed output (seg_stage = -1) or stage s's output before its
    patch merging.

Configurations (RingMoeConfig in include/rs/ringmoe/config.hpp): tiny() is img 64, patch 4,
dim 32, depths (2, 2, 2, 2), heads (1, 2, 4, 8), window 4, 4 modalities (3, 8, 3, 4 channels),
4 modal + 4 collaborative experts + 1 shared, top-1, capacity factor 1.2, tanh GELU.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import ringmoe_moe
import vision_swin

MODALITIES = (("optical", 3), ("sar-l1", 8), ("sar-l2", 3), ("multispectral", 4))

TINY = dict(img=64, patch=4, dim=32, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), window=4, mlp_ratio=4)
FULL = dict(img=192, patch=4, dim=448, depths=(2, 2, 18, 2), heads=(14, 28, 56, 112), window=12, mlp_ratio=4)


class RingMoE(nn.Module):
    def __init__(self, img, patch, dim, depths, heads, window, mlp_ratio=4, modalities=MODALITIES, ffn="moe",
                 modal_experts=4, collab_experts=4, capacity_factor=1.2, expert_num=8, gelu_kind="tanh",
                 num_classes=0, seg_classes=0, seg_stage=-1):
        super().__init__()
        self.modality_names = [n for n, _ in modalities]
        in_chans = [c for _, c in modalities]
        M = len(in_chans)
        if ffn == "moe":
            def factory(i, C, F_):
                return ringmoe_moe.MoeModal(hidden=C, ffn_hidden=F_, modal_num=M, specific_expert_num=modal_experts,
                                            cross_expert_num=collab_experts, expert_num=expert_num,
                                            num_experts_chosen=1, capacity_factor=capacity_factor,
                                            gelu_kind=gelu_kind).eval()
        elif ffn == "dense":
            def factory(i, C, F_):
                return ringmoe_moe.MLP(C, F_, 1, gelu_kind)
        else:
            raise ValueError("ffn must be 'moe' or 'dense', got %r" % (ffn,))
        self.encoder = vision_swin.SwinEncoder(img=img, patch=patch, in_chans=in_chans, dim=dim, depths=depths,
                                               heads=heads, window=window, mlp_ratio=mlp_ratio, mlp_factory=factory)
        self.img = img
        self.stages = len(depths)
        self.seg_stage = self.stages - 1 if seg_stage < 0 else seg_stage
        c_last = dim << (self.stages - 1)
        if num_classes:
            self.head = vision_swin.Linear(c_last, num_classes)
        if seg_classes:
            self.seg_head = vision_swin.Linear(dim << self.seg_stage, seg_classes)

    def encode(self, batches, block_outputs=None, stage_outputs=None):
        """vision_swin.SwinEncoder.forward, also keeping each stage's output before its merging."""
        enc = self.encoder
        x = torch.cat([getattr(enc, "patch_embed%d" % m)(img) for img, m in batches], 0)
        for st in enc.layers:
            for blk in st.blocks:
                x = blk(x)
                if block_outputs is not None:
                    block_outputs.append(x)
            if stage_outputs is not None:
                stage_outputs.append(x)
            if st.downsample is not None:
                x = st.downsample(x)
        return enc.norm(x)

    def forward(self, batches, block_outputs=None):
        stages = []
        feats = self.encode(batches, block_outputs, stages)
        out = dict(features=feats)
        if hasattr(self, "head"):
            out["logits"] = self.head(feats.mean(1))
        if hasattr(self, "seg_head"):
            f = feats if self.seg_stage == self.stages - 1 else stages[self.seg_stage]
            B, L, _ = f.shape
            R = int(round(L ** 0.5))
            t = self.seg_head(f).transpose(1, 2).reshape(B, -1, R, R)
            out["seg"] = F.interpolate(t, size=(self.img, self.img), mode="bilinear", align_corners=False)
        return out

    def moe_layers(self):
        return [blk.mlp for st in self.encoder.layers for blk in st.blocks]


def tiny(**kw):
    return RingMoE(**TINY, **kw)
