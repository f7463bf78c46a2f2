"""Noise schedules and the parameterisations that live on them (the networks know nothing of either)."""

import math
from dataclasses import dataclass

import torch


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """The cosine schedule (Nichol & Dhariwal) discretised straight into ``num_steps`` steps, as KV 1.0 samples:
    ``β_i = min(1 − ᾱ((i+1)/N) / ᾱ(i/N), max_beta)`` with ``ᾱ(t) = cos²((t + s)/(1 + s)·π/2)``. Computed in float64
    and returned as float32, the official precision."""
    alpha_bar = lambda t: math.cos((t + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    return torch.tensor([min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
                         for i in range(num_steps)], dtype=torch.float32)


@dataclass
class Schedule:
    """A discrete DDPM schedule; ``timestep_scale`` maps step index i to the U-Net's time input i·scale, which
    KV 1.0 sets to 1000 // N so that any N spans the 0–1000 range the U-Nets were trained on."""

    betas: torch.Tensor
    timestep_scale: int = 1

    @classmethod
    def cosine(cls, num_steps: int) -> "Schedule":
        if not 1 <= num_steps <= 1000:
            raise ValueError(f"the cosine schedule takes 1 to 1000 steps, got {num_steps}")
        return cls(cosine_betas(num_steps), timestep_scale=1000 // num_steps)

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    def coefficients(self, t: torch.Tensor, like: torch.Tensor):
        """√ᾱ_t and √(1−ᾱ_t) at integer steps ``t`` (B,), shaped to broadcast against ``like``."""
        a = self.alphas_cumprod.to(like.device)[t.to(like.device)]
        shape = (-1,) + (1,) * (like.ndim - 1)
        return a.sqrt().view(shape).to(like.dtype), (1 - a).sqrt().view(shape).to(like.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sqrt_a, sqrt_1ma = self.coefficients(t, x0)
        return sqrt_a * x0 + sqrt_1ma * noise


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")  # what a network's raw output may stand for (diffusers' names)


def predicted_x0(prediction: torch.Tensor, x_t: torch.Tensor, sqrt_a, sqrt_1ma, prediction_type: str):
    """x̂₀ from an ε-, v- or x₀- ("sample") prediction: the one place that knows the parameterisations."""
    if prediction_type == "epsilon":
        return (x_t - sqrt_1ma * prediction) / sqrt_a
    if prediction_type == "v_prediction":
        return sqrt_a * x_t - sqrt_1ma * prediction
    if prediction_type == "sample":
        return prediction
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def training_target(x0: torch.Tensor, noise: torch.Tensor, sqrt_a, sqrt_1ma, prediction_type: str):
    """What the network should output: ε, v = √ᾱ·ε − √(1−ᾱ)·x₀, or x₀ itself."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return sqrt_a * noise - sqrt_1ma * x0
    if prediction_type == "sample":
        return x0
    raise ValueError(f"unknown prediction_type {prediction_type!r}")
