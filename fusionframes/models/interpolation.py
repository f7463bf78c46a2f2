"""Latent frame interpolation: the paper's group interpolation U-Net and the masked-frame baseline (App. 10).

Group interpolation (§3.2) predicts the 3 frames between each pair of frames in one pass: the U-Net input is the
channel stack [left keyframe, 3 noisy frames, right keyframe] of every group, and a temporal conv after every
spatial conv lets neighbouring groups talk. The masked baseline (Video LDM style) denoises 5-frame windows —
2 known frames + 3 unknown — from noisy latents, the zero-filled known latents and a mask, with temporal layers.
Both are conditioned on the skip-frame s (how many source frames lie between outputs) and the perturbation level
t_p of the conditioning frames, and use a learned null text context.
"""

from typing import Optional, Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from ..errors import FusionFramesError
from .blocks import EmbeddingMLP
from .temporal import TEMPORAL_VARIANTS
from .text import null_context
from .unet import Kandinsky3UNet, UNetSkeleton, as_batch, check_video, repeat_frames, temporal_parameter_names

GROUP_SIZE = 3  # frames predicted between each pair of conditioning frames
KEYFRAME_INITS = ("zeros", "t2i")


class InterpolationConditioning(UNetSkeleton):
    """What both interpolation models add to the skeleton: skip-frame and perturbation embeddings, null context."""

    def build_conditioning(self, init_channels, time_embed_dim, context_dim, num_skip_embeddings):
        init_channels = init_channels or self.config.model_channels
        # Both merges start at 0 so an inflated model first behaves as its T2I parent (official init).
        self.time_embed_merge = nn.Parameter(torch.zeros(1))
        self.perturbation_to_time_embed = EmbeddingMLP(init_channels, time_embed_dim)
        self.skip_merge = nn.Parameter(torch.zeros(1))
        self.skip_embeddings = nn.Embedding(num_skip_embeddings, time_embed_dim)
        # A buffer, not a parameter: the model only ever sees this one context, so the K/V projections learn all
        # it could; the official module keeps it outside the network too (and out of its parameter count).
        if context_dim is not None:
            self.register_buffer("null_embedding", torch.zeros(context_dim))
        else:
            self.null_embedding = None

    def null_context(self, batch_size: int):
        """The official interpolation context: slot 0 the learned null embedding (mask 1), slot 1 zeros (mask 0).

        The zero slot matters although it is masked: text pooling averages over every slot.
        """
        context, mask = null_context(self.null_embedding, 2)
        return context.expand(batch_size, -1, -1), mask.expand(batch_size, -1)

    def conditioning(self, timestep, skip_frames, perturbation_timestep, context, context_mask, batch_size, device):
        """Time embedding (B, D) with text pooling, perturbation merge and skip-frame embedding, and the context."""
        if self.null_embedding is None:
            context = context_mask = None
        elif context is None:
            context, context_mask = self.null_context(batch_size)
        skip = as_batch(skip_frames, batch_size, device).long()
        if (skip < 0).any() or (skip >= self.skip_embeddings.num_embeddings).any():
            raise FusionFramesError(f"skip_frames must lie in 0..{self.skip_embeddings.num_embeddings - 1}, "
                                    f"got {skip.tolist()}")
        time_embed = self.embed_time(as_batch(timestep, batch_size, device), context, context_mask)
        perturbation = self.perturbation_to_time_embed(as_batch(perturbation_timestep, batch_size, device))
        time_embed = self.time_embed_merge * perturbation + (1 - self.time_embed_merge) * time_embed
        time_embed = time_embed + self.skip_merge * self.skip_embeddings(skip)
        return time_embed, context, context_mask

    def inflate_from(self, t2i: Kandinsky3UNet, null_embedding: Optional[torch.Tensor], in_slot: int,
                     out_copies: int, copy_slots: Sequence[int] = ()):
        """Copy a T2I model's weights; its input conv goes to input slot ``in_slot`` and to ``copy_slots`` (others
        zero), and its output conv is replicated ``out_copies`` times (paper §3.2)."""
        state = t2i.state_dict()
        c = t2i.config.num_channels
        in_w = torch.zeros_like(self.in_layer.weight)
        t2i_in = state.pop("in_layer.weight")
        for slot in (in_slot, *copy_slots):
            in_w[:, slot * c:(slot + 1) * c] = t2i_in
        state["in_layer.weight"] = in_w
        state["out_layer.2.weight"] = state["out_layer.2.weight"].repeat(out_copies, 1, 1, 1)
        state["out_layer.2.bias"] = state["out_layer.2.bias"].repeat(out_copies)
        if null_embedding is not None:
            state["null_embedding"] = null_embedding
        missing, unexpected = self.load_state_dict(state, strict=False)
        new = set(temporal_parameter_names(self)) | {"null_embedding"}
        new |= {name for name, _ in self.named_parameters() if name.startswith(("time_embed_merge", "skip_",
                                                                                 "perturbation_to_time_embed"))}
        if unexpected or set(missing) - new:
            raise FusionFramesError(f"T2I weights do not fit: unexpected {unexpected[:5]}, "
                                    f"missing {sorted(set(missing) - new)[:5]}")
        return nn.Module.to(self, device=t2i.device, dtype=t2i.dtype)  # ModelMixin.to warns on casts


