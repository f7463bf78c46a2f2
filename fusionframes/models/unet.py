"""One U-Net skeleton (Kandinsky 3.0) and the two text-conditioned models built on it: T2I and keyframes.

The skeleton is the official layout: an input conv, four down levels (downsampling after the first three), no
separate middle block, four up levels with skip concatenation, and an output conv. Each level is a run of
"pairs" — ResNet block, cross-attention, ResNet block — with an optional self-attention block at the level's
outer end. Temporal parts are slotted in by :class:`~fusionframes.models.temporal.TemporalVariant`; the
interpolation models (``interpolation.py``) reuse the same skeleton with a temporal layer in every Block.

Networks know nothing of noise schedules: they map (sample, timestep, conditions) to the raw prediction.
"""

from typing import Optional, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from ..errors import FusionFramesError
from .blocks import AttentionBlock, AttentionPooling, EmbeddingMLP, ResNetBlock
from .temporal import TEMPORAL_MODULES, TEMPORAL_VARIANTS, TemporalVariant


class ResNetAttentionPair(nn.Module):
    """ResNet → cross-attention → ResNet, each ResNet optionally flanked by a temporal conv block.

    On the way down the temporal block follows its ResNet block; on the way up it precedes it (official order).
    """

    def __init__(self, in_resnet, cross_attention, out_resnet, in_temporal, out_temporal, temporal_first: bool):
        super().__init__()
        self.in_resnet, self.cross_attention, self.out_resnet = in_resnet, cross_attention, out_resnet
        self.in_temporal, self.out_temporal = in_temporal, out_temporal
        self.temporal_first = temporal_first

    def _resnet(self, resnet, temporal, x, time_embed, temporal_embed, num_frames):
        if temporal is not None and self.temporal_first:
            x = temporal(x, temporal_embed, num_frames)
        x = resnet(x, time_embed, num_frames)
        if temporal is not None and not self.temporal_first:
            x = temporal(x, temporal_embed, num_frames)
        return x

    def forward(self, x, time_embed, context, context_mask, num_frames, temporal_embed):
        x = self._resnet(self.in_resnet, self.in_temporal, x, time_embed, temporal_embed, num_frames)
        if self.cross_attention is not None:
            x = self.cross_attention(x, time_embed, context, context_mask)
        return self._resnet(self.out_resnet, self.out_temporal, x, time_embed, temporal_embed, num_frames)


class Level(nn.Module):
    """One resolution of the U-Net: (self-attention, temporal attention) + pairs on the way down, the mirror up."""

    def __init__(self, pairs, self_attention_block, temporal_attention_block, up: bool):
        super().__init__()
        self.pairs = nn.ModuleList(pairs)
        self.self_attention_block = self_attention_block
        self.temporal_attention_block = temporal_attention_block
        self.up = up
        self.gradient_checkpointing = False  # set by ModelMixin.enable_gradient_checkpointing: recompute pairs

    def _attention(self, x, time_embed, frame_embed, num_frames, temporal_embed):
        order = ([self.temporal_attention_block, self.self_attention_block] if self.up
                 else [self.self_attention_block, self.temporal_attention_block])
        for block in order:
            if block is self.self_attention_block and block is not None:
                x = block(x, time_embed, frame_embed=frame_embed, num_frames=num_frames)
            elif block is not None:
                x = block(x, temporal_embed, frame_embed, num_frames)
        return x

    def forward(self, x, time_embed, context, context_mask, frame_embed, num_frames, temporal_embed):
        """``temporal_embed``: what the temporal blocks are conditioned on."""
        if not self.up:
            x = self._attention(x, time_embed, frame_embed, num_frames, temporal_embed)
        for pair in self.pairs:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = self._gradient_checkpointing_func(pair, x, time_embed, context, context_mask, num_frames,
                                                      temporal_embed)
            else:
                x = pair(x, time_embed, context, context_mask, num_frames, temporal_embed)
        if self.up:
            x = self._attention(x, time_embed, frame_embed, num_frames, temporal_embed)
        return x


