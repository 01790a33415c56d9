"""RingMoE's SimMIM pre-training objective in PyTorch, on the Swin encoder of vision_swin.py.

Mirrors the released MindSpore code (HanboBizl/RingMoE: ringmoe_framework/arch/simmim_moe.py,
classes SimMIM_Moe and SwinTransformerV2ForSimMIM_Moe; datasets/mask/mask_policy.py,
MaskPolicyForSim; models/core/depth2space.py, DepthToSapce), fp32 on the CPU:

  mask      MaskPolicyForSim(input_size, mask_patch_size 32, model_patch_size 4, mask_ratio 0.6):
            rand_size = input / 32 cells per side, mask_count = ceil(rand_size^2 * ratio) cells
            drawn by np.random.permutation, each expanded to (32 / 4)^2 model patches;
            the mask is [B, input / 4, input / 4] int (1 = masked).
  encoder   x = cat(patch_embed{m}(images_m)) (conv + LayerNorm), then
            x = x * (1 - w) + mask_token * w (w = the flattened mask), then the stages and the
            final norm: z [B, C_last, h, h] (h = input / 32).
  decoder   decoder_{m}: nn.Conv2d(C_last, 32^2 * cin_m, 1, has_bias=True), then DepthToSapce(32)
            (DCR: out[n, c, y*32 + by, x*32 + bx] = z[n, (by*32 + bx) * cin + c, y, x]; PyTorch's
            PixelShuffle is CRD, channel c*32^2 + by*32 + bx, and is NOT what the released code does).
  loss      sim_loss(x, x_rec, mask, in_chans): mask repeated patch_size times along both axes
            to [B, 1, H, W]; sum(|x - x_rec| * mask) / (sum(mask) + 1e-5) / in_chans
            (sum(mask) counts masked pixels once, not per channel: the result is the mean absolute
            error per masked pixel and channel).
  total     SimMIM_Moe.construct: the four modality losses and the MoE auxiliary loss are ADDED
            (sum over modalities, not a mean); total = sum_m loss_m + aux.

SAR-L1 (modality 1, 8 channels HH_re, HH_im, HV_re, HV_im, VH_re, VH_im, VV_re, VV_im): the
physics-informed target is the total polarimetric power (span) |HH|^2 + |HV|^2 + |VH|^2 + |VV|^2.
The released HEAD is not self-consistent here (datasets/pretrain_dataset.py Power_generation
prepends a span channel to the 8-channel image, while patch_embed1 and decoder_1 are built for 8
channels and compute_sim divides by 8). moe's reading, sar_l1_target:
  "span"      (default) the decoder keeps the released shape (32^2 * 8 outputs), the span is
              computed from the reconstructed channels and from the input channels, and the loss
              is the masked L1 of the two spans with channel count 1;
  "channels"  the released HEAD's compute_sim on the 8 channels (divided by 8);
  "both"      the sum of the two.
The span is computed on the values given (no clipping or min-max scaling: Power_generation's
clip at 1 and per-image min-max are a data-pipeline step the caller applies to the input).
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import ringmoe_moe
import vision_swin

SAR_L1 = 1  # modality index of the complex quad-pol SAR branch
QUADPOL_CHANNELS = ("HH_re", "HH_im", "HV_re", "HV_im", "VH_re", "VH_im", "VV_re", "VV_im")


class MaskGenerator:
    """MaskPolicyForSim with its own numpy RandomState (the released code uses the global one)."""

    def __init__(self, input_size=192, mask_patch_size=32, model_patch_size=4, mask_ratio=0.6):
        assert input_size % mask_patch_size == 0 and mask_patch_size % model_patch_size == 0
        self.rand_size = input_size // mask_patch_size
        self.scale = mask_patch_size // model_patch_size
        self.token_count = self.rand_size ** 2
        self.mask_count = int(np.ceil(self.token_count * mask_ratio))

    def __call__(self, rng):
        idx = rng.permutation(self.token_count)[:self.mask_count]
        mask = np.zeros(self.token_count, dtype=np.int32)
        mask[idx] = 1
        mask = mask.reshape(self.rand_size, self.rand_size)
        return mask.repeat(self.scale, axis=0).repeat(self.scale, axis=1)


def depth_to_space(z, b):
    """DepthToSapce (DCR): [N, b*b*C, H, W] -> [N, C, H*b, W*b]."""
    N, C, H, W = z.shape
    c = C // (b * b)
    return z.reshape(N, b, b, c, H, W).permute(0, 3, 4, 1, 5, 2).reshape(N, c, H * b, W * b)


def span(x):
    """Total power of [B, 8, H, W] quad-pol real/imag pairs -> [B, 1, H, W]; summed as
    (|HH|^2 + |HV|^2) + (|VH|^2 + |VV|^2) like rs::quadpol_span."""
    p = x[:, 0::2] ** 2 + x[:, 1::2] ** 2
    return ((p[:, 0] + p[:, 1]) + (p[:, 2] + p[:, 3])).unsqueeze(1)


def pixel_mask(mask, patch):
    """[B, G, G] model-patch mask -> [B, 1, G*patch, G*patch] float."""
    return mask.float().repeat_interleave(patch, 1).repeat_interleave(patch, 2).unsqueeze(1)


def sim_loss(x, x_rec, mask_px, in_chans):
    """SimMIM_Moe.sim_loss: sum(|x - x_rec| * mask) / (sum(mask) + 1e-5) / in_chans."""
    return (F.l1_loss(x, x_rec, reduction="none") * mask_px).sum() / (mask_px.sum() + 1e-5) / in_chans


def modality_loss(m, x, x_rec, mask, patch, sar_l1_target="span"):
    mp = pixel_mask(mask, patch)
    if m != SAR_L1 or sar_l1_target == "channels":
        return sim_loss(x, x_rec, mp, x.shape[1])
    span_loss = sim_loss(span(x), span(x_rec), mp, 1)
    if sar_l1_target == "span":
        return span_loss
    if sar_l1_target == "both":
        return sim_loss(x, x_rec, mp, x.shape[1]) + span_loss
    raise ValueError("sar_l1_target must be 'span', 'channels' or 'both', got %r" % (sar_l1_target,))


class ChunkMoeModal(ringmoe_moe.MoeModal):
    """MoeModal whose batch may hold any subset of modalities: `chunks` = [(modality, images)]
    in batch order (None: the released equal split into modal_num chunks). The modal group of a
    modality sees its chunk's tokens; the layer's aux loss is 0.001 * (L_cross + mean over the
    modalities present of L_special) (moe::HierarchicalMoE's convention, equal to the released
    one when all modalities are present)."""

    chunks = None

    def forward(self, x):
        if self.chunks is None:
            return super().forward(x)
        B, N, C = x.shape
        assert sum(n for _, n in self.chunks) == B, (self.chunks, B)
        flat = x.reshape(-1, C)
        cross_out, cross_r = self.group(self.cross_router, self.cross_ffn, flat)
        public_out = self.public_ffn(flat)
        outs, rs, losses = [], [None] * self.modal_num, []
        b0 = 0
        for m, n in self.chunks:
            xm = x[b0:b0 + n].reshape(-1, C)
            ym, rm = self.group(self.special_router[m], self.special_ffn[m], xm)
            outs.append(ym)
            rs[m] = rm
            losses.append(self.aux_loss_factor * rm["loss"])
            b0 += n
        y = (torch.cat(outs, 0) + cross_out) + public_out
        aux = self.aux_loss_factor * cross_r["loss"] + sum(losses) / len(losses)
        info = dict(cross=cross_r, special=rs, cross_loss=cross_r["loss"])
        return y.reshape(B, N, C), aux, info


def chunk_moe_mlp(modalities, experts=4, gelu_kind="tanh", capacity_factor=1.2):
    return lambda i, C, F_: ChunkMoeModal(hidden=C, ffn_hidden=F_, modal_num=modalities, specific_expert_num=experts,
                                          cross_expert_num=experts, expert_num=8, num_experts_chosen=1,
                                          capacity_factor=capacity_factor, gelu_kind=gelu_kind)


class SimMIM(nn.Module):
    """SimMIM_Moe: encoder (vision_swin.SwinEncoder, names "encoder.*"), encoder.mask_token
    [1, 1, C0], decoder_{m} (Conv2d C_last -> 32^2 * cin_m, 1x1, bias)."""

    def __init__(self, encoder, in_chans, encoder_stride=32, patch=4, sar_l1_target="span"):
        super().__init__()
        self.encoder = encoder
        C0 = encoder.patch_embed0.projection.out_channels
        C_last = encoder.norm.gamma.shape[0]
        self.encoder.mask_token = nn.Parameter(torch.zeros(1, 1, C0))
        self.in_chans = list(in_chans)
        self.stride = encoder_stride
        self.patch = patch
        self.sar_l1_target = sar_l1_target
        for m, c in enumerate(in_chans):
            setattr(self, "decoder_%d" % m, nn.Conv2d(C_last, encoder_stride ** 2 * c, kernel_size=1, bias=True))

    def moe_layers(self):
        return [mod for mod in self.encoder.modules() if isinstance(mod, ringmoe_moe.MoeModal)]

    def encode(self, batches, masks):
        """batches: [(images [b, cin_m, H, W], m)], masks: [b, G, G] each -> (z [B, L, C_last], aux)."""
        enc = self.encoder
        x = torch.cat([getattr(enc, "patch_embed%d" % m)(img) for img, m in batches], 0)
        w = torch.cat([mk.reshape(mk.shape[0], -1) for mk in masks], 0).unsqueeze(-1).float()
        x = x * (1.0 - w) + enc.mask_token * w
        chunks = [(m, img.shape[0]) for img, m in batches]
        for mod in self.moe_layers():
            if isinstance(mod, ChunkMoeModal):
                mod.chunks = chunks
        aux = torch.zeros(())
        for st in enc.layers:
            for blk in st.blocks:
                x = blk(x)
                if getattr(blk, "last_moe", None) is not None:
                    aux = aux + blk.last_moe[1]
                    blk.last_moe = None
            if st.downsample is not None:
                x = st.downsample(x)
        return enc.norm(x), aux

    def forward(self, batches, masks):
        """-> dict(losses=[per batch], recs=[x_rec per batch], sim=sum of losses, aux, total)."""
        z, aux = self.encode(batches, masks)
        B, L, C = z.shape
        h = int(round(math.sqrt(L)))
        z = z.transpose(1, 2).reshape(B, C, h, h)
        losses, recs = [], []
        b0 = 0
        for (img, m), mk in zip(batches, masks):
            zb = z[b0:b0 + img.shape[0]]
            b0 += img.shape[0]
            rec = depth_to_space(getattr(self, "decoder_%d" % m)(zb), self.stride)
            recs.append(rec)
            losses.append(modality_loss(m, img, rec, mk, self.patch, self.sar_l1_target))
        sim = sum(losses)
        return dict(losses=losses, recs=recs, sim=sim, aux=aux, total=sim + aux)


def tiny_encoder(moe=True):
    """The tiny RingMoE configuration of the tests: image 64, patch 4, C 32, depths 2-2-2-2,
    heads 1-2-4-8, window 4, 4 modalities (3, 8, 3, 4), 4 + 4 + 1 experts, top-1, cf 1.2."""
    factory = chunk_moe_mlp(4) if moe else vision_swin.dense_mlp("tanh")
    return vision_swin.SwinEncoder(img=64, patch=4, in_chans=(3, 8, 3, 4), dim=32, depths=(2, 2, 2, 2),
                                   heads=(1, 2, 4, 8), window=4, mlp_ratio=4, mlp_factory=factory)
