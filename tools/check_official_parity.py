"""Compare our U-Nets with the official Kandinsky Video 1.0 code on the same random weights and inputs.

The official code is not part of this project; point this script at a checkout of it:

    python tools/check_official_parity.py --official PATH   # PATH contains video_kandinsky3/model/unet.py

Every parameter (zero-initialised ones included) is randomised, the official state dict is converted with
``fusionframes.convert`` and both models run in float32 on the CPU. Prints the relative error per model and
configuration; exits 1 if any exceeds 1e-4.
"""

import argparse
import sys

import torch

from fusionframes.convert.official import official_state_to_model, official_to_ours
from fusionframes.models import Kandinsky3UNet

CONFIGS = {
    "tiny": dict(model_channels=32, init_channels=16, num_channels=4, out_channels=4, time_embed_dim=64,
                 context_dim=48, groups=8, head_dim=16, expansion_ratio=4, compression_ratio=2,
                 dim_mult=(1, 2, 2, 4), num_blocks=(2, 3, 2, 2), add_cross_attention=(False, True, True, True),
                 add_self_attention=(False, True, True, True)),
    "odd": dict(model_channels=24, init_channels=None, num_channels=4, out_channels=4, time_embed_dim=40,
                context_dim=20, groups=4, head_dim=8, expansion_ratio=2, compression_ratio=3, dim_mult=(1, 2, 3),
                num_blocks=(2, 2, 3), add_cross_attention=(True, False, True),
                add_self_attention=(True, True, False)),
}


def randomise(module, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.3 if p.ndim < 2 else p[0].numel() ** -0.5))


def relative_error(ours, official):
    return ((ours - official).norm() / official.norm()).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="folder that contains the video_kandinsky3 package")
    args = parser.parse_args()
    sys.path.insert(0, args.official)
    from video_kandinsky3.model.unet import UNet  # noqa: E402 (the user's checkout)

    torch.manual_seed(0)
    worst = 0.0
    b, f, h, w, tokens = 2, 5, 16, 16, 7
    for name, config in CONFIGS.items():
        d = config["context_dim"]
        context = torch.randn(b, tokens, d)
        mask = torch.ones(b, tokens, dtype=torch.bool)
        mask[0, 4:] = False
        t = torch.tensor([17, 830])

        official = UNet(**config)
        randomise(official, 1)
        x = torch.randn(b, 4, h, w)
        t2i = Kandinsky3UNet(**config)
        t2i.load_state_dict({official_to_ours(k): v for k, v in official.state_dict().items()})
        err = relative_error(t2i(x, t, context, mask), official(x, t, context, mask))
        print(f"{name:5s} kandinsky3-unet     rel. error {err:.2e}")
        worst = max(worst, err)

        official = UNet(**config, num_frames=f)
        randomise(official, 2)
        ours, _ = official_state_to_model("keyframe-unet", {"unet": official.state_dict()},
                                          {**config, "num_frames": f})
        video = torch.randn(b, 4, f, h, w)
        positions = torch.stack([torch.arange(f) * 12, torch.arange(f) * 7 + 3])
        reference = official(video.transpose(1, 2).flatten(0, 1), t.repeat_interleave(f),
                             context.repeat_interleave(f, 0), mask.repeat_interleave(f, 0), positions.flatten())
        reference = reference.unflatten(0, (b, f)).transpose(1, 2)
        err = relative_error(ours(video, t, context, mask, positions), reference)
        print(f"{name:5s} keyframe-unet       rel. error {err:.2e}")
        worst = max(worst, err)

        official = UNet(**{**config, "num_channels": 20, "out_channels": 12}, interpolation=True)
        randomise(official, 3)
        null = torch.randn(d)
        ours, _ = official_state_to_model("interpolation-unet", {"unet": official.state_dict(), "null_embedding": null},
                                          {**config, "num_channels": 20, "out_channels": 12, "interpolation": True})
        groups = 4
        keyframes, noisy = torch.randn(1, 4, groups + 1, h, w), torch.randn(1, 4, 3 * groups, h, w)
        null_context = torch.zeros(groups, 2, d)
        null_context[:, 0] = null
        null_mask = torch.tensor([[True, False]] * groups)
        stacked = torch.cat([keyframes[0, :, :-1].transpose(0, 1),
                             noisy[0].unflatten(1, (groups, 3)).permute(1, 2, 0, 3, 4).flatten(1, 2),
                             keyframes[0, :, 1:].transpose(0, 1)], dim=1)
        skip = 3
        reference = official(stacked, torch.full((groups,), 400), null_context, null_mask, None,
                             torch.full((groups,), skip), groups)
        reference = reference.unflatten(1, (3, 4)).permute(2, 0, 1, 3, 4).flatten(1, 2)[None]
        err = relative_error(ours(noisy, 400, keyframes, skip), reference)
        print(f"{name:5s} interpolation-unet  rel. error {err:.2e}")
        worst = max(worst, err)

    print(f"worst relative error {worst:.2e} (limit 1e-4)")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
