"""Training losses for every parameterisation: the network's output against ε (keyframes), v or x₀ (interpolation)."""

from typing import Optional

import torch
import torch.nn.functional as F

from .schedule import Schedule, training_target


def min_snr_weight(sqrt_a: torch.Tensor, sqrt_1ma: torch.Tensor, prediction_type: str, gamma: float) -> torch.Tensor:
    """Min-SNR-γ (Hang et al. 2023, diffusers' ``snr_gamma``): per-sample weights that turn each parameterisation's
    MSE (SNR·, (SNR+1)· or 1·‖x₀ − x̂₀‖²) into min(SNR, γ)·‖x₀ − x̂₀‖², so the nearly clean timesteps, whose
    loss is large and easy, stop drowning out the rest."""
    snr = (sqrt_a / sqrt_1ma) ** 2
    per_x0 = {"epsilon": snr, "v_prediction": snr + 1, "sample": torch.ones_like(snr)}[prediction_type]
    return snr.clamp(max=gamma) / per_x0


def diffusion_loss(model_output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   schedule: Schedule, prediction_type: str, snr_gamma: Optional[float] = None) -> torch.Tensor:
    """MSE between the prediction for x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε and its target (ε, v or x₀), optionally
    min-SNR-γ weighted per sample (:func:`min_snr_weight`)."""
    sqrt_a, sqrt_1ma = schedule.coefficients(t, x0)
    target = training_target(x0, noise, sqrt_a, sqrt_1ma, prediction_type).float()
    if snr_gamma is None:
        return F.mse_loss(model_output.float(), target)
    error = (model_output.float() - target) ** 2
    # The schedule's coefficients again, in float32 whatever x0's dtype: SNR spans 1e-9 to 2e4.
    return (min_snr_weight(*schedule.coefficients(t, error), prediction_type, snr_gamma) * error).mean()
