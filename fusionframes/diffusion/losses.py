"""Training losses for both parameterisations: the network's output against ε (keyframes) or v (interpolation)."""

import torch
import torch.nn.functional as F

from .schedule import Schedule, training_target


def diffusion_loss(model_output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                   schedule: Schedule, prediction_type: str) -> torch.Tensor:
    """MSE between the prediction for x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε and its target (ε-MSE or v-MSE)."""
    sqrt_a, sqrt_1ma = schedule.coefficients(t, x0)
    return F.mse_loss(model_output.float(), training_target(x0, noise, sqrt_a, sqrt_1ma, prediction_type).float())
