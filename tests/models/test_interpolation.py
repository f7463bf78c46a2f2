"""Group interpolation U-Net and the masked-frame baseline at tiny size."""

import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.models import (InterpolationUNet, KeyframeUNet, MaskedInterpolationUNet,
                                 temporal_parameter_names)
from fusionframes.models.interpolation import masked_windows
from tests.conftest import CONTEXT_DIM, TINY, assert_same_output, assert_same_weights, config_dict, randn, randomize

T = 444
INTERP = {**TINY, "num_channels": 20, "out_channels": 12}
MASKED = {**TINY, "num_channels": 9, "out_channels": 4}


def interpolation_unet(seed=0):
    return randomize(InterpolationUNet(**INTERP), seed=seed).eval()


def masked_unet(seed=0):
    return randomize(MaskedInterpolationUNet(**MASKED), seed=seed).eval()


def null_context(null, batch):
    """The official interpolation context, written out by hand: [null (kept), zeros (masked)]."""
    context = torch.stack([null, torch.zeros_like(null)])[None].repeat(batch, 1, 1)
    return context, torch.tensor([[True, False]] * batch)


# ---------------------------------------------------------------- group interpolation


@pytest.mark.parametrize("groups, size", [(1, (8, 8)), (2, (8, 8)), (3, (12, 20))])
def test_interpolation_output_shape(groups, size):
    model = interpolation_unet()
    sample, keyframes = randn(2, 4, 3 * groups, *size), randn(2, 4, groups + 1, *size, seed=1)
    with torch.no_grad():
        out = model(sample, T, keyframes, skip_frames=3)
    assert out.shape == (2, 4, 3 * groups, *size) and torch.isfinite(out).all()


def test_interpolation_null_context_layout():
    model = interpolation_unet()
    context, mask = model.null_context(3)
    assert context.shape == (3, 2, CONTEXT_DIM) and mask.dtype == torch.bool
    expected_context, expected_mask = null_context(model.null_embedding, 3)
    assert torch.equal(context, expected_context) and torch.equal(mask, expected_mask)


@pytest.mark.parametrize("with_null", [True, False])
def test_interpolation_from_t2i_predicts_t2i_of_the_middle_frame(t2i, with_null):
    null = randn(CONTEXT_DIM, seed=4) if with_null else None
    model = InterpolationUNet.from_t2i(t2i, null_embedding=null).eval()
    g = 3
    sample, keyframes = randn(2, 4, 3 * g, 8, 8, seed=2), randn(2, 4, g + 1, 8, 8, seed=3)
    context, mask = null_context(null if with_null else torch.zeros(CONTEXT_DIM), 2)
    with torch.no_grad():
        out = model(sample, T, keyframes, skip_frames=3)
        for i in range(g):
            expected = t2i(sample[:, :, 3 * i + 1], T, context, mask)
            for j in range(3):
                torch.testing.assert_close(out[:, :, 3 * i + j], expected, atol=1e-5, rtol=1e-4)


def test_interpolation_keyframe_init_t2i_reads_the_keyframes_with_t2i_weights(t2i):
    model = InterpolationUNet.from_t2i(t2i, keyframe_init="t2i")
    w, t2i_w = model.in_layer.weight, t2i.in_layer.weight
    for slot in (0, 2, 4):  # left keyframe, middle noisy frame, right keyframe
        assert torch.equal(w[:, 4 * slot:4 * slot + 4], t2i_w)
    assert torch.count_nonzero(w[:, 4:8]) == 0 and torch.count_nonzero(w[:, 12:16]) == 0
    with pytest.raises(FusionFramesError, match="keyframe_init must be one of zeros, t2i, got 'ones'"):
        InterpolationUNet.from_t2i(t2i, keyframe_init="ones")


def test_interpolation_learns_to_use_its_keyframes(keyframe_init="t2i", steps=150):
    """The conditioning path works: on frames that are linear blends of their keyframes, a few hundred steps make
    the prediction at t = 900 (nearly pure noise) far better with the keyframes than with them zeroed."""
    from fusionframes.diffusion.losses import diffusion_loss
    from fusionframes.diffusion.schedule import Schedule
    from fusionframes.models import Kandinsky3UNet

    torch.manual_seed(0)
    t2i = Kandinsky3UNet(**{**TINY, "context_dim": None, "dim_mult": (1, 2), "num_blocks": (1, 1),
                            "add_cross_attention": (False, False), "add_self_attention": (False, True)})
    model = InterpolationUNet.from_t2i(t2i, keyframe_init=keyframe_init)
    schedule, gen = Schedule.cosine(1000), torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    blend = torch.tensor([0.25, 0.5, 0.75]).view(1, 1, 1, 3, 1, 1)

    def loss(batch, t, zero_keyframes=False):
        keyframes = torch.randn(batch, 4, 3, 8, 8, generator=gen)
        middle = (keyframes[:, :, :-1, None] * (1 - blend) + keyframes[:, :, 1:, None] * blend).flatten(2, 3)
        noise = torch.randn(middle.shape, generator=gen)
        out = model(schedule.add_noise(middle, noise, t), t, keyframes * (not zero_keyframes), 1)
        return diffusion_loss(out, middle, noise, t, schedule, "v_prediction")

    for _ in range(steps):
        optimizer.zero_grad()
        loss(4, torch.randint(0, 1000, (4,), generator=gen)).backward()
        optimizer.step()
    with torch.no_grad():
        late = torch.full((32,), 900)
        with_keyframes, without = loss(32, late).item(), loss(32, late, zero_keyframes=True).item()
    assert with_keyframes < 0.5 * without, (with_keyframes, without)


