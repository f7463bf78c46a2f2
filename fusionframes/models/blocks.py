"""Kandinsky 3.0 building blocks: the spatial backbone shared by every U-Net of FusionFrames.

Everything here works on frames folded into the batch, ``(b f) c h w``. A block that also mixes time (the
"temporal layer" of a spatial :class:`Block`) is told the number of frames and unfolds them itself.
Leaf names (``group_norm``, ``projection``, ``context_mlp`` …) follow the official code so that weights map by name.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class SinusoidalPosEmb(nn.Module):
    """Transformer sinusoids with the official layout: ``[sin | cos]`` and frequency step ``log(1e4)/(half-1)``."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=x.device) * -(math.log(10000) / (half - 1)))
        angles = x.float()[:, None] * freqs[None]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


class EmbeddingMLP(nn.Sequential):
    """Sinusoids → Linear → SiLU → Linear, for diffusion time, frame position and perturbation level.

    The sinusoids are computed in float32 and cast to the MLP's dtype, so a bf16/fp16 model embeds large
    timesteps without rounding the angles.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(SinusoidalPosEmb(in_dim), nn.Linear(in_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self[0](x).to(self[1].weight.dtype)
        return self[3](self[2](self[1](h)))


class ConditionalGroupNorm(nn.Module):
    """GroupNorm without affine, then ``x·(1+scale)+shift`` from the conditioning vector (zero-init: plain norm).

    ``cond`` has one row per image or one per sample whose frames are folded into ``x`` as ``(b f)``: the
    projection then runs once per sample, not once per frame. Scale and shift enter as the affine of a single
    group-norm call over all images side by side (B·C channels, B·G groups), which normalises and modulates in one
    pass instead of three.
    """

    def __init__(self, groups: int, num_channels: int, cond_dim: int, eps: float = 1e-5):
        super().__init__()
        if num_channels % groups:
            raise ValueError(f"{num_channels} channels do not split into {groups} groups")
        self.groups, self.eps = groups, eps
        self.context_mlp = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * num_channels))
        nn.init.zeros_(self.context_mlp[1].weight)
        nn.init.zeros_(self.context_mlp[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if n % cond.shape[0]:
            raise ValueError(f"conditioning batch {cond.shape[0]} does not divide the input batch {n}")
        scale, shift = self.context_mlp(cond).repeat_interleave(n // cond.shape[0], dim=0).chunk(2, dim=1)
        out = F.group_norm(x.reshape(1, n * c, *x.shape[2:]), n * self.groups, (scale + 1.0).reshape(-1).to(x.dtype),
                           shift.reshape(-1).to(x.dtype), self.eps)
        return out.view_as(x)


def silu_of_temporary(x: torch.Tensor) -> torch.Tensor:
    """SiLU of a tensor nothing else holds (a norm's fresh output): overwritten in place when no graph is recorded."""
    return F.silu(x, inplace=not torch.is_grad_enabled())


class Attention(nn.Module):
    """Multi-head attention with bias-free projections; ``scale = head_dim**-0.5`` as in the official code."""

    def __init__(self, in_channels: int, out_channels: int, context_dim: int, head_dim: int = 64,
                 zero_init_output: bool = False):
        super().__init__()
        if out_channels % head_dim:
            raise ValueError(f"attention width {out_channels} is not a multiple of head_dim {head_dim}")
        self.num_heads = out_channels // head_dim
        self.to_query = nn.Linear(in_channels, out_channels, bias=False)
        self.to_key = nn.Linear(context_dim, out_channels, bias=False)
        self.to_value = nn.Linear(context_dim, out_channels, bias=False)
        self.output_layer = nn.Linear(out_channels, out_channels, bias=False)
        if zero_init_output:
            nn.init.zeros_(self.output_layer.weight)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x`` (..., n, c) attends over ``context`` (..., m, d); ``mask`` (..., m) or broadcastable, True = keep."""
        def split(t):
            return rearrange(t, "... n (h d) -> ... h n d", h=self.num_heads)

        q, k, v = split(self.to_query(x)), split(self.to_key(context)), split(self.to_value(context))
        if mask is not None:
            mask = mask.bool().unsqueeze(-2).unsqueeze(-3)  # (..., 1 head, 1 query, m)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.output_layer(rearrange(out, "... h n d -> ... n (h d)"))


def temporal_conv(conv: nn.Conv3d, x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """A Conv3d over folded frames ``(b f) c h w``. A k×1×1 kernel runs as a k×1 Conv2d on ``b c f (h w)``: in
    channels-last memory that view is free and the kernel is the fast 2-D one (the 3-D route copies both ways)."""
    temporal_only = (conv.kernel_size[1:] == (1, 1) and conv.stride == (1, 1, 1) and conv.dilation == (1, 1, 1)
                     and conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
                     and conv.padding[1:] == (0, 0))
    if not temporal_only:
        return rearrange(conv(rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)), "b c f h w -> (b f) c h w")
    h, w = x.shape[-2:]
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    weight = conv.weight.squeeze(-1).contiguous(memory_format=layout)  # the kernel's layout picks the output's
    out = F.conv2d(rearrange(x, "(b f) c h w -> b c f (h w)", f=num_frames), weight, conv.bias,
                   padding=(conv.padding[0], 0))
    return rearrange(out, "b c f (h w) -> (b f) c h w", h=h, w=w)


class TemporalMerge(nn.Module):
    """A 3×1×1 temporal conv after a spatial conv, merged as ``(1−α)·x + α·conv(x)`` with α = 0 at init.

    This is the official interpolation model's merge (and the paper's "temporal layer"): the official code merges
    with a learned scalar rather than adding, so the spatial path is untouched until α moves.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1))
        self.conv = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return torch.lerp(x, temporal_conv(self.conv, x, num_frames), self.alpha.to(x.dtype))  # (1−α)·x + α·out