def check_groups(sample: torch.Tensor, keyframes: torch.Tensor):
    """(batch, groups) of in-between frames (B, c, 3·G, h, w) and their keyframes (B, c, G+1, h, w), or an error."""
    b, g = sample.shape[0], keyframes.shape[2] - 1
    if g < 1 or sample.shape[2] != GROUP_SIZE * g or keyframes.shape[0] != b \
            or keyframes.shape[-2:] != sample.shape[-2:]:
        raise FusionFramesError(f"{keyframes.shape[2]} keyframes need a sample of {GROUP_SIZE * max(g, 0)} "
                                f"frames of the same batch and size; got sample {tuple(sample.shape)}, "
                                f"keyframes {tuple(keyframes.shape)}")
    return b, g


def _check_inflatable(t2i: Kandinsky3UNet):
    if type(t2i) is not Kandinsky3UNet:
        raise FusionFramesError(f"inflate from a Kandinsky3UNet (text-to-image), not {type(t2i).__name__}")


class InterpolationUNet(ModelMixin, ConfigMixin, InterpolationConditioning):
    """Group interpolation U-Net: ``num_channels`` = 5 latents in, ``out_channels`` = 3 latents out.

    The official model has text cross-attention but is always run with its learned null context; that is the
    default here when ``encoder_hidden_states`` is None.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, model_channels: int = 384, init_channels: Optional[int] = 192, num_channels: int = 20,
                 out_channels: int = 12, time_embed_dim: int = 1536, context_dim: Optional[int] = 4096,
                 groups: int = 32, head_dim: int = 64, expansion_ratio: int = 4, compression_ratio: int = 2,
                 dim_mult: Sequence[int] = (1, 2, 4, 8), num_blocks: Sequence[int] = (3, 3, 3, 3),
                 add_cross_attention: Sequence[bool] = (False, True, True, True),
                 add_self_attention: Sequence[bool] = (False, True, True, True), num_skip_embeddings: int = 20):
        super().__init__()
        if out_channels % GROUP_SIZE or num_channels != out_channels + 2 * (out_channels // GROUP_SIZE):
            raise FusionFramesError(
                f"interpolation U-Net needs out_channels = 3·c and num_channels = 5·c (c latent channels), "
                f"got num_channels={num_channels}, out_channels={out_channels}")
        self.latent_channels = out_channels // GROUP_SIZE
        self.build_skeleton(model_channels, init_channels, num_channels, out_channels, time_embed_dim, context_dim,
                            groups, head_dim, expansion_ratio, compression_ratio, dim_mult, num_blocks,
                            add_cross_attention, add_self_attention, group_temporal_conv=True)
        self.build_conditioning(init_channels, time_embed_dim, context_dim, num_skip_embeddings)

    @classmethod
    def from_t2i(cls, t2i: Kandinsky3UNet, null_embedding: Optional[torch.Tensor] = None,
                 keyframe_init: str = "zeros") -> "InterpolationUNet":
        """Inflate a T2I model: T2I input weights read the middle noisy frame, output conv replicated for the 3
        frames, every temporal conv and merge at 0. ``keyframe_init`` sets the input weights of the two
        conditioning frames: "zeros" (the paper; before training each predicted frame is the T2I prediction for
        the middle frame) or "t2i" (the T2I input weights again, so the keyframes reach the network through
        filters it already understands: on a small budget the zero-started weights grow too slowly for the model
        to ever lean on its keyframes)."""
        _check_inflatable(t2i)
        if keyframe_init not in KEYFRAME_INITS:
            raise FusionFramesError(f"keyframe_init must be one of {', '.join(KEYFRAME_INITS)}, got {keyframe_init!r}")
        c = t2i.config.num_channels
        kwargs = {k: t2i.config[k] for k in t2i._skeleton_kwargs()}
        model = cls(**{**kwargs, "num_channels": 5 * c, "out_channels": 3 * c})
        return model.inflate_from(t2i, null_embedding, in_slot=2, out_copies=GROUP_SIZE,
                                  copy_slots=(0, 4) if keyframe_init == "t2i" else ())

    def forward(self, sample: torch.Tensor, timestep, keyframes: torch.Tensor, skip_frames,
                perturbation_timestep=0, encoder_hidden_states: Optional[torch.Tensor] = None,
                encoder_attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``sample`` (B, c, 3·G, h, w): the noisy in-between frames in time order; ``keyframes`` (B, c, G+1, h, w).

        Returns the prediction for the in-between frames, (B, c, 3·G, h, w).
        """
        c = self.latent_channels
        check_video(sample, c)
        check_video(keyframes, c, "keyframes")
        b, g = check_groups(sample, keyframes)
        time_embed, context, mask = self.conditioning(timestep, skip_frames, perturbation_timestep,
                                                      encoder_hidden_states, encoder_attention_mask, b, sample.device)
        x = torch.cat([
            rearrange(keyframes[:, :, :-1], "b c g h w -> b g c h w"),
            rearrange(sample, "b c (g t) h w -> b g (t c) h w", t=GROUP_SIZE),  # official order: frame-major
            rearrange(keyframes[:, :, 1:], "b c g h w -> b g c h w"),
        ], dim=2)
        out = self.run(rearrange(x, "b g c h w -> (b g) c h w"), time_embed,
                       repeat_frames(context, g), repeat_frames(mask, g), num_frames=g)
        return rearrange(out, "(b g) (t c) h w -> b c (g t) h w", g=g, t=GROUP_SIZE)


