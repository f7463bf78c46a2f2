"""Compare our modules with the official Kandinsky Video code on the same random weights and inputs.

The official code is not part of this project; point this script at a checkout of it:

    python tools/check_official_parity.py --official PATH
    # PATH contains video_kandinsky3/model/unet.py (KV 1.0) and kandinsky_video/movq.py (KV 1.1)

Every parameter (zero-initialised ones included) is randomised, the official state dict is converted with
``fusionframes.convert`` and both models run in float32 on the CPU: the T2I, keyframe and interpolation U-Nets,
the MoVQ encoder and image decoder, and every video decoder the official code can run (its 2D→3D decoder
raises inside its own forward, so that one is compared by keys and shapes only). Prints the relative error per
model and configuration; exits 1 if any exceeds 1e-4.
"""

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch

from fusionframes.convert.official import OFFICIAL_VIDEO_DECODER_KWARGS, official_state_to_model, official_to_ours
from fusionframes.models import Kandinsky3UNet
from fusionframes.models.movq import VIDEO_DECODERS, MoVQ

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


MOVQ_CONFIGS = {
    "movq-a": dict(double_z=False, z_channels=4, resolution=32, in_channels=3, out_ch=3, ch=64, ch_mult=[1, 2],
                   num_res_blocks=1, attn_resolutions=[16], dropout=0.0),
    # attention at two decoder levels and in the encoder, 3 levels, 2 blocks, other latent width
    "movq-b": dict(double_z=False, z_channels=3, resolution=64, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2, 3],
                   num_res_blocks=2, attn_resolutions=[16, 32], dropout=0.0),
}


def official_movq_module(root: Path):
    """kandinsky_video/movq.py loaded alone (its package __init__ pulls in the whole pipeline)."""
    package = types.ModuleType("_official_kv11")
    package.__path__ = [str(root / "kandinsky_video")]
    sys.modules["_official_kv11"] = package
    for name in ("utils", "movq"):
        spec = importlib.util.spec_from_file_location(f"_official_kv11.{name}", root / "kandinsky_video" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["_official_kv11.movq"]


def check_movq(root: Path) -> float:
    official_movq = official_movq_module(root)
    worst = 0.0
    for name, config in MOVQ_CONFIGS.items():
        ours_config = {k: v for k, v in config.items() if k != "double_z"}
        image = torch.rand(2, 3, 32, 32) * 2 - 1
        official = official_movq.MoVQ(config)
        randomise(official, 4)
        ours = MoVQ(**ours_config)
        ours.load_state_dict(official.state_dict())
        z = official.encode(image)
        err = relative_error(ours.encode(image), z)
        print(f"{name} encoder             rel. error {err:.2e}")
        worst = max(worst, err)
        # KV 1.1's decode treats a batch as one video; one image per call is the image (KV 1.0 / K3) decoder.
        reference = torch.cat([official.decode(latent[None]) for latent in z])
        err = relative_error(ours.decode(z), reference)
        print(f"{name} image decoder       rel. error {err:.2e}")
        worst = max(worst, err)

        frames = 5
        latents = torch.randn(1, config["z_channels"], frames, *z.shape[-2:])
        for variant in VIDEO_DECODERS:
            official = official_movq.MoVQ({**config, **OFFICIAL_VIDEO_DECODER_KWARGS[variant]})
            randomise(official, 5)
            ours = MoVQ(**ours_config, video_decoder=variant, spatial_attention_zq="first-frame")
            ours.load_state_dict(official.state_dict())
            if variant == "3d-conv":
                print(f"{name} {variant:18s}  keys and shapes equal (the official forward cannot run it)")
                continue
            reference = official.decode(latents[0].transpose(0, 1)).transpose(0, 1)[None]
            err = relative_error(ours.decode(latents), reference)
            print(f"{name} {variant:18s}  rel. error {err:.2e}")
            worst = max(worst, err)
    return worst


def check_sampler() -> float:
    """KV 1.0 BaseDiffusion.p_sample_loop vs sample_ancestral: same network, same global RNG, ε and v."""
    from video_kandinsky3.model.diffusion import BaseDiffusion, get_named_beta_schedule

    from fusionframes.diffusion import Schedule, sample_ancestral

    def network(x, t, *args):  # context-independent, so guidance leaves it unchanged
        return torch.tanh(0.7 * x + t.view(-1, 1, 1, 1).float() / 700.0) * 1.3

    worst = 0.0
    shape = (3, 4, 8, 8)
    for steps in (50, 17):
        for v in (False, True):
            official = BaseDiffusion(get_named_beta_schedule("cosine", steps), 0.98)
            torch.manual_seed(steps)
            reference = official.p_sample_loop(network, shape, "cpu", torch.zeros(3, 2, 8),
                                               torch.ones(3, 2, dtype=torch.bool), torch.zeros(8), 0.0,
                                               v_predication=v)
            torch.manual_seed(steps)
            ours = sample_ancestral(network, torch.randn(shape), Schedule.cosine(steps),
                                    "v_prediction" if v else "epsilon", progress=False)
            err = relative_error(ours, reference)
            print(f"sampler {steps:2d} steps {'v' if v else 'ε'}    rel. error {err:.2e}")
            worst = max(worst, err)
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True,
                        help="checkout of the official repository (holds video_kandinsky3/ and kandinsky_video/)")
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

    worst = max(worst, check_movq(Path(args.official)), check_sampler())
    print(f"worst relative error {worst:.2e} (limit 1e-4)")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
