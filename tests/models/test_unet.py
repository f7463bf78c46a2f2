"""Kandinsky 3.0 T2I U-Net and the keyframe U-Net with each temporal variant, at tiny size."""

import json

import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.models import (TEMPORAL_VARIANTS, Kandinsky3UNet, KeyframeUNet, temporal_parameter_names,
                                 train_temporal_only)
from tests.conftest import (TINY, assert_same_output, assert_same_weights, config_dict,
                            randn, randomize, text)

VARIANTS = list(TEMPORAL_VARIANTS)
T = 321


def keyframe_unet(variant, seed=0):
    return randomize(KeyframeUNet(**TINY, temporal_variant=variant), seed=seed).eval()


def per_frame(t2i, video, timestep, context, mask):
    return torch.stack([t2i(video[:, :, i], timestep, context, mask) for i in range(video.shape[2])], dim=2)


@pytest.mark.parametrize("size", [(8, 8), (16, 16), (12, 20)])
def test_t2i_output_shape(t2i, size):
    context, mask = text()
    with torch.no_grad():
        out = t2i(randn(2, 4, *size), T, context, mask)
    assert out.shape == (2, 4, *size) and torch.isfinite(out).all()


def test_t2i_images_in_a_batch_are_independent(t2i):
    x = randn(3, 4, 8, 8)
    context, mask = text(3)
    changed = x.clone()
    changed[0] = randn(4, 8, 8, seed=5)
    with torch.no_grad():
        a, b = t2i(x, T, context, mask), t2i(changed, T, context, mask)
    assert not torch.allclose(a[0], b[0])
    torch.testing.assert_close(a[1:], b[1:], atol=1e-6, rtol=1e-6)


def test_t2i_vector_timestep_equals_scalar(t2i):
    x, (context, mask) = randn(2, 4, 8, 8), text()
    with torch.no_grad():
        torch.testing.assert_close(t2i(x, T, context, mask), t2i(x, torch.tensor([T, T]), context, mask))
        assert not torch.allclose(t2i(x, T, context, mask), t2i(x, T + 100, context, mask))


def test_t2i_text_and_its_mask_matter(t2i):
    x, (context, mask) = randn(2, 4, 8, 8), text()
    with torch.no_grad():
        out = t2i(x, T, context, mask)
        assert not torch.allclose(out, t2i(x, T, context + 0.5, mask))
        assert not torch.allclose(out[1], t2i(x, T, context, torch.ones_like(mask))[1])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("frames, size", [(3, (8, 8)), (5, (12, 20))])