class UNetSkeleton:
    """The Kandinsky 3.0 U-Net body, parameterised by which temporal parts to insert.

    A mixin of every U-Net model class (so parameter names carry no extra prefix). ``temporal_variant`` adds the
    keyframe model's temporal blocks or layers (and the frame-position embedding); ``group_temporal_conv`` adds
    the interpolation model's temporal conv to every Block. ``run`` takes folded frames ``(b f) c h w``.
    """

    def build_skeleton(self, model_channels, init_channels, num_channels, out_channels, time_embed_dim, context_dim,
                 groups, head_dim, expansion_ratio, compression_ratio, dim_mult, num_blocks, add_cross_attention,
                 add_self_attention, temporal_variant: Optional[TemporalVariant] = None,
                 group_temporal_conv: bool = False):
        per_level = {"num_blocks": num_blocks, "add_cross_attention": add_cross_attention,
                     "add_self_attention": add_self_attention}
        if any(len(v) != len(dim_mult) for v in per_level.values()):
            raise FusionFramesError(f"dim_mult has {len(dim_mult)} levels; num_blocks, add_cross_attention and "
                                    f"add_self_attention need one entry per level, got "
                                    f"{ {k: len(v) for k, v in per_level.items()} }")
        init_channels = init_channels or model_channels
        variant = temporal_variant
        blocks = variant is not None and variant.placement == "blocks"
        layers = variant is not None and variant.placement == "layers"
        block_temporal = group_temporal_conv or layers

        self.to_time_embed = EmbeddingMLP(init_channels, time_embed_dim)
        self.feature_pooling = (AttentionPooling(time_embed_dim, context_dim, head_dim)
                                if context_dim is not None else None)
        self.to_temporal_embed = EmbeddingMLP(init_channels, time_embed_dim) if variant is not None else None
        self.in_layer = nn.Conv2d(num_channels, init_channels, kernel_size=3, padding=1)

        def resnet(i, o, resample=None):
            return ResNetBlock(i, o, time_embed_dim, groups, compression_ratio, resample, block_temporal)

        def cross_attention(c, text):
            return (AttentionBlock(c, time_embed_dim, context_dim, groups, head_dim, expansion_ratio)
                    if text and context_dim is not None else None)

        def temporal_conv(c):
            return variant.conv_block(c, time_embed_dim, groups, compression_ratio) if blocks else None

        def self_attention(c, enabled):
            if not enabled:
                return None, None
            layer = variant.attention_layer(c, time_embed_dim, groups, head_dim) if layers else None
            spatial = AttentionBlock(c, time_embed_dim, None, groups, head_dim, expansion_ratio, temporal_layer=layer)
            temporal = (variant.attention_block(c, time_embed_dim, groups, head_dim, expansion_ratio)
                        if blocks else None)
            return spatial, temporal

        widths = [init_channels, *(model_channels * m for m in dim_mult)]
        num_levels = len(dim_mult)
        self.down_samples = nn.ModuleList()
        for level, (i, o) in enumerate(zip(widths[:-1], widths[1:])):
            last = level == num_levels - 1
            pairs = []
            for n in range(num_blocks[level]):
                c_in = i if n == 0 else o
                resample = "down" if n == num_blocks[level] - 1 and not last else None
                pairs.append(ResNetAttentionPair(
                    resnet(c_in, o), cross_attention(o, add_cross_attention[level]), resnet(o, o, resample),
                    temporal_conv(o), temporal_conv(o), temporal_first=False))
            self.down_samples.append(Level(pairs, *self_attention(i, add_self_attention[level]), up=False))

        self.up_samples = nn.ModuleList()
        for level in reversed(range(num_levels)):
            o, i = widths[level], widths[level + 1]
            skip = 0 if level == num_levels - 1 else i
            first = level == num_levels - 1
            pairs = []
            for n in range(num_blocks[level]):
                c = i + skip if n == 0 else i
                resample = "up" if n == 0 and not first else None
                pairs.append(ResNetAttentionPair(
                    resnet(c, c, resample), cross_attention(c, add_cross_attention[level]),
                    resnet(c, o if n == num_blocks[level] - 1 else i),
                    temporal_conv(c), temporal_conv(c), temporal_first=True))
            self.up_samples.append(Level(pairs, *self_attention(o, add_self_attention[level]), up=True))

        self.out_layer = nn.Sequential(nn.GroupNorm(groups, init_channels), nn.SiLU(),
                                       nn.Conv2d(init_channels, out_channels, kernel_size=3, padding=1))

    def embed_time(self, timestep: torch.Tensor, context=None, context_mask=None) -> torch.Tensor:
        time_embed = self.to_time_embed(timestep)
        if context is not None:
            time_embed = self.feature_pooling(time_embed, context, context_mask)
        return time_embed

    def run(self, x, time_embed, context=None, context_mask=None, frame_embed=None, num_frames=None,
            temporal_embed=None):
        factor = 2 ** (len(self.down_samples) - 1)
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise FusionFramesError(f"latent size {tuple(x.shape[-2:])} must be a multiple of {factor} "
                                    f"(this U-Net downsamples {len(self.down_samples) - 1} times)")
        temporal_embed = time_embed if temporal_embed is None else temporal_embed
        x = self.in_layer(x)
        skips = []
        for level, down in enumerate(self.down_samples):
            x = down(x, time_embed, context, context_mask, frame_embed, num_frames, temporal_embed)
            if level != len(self.down_samples) - 1:
                skips.append(x)
        for level, up in enumerate(self.up_samples):
            if level != 0:
                x = torch.cat([x, skips.pop()], dim=1)
            x = up(x, time_embed, context, context_mask, frame_embed, num_frames, temporal_embed)
        return self.out_layer(x)


