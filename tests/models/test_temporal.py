"""Temporal modules of the paper's Table 1: identity at init, what they mix, and Attn3D windows at odd sizes."""

import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fusionframes.models.temporal as temporal
from fusionframes.models import TEMPORAL_VARIANTS
from fusionframes.models.temporal import TemporalAttention, TemporalAttentionBlock, TemporalConvBlock
from tests.conftest import randn, randomize


class PlainNorm(nn.Module):
    """Stand-in for a ConditionalGroupNorm that leaves values alone, to isolate what attention mixes."""

    def forward(self, x, cond):
        return x


def frame_diff(a, b, num_frames):
    """Max abs difference per (video, frame) of two folded (b f) c h w tensors."""
    return (a - b).abs().flatten(1).amax(1).view(-1, num_frames)


def test_registry_names_and_layouts():
    assert set(TEMPORAL_VARIANTS) == {"conv1d-attn1d-blocks", "conv3d-attn1d-blocks", "conv1d-attn3d-blocks",
                                      "conv1d-attn1d-layers"}
    layout = {name: (v.placement, v.conv, v.attention, v.window) for name, v in TEMPORAL_VARIANTS.items()}
    assert layout == {
        "conv1d-attn1d-blocks": ("blocks", "conv1d", "attn1d", None),
        "conv3d-attn1d-blocks": ("blocks", "conv3d", "attn1d", None),
        "conv1d-attn3d-blocks": ("blocks", "conv1d", "attn3d", (2, 2)),
        "conv1d-attn1d-layers": ("layers", "conv1d", "attn1d", None),
    }


def test_conv1d_block_kernels_and_widths_follow_official_block():
    block = TemporalConvBlock(32, 20, groups=4, compression_ratio=2)
    convs = [layer.conv for layer in block.layers]
    assert [c.kernel_size for c in convs] == [(1, 1, 1), (3, 1, 1), (3, 1, 1), (1, 1, 1)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(32, 16), (16, 16), (16, 16), (16, 32)]
    assert torch.count_nonzero(convs[-1].weight) == 0 and torch.count_nonzero(convs[-1].bias) == 0
    assert block.down_projection is None and block.up_projection is None


def test_conv3d_block_has_3x3x3_middle_kernels_between_channel_projections():
    block = TEMPORAL_VARIANTS["conv3d-attn1d-blocks"].conv_block(32, 20, groups=4, compression_ratio=2)
    convs = [layer.conv for layer in block.layers]
    assert [c.kernel_size for c in convs] == [(1, 1, 1), (3, 3, 3), (3, 3, 3), (1, 1, 1)]
    assert (block.down_projection.in_features, block.down_projection.out_features) == (32, 16)
    assert (block.up_projection.in_features, block.up_projection.out_features) == (16, 32)
    assert torch.count_nonzero(block.up_projection.weight) == 0


@pytest.mark.parametrize("variant", ["conv1d-attn1d-blocks", "conv3d-attn1d-blocks"])
def test_temporal_conv_block_is_identity_at_init_and_not_after(variant):
    block = TEMPORAL_VARIANTS[variant].conv_block(16, 20, groups=4, compression_ratio=2)
    x, t = randn(2 * 3, 16, 4, 4), randn(2 * 3, 20, seed=1)
    torch.testing.assert_close(block(x, t, 3), x)
    randomize(block)
    assert not torch.allclose(block(x, t, 3), x)


def test_conv1d_block_reaches_two_frames_and_stays_within_its_video():
    block = randomize(TemporalConvBlock(16, 20, groups=4))
    f = 6
    x, t = randn(2 * f, 16, 3, 3), randn(2 * f, 20, seed=1)
    changed = x.clone()
    changed[0] += randn(16, 3, 3, seed=2)  # video 0, frame 0 (not a constant: GroupNorm would remove it)
    diff = frame_diff(block(changed, t, f), block(x, t, f), f)
    # Two 3-tap temporal convs: frames 0..2 see frame 0, frames 3.. do not, nor does the other video.
    assert (diff[0, :3] > 1e-4).all()
    assert diff[0, 3:].max() == 0 and diff[1].max() == 0


def test_conv3d_block_mixes_neighbouring_pixels_across_frames():
    block = randomize(TEMPORAL_VARIANTS["conv3d-attn1d-blocks"].conv_block(16, 20, groups=4, compression_ratio=2))
    for layer in block.layers:
        layer.norm = PlainNorm()  # isolate the convolutions: no per-frame statistics
    f = 4
    x, t = randn(f, 16, 7, 7), randn(f, 20, seed=1)
    changed = x.clone()
    changed[0, :, 3, 3] += 1.0
    diff = (block(changed, t, f) - block(x, t, f)).abs().amax(1)  # (f, h, w)
    assert diff[1, 3, 4] > 1e-5  # another frame, another pixel: 3D mixing
    assert diff[:, 0].max() == 0  # receptive field: two 3×3 kernels reach ±2 pixels only