def test_interpolation_from_t2i_inflates_the_weights(t2i):
    null = randn(CONTEXT_DIM, seed=4)
    model = InterpolationUNet.from_t2i(t2i, null_embedding=null)
    assert (model.config.num_channels, model.config.out_channels) == (20, 12)
    w, t2i_w = model.in_layer.weight, t2i.in_layer.weight
    assert w.shape == (16, 20, 3, 3)
    assert torch.equal(w[:, 8:12], t2i_w)  # slot 2: the middle noisy frame of the group
    assert torch.count_nonzero(w[:, :8]) == 0 and torch.count_nonzero(w[:, 12:]) == 0
    assert torch.equal(model.in_layer.bias, t2i.in_layer.bias)
    out_conv, t2i_out = model.out_layer[2], t2i.out_layer[2]
    assert torch.equal(out_conv.weight, t2i_out.weight.repeat(3, 1, 1, 1))
    assert torch.equal(out_conv.bias, t2i_out.bias.repeat(3))
    assert torch.equal(model.null_embedding, null)
    state = model.state_dict()
    for name, value in t2i.state_dict().items():
        if name not in ("in_layer.weight", "out_layer.2.weight", "out_layer.2.bias"):
            assert torch.equal(state[name], value), name
    assert model.time_embed_merge.item() == 0 and model.skip_merge.item() == 0
    alphas = [p for n, p in model.named_parameters() if n.endswith("temporal.alpha")]
    assert len(alphas) == 2 * 4 * (2 * 2 + 2 * 2 + 2 * 2)  # 2 resnets × 4 Blocks per pair, 2 pairs × 3 levels × 2
    assert all(a.item() == 0 for a in alphas)


