"""Kandinsky 3.0 building blocks: numbers against hand-written reference formulas."""

import pytest
import torch
import torch.nn.functional as F

from fusionframes.models.blocks import (Attention, AttentionBlock, AttentionPooling, Block, ConditionalGroupNorm,
                                        EmbeddingMLP, ResNetBlock, SinusoidalPosEmb, TemporalMerge, feed_forward)
from tests.conftest import randn, randomize


def test_sinusoidal_embedding_is_sin_then_cos_with_official_frequencies():
    x = torch.tensor([0, 1, 5, 999])
    out = SinusoidalPosEmb(8)(x)
    assert out.shape == (4, 8) and out.dtype == torch.float32
    # half = 4 frequencies 10000^(-k/3), k = 0..3: the last one is exactly 1e-4 (official step log(1e4)/(half-1)).
    freqs = torch.tensor([10000 ** (-k / 3) for k in range(4)], dtype=torch.float64)
    angles = x.double()[:, None] * freqs
    expected = torch.cat([angles.sin(), angles.cos()], dim=1).float()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0], torch.tensor([0.0] * 4 + [1.0] * 4))


def test_embedding_mlp_in_bf16_does_not_round_large_timesteps():
    mlp = randomize(EmbeddingMLP(16, 32), std=0.5).to(torch.bfloat16)
    out = mlp(torch.tensor([998, 999]))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 32)
    # bf16 cannot tell 998 from 999 (both round to 1000); angles computed in float32 can.
    assert torch.tensor(998.0, dtype=torch.bfloat16) == torch.tensor(999.0, dtype=torch.bfloat16)
    assert not torch.equal(out[0], out[1])
    reference = mlp.float()(torch.tensor([998, 999]))
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)


def test_conditional_group_norm_zero_init_is_plain_group_norm():
    norm = ConditionalGroupNorm(4, 16, 10)
    x, cond = randn(3, 16, 5, 7, seed=1), randn(3, 10, seed=2)
    torch.testing.assert_close(norm(x, cond), F.group_norm(x, 4))


def test_conditional_group_norm_scales_and_shifts_from_condition():
    norm = randomize(ConditionalGroupNorm(4, 16, 10))
    x, cond = randn(3, 16, 5, 7, seed=1), randn(3, 10, seed=2)
    scale, shift = norm.context_mlp[1](F.silu(cond)).chunk(2, dim=1)
    expected = F.group_norm(x, 4) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    torch.testing.assert_close(norm(x, cond), expected)
    # Also on 5-d (Conv3d-style) input.
    x5 = randn(3, 16, 2, 5, 7, seed=3)
    expected5 = F.group_norm(x5, 4) * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None]
    torch.testing.assert_close(norm(x5, cond), expected5)


def test_conditional_group_norm_broadcasts_one_condition_per_sample_over_its_frames():
    norm = randomize(ConditionalGroupNorm(4, 16, 10))
    x, cond = randn(6, 16, 5, 7, seed=1), randn(2, 10, seed=2)  # 2 samples × 3 frames folded as (b f)
    torch.testing.assert_close(norm(x, cond), norm(x, cond.repeat_interleave(3, dim=0)))
    with pytest.raises(ValueError, match="conditioning batch 4 does not divide the input batch 6"):
        norm(x, randn(4, 10, seed=3))


def _reference_attention(attn: Attention, x, context, mask=None):
    q, k, v = attn.to_query(x), attn.to_key(context), attn.to_value(context)
    heads = attn.num_heads
    def split(t):  # (b, n, h·d) -> (b, h, n, d)
        return t.view(*t.shape[:-1], heads, -1).transpose(-2, -3)

    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], -torch.finfo(scores.dtype).max)
    out = scores.softmax(-1) @ v
    return attn.output_layer(out.transpose(-2, -3).reshape(*x.shape[:-1], -1))


def test_attention_matches_reference_with_and_without_mask():
    attn = randomize(Attention(24, 32, 12, head_dim=8), std=0.3)
    assert attn.num_heads == 4
    x, context = randn(2, 6, 24, seed=1), randn(2, 5, 12, seed=2)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    torch.testing.assert_close(attn(x, context), _reference_attention(attn, x, context), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn(x, context, mask), _reference_attention(attn, x, context, mask),
                               atol=1e-5, rtol=1e-5)
    # Masked keys have no influence at all.
    changed = context.clone()
    changed[1, 3:] = 100.0
    torch.testing.assert_close(attn(x, changed, mask), attn(x, context, mask))
    assert not torch.allclose(attn(x, changed), attn(x, context))


def test_attention_rejects_width_not_multiple_of_head_dim():
    with pytest.raises(ValueError, match="head_dim"):
        Attention(24, 30, 12, head_dim=8)


def test_attention_zero_init_output_is_zero():
    attn = Attention(16, 16, 16, head_dim=8, zero_init_output=True)
    assert torch.count_nonzero(attn(randn(2, 3, 16), randn(2, 3, 16, seed=1))) == 0


