"""How well an interpolation model rebuilds the frames between keyframes (paper §3.2, and its open question on
skip-frames): PSNR / SSIM / MSE of the predicted in-between frames against the true ones.

Protocol: clips of 4G+1 true frames (``skip_frames`` source frames apart) are encoded by the pipeline's MoVQ;
every 4th latent is a keyframe; one interpolation pass predicts the 3 latents between each pair; everything is
decoded and only the 3G in-between frames are scored, in [0, 1] RGB. Three references put the number in context:
``autoencoder`` (the true latents decoded: the best any interpolation in this latent space can do), ``blend`` (the
linear cross-fade of the decoded keyframes) and ``repeat`` (the left keyframe held).
"""

from typing import Callable, Dict, Iterable, Optional

import torch
from einops import rearrange

from ..errors import FusionFramesError
from .metrics import mse, psnr, ssim

METHODS = ("model", "autoencoder", "blend", "repeat")
BLEND = (0.25, 0.5, 0.75)


def _in_between(video: torch.Tensor) -> torch.Tensor:
    """(B, F=4G+1, 3, H, W) → the 3G frames that are not keyframes."""
    keep = torch.arange(video.shape[1]) % 4 != 0
    return video[:, keep]


def _scores(prediction: torch.Tensor, truth: torch.Tensor) -> Dict[str, float]:
    a, b = rearrange(prediction, "b f c h w -> (b f) c h w"), rearrange(truth, "b f c h w -> (b f) c h w")
    return {"psnr": float(psnr(a, b).mean()), "ssim": float(ssim(a, b).mean()), "mse": float(mse(a, b).mean())}


@torch.no_grad()
def rebuild(pipe, clip: torch.Tensor, skip_frames: int, num_inference_steps: int, guidance: float, generator):
    """A clip (B, 3, 4G+1, H, W) in [−1, 1] → its latents, and the latents one interpolation pass rebuilds from
    every 4th of them."""
    latents = pipe.movq.encode(clip.to(pipe.device, pipe.movq.dtype)).float()
    return latents, pipe.interpolate(latents[:, :, ::4], skip_frames, num_inference_steps, guidance, generator)


@torch.no_grad()
def interpolation_quality(pipe, clips: Iterable[torch.Tensor], skip_frames: int, num_inference_steps: int = 10,
                          guidance_scale: Optional[float] = None, seed: int = 0,
                          progress: Optional[Callable[[int], None]] = None) -> dict:
    """Mean scores over ``clips`` (each (B, 3, 4G+1, H, W) in [−1, 1], as the procedural datasets give them) for
    the model and the three references; returns ``{method: {psnr, ssim, mse}}`` plus ``clips`` and settings."""
    guidance = pipe.defaults["interpolation_guidance_scale"] if guidance_scale is None else guidance_scale
    totals = {m: {"psnr": 0.0, "ssim": 0.0, "mse": 0.0} for m in METHODS}
    count = 0
    generator = torch.Generator(pipe.device).manual_seed(seed)
    for clip in clips:
        f = clip.shape[2]
        if clip.ndim != 5 or clip.shape[1] != 3 or f < 5 or (f - 1) % 4:
            raise FusionFramesError(f"clips must be (batch, 3, 4G+1, H, W) videos in [-1, 1], got shape "
                                    f"{tuple(clip.shape)}")
        latents, predicted = rebuild(pipe, clip, skip_frames, num_inference_steps, guidance, generator)
        truth = rearrange((clip.float() + 1) / 2, "b c f h w -> b f c h w").clamp(0, 1)
        decoded = {"model": pipe.decode(predicted), "autoencoder": pipe.decode(latents)}
        keyframes = decoded["autoencoder"][:, ::4].cpu()
        left, right = keyframes[:, :-1, None], keyframes[:, 1:, None]
        weights = torch.tensor(BLEND).view(1, 1, 3, 1, 1, 1)
        decoded["blend"] = rearrange(left * (1 - weights) + right * weights, "b g k c h w -> b (g k) c h w")
        decoded["repeat"] = rearrange(left.expand(-1, -1, 3, -1, -1, -1), "b g k c h w -> b (g k) c h w")
        target = _in_between(truth)
        for method in METHODS:
            video = decoded[method].cpu()
            frames = video if method in ("blend", "repeat") else _in_between(video)
            for key, value in _scores(frames, target).items():
                totals[method][key] += value * clip.shape[0]
        count += clip.shape[0]
        if progress is not None:
            progress(clip.shape[0])
    if not count:
        raise FusionFramesError("no clips to score")
    return {**{m: {k: v / count for k, v in scores.items()} for m, scores in totals.items()}, "clips": count,
            "skip_frames": skip_frames, "num_inference_steps": num_inference_steps, "guidance_scale": guidance,
            "seed": seed}


