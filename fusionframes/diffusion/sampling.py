"""Samplers as plain functions (k-diffusion style): they take a ``denoise(x, timestep) → prediction`` callable
that already includes guidance, and own nothing but the stepping.

``sample_ancestral`` is KV 1.0's ``BaseDiffusion.p_sample_loop`` exactly; ``sample_with_scheduler`` runs any
diffusers scheduler (DDIM, DPM-Solver++, Euler, …) on the same networks.
"""

import inspect
from typing import Callable, Optional

import torch
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange
from tqdm.auto import tqdm

from ..errors import FusionFramesError
from .schedule import Schedule, predicted_x0

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def dynamic_threshold(x0: torch.Tensor, percentile: Optional[float], frames_per_unit: int = 1,
                      data_range: float = 1.0) -> torch.Tensor:
    """Imagen's dynamic thresholding as KV 1.0 applies it: per unit, q = max(percentile of |x̂₀|, r), then
    clip to ±q and rescale by r / q (``percentile=None``: clip to ±r). ``data_range`` r is where the data lives
    (±1 for KV 1.0's latents, as for Imagen's pixels); values inside it are never changed.

    The official code thresholds each *batch element*, which is a frame for the keyframe model and a group of 3
    frames for the interpolation model: ``frames_per_unit`` reproduces that on (B, C, F, h, w) video latents.
    """
    if percentile is None:
        return x0.clamp(-data_range, data_range)
    units = rearrange(x0, "b c (u k) h w -> (b u) (c k h w)", k=frames_per_unit) if x0.ndim == 5 else x0.flatten(1)
    q = torch.quantile(units.abs().float(), percentile, dim=-1).clamp(min=data_range).to(x0.dtype)
    if x0.ndim == 5:
        q = rearrange(q, "(b u) -> b 1 u 1 1", b=x0.shape[0]).repeat_interleave(frames_per_unit, dim=2)
    else:
        q = q.view(-1, *(1,) * (x0.ndim - 1))
    return torch.maximum(torch.minimum(x0, q), -q) * (data_range / q)


def _check_finite(x: torch.Tensor, stage: str, step: int):
    if not torch.isfinite(x).all():
        raise FusionFramesError(f"{stage}: latents became non-finite at sampling step {step}; nothing was written. "
                                f"Try float32 or a lower guidance weight.")


@torch.no_grad()
def sample_ancestral(denoise: Denoise, noise: torch.Tensor, schedule: Schedule, prediction_type: str,
                     generator=None, threshold_percentile: Optional[float] = 0.98, frames_per_unit: int = 1,
                     callback: Optional[Callable] = None, stage: str = "sampling", progress: bool = True,
                     threshold_range: float = 1.0):
    """Ancestral DDPM posterior sampling with dynamic thresholding of x̂₀ (KV 1.0 ``BaseDiffusion``).

    ``threshold_range``: the latents' natural range r (see :func:`dynamic_threshold`); 1 for KV 1.0's MoVQ. A
    latent space that spans more (a MoVQ trained from scratch) needs its own r, or thresholding pulls every
    latent toward 0 and shifts the decoded colours.

    ``noise`` is x_T. Step i feeds the network timestep i·``schedule.timestep_scale``. Posterior noise comes from
    ``generator`` (one per sample for per-sample reproducibility; None = the global RNG, which reproduces the
    official code draw for draw). ``callback(step, timestep, x)`` runs after every step.
    """
    betas = schedule.betas.to(noise.device)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    alphas_cumprod_prev = torch.cat([torch.ones(1, device=betas.device), alphas_cumprod[:-1]])
    coef_x0 = alphas_cumprod_prev.sqrt() * betas / (1.0 - alphas_cumprod)
    coef_xt = (1.0 - betas).sqrt() * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    # The official code replaces the (zero) first posterior variance by the second before taking the log.
    log_variance = torch.log(torch.cat([variance[1:2], variance[1:]]))

    x = noise
    batch = x.shape[0]
    for step, i in enumerate(tqdm(range(schedule.num_steps - 1, -1, -1), desc=stage, disable=not progress)):
        t = torch.full((batch,), i, device=x.device, dtype=torch.long)
        prediction = denoise(x, t * schedule.timestep_scale)
        sqrt_a, sqrt_1ma = alphas_cumprod[i].sqrt(), (1.0 - alphas_cumprod[i]).sqrt()
        x0 = dynamic_threshold(predicted_x0(prediction, x, sqrt_a, sqrt_1ma, prediction_type),
                               threshold_percentile, frames_per_unit, threshold_range)
        mean = coef_x0[i] * x0 + coef_xt[i] * x
        # Drawn at every step, the last included, as the official loop does: the global RNG then matches it.
        z = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = mean + torch.exp(0.5 * log_variance[i]) * z if i > 0 else mean
        _check_finite(x, stage, step)
        if callback is not None:
            callback(step, int(t[0]) * schedule.timestep_scale, x)
    return x


@torch.no_grad()
def sample_with_scheduler(denoise: Denoise, noise: torch.Tensor, scheduler, num_steps: int, generator=None,
                          callback: Optional[Callable] = None, stage: str = "sampling", progress: bool = True):
    """Any diffusers scheduler; its ``prediction_type`` must be the network's and its schedule the training one
    (``squaredcos_cap_v2`` over 1000 steps is KV 1.0's cosine schedule)."""
    scheduler.set_timesteps(num_steps, device=noise.device)
    # Deterministic schedulers (UniPC, …) take no generator: pass it only where step() accepts one, as diffusers does.
    extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    x = noise * scheduler.init_noise_sigma
    for step, t in enumerate(tqdm(scheduler.timesteps, desc=stage, disable=not progress)):
        timestep = t.expand(x.shape[0]) if t.ndim == 0 else t
        prediction = denoise(scheduler.scale_model_input(x, t), timestep)
        x = scheduler.step(prediction, t, x, **extra).prev_sample
        _check_finite(x, stage, step)
        if callback is not None:
            callback(step, int(t), x)
    return x
