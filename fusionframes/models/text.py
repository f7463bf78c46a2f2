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


def null_context(null_embedding: torch.Tensor, length: int):
    """KV 1.0's unconditional context of ``length`` slots: the null embedding in slot 0, zeros after it, mask
    (length,) true only at slot 0. The zero slots matter although masked: text pooling averages over every slot."""
    context = null_embedding.new_zeros(length, null_embedding.shape[-1])
    context[0] = null_embedding
    mask = torch.zeros(length, dtype=torch.bool, device=null_embedding.device)
    mask[0] = True
    return context, mask
