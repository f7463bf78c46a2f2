"""The stand-in model until the default model ships: the real pipeline with tiny *random* components.

Real text encoder (all-MiniLM-L6-v2, packaged offline) → keyframe U-Net → two interpolation passes → MoVQ video
decoder → MP4. It proves that the stages connect and a playable file comes out; the picture is noise-like.
"""

import torch

from .models import Kandinsky3UNet, InterpolationUNet, KeyframeUNet
from .models.movq import MoVQ
from .models.text import TextProjection
from .pipeline import PACKAGED_TEXT_ENCODER, FusionFramesPipeline, load_text_encoder

TINY_UNET = dict(model_channels=32, init_channels=16, time_embed_dim=64, context_dim=64, groups=8, head_dim=16,
                 expansion_ratio=2, dim_mult=(1, 2, 2), num_blocks=(2, 2, 2), add_cross_attention=(False, True, True),
                 add_self_attention=(False, True, True))
TINY_MOVQ = dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=128,
                 norm_groups=8, video_decoder="conv3x1x1")
TINY_SETTINGS = dict(num_keyframes=4, height=128, width=128, num_inference_steps=10, interpolation_steps=5,
                     max_text_tokens=32)


def tiny_random_pipeline(seed: int = 0) -> FusionFramesPipeline:
    encoder, tokenizer = load_text_encoder(PACKAGED_TEXT_ENCODER)
    with torch.random.fork_rng():  # seeded weights without touching the caller's random state
        torch.manual_seed(seed)
        t2i = Kandinsky3UNet(**TINY_UNET)
        return FusionFramesPipeline(encoder, tokenizer, TextProjection(encoder.config.hidden_size, 64),
                                    torch.randn(64), KeyframeUNet.from_t2i(t2i), InterpolationUNet.from_t2i(t2i),
                                    MoVQ(**TINY_MOVQ), **TINY_SETTINGS)