def masked_windows(keyframes: torch.Tensor):
    """Keyframes (B, c, T, h, w) → the masked baseline's T−1 windows of 5 frames, known frames at both ends.

    Returns ``condition`` (B·(T−1), c, 5, h, w), zero where a frame is to be generated, and ``mask`` (B·(T−1), 5).
    """
    b, c, t, h, w = keyframes.shape
    condition = keyframes.new_zeros(b, t - 1, c, GROUP_SIZE + 2, h, w)
    condition[:, :, :, 0] = rearrange(keyframes[:, :, :-1], "b c g h w -> b g c h w")
    condition[:, :, :, -1] = rearrange(keyframes[:, :, 1:], "b c g h w -> b g c h w")
    mask = torch.zeros(b * (t - 1), GROUP_SIZE + 2, dtype=torch.bool, device=keyframes.device)
    mask[:, [0, -1]] = True
    return rearrange(condition, "b g c f h w -> (b g) c f h w"), mask


class MaskedInterpolationUNet(ModelMixin, ConfigMixin, InterpolationConditioning):
    """Masked frame interpolation (the paper's baseline): input [noisy (c), known-or-zero (c), mask (1)] per frame,
    predicting every frame of the window, with temporal *layers* (``conv1d-attn1d-layers``) as in Video LDM."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(self, model_channels: int = 384, init_channels: Optional[int] = 192, num_channels: int = 9,
                 out_channels: int = 4, time_embed_dim: int = 1536, context_dim: Optional[int] = 4096,
                 groups: int = 32, head_dim: int = 64, expansion_ratio: int = 4, compression_ratio: int = 2,
                 dim_mult: Sequence[int] = (1, 2, 4, 8), num_blocks: Sequence[int] = (3, 3, 3, 3),
                 add_cross_attention: Sequence[bool] = (False, True, True, True),
                 add_self_attention: Sequence[bool] = (False, True, True, True), num_skip_embeddings: int = 20,
                 temporal_variant: str = "conv1d-attn1d-layers"):
        super().__init__()
        if num_channels != 2 * out_channels + 1:
            raise FusionFramesError(f"masked interpolation needs num_channels = 2·out_channels + 1, "
                                    f"got {num_channels} and {out_channels}")
        if temporal_variant not in TEMPORAL_VARIANTS:
            raise FusionFramesError(f"unknown temporal_variant {temporal_variant!r}; "
                                    f"choose one of {', '.join(TEMPORAL_VARIANTS)}")
        self.build_skeleton(model_channels, init_channels, num_channels, out_channels, time_embed_dim, context_dim,
                            groups, head_dim, expansion_ratio, compression_ratio, dim_mult, num_blocks,
                            add_cross_attention, add_self_attention, TEMPORAL_VARIANTS[temporal_variant])
        self.build_conditioning(init_channels, time_embed_dim, context_dim, num_skip_embeddings)

    @classmethod
    def from_t2i(cls, t2i: Kandinsky3UNet, null_embedding: Optional[torch.Tensor] = None,
                 temporal_variant: str = "conv1d-attn1d-layers") -> "MaskedInterpolationUNet":
        """Same T2I initialisation as the group model: T2I input weights read the noisy latents, the rest zero."""
        _check_inflatable(t2i)
        c = t2i.config.num_channels
        kwargs = {k: t2i.config[k] for k in t2i._skeleton_kwargs()}
        model = cls(**{**kwargs, "num_channels": 2 * c + 1, "out_channels": c}, temporal_variant=temporal_variant)
        return model.inflate_from(t2i, null_embedding, in_slot=0, out_copies=1)

    def forward(self, sample: torch.Tensor, timestep, condition: torch.Tensor, condition_mask: torch.Tensor,
                skip_frames, perturbation_timestep=0, encoder_hidden_states: Optional[torch.Tensor] = None,
                encoder_attention_mask: Optional[torch.Tensor] = None,
                frame_positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``sample`` and ``condition`` (B, c, F, h, w), ``condition_mask`` (B, F) → prediction (B, c, F, h, w).

        ``frame_positions`` default to 0..F−1 (the skip-frame embedding carries the spacing).
        """
        c = self.config.out_channels
        check_video(sample, c)
        check_video(condition, c, "condition")
        b, _, f = sample.shape[:3]
        if condition.shape != sample.shape or tuple(condition_mask.shape) != (b, f):
            raise FusionFramesError(f"condition must match sample {tuple(sample.shape)} and condition_mask be "
                                    f"({b}, {f}); got {tuple(condition.shape)} and {tuple(condition_mask.shape)}")
        time_embed, context, mask = self.conditioning(timestep, skip_frames, perturbation_timestep,
                                                      encoder_hidden_states, encoder_attention_mask, b, sample.device)
        if frame_positions is None:
            frame_positions = torch.arange(f, device=sample.device)
        frame_embed = self.to_temporal_embed(torch.as_tensor(frame_positions, device=sample.device)
                                             .expand(b, f).reshape(-1))
        frame_mask = condition_mask.to(sample.dtype)[:, None, :, None, None].expand(b, 1, f, *sample.shape[-2:])
        x = rearrange(torch.cat([sample, condition, frame_mask], dim=1), "b c f h w -> (b f) c h w")
        out = self.run(x, time_embed, repeat_frames(context, f), repeat_frames(mask, f),
                       frame_embed, f)
        return rearrange(out, "(b f) c h w -> b c f h w", f=f)

    def predict_groups(self, sample: torch.Tensor, timestep, keyframes: torch.Tensor, skip_frames,
                       perturbation_timestep=0) -> torch.Tensor:
        """The group model's interface (noisy in-between frames (B, c, 3·G, h, w), keyframes (B, c, G+1, h, w) →
        their prediction), run as this baseline runs: one 5-frame window per keyframe pair, known frames given."""
        b, g = check_groups(sample, keyframes)
        condition, known = masked_windows(keyframes)
        windows = torch.cat([condition[:, :, :1], rearrange(sample, "b c (g k) h w -> (b g) c k h w", k=GROUP_SIZE),
                             condition[:, :, -1:]], dim=2)
        per_window = [as_batch(v, b, sample.device).repeat_interleave(g)
                      for v in (timestep, skip_frames, perturbation_timestep)]
        out = self(windows, per_window[0], condition, known, per_window[1], per_window[2])
        return rearrange(out[:, :, 1:-1], "(b g) c k h w -> b c (g k) h w", g=g)