def as_batch(timestep, batch_size: int, device) -> torch.Tensor:
    """A scalar, 0-d or (B,) timestep as a (B,) tensor."""
    t = torch.as_tensor(timestep, device=device)
    if t.ndim == 0:
        t = t.expand(batch_size)
    if t.shape != (batch_size,):
        raise FusionFramesError(f"timestep must be a scalar or have shape ({batch_size},), got {tuple(t.shape)}")
    return t


def repeat_frames(x: Optional[torch.Tensor], num_frames: int) -> Optional[torch.Tensor]:
    """Per-sample conditioning repeated for each frame, matching frames folded as ``(b f)``."""
    return None if x is None else x.repeat_interleave(num_frames, dim=0)


def check_video(sample: torch.Tensor, channels: int, name: str = "sample") -> None:
    if sample.ndim != 5 or sample.shape[1] != channels:
        raise FusionFramesError(
            f"{name} must be a video (batch, {channels}, frames, height, width), got shape {tuple(sample.shape)}")


def temporal_parameter_names(model: nn.Module) -> list:
    """Names of every parameter added for time: temporal blocks and layers, the frame-position embedding and the
    motion embedding."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, TEMPORAL_MODULES) or module_name.endswith(("to_temporal_embed", "motion_embedding")):
            names += [f"{module_name}.{n}" for n, _ in module.named_parameters()]
    return sorted(set(names))


def train_temporal_only(model: nn.Module) -> int:
    """Freeze everything but the temporal parameters (the paper's keyframe recipe); returns how many train."""
    temporal = set(temporal_parameter_names(model))
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name in temporal)
        count += param.numel() if name in temporal else 0
    return count