def test_keyframe_output_shape(variant, frames, size):
    model = keyframe_unet(variant)
    context, mask = text()
    with torch.no_grad():
        out = model(randn(2, 4, frames, *size), T, context, mask)
    assert out.shape == (2, 4, frames, *size) and torch.isfinite(out).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_keyframe_from_t2i_reproduces_t2i_on_every_frame(t2i, variant):
    model = KeyframeUNet.from_t2i(t2i, variant).eval()
    video, (context, mask) = randn(2, 4, 3, 8, 8, seed=3), text()
    with torch.no_grad():
        expected = per_frame(t2i, video, T, context, mask)
        torch.testing.assert_close(model(video, T, context, mask), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_keyframe_from_t2i_copies_every_spatial_weight(t2i, variant):
    model = KeyframeUNet.from_t2i(t2i, variant)
    assert model.config.temporal_variant == variant
    ours = model.state_dict()
    for name, value in t2i.state_dict().items():
        assert torch.equal(ours[name], value), name
    assert config_dict(model) == {**config_dict(t2i), "temporal_variant": variant, "motion_classes": 0}


def test_keyframe_from_t2i_rejects_unknown_variant(t2i):
    with pytest.raises(FusionFramesError, match="unknown temporal_variant 'conv2d'"):
        KeyframeUNet.from_t2i(t2i, "conv2d")


@pytest.mark.parametrize("variant", VARIANTS)
def test_temporal_parameter_names_are_exactly_what_the_video_model_adds(t2i, variant):
    model = KeyframeUNet(**TINY, temporal_variant=variant)
    names = temporal_parameter_names(model)
    added = set(dict(model.named_parameters())) - set(dict(t2i.named_parameters()))
    assert names == sorted(added)
    assert any(n.startswith("to_temporal_embed.") for n in names)
    assert temporal_parameter_names(t2i) == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_train_temporal_only_freezes_and_trains_the_right_parameters(variant):
    model = keyframe_unet(variant).train()
    temporal = set(temporal_parameter_names(model))
    count = train_temporal_only(model)
    params = dict(model.named_parameters())
    assert count == sum(params[n].numel() for n in temporal) > 0
    assert {n for n, p in params.items() if p.requires_grad} == temporal
    before = {n: p.detach().clone() for n, p in params.items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    context, mask = text()
    loss = model(randn(2, 4, 3, 8, 8), T, context, mask).square().mean()
    loss.backward()
    assert all(params[n].grad is None for n in params if n not in temporal)
    assert all(params[n].grad is not None for n in temporal)
    # A few biases feed a GroupNorm with one channel per group and legitimately get a zero gradient.
    moved = {n for n in temporal if params[n].grad.abs().max() > 1e-6}
    assert len(moved) > 0.8 * len(temporal)
    optimizer.step()
    for n, p in params.items():
        if n not in temporal:
            assert torch.equal(p, before[n]), n
        elif n in moved:
            assert not torch.equal(p, before[n]), n


@pytest.mark.parametrize("variant", VARIANTS)
def test_keyframe_temporal_parts_mix_frames_and_not_videos(variant):
    model = keyframe_unet(variant)
    video, (context, mask) = randn(2, 4, 3, 8, 8), text()
    changed = video.clone()
    changed[0, :, 0] = randn(4, 8, 8, seed=9)
    with torch.no_grad():
        a, b = model(video, T, context, mask), model(changed, T, context, mask)
    assert (a[0, :, 2] - b[0, :, 2]).abs().max() > 1e-4  # frame 0 reached frame 2
    torch.testing.assert_close(a[1], b[1], atol=1e-6, rtol=1e-6)  # video 1 untouched


@pytest.mark.parametrize("variant", VARIANTS)
def test_keyframe_frame_positions_matter(variant):
    model = keyframe_unet(variant)
    video, (context, mask) = randn(2, 4, 3, 8, 8), text()
    with torch.no_grad():
        default = model(video, T, context, mask)
        torch.testing.assert_close(model(video, T, context, mask, frame_positions=torch.tensor([0, 12, 24])), default)
        other = model(video, T, context, mask, frame_positions=torch.tensor([0, 1, 2]))
        assert not torch.allclose(default, other)
        per_sample = model(video, T, context, mask, frame_positions=torch.tensor([[0, 12, 24], [0, 1, 2]]))
    torch.testing.assert_close(per_sample[0], default[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(per_sample[1], other[1], atol=1e-6, rtol=1e-6)


def test_keyframe_input_errors():
    model = KeyframeUNet(**TINY)
    context, mask = text()
    video = randn(2, 4, 3, 8, 8)
    with pytest.raises(FusionFramesError, match="frame_positions"):
        model(video, T, context, mask, frame_positions=torch.arange(4))
    with pytest.raises(FusionFramesError, match="must be a video"):
        model(video[:, :, 0], T, context, mask)
    with pytest.raises(FusionFramesError, match="must be a video"):
        model(randn(2, 3, 3, 8, 8), T, context, mask)
    with pytest.raises(FusionFramesError, match="encoder_hidden_states"):
        model(video, T)
    with pytest.raises(FusionFramesError, match="batch"):
        model(video, T, context[:1], mask[:1])
    with pytest.raises(FusionFramesError, match="timestep"):
        model(video, torch.tensor([1, 2, 3]), context, mask)
    with pytest.raises(FusionFramesError, match="unknown temporal_variant"):
        KeyframeUNet(**TINY, temporal_variant="nope")


def test_same_seed_same_model_and_outputs():
    def build(seed):
        torch.manual_seed(seed)
        return KeyframeUNet(**TINY, temporal_variant="conv1d-attn3d-blocks").eval()

    a, b, c = build(7), build(7), build(8)
    video, (context, mask) = randn(2, 4, 3, 8, 8), text()
    with torch.no_grad():
        out_a, out_b = a(video, T, context, mask), b(video, T, context, mask)
        assert torch.equal(out_a, out_b)
        assert torch.equal(a(video, T, context, mask), out_a)  # repeated call
        assert not torch.equal(c(video, T, context, mask), out_a)


def _assert_round_trip(model, cls, tmp_path, *inputs, **kwargs):
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file()
    assert list(tmp_path.glob("*.safetensors"))
    loaded = cls.from_pretrained(tmp_path).eval()
    assert type(loaded) is cls
    assert config_dict(loaded) == config_dict(model)
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == cls.__name__
    assert_same_weights(loaded, model)
    with torch.no_grad():
        assert_same_output(loaded(*inputs, **kwargs), model(*inputs, **kwargs))
    return loaded


def test_t2i_save_and_load_round_trip(t2i, tmp_path):
    context, mask = text()
    _assert_round_trip(t2i, Kandinsky3UNet, tmp_path, randn(2, 4, 8, 8), T, context, mask)


def test_keyframe_save_and_load_round_trip_keeps_variant(tmp_path):
    model = keyframe_unet("conv1d-attn3d-blocks")
    context, mask = text()
    loaded = _assert_round_trip(model, KeyframeUNet, tmp_path, randn(2, 4, 3, 8, 8), T, context, mask)
    assert loaded.config.temporal_variant == "conv1d-attn3d-blocks"
    assert loaded.down_samples[1].temporal_attention_block.window == (2, 2)


def test_per_level_config_lengths_must_match_dim_mult():
    with pytest.raises(FusionFramesError, match="one entry per level"):
        Kandinsky3UNet(**{**TINY, "num_blocks": (2, 2)})
    with pytest.raises(FusionFramesError, match="one entry per level"):
        KeyframeUNet(**{**TINY, "add_self_attention": (False, True, True, True)})


def test_latent_size_the_downsampling_cannot_divide_is_a_clear_error(t2i):
    context, mask = text()
    with pytest.raises(FusionFramesError, match=r"latent size \(6, 10\) must be a multiple of 4"):
        t2i(randn(2, 4, 6, 10), T, context, mask)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradient_checkpointing_gives_the_same_gradients(t2i, variant):
    model = randomize(KeyframeUNet.from_t2i(t2i, variant), seed=5)
    video, (context, mask) = randn(2, 4, 3, 8, 8, seed=3), text()

    def grads():
        model.zero_grad()
        model(video, T, context, mask).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.enable_gradient_checkpointing()
    assert all(level.gradient_checkpointing for level in [*model.down_samples, *model.up_samples])
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)


def test_motion_classes_add_one_vector_per_class_and_a_zero_one_for_none_said(t2i):
    model = KeyframeUNet.from_t2i(t2i, motion_classes=3)
    plain = KeyframeUNet.from_t2i(t2i)
    rows = model.motion_embedding.weight
    assert rows.shape == (4, TINY["time_embed_dim"]) and model.null_motion == 3
    torch.testing.assert_close(rows[:3].norm(dim=1), torch.full((3,), 16.0))
    assert torch.equal(rows[3], torch.zeros(TINY["time_embed_dim"]))
    assert model.num_parameters() == plain.num_parameters() + 4 * TINY["time_embed_dim"]
    assert "motion_embedding.weight" in temporal_parameter_names(model)


def test_motion_classes_keep_the_identity_at_initialisation(t2i):
    model = KeyframeUNet.from_t2i(t2i, motion_classes=3).eval()
    video, (context, mask) = randn(2, 4, 3, 8, 8, seed=3), text()
    with torch.no_grad():
        expected = per_frame(t2i, video, T, context, mask)
        for motion in (None, torch.tensor([0, 2]), torch.tensor([3, 1])):
            torch.testing.assert_close(model(video, T, context, mask, motion=motion), expected, atol=1e-5,
                                       rtol=1e-4)


def test_motion_reaches_the_temporal_blocks_only(t2i):
    model = randomize(KeyframeUNet.from_t2i(t2i, motion_classes=3), seed=6).eval()
    with torch.no_grad():
        model.motion_embedding.weight[3].zero_()  # randomize filled the none-said row too
    video, (context, mask) = randn(2, 4, 3, 8, 8, seed=3), text()
    with torch.no_grad():
        out = {m: model(video, T, context, mask, motion=torch.tensor([m, m])) for m in range(4)}
        torch.testing.assert_close(model(video, T, context, mask), out[3])
        assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[3])
        mixed = model(video, T, context, mask, motion=torch.tensor([0, 1]))
        torch.testing.assert_close(mixed[0], out[0][0])
        torch.testing.assert_close(mixed[1], out[1][1])
        # With the temporal blocks back at zero, the motion changes nothing: the spatial blocks never see it.
        for name, param in model.named_parameters():
            if name in temporal_parameter_names(model) and not name.startswith("motion_embedding"):
                param.zero_()
        torch.testing.assert_close(model(video, T, context, mask, motion=torch.tensor([0, 0])),
                                   model(video, T, context, mask, motion=torch.tensor([1, 1])))


def test_motion_input_errors(t2i):
    model = KeyframeUNet.from_t2i(t2i, motion_classes=3)
    video, (context, mask) = randn(2, 4, 3, 8, 8), text()
    with pytest.raises(FusionFramesError, match=r"motion classes run from 0 to 3 \(3: none said\), got \[0, 4\]"):
        model(video, T, context, mask, motion=torch.tensor([0, 4]))
    with pytest.raises(FusionFramesError, match=r"motion must be \(2,\) class indices"):
        model(video, T, context, mask, motion=torch.tensor([0.5, 1.0]))
    with pytest.raises(FusionFramesError, match="has no motion classes"):
        KeyframeUNet.from_t2i(t2i)(video, T, context, mask, motion=torch.tensor([0, 1]))
    with pytest.raises(FusionFramesError, match="mixes temporal layers into the spatial blocks"):
        KeyframeUNet(**TINY, temporal_variant="conv1d-attn1d-layers", motion_classes=3)


def test_motion_classes_save_and_load_round_trip(t2i, tmp_path):
    model = randomize(KeyframeUNet.from_t2i(t2i, motion_classes=3), seed=6).eval()
    video, (context, mask) = randn(2, 4, 3, 8, 8), text()
    loaded = _assert_round_trip(model, KeyframeUNet, tmp_path, video, T, context, mask, motion=torch.tensor([2, 0]))
    assert loaded.config.motion_classes == 3
