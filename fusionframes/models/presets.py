"""Named model configurations: plain config dicts, built on any device (the meta device costs no memory)."""

import torch

from ..errors import FusionFramesError
from .interpolation import InterpolationUNet, MaskedInterpolationUNet
from .movq import VIDEO_DECODERS, MoVQ
from .unet import Kandinsky3UNet, KeyframeUNet

# Kandinsky 3.0 / KV 1.0 full size (official constructor kwargs).
KANDINSKY3 = dict(
    model_channels=384, init_channels=192, num_channels=4, out_channels=4, time_embed_dim=1536, context_dim=4096,
    groups=32, head_dim=64, expansion_ratio=4, compression_ratio=2, dim_mult=(1, 2, 4, 8), num_blocks=(3, 3, 3, 3),
    add_cross_attention=(False, True, True, True), add_self_attention=(False, True, True, True),
)

# KV 1.0 MoVQ (the MoVQGAN 270M generator config; KV 1.1's video MoVQ adds its decoder variant).
KV1_MOVQ = dict(in_channels=3, out_ch=3, ch=256, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(32,),
                resolution=256, z_channels=4, dropout=0.0)

PRESETS = {
    "kandinsky3-unet": (Kandinsky3UNet, KANDINSKY3),
    "kv1-keyframe-unet": (KeyframeUNet, {**KANDINSKY3, "temporal_variant": "conv1d-attn1d-blocks"}),
    **{f"kv1-keyframe-unet-{variant}": (KeyframeUNet, {**KANDINSKY3, "temporal_variant": variant})
       for variant in ("conv3d-attn1d-blocks", "conv1d-attn3d-blocks", "conv1d-attn1d-layers")},
    "kv1-interpolation-unet": (InterpolationUNet, {**KANDINSKY3, "num_channels": 20, "out_channels": 12}),
    "kv1-masked-interpolation-unet": (MaskedInterpolationUNet, {**KANDINSKY3, "num_channels": 9, "out_channels": 4}),
    "kv1-movq": (MoVQ, KV1_MOVQ),
    "kv1-movq-encoder": (MoVQ, KV1_MOVQ),
    "kv1-movq-decoder": (MoVQ, KV1_MOVQ),
    **{f"kv1-video-decoder-{variant}": (MoVQ, {**KV1_MOVQ, "video_decoder": variant}) for variant in VIDEO_DECODERS},
}
# Presets that count one part of their model; the paper reports decoder parameters for the video decoders.
COUNTED_PART = {"kv1-movq-encoder": "encoder", "kv1-movq-decoder": "decoder",
                **{f"kv1-video-decoder-{variant}": "decoder" for variant in VIDEO_DECODERS}}


def build_preset(name: str, device="cpu", dtype=None):
    """The preset's model, randomly initialised, on ``device`` (``"meta"`` for shapes and counts only)."""
    if name not in PRESETS:
        raise FusionFramesError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    cls, config = PRESETS[name]
    with torch.device(device):
        model = cls(**config)
    return model if dtype is None else model.to(dtype)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def preset_parameters(name: str) -> int:
    """The parameter count a preset stands for (for ``…-encoder``/``…-decoder`` presets, that part only)."""
    model = build_preset(name, device="meta")
    part = COUNTED_PART.get(name)
    return count_parameters(getattr(model, part) if part else model)
