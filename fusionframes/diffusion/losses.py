"""Training losses for every parameterisation: the network's output against ε (keyframes), v or x₀ (interpolation)."""

from typing import Optional

import torch
import torch.nn.functional as F

from .schedule import Schedule, training_target


def snr_weight(sqrt_a: torch.Tensor, sqrt_1ma: torch.Tensor, prediction_type: str, gamma: Optional[float] = None,
               floor: Optional[float] = None) -> torch.Tensor:
    """Per-sample weights that turn each parameterisation's MSE (SNR·, (SNR+1)· or 1·‖x₀ − x̂₀‖²) into
    clamp(SNR, floor, gamma)·‖x₀ − x̂₀‖².

    ``gamma`` is min-SNR-γ (Hang et al. 2023, diffusers' ``snr_gamma``): the nearly clean timesteps, whose loss is
    large and easy, stop drowning out the rest. ``floor`` is truncated-SNR weighting (Salimans & Ho 2022): an
    ε-loss weighs the x₀ error by the SNR, almost nothing at the noisiest timesteps (0.002 at t = 980) where a
    sample's layout is decided; a floor of 1 weighs it there as a v-loss does.
    """
    snr = (sqrt_a / sqrt_1ma) ** 2
    per_x0 = {"epsilon": snr, "v_prediction": snr + 1, "sample": torch.ones_like(snr)}[prediction_type]
    return snr.clamp(min=floor, max=gamma) / per_x0


def diffusion_loss(model_output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   schedule: Schedule, prediction_type: str, snr_gamma: Optional[float] = None,
                   snr_floor: Optional[float] = None) -> torch.Tensor:
    """MSE between the prediction for x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε and its target (ε, v or x₀), optionally
    reweighted per sample by :func:`snr_weight`."""
    sqrt_a, sqrt_1ma = schedule.coefficients(t, x0)
    target = training_target(x0, noise, sqrt_a, sqrt_1ma, prediction_type)
    if snr_gamma is None and snr_floor is None:
        return F.mse_loss(model_output.float(), target.float())
    error = (model_output.float() - target.float()) ** 2
    return (snr_weight(sqrt_a, sqrt_1ma, prediction_type, snr_gamma, snr_floor).float() * error).mean()
