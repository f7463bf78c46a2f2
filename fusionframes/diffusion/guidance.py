"""Guidance arithmetic. KV 1.0 writes classifier-free guidance as ``(w+1)·cond − w·uncond``: its weight ``w`` is
diffusers' ``guidance_scale − 1`` (KV 1.0's keyframe default w = 5 is guidance_scale 6 elsewhere), and w = 0 means
no guidance. The pipeline's ``guidance_scale`` and ``interpolation_guidance_scale`` take KV 1.0's ``w``."""

import torch


def guide(cond: torch.Tensor, uncond: torch.Tensor, weight: float) -> torch.Tensor:
    return (weight + 1.0) * cond - weight * uncond


def guided(predict, weight: float, conditional: dict, unconditional: dict):
    """A ``denoise(x, t)`` that runs the network once on [cond; uncond] (two halves of one batch) and guides.

    ``predict(x, t, **conditions)``; each conditions dict holds tensors batched like ``x`` (or None); with
    ``weight == 0`` only the conditional half runs.
    """
    if weight == 0:
        return lambda x, t: predict(x, t, **conditional)

    def cat(a, b):
        return None if a is None else torch.cat([a, b])

    both = {k: cat(conditional[k], unconditional[k]) for k in conditional}

    def denoise(x, t):
        cond, uncond = predict(torch.cat([x, x]), torch.cat([t, t]), **both).chunk(2)
        return guide(cond, uncond, weight)

    return denoise