def test_temporal_merge_starts_as_identity_then_merges_with_alpha():
    merge = TemporalMerge(8)
    x = randn(2 * 4, 8, 3, 3)  # 2 videos × 4 frames, folded
    torch.testing.assert_close(merge(x, 4), x)
    randomize(merge)
    with torch.no_grad():
        merge.alpha.fill_(0.0)
    torch.testing.assert_close(merge(x, 4), x)  # α = 0 hides even a non-zero conv
    with torch.no_grad():
        merge.alpha.fill_(0.3)
    video = x.view(2, 4, 8, 3, 3).permute(0, 2, 1, 3, 4)
    conv = merge.conv(video).permute(0, 2, 1, 3, 4).reshape(8, 8, 3, 3)
    torch.testing.assert_close(merge(x, 4), 0.7 * x + 0.3 * conv, atol=1e-6, rtol=1e-5)
    # Kernel 3 over time: frame 0 reaches frame 1, not frame 2 nor the other video.
    changed = x.clone()
    changed[0] += 1.0
    diff = (merge(changed, 4) - merge(x, 4)).abs().flatten(1).amax(1)
    assert diff[1] > 1e-4 and diff[2] == 0 and diff[4:].max() == 0


@pytest.mark.parametrize("resample, size_out", [(None, 8), ("down", 4), ("up", 16)])
def test_block_resampling(resample, size_out):
    block = Block(16, 24, 32, kernel_size=3, groups=4, resample=resample)
    out = block(randn(2, 16, 8, 8), randn(2, 32, seed=1))
    assert out.shape == (2, 24, size_out, size_out)


@pytest.mark.parametrize("resample, size_out", [(None, 8), ("down", 4), ("up", 16)])
def test_resnet_block_layout_and_shapes(resample, size_out):
    block = ResNetBlock(16, 32, 40, groups=4, compression_ratio=2, resample=resample)
    hidden = 32 // 2
    widths = [(b.projection.in_channels, b.projection.out_channels) for b in block.resnet_blocks]
    assert widths == [(16, hidden), (hidden, hidden), (hidden, hidden), (hidden, 32)]
    assert [b.projection.kernel_size for b in block.resnet_blocks] == [(1, 1), (3, 3), (3, 3), (1, 1)]
    ups = [not isinstance(b.up_sample, torch.nn.Identity) for b in block.resnet_blocks]
    downs = [not isinstance(b.down_sample, torch.nn.Identity) for b in block.resnet_blocks]
    assert ups == [False, resample == "up", False, False]
    assert downs == [False, False, resample == "down", False]
    out = block(randn(2, 16, 8, 8), randn(2, 40, seed=1))
    assert out.shape == (2, 32, size_out, size_out)


def test_resnet_block_shortcut_is_identity_for_equal_widths():
    block = ResNetBlock(16, 16, 40, groups=4)
    # Zero the last projection: the block reduces to its shortcut, the identity.
    with torch.no_grad():
        block.resnet_blocks[-1].projection.weight.zero_()
        block.resnet_blocks[-1].projection.bias.zero_()
    x = randn(2, 16, 4, 4)
    torch.testing.assert_close(block(x, randn(2, 40, seed=1)), x)


def test_feed_forward_has_no_bias_and_expands():
    ff = feed_forward(8, 3)
    assert ff[0].bias is None and ff[2].bias is None
    assert ff[0].out_channels == 24 and ff[2].out_channels == 8


def test_cross_attention_block_ignores_masked_context():
    block = randomize(AttentionBlock(16, 32, context_dim=12, groups=4, head_dim=8, expansion_ratio=2)).eval()
    x, t, context = randn(2, 16, 4, 4), randn(2, 32, seed=1), randn(2, 5, 12, seed=2)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = block(x, t, context, mask)
    assert out.shape == x.shape
    changed = context.clone()
    changed[1, 2:] = -50.0
    torch.testing.assert_close(block(x, t, changed, mask), out)
    changed[1, 0] = -50.0
    assert not torch.allclose(block(x, t, changed, mask)[1], out[1])
    torch.testing.assert_close(block(x, t, changed, mask)[0], out[0])  # samples are independent


def test_self_attention_block_mixes_space():
    block = randomize(AttentionBlock(16, 32, None, groups=4, head_dim=8, expansion_ratio=2))
    x, t = randn(1, 16, 4, 4), randn(1, 32, seed=1)
    changed = x.clone()
    changed[..., 0, 0] += 1.0
    diff = (block(changed, t) - block(x, t)).abs()
    assert diff[..., 3, 3].max() > 1e-4


def test_attention_pooling_adds_attention_over_context_queried_by_mean_of_all_slots():
    pooling = randomize(AttentionPooling(32, 12, head_dim=8), std=0.3)
    t, context = randn(2, 32), randn(2, 4, 12, seed=1)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    out = pooling(t, context, mask)
    query = context.mean(dim=1, keepdim=True)  # padding included, as the released weights expect
    expected = t + _reference_attention(pooling.attention, query, context, mask).squeeze(1)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # Masked slots still move the query (through the mean), so they do change the result.
    changed = context.clone()
    changed[1, 3] += 5.0
    assert not torch.allclose(pooling(t, changed, mask)[1], out[1])


def test_a_block_with_a_temporal_layer_trains_under_bf16_autocast():
    """The interpolation models' temporal merge: float32 α, bf16 activations under autocast."""
    block = randomize(Block(8, 8, 16, groups=4, temporal=True))
    x, time_embed = randn(6, 8, 4, 4, seed=1), randn(2, 16, seed=2)  # 2 samples × 3 frames, one embedding each
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x, time_embed, num_frames=3)
    out.float().square().mean().backward()
    assert out.dtype == torch.bfloat16 and block.temporal.alpha.grad is not None


def test_conditional_group_norm_rejects_channels_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="10 channels do not split into 4 groups"):
        ConditionalGroupNorm(4, 10, 3)
