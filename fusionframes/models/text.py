"""The trainable text projection between the frozen text encoder and the U-Nets."""

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class TextProjection(ModelMixin, ConfigMixin):
    """Linear (no bias) → LayerNorm: KV 1.0 projects Flan-UL2's 4096-d token states into the U-Net context."""

    @register_to_config
    def __init__(self, encoder_dim: int = 4096, context_dim: int = 4096):
        super().__init__()
        self.linear = nn.Linear(encoder_dim, context_dim, bias=False)
        self.norm = nn.LayerNorm(context_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(hidden_states))