class Kandinsky3UNet(ModelMixin, ConfigMixin, UNetSkeleton):
    """The Kandinsky 3.0 text-to-image U-Net; config keys are the official constructor's, one to one."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, model_channels: int = 384, init_channels: Optional[int] = 192, num_channels: int = 4,
                 out_channels: int = 4, time_embed_dim: int = 1536, context_dim: Optional[int] = 4096,
                 groups: int = 32, head_dim: int = 64, expansion_ratio: int = 4, compression_ratio: int = 2,
                 dim_mult: Sequence[int] = (1, 2, 4, 8), num_blocks: Sequence[int] = (3, 3, 3, 3),
                 add_cross_attention: Sequence[bool] = (False, True, True, True),
                 add_self_attention: Sequence[bool] = (False, True, True, True)):
        super().__init__()
        self.build_skeleton(**self._skeleton_kwargs())

    def _skeleton_kwargs(self) -> dict:
        keys = ("model_channels", "init_channels", "num_channels", "out_channels", "time_embed_dim", "context_dim",
                "groups", "head_dim", "expansion_ratio", "compression_ratio", "dim_mult", "num_blocks",
                "add_cross_attention", "add_self_attention")
        return {k: self.config[k] for k in keys}

    def _context(self, encoder_hidden_states, batch_size):
        if self.config.context_dim is not None and encoder_hidden_states is None:
            raise FusionFramesError("this U-Net is text-conditioned: pass encoder_hidden_states (batch, tokens, dim)")
        if encoder_hidden_states is not None and encoder_hidden_states.shape[0] != batch_size:
            raise FusionFramesError(f"encoder_hidden_states has batch {encoder_hidden_states.shape[0]}, "
                                    f"sample has {batch_size}")

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: Optional[torch.Tensor] = None,
                encoder_attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``sample`` (B, C, h, w) → prediction (B, out_channels, h, w)."""
        self._context(encoder_hidden_states, sample.shape[0])
        t = as_batch(timestep, sample.shape[0], sample.device)
        time_embed = self.embed_time(t, encoder_hidden_states, encoder_attention_mask)
        return self.run(sample, time_embed, encoder_hidden_states, encoder_attention_mask)


# The official pipeline feeds keyframe i the position 12·i: keyframes are every 12th frame of 24 fps video.
FRAME_POSITION_STEP = 12
# A direction label of this norm (random rows) is used within 500 steps; one that starts at zero is not.
MOTION_EMBED_NORM = 16.0