@pytest.mark.parametrize("slot", [0, 1, 2, 3, 4])
def test_interpolation_input_channel_order(t2i, slot):
    """Input = [left keyframe, noisy frames 0, 1, 2 of the group, right keyframe] (official order)."""
    model = InterpolationUNet.from_t2i(t2i).eval()
    with torch.no_grad():
        model.in_layer.weight.zero_()
        model.in_layer.weight[:, 4 * slot:4 * slot + 4] = t2i.in_layer.weight
        for j in range(3):
            model.out_layer[2].bias[4 * j:4 * j + 4] += 10.0 * j  # mark each output copy
    g = 2
    sample, keyframes = randn(1, 4, 3 * g, 8, 8, seed=2), randn(1, 4, g + 1, 8, 8, seed=3)
    context, mask = null_context(torch.zeros(CONTEXT_DIM), 1)
    with torch.no_grad():
        out = model(sample, T, keyframes, skip_frames=1)
        for i in range(g):
            if slot in (0, 4):
                source = keyframes[:, :, i + slot // 4]
            else:
                source = sample[:, :, 3 * i + slot - 1]
            expected = t2i(source, T, context, mask)
            for j in range(3):
                torch.testing.assert_close(out[:, :, 3 * i + j], expected + 10.0 * j, atol=1e-4, rtol=1e-4)


def test_interpolation_groups_talk_only_through_temporal_convs(t2i):
    g = 3
    sample, keyframes = randn(2, 4, 3 * g, 8, 8, seed=2), randn(2, 4, g + 1, 8, 8, seed=3)
    changed = sample.clone()
    changed[0, :, :3] = randn(4, 3, 8, 8, seed=7)  # group 0 of video 0
    fresh, trained = InterpolationUNet.from_t2i(t2i).eval(), interpolation_unet()
    with torch.no_grad():
        a, b = fresh(sample, T, keyframes, 1), fresh(changed, T, keyframes, 1)
        torch.testing.assert_close(a[0, :, 3:], b[0, :, 3:], atol=1e-6, rtol=1e-6)  # α = 0: groups independent
        a, b = trained(sample, T, keyframes, 1), trained(changed, T, keyframes, 1)
    assert (a[0, :, 3:6] - b[0, :, 3:6]).abs().max() > 1e-4  # neighbouring group sees it
    torch.testing.assert_close(a[1], b[1], atol=1e-6, rtol=1e-6)  # the other video does not


def test_interpolation_skip_and_perturbation_conditioning(t2i):
    sample, keyframes = randn(1, 4, 6, 8, 8, seed=2), randn(1, 4, 3, 8, 8, seed=3)
    fresh, trained = InterpolationUNet.from_t2i(t2i).eval(), interpolation_unet()
    with torch.no_grad():
        # Merges at 0: neither the skip-frame nor the perturbation level changes a fresh model.
        base = fresh(sample, T, keyframes, skip_frames=3)
        torch.testing.assert_close(fresh(sample, T, keyframes, skip_frames=1), base)
        torch.testing.assert_close(fresh(sample, T, keyframes, 3, perturbation_timestep=200), base)
        base = trained(sample, T, keyframes, skip_frames=3)
        assert not torch.allclose(trained(sample, T, keyframes, skip_frames=1), base)
        assert not torch.allclose(trained(sample, T, keyframes, 3, perturbation_timestep=200), base)
        assert not torch.allclose(trained(sample, T, keyframes.zero_(), 3), base)  # context guidance input
        torch.testing.assert_close(trained(sample, T, randn(1, 4, 3, 8, 8, seed=3), torch.tensor([3])), base)


def test_interpolation_explicit_null_context_equals_default():
    model = interpolation_unet()
    sample, keyframes = randn(2, 4, 3, 8, 8, seed=2), randn(2, 4, 2, 8, 8, seed=3)
    context, mask = null_context(model.null_embedding, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(sample, T, keyframes, 2, 0, context, mask), model(sample, T, keyframes, 2))
        assert not torch.allclose(model(sample, T, keyframes, 2, 0, context + 1, mask), model(sample, T, keyframes, 2))


def test_interpolation_input_errors():
    model = InterpolationUNet(**INTERP)
    sample, keyframes = randn(1, 4, 6, 8, 8), randn(1, 4, 3, 8, 8)
    with pytest.raises(FusionFramesError, match="keyframes need a sample of 6 frames"):
        model(sample[:, :, :5], T, keyframes, 1)
    with pytest.raises(FusionFramesError, match="keyframes need"):
        model(sample, T, keyframes[..., :4], 1)
    with pytest.raises(FusionFramesError, match="keyframes need"):
        model(sample[:, :, :0], T, keyframes[:, :, :1], 1)
    with pytest.raises(FusionFramesError, match="keyframes must be a video"):
        model(sample, T, keyframes[:, :3], 1)
    with pytest.raises(FusionFramesError, match="skip_frames must lie in 0..19"):
        model(sample, T, keyframes, 20)
    with pytest.raises(FusionFramesError, match="skip_frames"):
        model(sample, T, keyframes, -1)
    with pytest.raises(FusionFramesError, match="num_channels = 5"):
        InterpolationUNet(**{**TINY, "num_channels": 16, "out_channels": 12})
    with pytest.raises(FusionFramesError, match="Kandinsky3UNet"):
        InterpolationUNet.from_t2i(KeyframeUNet(**TINY))


def test_interpolation_temporal_parameters_are_the_merges():
    model = InterpolationUNet(**INTERP)
    names = temporal_parameter_names(model)
    assert names and all(".temporal." in n for n in names)
    assert {n for n, _ in model.named_parameters() if ".temporal." in n} == set(names)


def test_interpolation_save_and_load_round_trip_keeps_null_embedding(tmp_path):
    model = interpolation_unet()
    assert model.null_embedding.abs().sum() > 0
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and list(tmp_path.glob("*.safetensors"))
    loaded = InterpolationUNet.from_pretrained(tmp_path).eval()
    assert config_dict(loaded) == config_dict(model)
    assert_same_weights(loaded, model)
    assert torch.equal(loaded.null_embedding, model.null_embedding)
    sample, keyframes = randn(2, 4, 6, 8, 8, seed=2), randn(2, 4, 3, 8, 8, seed=3)
    with torch.no_grad():
        assert_same_output(loaded(sample, T, keyframes, 3, 10), model(sample, T, keyframes, 3, 10))


# ---------------------------------------------------------------- masked-frame baseline


def test_masked_windows_layout():
    keyframes = randn(2, 4, 4, 8, 8)
    condition, mask = masked_windows(keyframes)
    assert condition.shape == (2 * 3, 4, 5, 8, 8) and mask.shape == (6, 5)
    assert mask.tolist() == [[True, False, False, False, True]] * 6
    for b in range(2):
        for i in range(3):
            window = condition[3 * b + i]
            assert torch.equal(window[:, 0], keyframes[b, :, i])
            assert torch.equal(window[:, 4], keyframes[b, :, i + 1])
            assert torch.count_nonzero(window[:, 1:4]) == 0


def test_masked_output_shape():
    model = masked_unet()
    condition, mask = masked_windows(randn(1, 4, 3, 12, 20))
    sample = randn(*condition.shape, seed=1)
    with torch.no_grad():
        out = model(sample, T, condition, mask, skip_frames=1)
    assert out.shape == (2, 4, 5, 12, 20) and torch.isfinite(out).all()


def test_masked_from_t2i_predicts_t2i_per_frame(t2i):
    null = randn(CONTEXT_DIM, seed=4)
    model = MaskedInterpolationUNet.from_t2i(t2i, null_embedding=null).eval()
    assert model.config.temporal_variant == "conv1d-attn1d-layers"
    w = model.in_layer.weight
    assert torch.equal(w[:, :4], t2i.in_layer.weight) and torch.count_nonzero(w[:, 4:]) == 0
    condition, mask = masked_windows(randn(1, 4, 3, 8, 8, seed=1))
    sample = randn(*condition.shape, seed=2)
    context, context_mask = null_context(null, sample.shape[0])
    with torch.no_grad():
        out = model(sample, T, condition, mask, skip_frames=3)
        for f in range(5):
            torch.testing.assert_close(out[:, :, f], t2i(sample[:, :, f], T, context, context_mask),
                                       atol=1e-5, rtol=1e-4)


def test_masked_model_uses_condition_mask_and_neighbouring_frames():
    model = masked_unet()
    condition, mask = masked_windows(randn(1, 4, 2, 8, 8, seed=1))
    sample = randn(*condition.shape, seed=2)
    with torch.no_grad():
        base = model(sample, T, condition, mask, 1)
        assert not torch.allclose(model(sample, T, condition, torch.zeros_like(mask), 1), base)
        changed = sample.clone()
        changed[:, :, 0] = randn(1, 4, 8, 8, seed=3)
        assert (model(changed, T, condition, mask, 1)[:, :, 2] - base[:, :, 2]).abs().max() > 1e-4
        assert not torch.allclose(model(sample, T, condition, mask, 1, frame_positions=torch.arange(5) * 3), base)


def test_masked_input_errors():
    model = MaskedInterpolationUNet(**MASKED)
    condition, mask = masked_windows(randn(1, 4, 2, 8, 8))
    with pytest.raises(FusionFramesError, match="condition must match"):
        model(randn(1, 4, 4, 8, 8), T, condition, mask, 1)
    with pytest.raises(FusionFramesError, match="condition must match"):
        model(randn(*condition.shape), T, condition, mask[:, :4], 1)
    with pytest.raises(FusionFramesError, match="2·out_channels"):
        MaskedInterpolationUNet(**{**TINY, "num_channels": 8, "out_channels": 4})
    with pytest.raises(FusionFramesError, match="unknown temporal_variant"):
        MaskedInterpolationUNet(**MASKED, temporal_variant="x")


def test_masked_save_and_load_round_trip(tmp_path):
    model = masked_unet()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and list(tmp_path.glob("*.safetensors"))
    loaded = MaskedInterpolationUNet.from_pretrained(tmp_path).eval()
    assert config_dict(loaded) == config_dict(model)
    assert_same_weights(loaded, model)
    assert torch.equal(loaded.null_embedding, model.null_embedding)
    condition, mask = masked_windows(randn(1, 4, 2, 8, 8, seed=1))
    sample = randn(*condition.shape, seed=2)
    with torch.no_grad():
        assert_same_output(loaded(sample, T, condition, mask, 2), model(sample, T, condition, mask, 2))


def test_masked_predict_groups_is_one_window_per_pair_with_known_keyframes():
    model = masked_unet()
    keyframes, sample = randn(2, 4, 3, 8, 8, seed=1), randn(2, 4, 6, 8, 8, seed=2)
    with torch.no_grad():
        out = model.predict_groups(sample, torch.tensor([T, 100]), keyframes, torch.tensor([1, 5]), 7)
        assert out.shape == sample.shape
        for b in range(2):
            for g in range(2):
                window = torch.cat([keyframes[b:b + 1, :, g:g + 1], sample[b:b + 1, :, 3 * g:3 * g + 3],
                                    keyframes[b:b + 1, :, g + 1:g + 2]], dim=2)
                condition = torch.zeros_like(window)
                condition[:, :, [0, 4]] = window[:, :, [0, 4]]
                mask = torch.tensor([[True, False, False, False, True]])
                expected = model(window, [T, 100][b], condition, mask, [1, 5][b], 7)[:, :, 1:4]
                assert_same_output(out[b:b + 1, :, 3 * g:3 * g + 3], expected)
    with pytest.raises(FusionFramesError, match="3 keyframes need a sample of 6 frames of the same batch and size"):
        model.predict_groups(randn(1, 4, 5, 8, 8), T, randn(1, 4, 3, 8, 8), 1)
