"""MoVQ: the latent space of FusionFrames, with every video decoder of the paper (§4.3, Table 3).

The image autoencoder is the official Kandinsky 3.0 / KV 1.0 MoVQ: a convolutional encoder to 4 continuous latent
channels (×8 down at the official config), and a decoder whose every norm is a *spatial* norm conditioned on the
latent being decoded. Video decoders add temporal parts to the decoder only (the encoder stays the image one):

==================  =========================================================================================
``conv3x1x1``       a 3×1×1 Conv3d after conv1 and conv2 of every decoder ResnetBlock, merged ``(1−α)h + α·t(h)``
``conv3x3x3``       the same with 3×3×3 kernels
``…-attn``          plus a temporal attention block after each spatial attention of the lowest level and the middle
``resblock-attn``   a temporal ResNet block (two 3×1×1 convs) after every ResnetBlock, plus temporal attention
``3d-conv``         conv1/conv2 of every decoder ResnetBlock become 3×3×3 Conv3d ("2D → 3D")
==================  =========================================================================================

Names follow the official modules (``encoder.down.0.block.0.norm1.norm_layer.weight`` …), so official weights load
by name. Frames are folded into the batch inside; the public interface is (B, C, H, W) or (B, C, F, H, W).
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from ..errors import FusionFramesError
from .blocks import temporal_conv

# kernel of the temporal projections, temporal attention, temporal ResNet blocks, 3-D convs
VIDEO_DECODERS = {
    "conv3x1x1": dict(kernel=(3, 1, 1), attention=False, resblocks=False, conv3d=False),
    "conv3x3x3": dict(kernel=(3, 3, 3), attention=False, resblocks=False, conv3d=False),
    "conv3x1x1-attn": dict(kernel=(3, 1, 1), attention=True, resblocks=False, conv3d=False),
    "conv3x3x3-attn": dict(kernel=(3, 3, 3), attention=True, resblocks=False, conv3d=False),
    "resblock-attn": dict(kernel=None, attention=True, resblocks=True, conv3d=False),
    "3d-conv": dict(kernel=None, attention=False, resblocks=False, conv3d=True),
}
NO_VIDEO = dict(kernel=None, attention=False, resblocks=False, conv3d=False)


def fold(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    return rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)


def unfold(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b c f h w -> (b f) c h w")


class SpatialNorm(nn.Module):
    """GroupNorm(eps 1e-6, affine), then — in the decoder — ``GN(f)·conv_y(zq) + conv_b(zq)`` with the latent
    ``zq`` resized to the feature map by nearest-neighbour (official MoVQ; note: no ``1+`` on the scale).

    A 1×1 conv commutes with nearest-neighbour upsampling, so the convs run on the latent itself and each latent
    pixel's scale and shift are spread over the block of features it covers (same numbers; at 128² output the
    official order costs 64× the conv work and two full-size temporaries per norm).
    """

    def __init__(self, channels: int, zq_channels: Optional[int] = None, groups: int = 32):
        super().__init__()
        self.norm_layer = nn.GroupNorm(groups, channels, eps=1e-6, affine=True)
        if zq_channels is not None:
            self.conv_y = nn.Conv2d(zq_channels, channels, kernel_size=1)
            self.conv_b = nn.Conv2d(zq_channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor, zq: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.norm_layer(x)
        if zq is None:
            return out
        (h, w), (zh, zw) = x.shape[-2:], zq.shape[-2:]
        if h % zh or w % zw:
            raise FusionFramesError(f"feature map {h}×{w} is not a whole multiple of the latent {zh}×{zw}")
        blocks = rearrange(out, "n c (h p) (w q) -> n c h p w q", h=zh, w=zw)
        scale, shift = (rearrange(conv(zq), "n c h w -> n c h 1 w 1") for conv in (self.conv_y, self.conv_b))
        return rearrange(torch.addcmul(shift, blocks, scale), "n c h p w q -> n c (h p) (w q)")


class ResnetBlock(nn.Module):
    """norm → SiLU → conv → (temporal merge) → norm → SiLU → dropout → conv → (temporal merge), plus shortcut."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, zq_channels: Optional[int] = None,
                 groups: int = 32, temporal_kernel: Optional[tuple] = None, conv3d: bool = False):
        super().__init__()
        conv = (lambda i, o: nn.Conv3d(i, o, 3, padding=1)) if conv3d else (lambda i, o: nn.Conv2d(i, o, 3, padding=1))
        self.conv3d = conv3d
        self.norm1 = SpatialNorm(in_channels, zq_channels, groups)
        self.conv1 = conv(in_channels, out_channels)
        self.norm2 = SpatialNorm(out_channels, zq_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_channels, out_channels)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.temporal_kernel = temporal_kernel
        if temporal_kernel is not None:
            padding = tuple(k // 2 for k in temporal_kernel)
            for i in (1, 2):
                projection = nn.Conv3d(out_channels, out_channels, temporal_kernel, padding=padding)
                nn.init.zeros_(projection.weight)
                nn.init.zeros_(projection.bias)
                setattr(self, f"temporal_merge{i}", nn.Parameter(torch.zeros(1)))
                setattr(self, f"temporal_projection{i}", projection)

    def _conv(self, conv, h, num_frames):
        return unfold(conv(fold(h, num_frames))) if self.conv3d else conv(h)

    def _temporal(self, i, h, num_frames):
        if self.temporal_kernel is None:
            return h
        alpha = getattr(self, f"temporal_merge{i}")
        return torch.lerp(h, temporal_conv(getattr(self, f"temporal_projection{i}"), h, num_frames), alpha.to(h.dtype))

    def forward(self, x, zq=None, num_frames: int = 1):
        h = self._conv(self.conv1, F.silu(self.norm1(x, zq)), num_frames)
        h = self._temporal(1, h, num_frames)
        h = self._conv(self.conv2, self.dropout(F.silu(self.norm2(h, zq))), num_frames)
        h = self._temporal(2, h, num_frames)
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the h·w positions of each frame (1×1-conv projections, scale C^−½)."""

    def __init__(self, channels: int, zq_channels: Optional[int] = None, groups: int = 32):
        super().__init__()
        self.norm = SpatialNorm(channels, zq_channels, groups)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, kernel_size=1) for _ in range(4))

    def forward(self, x, zq=None):
        h, w = x.shape[-2:]
        n = self.norm(x, zq)
        q, k, v = (rearrange(proj(n), "b c h w -> b (h w) c") for proj in (self.q, self.k, self.v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b (h w) c -> b c h w", h=h, w=w)
        return x + self.proj_out(out)


class TemporalAttnBlock(AttnBlock):
    """Single-head attention across the frames at each position. The official decoder calls its norm without the
    latent, so ``conv_y``/``conv_b`` exist (for the weights) but are unused. ``proj_out`` starts at zero here
    (identity at init; the official init is random), which does not affect loaded weights."""

    def __init__(self, channels: int, zq_channels: Optional[int] = None, groups: int = 32):
        super().__init__(channels, zq_channels, groups)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, num_frames: int = 1):
        h, w = x.shape[-2:]
        n = self.norm(x)
        q, k, v = (rearrange(proj(n), "(b f) c h w -> b h w f c", f=num_frames) for proj in (self.q, self.k, self.v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b h w f c -> (b f) c h w")
        return x + self.proj_out(out)


class TemporalResnetBlock(nn.Module):
    """norm → SiLU → 3×1×1 Conv3d → norm → SiLU → dropout → 3×1×1 Conv3d, residual; ``conv2`` zero at init here."""

    def __init__(self, channels: int, dropout: float = 0.0, zq_channels: Optional[int] = None, groups: int = 32):
        super().__init__()
        self.norm1 = SpatialNorm(channels, zq_channels, groups)
        self.conv1 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        self.norm2 = SpatialNorm(channels, zq_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x, zq=None, num_frames: int = 1):
        h = temporal_conv(self.conv1, F.silu(self.norm1(x, zq)), num_frames)
        h = temporal_conv(self.conv2, self.dropout(F.silu(self.norm2(h, zq))), num_frames)
        return x + h


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # official: pad right and bottom only


def _stage(**modules) -> nn.Module:
    """A plain container, so that parameter names read ``down.0.block.1…`` as in the official checkpoints."""
    stage = nn.Module()
    for name, module in modules.items():
        setattr(stage, name, module)
    return stage


class Encoder(nn.Module):
    def __init__(self, in_channels, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, dropout,
                 groups):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch * m for m in (1, *ch_mult)]
        res = resolution
        self.down = nn.ModuleList()
        for level in range(len(ch_mult)):
            c_in, c_out = widths[level], widths[level + 1]
            blocks = [ResnetBlock(c_in if i == 0 else c_out, c_out, dropout, groups=groups)
                      for i in range(num_res_blocks)]
            attn = [AttnBlock(c_out, groups=groups) for _ in blocks] if res in attn_resolutions else []
            stage = _stage(block=nn.ModuleList(blocks), attn=nn.ModuleList(attn))
            if level != len(ch_mult) - 1:
                stage.downsample = Downsample(c_out)
                res //= 2
            self.down.append(stage)
        c = widths[-1]
        self.mid = _stage(block_1=ResnetBlock(c, c, dropout, groups=groups), attn_1=AttnBlock(c, groups=groups),
                          block_2=ResnetBlock(c, c, dropout, groups=groups))
        self.norm_out = SpatialNorm(c, groups=groups)
        self.conv_out = nn.Conv2d(c, z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, out_ch, ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, dropout,
                 groups, video: dict, spatial_attention_zq: str = "per-frame"):
        super().__init__()
        self.first_frame_zq = spatial_attention_zq == "first-frame"
        kernel, conv3d = video["kernel"], video["conv3d"]

        def resnet(i, o):
            return ResnetBlock(i, o, dropout, z_channels, groups, kernel, conv3d)

        def temporal_resnet(c):
            return TemporalResnetBlock(c, dropout, z_channels, groups) if video["resblocks"] else None

        def temporal_attn(c):
            return TemporalAttnBlock(c, z_channels, groups) if video["attention"] else None

        c = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, c, 3, padding=1)
        self.mid = _stage(block_1=resnet(c, c), attn_1=AttnBlock(c, z_channels, groups), block_2=resnet(c, c))
        for name, module in [("temporal_attn_1", temporal_attn(c)), ("temporal_block_1", temporal_resnet(c)),
                             ("temporal_block_2", temporal_resnet(c))]:
            if module is not None:
                setattr(self.mid, name, module)
        stages = []
        for level in reversed(range(len(ch_mult))):
            c_out = ch * ch_mult[level]
            blocks, attn, t_attn, t_blocks = [], [], [], []
            for i in range(num_res_blocks + 1):
                blocks.append(resnet(c if i == 0 else c_out, c_out))
                if video["resblocks"]:
                    t_blocks.append(temporal_resnet(c_out))
                if res in attn_resolutions:
                    attn.append(AttnBlock(c_out, z_channels, groups))
                    if video["attention"]:
                        t_attn.append(temporal_attn(c_out))
            c = c_out
            stage = _stage(block=nn.ModuleList(blocks), attn=nn.ModuleList(attn),
                           temporal_attn=nn.ModuleList(t_attn), temporal_block=nn.ModuleList(t_blocks))
            if level != 0:
                stage.upsample = Upsample(c)
                res *= 2
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)  # index = level, so up[-1] (lowest resolution) runs first
        self.norm_out = SpatialNorm(c, z_channels, groups)
        self.conv_out = nn.Conv2d(c, out_ch, 3, padding=1)

    def _attention(self, block, h, zq, num_frames):
        if not self.first_frame_zq:
            return block(h, zq)
        # KV 1.1 conditions every frame's spatial-attention norm on the first frame's latent (its AttnBlock passes
        # the whole zq to a per-frame norm); the released video MoVQ was trained so.
        first = rearrange(zq, "(b f) c h w -> b f c h w", f=num_frames)[:, :1].expand(-1, num_frames, -1, -1, -1)
        return block(h, first.flatten(0, 1))

    def forward(self, z, zq, num_frames: int = 1):
        h = self.conv_in(z)
        h = self.mid.block_1(h, zq, num_frames)
        h = self._attention(self.mid.attn_1, h, zq, num_frames)
        if hasattr(self.mid, "temporal_attn_1"):
            h = self.mid.temporal_attn_1(h, num_frames)
        if hasattr(self.mid, "temporal_block_1"):
            h = self.mid.temporal_block_1(h, zq, num_frames)
        h = self.mid.block_2(h, zq, num_frames)
        if hasattr(self.mid, "temporal_block_2"):
            h = self.mid.temporal_block_2(h, zq, num_frames)
        for stage in reversed(self.up):
            for i, block in enumerate(stage.block):
                h = block(h, zq, num_frames)
                if len(stage.temporal_block):
                    h = stage.temporal_block[i](h, zq, num_frames)
                if len(stage.attn):
                    h = self._attention(stage.attn[i], h, zq, num_frames)
                    if len(stage.temporal_attn):
                        h = stage.temporal_attn[i](h, num_frames)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h, zq)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook quantisation with a straight-through gradient (MoVQGAN's, for training only: inference
    uses the continuous latents). Loss = ‖sg(z_q) − z‖² + β‖z_q − sg(z)‖² (MoVQGAN's "legacy" weighting)."""

    def __init__(self, codebook_size: int, dim: int, beta: float = 0.25):
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(codebook_size, dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def forward(self, z: torch.Tensor):
        flat = rearrange(z, "b c h w -> (b h w) c")
        indices = torch.cdist(flat, self.embedding.weight).argmin(dim=1)
        z_q = rearrange(self.embedding(indices), "(b h w) c -> b c h w", b=z.shape[0], h=z.shape[2])
        loss = F.mse_loss(z_q.detach(), z) + self.beta * F.mse_loss(z_q, z.detach())
        return z + (z_q - z).detach(), loss, indices.view(z.shape[0], *z.shape[2:])


def channels_last_at_inference(x: torch.Tensor) -> torch.Tensor:
    """``x`` channels-last when no graph is recorded. Every layer then keeps the layout, and at full resolution
    this CPU's convolutions run 2–3× (bfloat16 4×) faster in it than in NCHW: decoding, and encoding, which bounds
    the first pass of every U-Net stage over its data. Not under autograd: torch 2.13's channels-last group-norm
    backward crashes when its input needs no gradient (temporal-only training)."""
    return x if torch.is_grad_enabled() else x.contiguous(memory_format=torch.channels_last)


class MoVQ(ModelMixin, ConfigMixin):
    """The MoVQ autoencoder; ``video_decoder`` picks one of :data:`VIDEO_DECODERS` (None = the image decoder).

    Config keys are the official generator kwargs (``ch``, ``ch_mult``, ``num_res_blocks``, ``attn_resolutions``,
    ``z_channels`` …). ``codebook_size`` adds the training codebook; ``spatial_attention_zq="first-frame"``
    reproduces KV 1.1's video decoding exactly (see :meth:`Decoder._attention`).
    """

    @register_to_config
    def __init__(self, in_channels: int = 3, out_ch: int = 3, ch: int = 256, ch_mult: Sequence[int] = (1, 2, 2, 4),
                 num_res_blocks: int = 2, attn_resolutions: Sequence[int] = (32,), resolution: int = 256,
                 z_channels: int = 4, dropout: float = 0.0, norm_groups: int = 32,
                 video_decoder: Optional[str] = None, spatial_attention_zq: str = "per-frame",
                 codebook_size: Optional[int] = None, codebook_beta: float = 0.25):
        super().__init__()
        if video_decoder is not None and video_decoder not in VIDEO_DECODERS:
            raise FusionFramesError(f"unknown video_decoder {video_decoder!r}; choose one of "
                                    f"{', '.join(VIDEO_DECODERS)} (or None for the image decoder)")
        if spatial_attention_zq not in ("per-frame", "first-frame"):
            raise FusionFramesError(f"spatial_attention_zq must be 'per-frame' or 'first-frame', "
                                    f"got {spatial_attention_zq!r}")
        shared = dict(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions,
                      resolution=resolution, z_channels=z_channels, dropout=dropout, groups=norm_groups)
        self.encoder = Encoder(in_channels=in_channels, **shared)
        self.quant_conv = nn.Conv2d(z_channels, z_channels, 1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, 1)
        self.decoder = Decoder(out_ch=out_ch, **shared, video=VIDEO_DECODERS.get(video_decoder, NO_VIDEO),
                               spatial_attention_zq=spatial_attention_zq)
        self.quantize = VectorQuantizer(codebook_size, z_channels, codebook_beta) if codebook_size else None

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.ch_mult) - 1)

    def _frames(self, x: torch.Tensor, channels: int, name: str):
        """(B, C, H, W) or (B, C, F, H, W) → folded frames and the number of frames (1 for images)."""
        if x.ndim not in (4, 5) or x.shape[1] != channels:
            raise FusionFramesError(f"{name} must be (batch, {channels}, height, width) or (batch, {channels}, "
                                    f"frames, height, width), got shape {tuple(x.shape)}")
        if x.ndim == 4:
            return x, 1
        return rearrange(x, "b c f h w -> (b f) c h w"), x.shape[2]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images or videos in [−1, 1] → continuous latents (``quant_conv(encoder(x))``, no codebook, no scale)."""
        frames, f = self._frames(x, self.config.in_channels, "encode input")
        factor = self.downsample_factor
        if frames.shape[-2] % factor or frames.shape[-1] % factor:
            raise FusionFramesError(f"image size {tuple(frames.shape[-2:])} must be a multiple of {factor}")
        z = self.quant_conv(self.encoder(channels_last_at_inference(frames))).contiguous()
        return z if x.ndim == 4 else rearrange(z, "(b f) c h w -> b c f h w", f=f)

    def _decode(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        z = channels_last_at_inference(z)
        return self.decoder(self.post_quant_conv(z), z, num_frames).contiguous()

    def decode(self, z: torch.Tensor, chunk_size: Optional[int] = None, chunk_overlap: int = 0) -> torch.Tensor:
        """Latents (B, 4, h, w) or (B, 4, F, h, w) → images or videos in about [−1, 1].

        A video decoder decodes a video as one temporal window. ``chunk_size`` bounds memory: the video is decoded
        in windows of that many frames that overlap by ``chunk_overlap``; each output frame is taken from the
        window where it lies furthest from an edge (convolutional decoders then match a whole decode once the
        overlap covers their receptive field; with ``spatial_attention_zq="first-frame"`` each window, as each
        KV 1.1 decode call, reads its own first frame). An image (4-D input) is a video of one frame.
        """
        frames, f = self._frames(z, self.config.z_channels, "decode input")
        if chunk_size is not None and (chunk_size < 1 or not 0 <= chunk_overlap < chunk_size):
            raise FusionFramesError(f"need chunk_size ≥ 1 and 0 ≤ chunk_overlap < chunk_size, "
                                    f"got {chunk_size} and {chunk_overlap}")
        if z.ndim == 4 or chunk_size is None or chunk_size >= f:
            out = self._decode(frames, f)
            return out if z.ndim == 4 else rearrange(out, "(b f) c h w -> b c f h w", f=f)
        return torch.cat([self.decode(z[:, :, start:stop])[:, :, keep_from - start:keep_to - start]
                          for start, stop, keep_from, keep_to in chunk_windows(f, chunk_size, chunk_overlap)], dim=2)

    def forward(self, x: torch.Tensor):
        """Reconstruction for training: ``(reconstruction, codebook_loss)`` (loss 0 without a codebook)."""
        z = self.encode(x)
        loss = z.new_zeros(())
        if self.quantize is not None:
            frames, f = self._frames(z, self.config.z_channels, "latents")
            frames, loss, _ = self.quantize(frames)
            z = frames if z.ndim == 4 else rearrange(frames, "(b f) c h w -> b c f h w", f=f)
        return self.decode(z), loss

    def temporal_parameter_names(self) -> list:
        """Decoder parameters a video decoder adds or turns 3-D: what "temporal only" training updates."""
        names = []
        for name, module in self.decoder.named_modules():
            if isinstance(module, (TemporalAttnBlock, TemporalResnetBlock)):
                names += [f"decoder.{name}.{n}" for n, _ in module.named_parameters()]
            elif isinstance(module, ResnetBlock):
                names += [f"decoder.{name}.{n}" for n, _ in module.named_parameters() if n.startswith("temporal_")]
                if module.conv3d:
                    names += [f"decoder.{name}.{c}.{p}" for c in ("conv1", "conv2") for p in ("weight", "bias")]
        return sorted(set(names))

    def unused_parameter_names(self) -> set:
        """Parameters no forward pass reads: the latent-conditioning convs of the temporal attention norms (KV 1.1
        calls them without the latent). They stay frozen, so data-parallel training sees every trained one used."""
        return {f"decoder.{name}.norm.{conv}.{p}" for name, module in self.decoder.named_modules()
                if isinstance(module, TemporalAttnBlock) for conv in ("conv_y", "conv_b") for p in ("weight", "bias")}

    def set_trainable(self, part: str) -> int:
        """``"temporal"`` (new video-decoder parts only) or ``"decoder"`` (the whole decoder and post-quant conv);
        the encoder stays frozen either way. Returns the number of trainable parameters."""
        if part == "temporal":
            chosen = set(self.temporal_parameter_names())
        elif part == "decoder":
            chosen = {n for n, _ in self.named_parameters() if n.startswith(("decoder.", "post_quant_conv."))}
        else:
            raise FusionFramesError(f"trainable part must be 'temporal' or 'decoder', got {part!r}")
        chosen -= self.unused_parameter_names()
        for name, param in self.named_parameters():
            param.requires_grad_(name in chosen)
        return sum(p.numel() for n, p in self.named_parameters() if n in chosen)

    @classmethod
    def from_image_movq(cls, movq: "MoVQ", video_decoder: str = "conv3x3x3-attn") -> "MoVQ":
        """A video MoVQ initialised from an image MoVQ so that, before training, it decodes every frame exactly as
        the image decoder does (new parts start at zero; a 3-D conv gets the 2-D kernel on its centre tap)."""
        config = {**dict(movq.config), "video_decoder": video_decoder}
        model = cls(**{k: v for k, v in config.items() if not k.startswith("_")})
        state = movq.state_dict()
        target = model.state_dict()
        for key, value in state.items():
            if target[key].ndim == 5 and value.ndim == 4:
                centred = torch.zeros_like(target[key])
                centred[:, :, 1] = value
                state[key] = centred
        missing, unexpected = model.load_state_dict(state, strict=False)
        new = set(model.temporal_parameter_names())
        if unexpected or set(missing) - new:
            raise FusionFramesError(f"image MoVQ weights do not fit: unexpected {unexpected[:5]}, "
                                    f"missing {sorted(set(missing) - new)[:5]}")
        return nn.Module.to(model, device=movq.device, dtype=movq.dtype)  # ModelMixin.to warns on casts


def chunk_windows(num_frames: int, chunk_size: int, overlap: int):
    """Windows ``(start, stop)`` of ``chunk_size`` frames overlapping by at least ``overlap`` (the last one is moved
    back to end at the last frame), each with the frames ``(keep_from, keep_to)`` it contributes: every overlap is
    split at its middle."""
    starts = list(range(0, max(num_frames - chunk_size, 0) + 1, chunk_size - overlap))
    if starts[-1] + chunk_size < num_frames:
        starts.append(num_frames - chunk_size)
    stops = [min(start + chunk_size, num_frames) for start in starts]
    cuts = [0, *((start + stop) // 2 for start, stop in zip(starts[1:], stops[:-1])), num_frames]
    return [(start, stop, cuts[i], cuts[i + 1]) for i, (start, stop) in enumerate(zip(starts, stops))]