class Block(nn.Module):
    """CondGN(time) → SiLU → (2× transposed-conv up) → conv → (temporal layer) → (2× strided-conv down)."""

    def __init__(self, in_channels: int, out_channels: int, time_embed_dim: int, kernel_size: int = 3,
                 groups: int = 32, resample: Optional[str] = None, temporal: bool = False):
        super().__init__()
        self.group_norm = ConditionalGroupNorm(groups, in_channels, time_embed_dim)
        self.up_sample = (nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2)
                          if resample == "up" else nn.Identity())
        self.projection = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=kernel_size // 2)
        self.temporal = TemporalMerge(out_channels) if temporal else None
        self.down_sample = (nn.Conv2d(out_channels, out_channels, kernel_size=2, stride=2)
                            if resample == "down" else nn.Identity())

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor, num_frames: Optional[int] = None) -> torch.Tensor:
        x = self.projection(self.up_sample(silu_of_temporary(self.group_norm(x, time_embed))))
        if self.temporal is not None:
            x = self.temporal(x, num_frames)
        return self.down_sample(x)


class ResNetBlock(nn.Module):
    """Bottleneck of four Blocks (kernels 1,3,3,1; width max(in,out)/compression) plus a resampled shortcut.

    ``resample="up"`` upsamples inside the second Block, ``"down"`` downsamples inside the third, as officially.
    """

    def __init__(self, in_channels: int, out_channels: int, time_embed_dim: int, groups: int = 32,
                 compression_ratio: int = 2, resample: Optional[str] = None, temporal: bool = False):
        super().__init__()
        hidden = max(in_channels, out_channels) // compression_ratio
        widths = [(in_channels, hidden), (hidden, hidden), (hidden, hidden), (hidden, out_channels)]
        resamples = [None, "up" if resample == "up" else None, "down" if resample == "down" else None, None]
        self.resnet_blocks = nn.ModuleList([
            Block(i, o, time_embed_dim, k, groups, r, temporal)
            for (i, o), k, r in zip(widths, [1, 3, 3, 1], resamples)
        ])
        self.shortcut_up_sample = (nn.ConvTranspose2d(in_channels, in_channels, kernel_size=2, stride=2)
                                   if resample == "up" else nn.Identity())
        self.shortcut_projection = (nn.Conv2d(in_channels, out_channels, kernel_size=1)
                                    if in_channels != out_channels else nn.Identity())
        self.shortcut_down_sample = (nn.Conv2d(out_channels, out_channels, kernel_size=2, stride=2)
                                     if resample == "down" else nn.Identity())

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor, num_frames: Optional[int] = None) -> torch.Tensor:
        out = x
        for block in self.resnet_blocks:
            out = block(out, time_embed, num_frames)
        return self.shortcut_down_sample(self.shortcut_projection(self.shortcut_up_sample(x))) + out


def feed_forward(channels: int, expansion_ratio: int) -> nn.Sequential:
    hidden = expansion_ratio * channels
    return nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.SiLU(),
                         nn.Conv2d(hidden, channels, 1, bias=False))


class AttentionBlock(nn.Module):
    """CondGN → attention (self, or cross to the text) → residual; CondGN → 1×1-conv FFN → residual.

    ``temporal_layer`` is the paper's "temporal layers" variant: a temporal attention mixed into the same block
    between the spatial attention and the feed-forward (see :mod:`fusionframes.models.temporal`).
    """

    def __init__(self, channels: int, time_embed_dim: int, context_dim: Optional[int] = None, groups: int = 32,
                 head_dim: int = 64, expansion_ratio: int = 4, temporal_layer: Optional[nn.Module] = None):
        super().__init__()
        self.in_norm = ConditionalGroupNorm(groups, channels, time_embed_dim)
        self.attention = Attention(channels, channels, context_dim or channels, head_dim)
        self.temporal_layer = temporal_layer
        self.out_norm = ConditionalGroupNorm(groups, channels, time_embed_dim)
        self.feed_forward = feed_forward(channels, expansion_ratio)

    def forward(self, x: torch.Tensor, time_embed: torch.Tensor, context: Optional[torch.Tensor] = None,
                context_mask: Optional[torch.Tensor] = None, frame_embed: Optional[torch.Tensor] = None,
                num_frames: Optional[int] = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        out = rearrange(self.in_norm(x, time_embed), "b c h w -> b (h w) c")
        if context is None:
            out = self.attention(out, out)
        else:
            out = self.attention(out, context, context_mask)
        x = x + rearrange(out, "b (h w) c -> b c h w", h=h, w=w)
        if self.temporal_layer is not None:
            x = self.temporal_layer(x, frame_embed, num_frames)
        return x + self.feed_forward(self.out_norm(x, time_embed))


class AttentionPooling(nn.Module):
    """Adds the text to the time embedding: the mean context token queries the whole context (official)."""

    def __init__(self, time_embed_dim: int, context_dim: int, head_dim: int = 64):
        super().__init__()
        self.attention = Attention(context_dim, time_embed_dim, context_dim, head_dim)

    def forward(self, time_embed: torch.Tensor, context: torch.Tensor,
                context_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        # The mean runs over every slot, padding included: that is what the released weights were trained with.
        pooled = self.attention(context.mean(dim=1, keepdim=True), context, context_mask)
        return time_embed + pooled.squeeze(1)