def procedural_clips(num_clips: int, skip_frames: int, groups: int = 2, size: int = 128, batch_size: int = 4,
                     seed: int = 1234):
    """Held-out procedural clips of 4·groups+1 frames at one skip-frame, in batches (what the default model knows)."""
    from ..data.procedural import ProceduralVideos

    data = ProceduralVideos(length=num_clips, size=size, num_frames=4 * groups + 1, skip_frames=skip_frames,
                            held_out=True, seed=seed)
    for start in range(0, num_clips, batch_size):
        yield torch.stack([data[i]["frames"] for i in range(start, min(start + batch_size, num_clips))])


def format_table(rows: Dict[int, dict]) -> str:
    """Markdown: one row per skip-frame, PSNR / SSIM of the model and each reference."""
    head = "| skip-frame | " + " | ".join(f"{m} PSNR | {m} SSIM" for m in METHODS) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(METHODS))]
    for skip, report in sorted(rows.items()):
        lines.append(f"| {skip} | " + " | ".join(f"{report[m]['psnr']:.2f} | {report[m]['ssim']:.3f}"
                                                 for m in METHODS) + " |")
    return "\n".join(lines) + "\n"




COLOURS = {"model": (200, 40, 40), "autoencoder": (40, 90, 200), "blend": (40, 150, 60), "repeat": (130, 130, 130)}


def plot_skip_curve(rows: Dict[int, dict], png, metric: str = "psnr", width: int = 560, height: int = 340) -> None:
    """``metric`` against skip-frame, one line per method (Pillow only)."""
    from PIL import Image, ImageDraw

    skips = sorted(rows)
    values = {m: [rows[s][m][metric] for s in skips] for m in METHODS}
    lo, hi = min(min(v) for v in values.values()), max(max(v) for v in values.values())
    hi = hi if hi > lo else lo + 1
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 60, width - 120, 20, height - 40
    draw.rectangle([left, top, right, bottom], outline="black")
    x = lambda s: left + (s - skips[0]) / max(skips[-1] - skips[0], 1) * (right - left)  # noqa: E731
    y = lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top)  # noqa: E731
    for i, method in enumerate(METHODS):
        points = [(x(s), y(v)) for s, v in zip(skips, values[method])]
        if len(points) > 1:
            draw.line(points, fill=COLOURS[method], width=2)
        for px, py in points:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=COLOURS[method])
        draw.text((right + 10, top + 16 * i), method, fill=COLOURS[method])
    draw.text((4, top), f"{hi:.3g}", fill="black")
    draw.text((4, bottom - 10), f"{lo:.3g}", fill="black")
    draw.text((left, bottom + 8), f"skip-frame {skips[0]}", fill="black")
    draw.text((right - 70, bottom + 8), f"{skips[-1]}", fill="black")
    draw.text((left + 8, top + 4), f"{metric.upper()} of the in-between frames", fill="black")
    image.save(png)


__all__ = ["interpolation_quality", "rebuild", "procedural_clips", "format_table", "plot_skip_curve", "METHODS"]
