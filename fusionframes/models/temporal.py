"""Every temporal module of the paper (§3.1, Table 1) and the registry that picks them by name.

The keyframe U-Net is the frozen text-to-image U-Net plus temporal parts. The paper compares where they go
("blocks": separate residual blocks between the spatial ones; "layers": mixed into the spatial blocks) and what
they are (Conv1D = 3×1×1, Conv3D = 3×3×3, Attn1D = attention over time per position, Attn3D = attention in a
2×2×T window). Every new module starts as the identity, so a freshly built video model reproduces the T2I model
on each frame.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .blocks import Attention, ConditionalGroupNorm, TemporalMerge, feed_forward, silu_of_temporary, temporal_conv


class TemporalConvLayer(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, groups: int, kernel: tuple):
        super().__init__()
        # The Conv3D variant's bottleneck (C/2/2 channels) divides into the official 32 groups at every official
        # width; in a small model it may not, and then takes the largest group count that divides it (GroupNorm
        # here has no parameters, so weights and counts are unchanged).
        self.norm = ConditionalGroupNorm(math.gcd(groups, in_channels), in_channels, cond_dim)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, padding=tuple(k // 2 for k in kernel))

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
        # Normalised per frame (statistics of one frame, as the official block), convolved across frames.
        return temporal_conv(self.conv, silu_of_temporary(self.norm(x, time_embed)), num_frames)


def channel_linear(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return rearrange(linear(rearrange(x, "n c h w -> n h w c")), "n h w c -> n c h w")


class TemporalConvBlock(nn.Module):
    """The official ``TemporalResNetBlock``: 4 × [CondGN(time) → SiLU → Conv3d], bottleneck C→C/2→C/2→C/2→C,
    temporal kernels 1,3,3,1, residual, last conv zero-init.

    ``spatial_kernel=3`` makes the two middle convs 3×3×3 (the Conv3D variant). ``projection_ratio`` wraps the
    stack in the two channel-wise Linear layers the paper adds to that variant (down-project before, up-project
    after) so that its parameter count stays comparable; the up-projection is then the zero-init layer.
    """

    def __init__(self, channels: int, time_embed_dim: int, groups: int = 32, compression_ratio: int = 2,
                 spatial_kernel: int = 1, projection_ratio: Optional[int] = None):
        super().__init__()
        inner = channels // projection_ratio if projection_ratio else channels
        hidden = inner // compression_ratio
        widths = [(inner, hidden), (hidden, hidden), (hidden, hidden), (hidden, inner)]
        kernels = [(1, 1, 1), (3, spatial_kernel, spatial_kernel), (3, spatial_kernel, spatial_kernel), (1, 1, 1)]
        self.down_projection = nn.Linear(channels, inner) if projection_ratio else None
        self.layers = nn.ModuleList([TemporalConvLayer(i, o, time_embed_dim, groups, k)
                                     for (i, o), k in zip(widths, kernels)])
        self.up_projection = nn.Linear(inner, channels) if projection_ratio else None
        last = self.up_projection if projection_ratio else self.layers[-1].conv
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
        out = x
        if self.down_projection is not None:
            out = channel_linear(self.down_projection, out)
        for layer in self.layers:
            out = layer(out, time_embed, num_frames)
        if self.up_projection is not None:
            out = channel_linear(self.up_projection, out)
        return x + out


class TemporalAttention(nn.Module):
    """CondGN conditioned on the frame-position embedding → attention across frames → residual.

    ``window=None`` is Attn1D: each latent position attends over the F frames. ``window=(2, 2)`` is Attn3D: the
    F·2·2 tokens of a 2×2 spatial window attend together (MaxViT-style block attention, no extra parameters);
    sizes that are not multiples of the window are zero-padded and the padding is masked out of the keys.
    The output projection starts at zero, so the block is the identity at initialisation.
    On its own this is the "temporal layer" that the Conv1dAttn1dLayers variant mixes into spatial blocks.
    """

    def __init__(self, channels: int, frame_embed_dim: int, groups: int = 32, head_dim: int = 64,
                 window: Optional[tuple] = None):
        super().__init__()
        self.window = window
        self.in_norm = ConditionalGroupNorm(groups, channels, frame_embed_dim)
        self.temporal_attention = Attention(channels, channels, channels, head_dim, zero_init_output=True)

    def forward(self, x: torch.Tensor, frame_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = self.in_norm(x, frame_embed)
        if self.window is None:
            out = rearrange(out, "(b f) c h w -> b h w f c", f=num_frames)
            out = self.temporal_attention(out, out)
            return x + rearrange(out, "b h w f c -> (b f) c h w")
        wh, ww = self.window
        pad_h, pad_w = -h % wh, -w % ww
        out = F.pad(out, (0, pad_w, 0, pad_h))
        out = rearrange(out, "(b f) c (h p1) (w p2) -> b h w (f p1 p2) c", f=num_frames, p1=wh, p2=ww)
        mask = None
        if pad_h or pad_w:
            valid = torch.zeros(h + pad_h, w + pad_w, dtype=torch.bool, device=x.device)
            valid[:h, :w] = True
            mask = rearrange(valid, "(h p1) (w p2) -> h w p1 p2", p1=wh, p2=ww)
            mask = rearrange(mask[:, :, None].expand(-1, -1, num_frames, -1, -1), "h w f p1 p2 -> h w (f p1 p2)")
        out = self.temporal_attention(out, out, mask)
        out = rearrange(out, "b h w (f p1 p2) c -> (b f) c (h p1) (w p2)", f=num_frames, p1=wh, p2=ww)
        return x + out[..., :h, :w]


class TemporalAttentionBlock(TemporalAttention):
    """The official ``TemporalAttentionBlock``: :class:`TemporalAttention`, then CondGN(time) → FFN → residual."""

    def __init__(self, channels: int, time_embed_dim: int, groups: int = 32, head_dim: int = 64,
                 expansion_ratio: int = 4, window: Optional[tuple] = None):
        super().__init__(channels, time_embed_dim, groups, head_dim, window)
        self.out_norm = ConditionalGroupNorm(groups, channels, time_embed_dim)
        self.feed_forward = feed_forward(channels, expansion_ratio)
        # The official block leaves this layer random, so a fresh block is not the identity; zeroing it makes a
        # new keyframe model reproduce its T2I parent exactly (paper §3.1) and does not change loaded weights.
        nn.init.zeros_(self.feed_forward[2].weight)

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor, frame_embed: torch.Tensor,
                num_frames: int) -> torch.Tensor:
        x = super().forward(x, frame_embed, num_frames)
        return x + self.feed_forward(self.out_norm(x, time_embed))


@dataclass(frozen=True)
class TemporalVariant:
    """Where temporal parts go (``blocks`` or ``layers``) and which conv / attention they use."""

    placement: str
    conv: str
    attention: str

    def conv_block(self, channels: int, time_embed_dim: int, groups: int, compression_ratio: int) -> nn.Module:
        if self.conv == "conv3d":
            return TemporalConvBlock(channels, time_embed_dim, groups, compression_ratio, spatial_kernel=3,
                                     projection_ratio=CONV3D_PROJECTION_RATIO)
        return TemporalConvBlock(channels, time_embed_dim, groups, compression_ratio)

    def attention_block(self, channels: int, time_embed_dim: int, groups: int, head_dim: int,
                        expansion_ratio: int) -> nn.Module:
        return TemporalAttentionBlock(channels, time_embed_dim, groups, head_dim, expansion_ratio, self.window)

    def attention_layer(self, channels: int, time_embed_dim: int, groups: int, head_dim: int) -> nn.Module:
        return TemporalAttention(channels, time_embed_dim, groups, head_dim, self.window)

    @property
    def window(self) -> Optional[tuple]:
        return (2, 2) if self.attention == "attn3d" else None


# Conv3D blocks work at half width between their two Linear projections: with 3×3×3 middle kernels that keeps the
# variant within ~1.3× of the Conv1D blocks (README table) rather than ~5×.
CONV3D_PROJECTION_RATIO = 2

TEMPORAL_VARIANTS = {
    "conv1d-attn1d-blocks": TemporalVariant("blocks", "conv1d", "attn1d"),
    "conv3d-attn1d-blocks": TemporalVariant("blocks", "conv3d", "attn1d"),
    "conv1d-attn3d-blocks": TemporalVariant("blocks", "conv1d", "attn3d"),
    "conv1d-attn1d-layers": TemporalVariant("layers", "conv1d", "attn1d"),
}

TEMPORAL_MODULES = (TemporalMerge, TemporalConvBlock, TemporalAttention)