@pytest.mark.parametrize("window", [None, (2, 2)])
def test_temporal_attention_is_identity_at_init(window):
    attn = TemporalAttention(16, 20, groups=4, head_dim=8, window=window)
    x = randn(2 * 3, 16, 4, 6)
    torch.testing.assert_close(attn(x, randn(2 * 3, 20, seed=1), 3), x)


@pytest.mark.parametrize("window, region", [(None, (slice(2, 3), slice(3, 4))), ((2, 2), (slice(2, 4), slice(2, 4)))])
def test_temporal_attention_mixes_frames_only_within_its_window(window, region):
    attn = randomize(TemporalAttention(16, 20, groups=4, head_dim=8, window=window), std=0.3)
    attn.in_norm = PlainNorm()
    f = 3
    x, e = randn(2 * f, 16, 6, 6), randn(2 * f, 20, seed=1)
    changed = x.clone()
    changed[0, :, 2, 3] += 1.0  # video 0, frame 0, pixel (2, 3)
    diff = (attn(changed, e, f) - attn(x, e, f)).abs().amax(1).view(2, f, 6, 6)
    inside = torch.zeros(6, 6, dtype=torch.bool)
    inside[region] = True
    assert (diff[0, 1:, inside] > 1e-6).all()  # other frames, every token of the window
    assert diff[0][:, ~inside].max() == 0 and diff[1].max() == 0


def _attention_per_window(attn, x, frame_embed, f, window):
    """Reference Attn3D: for each window, the valid tokens of all frames attend to each other, nothing else."""
    wh, ww = window
    normed = attn.in_norm(x, frame_embed)
    video = normed.view(-1, f, *normed.shape[1:])  # b f c h w
    out = torch.zeros_like(video)
    h, w = x.shape[-2:]
    for i in range(0, h, wh):
        for j in range(0, w, ww):
            block = video[:, :, :, i:i + wh, j:j + ww]  # only valid pixels
            b, _, c, bh, bw = block.shape
            tokens = block.permute(0, 1, 3, 4, 2).reshape(b, f * bh * bw, c)
            res = attn.temporal_attention(tokens, tokens).view(b, f, bh, bw, c).permute(0, 1, 4, 2, 3)
            out[:, :, :, i:i + wh, j:j + ww] = res
    return x + out.reshape(x.shape)


def test_attn3d_window_on_odd_spatial_size_masks_the_padding(monkeypatch):
    attn = randomize(TemporalAttention(16, 20, groups=4, head_dim=8, window=(2, 2)), std=0.3)
    f = 3
    x, e = randn(2 * f, 16, 5, 3), randn(2 * f, 20, seed=1)
    out = attn(x, e, f)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, x)
    torch.testing.assert_close(out, _attention_per_window(attn, x, e, f, (2, 2)), atol=1e-5, rtol=1e-5)
    # Whatever the padding holds, the valid region is the same.
    real_pad = F.pad
    fake_f = types.SimpleNamespace(**{k: getattr(F, k) for k in dir(F) if not k.startswith("__")})
    fake_f.pad = lambda t, pad, mode="constant", value=None: real_pad(t, pad, mode, 1e3)
    monkeypatch.setattr(temporal, "F", fake_f)
    torch.testing.assert_close(attn(x, e, f), out, atol=1e-6, rtol=1e-6)


def test_attn3d_window_on_exact_multiple_needs_no_mask():
    attn = randomize(TemporalAttention(16, 20, groups=4, head_dim=8, window=(2, 2)), std=0.3)
    f = 2
    x, e = randn(f, 16, 4, 6), randn(f, 20, seed=1)
    torch.testing.assert_close(attn(x, e, f), _attention_per_window(attn, x, e, f, (2, 2)), atol=1e-5, rtol=1e-5)


def test_temporal_attention_is_conditioned_on_frame_embedding():
    attn = randomize(TemporalAttention(16, 20, groups=4, head_dim=8))
    f = 3
    x, e = randn(f, 16, 4, 4), randn(f, 20, seed=1)
    assert not torch.allclose(attn(x, e, f), attn(x, e + 1.0, f))


def test_temporal_attention_block_is_identity_at_init():
    """The module docs promise every new temporal module starts as the identity."""
    block = TemporalAttentionBlock(16, 20, groups=4, head_dim=8, expansion_ratio=2)
    x = randn(2 * 3, 16, 4, 4)
    torch.testing.assert_close(block(x, randn(2 * 3, 20, seed=1), randn(2 * 3, 20, seed=2), 3), x)


def test_a_narrow_conv3d_bottleneck_takes_a_group_count_that_divides_it():
    """48 channels → 24 after the projection → 12 in the bottleneck: 8 groups do not divide 12, 4 do."""
    block = TemporalConvBlock(48, 16, groups=8, spatial_kernel=3, projection_ratio=2)
    assert [layer.norm.groups for layer in block.layers] == [8, 4, 4, 4]
    x = torch.randn(2 * 3, 48, 4, 4)
    assert torch.equal(block(x, torch.randn(6, 16), num_frames=3), x)  # identity at initialisation