class KeyframeUNet(Kandinsky3UNet):
    """The keyframe U-Net: Kandinsky 3.0 plus temporal parts chosen by ``temporal_variant`` (paper Table 1).

    ``conv1d-attn1d-blocks`` is the released model. Input is a video (B, 4, F, h, w); every frame sees the same
    text and timestep, and the temporal parts see the frame positions (default 0, 12, 24, …).

    ``motion_classes`` > 0 (not in KV 1.0) adds one learned vector per motion class, plus a zero one for "not
    said", to the time embedding the temporal blocks see (the spatial blocks see it unchanged). The vectors
    start at norm ``MOTION_EMBED_NORM``: started at zero, or reached through the text, the motion is never used
    (``configs/default/MODEL_CARD.md``).
    """

    @register_to_config
    def __init__(self, model_channels: int = 384, init_channels: Optional[int] = 192, num_channels: int = 4,
                 out_channels: int = 4, time_embed_dim: int = 1536, context_dim: Optional[int] = 4096,
                 groups: int = 32, head_dim: int = 64, expansion_ratio: int = 4, compression_ratio: int = 2,
                 dim_mult: Sequence[int] = (1, 2, 4, 8), num_blocks: Sequence[int] = (3, 3, 3, 3),
                 add_cross_attention: Sequence[bool] = (False, True, True, True),
                 add_self_attention: Sequence[bool] = (False, True, True, True),
                 temporal_variant: str = "conv1d-attn1d-blocks", motion_classes: int = 0):
        ModelMixin.__init__(self)
        if temporal_variant not in TEMPORAL_VARIANTS:
            raise FusionFramesError(f"unknown temporal_variant {temporal_variant!r}; "
                                    f"choose one of {', '.join(TEMPORAL_VARIANTS)}")
        variant = TEMPORAL_VARIANTS[temporal_variant]
        if motion_classes and variant.placement != "blocks":
            raise FusionFramesError(f"motion_classes conditions temporal blocks; {temporal_variant} mixes temporal "
                                    f"layers into the spatial blocks instead (use a *-blocks variant)")
        self.build_skeleton(**self._skeleton_kwargs(), temporal_variant=variant)
        self.motion_embedding = None
        if motion_classes:
            self.motion_embedding = nn.Embedding(motion_classes + 1, time_embed_dim, padding_idx=motion_classes)
            with torch.no_grad():
                rows = self.motion_embedding.weight[:motion_classes]
                rows.mul_(MOTION_EMBED_NORM / rows.norm(dim=1, keepdim=True))

    @classmethod
    def from_t2i(cls, t2i: Kandinsky3UNet, temporal_variant: str = "conv1d-attn1d-blocks",
                 motion_classes: int = 0) -> "KeyframeUNet":
        """Spatial weights copied from a T2I model; temporal parts new (identity), per the paper's recipe."""
        model = cls(**{k: t2i.config[k] for k in t2i._skeleton_kwargs()}, temporal_variant=temporal_variant,
                    motion_classes=motion_classes)
        missing, unexpected = model.load_state_dict(t2i.state_dict(), strict=False)
        new = set(temporal_parameter_names(model))
        if unexpected or set(missing) - new:
            raise FusionFramesError(f"T2I weights do not fit this keyframe U-Net: unexpected {unexpected[:5]}, "
                                    f"missing non-temporal {sorted(set(missing) - new)[:5]}")
        return nn.Module.to(model, device=t2i.device, dtype=t2i.dtype)  # ModelMixin.to warns on casts

    def frame_positions(self, num_frames: int, device) -> torch.Tensor:
        return torch.arange(num_frames, device=device) * FRAME_POSITION_STEP

    @property
    def null_motion(self) -> int:
        """The motion class that says nothing (caption dropped, unconditional branch of guidance)."""
        return self.config.motion_classes

    def embed_motion(self, motion, batch_size: int, device) -> torch.Tensor:
        motion = torch.full((batch_size,), self.null_motion) if motion is None else torch.as_tensor(motion)
        if motion.shape != (batch_size,) or motion.is_floating_point():
            raise FusionFramesError(f"motion must be ({batch_size},) class indices, got {tuple(motion.shape)} "
                                    f"{motion.dtype}")
        if motion.min() < 0 or motion.max() > self.null_motion:
            raise FusionFramesError(f"motion classes run from 0 to {self.null_motion} ({self.null_motion}: none "
                                    f"said), got {motion.tolist()}")
        return self.motion_embedding(motion.to(device))

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: Optional[torch.Tensor] = None,
                encoder_attention_mask: Optional[torch.Tensor] = None,
                frame_positions: Optional[torch.Tensor] = None, motion: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``sample`` (B, 4, F, h, w), ``timestep`` scalar or (B,), text (B, L, D) → prediction (B, 4, F, h, w).

        ``frame_positions``: (F,) or (B, F) positions in source frames (official: 0, 12, 24, …). ``motion``: (B,)
        class indices, for a model with ``motion_classes`` (default: ``null_motion`` for every sample).
        """
        if motion is not None and self.motion_embedding is None:
            raise FusionFramesError("this keyframe U-Net has no motion classes (motion_classes = 0); pass no motion")
        check_video(sample, self.config.num_channels)
        b, _, f = sample.shape[:3]
        self._context(encoder_hidden_states, b)
        if frame_positions is None:
            frame_positions = self.frame_positions(f, sample.device)
        frame_positions = torch.as_tensor(frame_positions, device=sample.device)
        if frame_positions.shape not in ((f,), (b, f)):
            raise FusionFramesError(f"frame_positions must have shape ({f},) or ({b}, {f}), "
                                    f"got {tuple(frame_positions.shape)}")
        frame_embed = self.to_temporal_embed(frame_positions.expand(b, f).reshape(-1))
        t = as_batch(timestep, b, sample.device)
        # One time embedding per sample: every norm broadcasts it over the sample's frames.
        time_embed = self.embed_time(t, encoder_hidden_states, encoder_attention_mask)
        temporal_embed = None
        if self.motion_embedding is not None:
            temporal_embed = time_embed + self.embed_motion(motion, b, sample.device).to(time_embed.dtype)
        out = self.run(rearrange(sample, "b c f h w -> (b f) c h w"), time_embed,
                       repeat_frames(encoder_hidden_states, f), repeat_frames(encoder_attention_mask, f),
                       frame_embed, f, temporal_embed)
        return rearrange(out, "(b f) c h w -> b c f h w", f=f)
