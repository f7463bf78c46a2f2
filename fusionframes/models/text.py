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


class MotionClassifier(ModelMixin, ConfigMixin):
    """Which way a prompt says the object moves, read from the frozen encoder's token states.

    Each head scores every token and pools the states by those scores; a linear layer maps the pooled states to
    one logit per label. Pooling tokens this way finds the direction words in phrasings it was not fitted on
    (1000 held-out all-MiniLM-L6-v2 captions: 99.3% with 4 heads, 62% from the mean-pooled sentence embedding),
    and hands the keyframe U-Net's temporal blocks a motion class whose embedding they can learn to use — the
    text itself, through the frozen pooling of the time embedding, moves their conditioning too little.
    """

    @register_to_config
    def __init__(self, encoder_dim: int = 384, labels: tuple = (), heads: int = 4):
        super().__init__()
        if len(labels) < 2:
            raise ValueError(f"a motion classifier needs at least 2 labels, got {list(labels)}")
        self.score = nn.Linear(encoder_dim, heads)
        self.classify = nn.Linear(heads * encoder_dim, len(labels))

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states (B, L, d) and mask (B, L) → logits (B, labels)."""
        scores = self.score(hidden_states).masked_fill(~mask.bool()[..., None], float("-inf"))
        pooled = torch.einsum("blh,bld->bhd", scores.softmax(dim=1), hidden_states)
        return self.classify(pooled.flatten(1))

    @torch.no_grad()
    def predict(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The most likely label of each text, (B,) indices into ``config.labels``."""
        return self(hidden_states.to(self.device, self.dtype), mask.to(self.device)).argmax(-1)
