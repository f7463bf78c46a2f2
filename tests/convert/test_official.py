"""Official Kandinsky Video 1.0 checkpoints: key coverage at full size (meta), real-file round trips at tiny
size, and the errors a user sees for a bad file, key, config or output folder."""

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fusionframes import FusionFramesError
from fusionframes.convert import official
from fusionframes.convert.official import (convert_official, load_official, model_config, official_state_to_model,
                                           official_to_ours, ours_to_official)
from fusionframes.models import InterpolationUNet, KeyframeUNet
from fusionframes.models.presets import KANDINSKY3, count_parameters
from fusionframes.models.text import TextProjection
from tests.conftest import (CONTEXT_DIM, TINY, assert_same_output, assert_same_weights, config_dict, randn,
                            randomize, text)

# Every key and shape of the official checkpoints (copied from the project's reference material).
MANIFESTS = Path(__file__).resolve().parents[1] / "reference" / "manifests"
MANIFEST_FILES = {"keyframe-unet": "kv1_keyframe_unet.tsv", "interpolation-unet": "kv1_interpolation_unet.tsv"}
OFFICIAL_COUNTS = {"keyframe-unet": 4_143_739_012, "interpolation-unet": 3_872_572_046}
T = 555



def read_manifest(component) -> dict:
    lines = (MANIFESTS / MANIFEST_FILES[component]).read_text().splitlines()
    assert lines[0] == "key\tshape"
    rows = [line.split("\t") for line in lines[1:] if line]
    return {key: tuple(int(n) for n in shape.split("x")) for key, shape in rows}


def meta(*shape):
    return torch.empty(*shape, device="meta")


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("component", list(MANIFEST_FILES))
def test_key_mapping_is_inverse_on_every_official_key(component):
    keys = read_manifest(component)
    ours = {official_to_ours(k) for k in keys}
    assert len(ours) == len(keys)  # no two official keys collapse
    for key in keys:
        assert ours_to_official(official_to_ours(key)) == key


def test_key_mapping_examples():
    examples = {
        "down_samples.1.resnet_attn_blocks.2.4.temporal_resnet_blocks.3.2.weight":
            "down_samples.1.pairs.2.out_temporal.layers.3.conv.weight",
        "up_samples.0.resnet_attn_blocks.0.3.temporal_resnet_blocks.0.0.context_mlp.1.bias":
            "up_samples.0.pairs.0.in_temporal.layers.0.norm.context_mlp.1.bias",
        "down_samples.0.resnet_attn_blocks.0.0.resnet_blocks.0.temporal_merge":
            "down_samples.0.pairs.0.in_resnet.resnet_blocks.0.temporal.alpha",
        "up_samples.2.resnet_attn_blocks.1.2.resnet_blocks.3.temporal_projection.weight":
            "up_samples.2.pairs.1.out_resnet.resnet_blocks.3.temporal.conv.weight",
        "down_samples.2.resnet_attn_blocks.1.1.attention.to_key.weight":
            "down_samples.2.pairs.1.cross_attention.attention.to_key.weight",
        "in_layer.weight": "in_layer.weight",
    }
    for theirs, ours in examples.items():
        assert official_to_ours(theirs) == ours
        assert ours_to_official(ours) == theirs


# ---------------------------------------------------------------- full size, meta device


def test_full_size_keyframe_checkpoint_loads_strictly():
    manifest = read_manifest("keyframe-unet")
    assert sum(torch.Size(s).numel() for s in manifest.values()) == OFFICIAL_COUNTS["keyframe-unet"]
    checkpoint = {
        "unet": {k: meta(*s) for k, s in manifest.items()},
        "null_embedding": meta(4096),
        "projections": {"t5.0.weight": meta(4096, 4096), "t5.1.weight": meta(4096), "t5.1.bias": meta(4096)},
    }
    model, extras = official_state_to_model("keyframe-unet", checkpoint)
    assert type(model) is KeyframeUNet and model.config.temporal_variant == "conv1d-attn1d-blocks"
    state = model.state_dict()
    assert set(state) == {official_to_ours(k) for k in manifest}  # every key consumed, nothing left over
    assert all(tuple(state[official_to_ours(k)].shape) == s for k, s in manifest.items())
    assert count_parameters(model) == OFFICIAL_COUNTS["keyframe-unet"]
    assert set(extras) == {"null_embedding", "text_projection"}
    assert extras["null_embedding"].shape == (4096,)
    assert {k: tuple(v.shape) for k, v in extras["text_projection"].items()} == {
        "linear.weight": (4096, 4096), "norm.weight": (4096,), "norm.bias": (4096,)}


def test_full_size_interpolation_checkpoint_loads_strictly():
    manifest = read_manifest("interpolation-unet")
    assert sum(torch.Size(s).numel() for s in manifest.values()) == OFFICIAL_COUNTS["interpolation-unet"]
    checkpoint = {"unet": {k: meta(*s) for k, s in manifest.items()}, "null_embedding": meta(4096)}
    model, extras = official_state_to_model("interpolation-unet", checkpoint)
    assert type(model) is InterpolationUNet and extras == {}
    state = model.state_dict()
    assert set(state) == {official_to_ours(k) for k in manifest} | {"null_embedding"}
    assert all(tuple(state[official_to_ours(k)].shape) == s for k, s in manifest.items())
    assert model.null_embedding.shape == (4096,)
    assert count_parameters(model) == OFFICIAL_COUNTS["interpolation-unet"]


def test_default_official_config_is_full_size():
    assert model_config("keyframe-unet", None) == KANDINSKY3
    assert model_config("interpolation-unet", None) == {**KANDINSKY3, "num_channels": 20, "out_channels": 12}


# ---------------------------------------------------------------- tiny size, real files

KEYFRAME_CONFIG = {**TINY, "num_frames": 3}
INTERP_CONFIG = {**TINY, "num_channels": 20, "out_channels": 12, "interpolation": True}


def official_state(model) -> dict:
    return {ours_to_official(k): v.clone() for k, v in model.state_dict().items() if k != "null_embedding"}


@pytest.fixture
def keyframe_files(tmp_path):
    """A tiny keyframe U-Net, its text projection and null embedding, saved in the official layout."""
    model = randomize(KeyframeUNet(**TINY), seed=1).eval()
    projection = randomize(TextProjection(encoder_dim=24, context_dim=CONTEXT_DIM), seed=2)
    null = randn(CONTEXT_DIM, seed=3)
    projections = {"t5.0.weight": projection.linear.weight.detach().clone(),
                   "t5.1.weight": projection.norm.weight.detach().clone(),
                   "t5.1.bias": projection.norm.bias.detach().clone()}
    path = tmp_path / "kandinsky_video.pt"
    torch.save({"unet": official_state(model), "null_embedding": null, "projections": projections}, path)
    return model, projection, null, path


@pytest.fixture
def interpolation_files(tmp_path):
    model = randomize(InterpolationUNet(**{k: v for k, v in INTERP_CONFIG.items() if k != "interpolation"}),
                      seed=4).eval()
    path = tmp_path / "kandinsky_video_interpolation.pt"
    # Stored with a leading axis, as a learned (1, D) embedding might be: the loader flattens it.
    torch.save({"unet": official_state(model), "null_embedding": model.null_embedding[None].clone()}, path)
    return model, path


def keyframe_inputs():
    context, mask = text()
    return (randn(2, 4, 3, 8, 8, seed=5), T, context, mask)


def interpolation_inputs():
    return (randn(2, 4, 6, 8, 8, seed=5), T, randn(2, 4, 3, 8, 8, seed=6), 3)


@pytest.mark.parametrize("component", list(MANIFEST_FILES))
def test_exported_tiny_keys_are_official_names(component):
    # 3 pairs per level as officially (the resampling pair is the last one); one level fewer than full size.
    config = {**TINY, "num_blocks": (3, 3, 3)}
    with torch.device("meta"):
        model = (KeyframeUNet(**config) if component == "keyframe-unet"
                 else InterpolationUNet(**{**config, "num_channels": 20, "out_channels": 12}))
    exported = set(official_state(model))
    assert exported <= set(read_manifest(component))
    assert len(exported) > 0.5 * len(read_manifest(component))


def test_keyframe_load_official_round_trip(keyframe_files):
    model, projection, null, path = keyframe_files
    loaded, extras = load_official("keyframe-unet", path, config=KEYFRAME_CONFIG, return_extras=True)
    assert type(loaded) is KeyframeUNet
    assert config_dict(loaded) == config_dict(model)
    assert_same_weights(loaded, model)
    assert torch.equal(extras["null_embedding"], null)
    for name, value in projection.state_dict().items():
        assert torch.equal(extras["text_projection"][name], value)
    with torch.no_grad():
        assert_same_output(loaded.eval()(*keyframe_inputs()), model(*keyframe_inputs()))
    assert type(load_official("keyframe-unet", path, config=KEYFRAME_CONFIG)) is KeyframeUNet  # no extras


def test_keyframe_convert_official_round_trip(keyframe_files, tmp_path):
    model, projection, null, path = keyframe_files
    out = tmp_path / "converted"
    assert convert_official("keyframe-unet", path, out, config=KEYFRAME_CONFIG) == out
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    loaded = KeyframeUNet.from_pretrained(out).eval()
    assert config_dict(loaded) == config_dict(model)
    assert_same_weights(loaded, model)
    with torch.no_grad():
        assert_same_output(loaded(*keyframe_inputs()), model(*keyframe_inputs()))
    assert torch.equal(load_file(out / "null_embedding.safetensors")["null_embedding"], null)
    text_projection = TextProjection.from_pretrained(out / "text_projection")
    assert config_dict(text_projection) == {"encoder_dim": 24, "context_dim": CONTEXT_DIM}
    assert_same_weights(text_projection, projection)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", path.name]  # no staging folder left


def test_interpolation_load_official_round_trip(interpolation_files):
    model, path = interpolation_files
    loaded, extras = load_official("interpolation-unet", path, config=INTERP_CONFIG, return_extras=True)
    assert type(loaded) is InterpolationUNet and extras == {}
    assert config_dict(loaded) == config_dict(model)
    assert_same_weights(loaded, model)  # includes the null_embedding buffer
    with torch.no_grad():
        assert_same_output(loaded.eval()(*interpolation_inputs()), model(*interpolation_inputs()))


def test_interpolation_convert_official_round_trip(interpolation_files, tmp_path):
    model, path = interpolation_files
    out = tmp_path / "nested" / "converted"
    convert_official("interpolation-unet", path, out, config=INTERP_CONFIG)
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert not (out / "null_embedding.safetensors").exists() and not (out / "text_projection").exists()
    loaded = InterpolationUNet.from_pretrained(out).eval()
    assert config_dict(loaded) == config_dict(model)
    assert_same_weights(loaded, model)
    with torch.no_grad():
        assert_same_output(loaded(*interpolation_inputs()), model(*interpolation_inputs()))


def test_convert_official_into_existing_empty_folder(interpolation_files, tmp_path):
    _, path = interpolation_files
    out = tmp_path / "empty"
    out.mkdir()
    convert_official("interpolation-unet", path, out, config=INTERP_CONFIG)
    assert (out / "config.json").is_file()


# ---------------------------------------------------------------- errors


def _error(func, *args, **kwargs) -> str:
    with pytest.raises(FusionFramesError) as info:
        func(*args, **kwargs)
    return str(info.value)


def _rewrite(path, edit):
    checkpoint = torch.load(path, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, path)


def test_unknown_component(keyframe_files, tmp_path):
    path = keyframe_files[3]
    message = _error(load_official, "vae", path)
    assert "unknown component 'vae'" in message and "keyframe-unet" in message and "video-movq" in message
    assert "unknown component" in _error(convert_official, "vae", path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.pt"
    message = _error(load_official, "keyframe-unet", missing, config=KEYFRAME_CONFIG)
    assert "checkpoint not found" in message and str(missing) in message


def test_truncated_file(keyframe_files):
    path = keyframe_files[3]
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    message = _error(load_official, "keyframe-unet", path, config=KEYFRAME_CONFIG)
    assert "cannot read checkpoint" in message and "truncated" in message and str(path) in message


def test_not_a_checkpoint_dictionary(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    assert "not a checkpoint dictionary" in _error(load_official, "keyframe-unet", path, config=KEYFRAME_CONFIG)
    torch.save({"unet": {"a": 1}}, path)
    assert "no 'unet' state dict of tensors" in _error(load_official, "keyframe-unet", path, config=KEYFRAME_CONFIG)


def test_misshaped_key_is_named(keyframe_files):
    path = keyframe_files[3]
    _rewrite(path, lambda c: c["unet"].__setitem__("in_layer.weight", torch.zeros(16, 5, 3, 3)))
    message = _error(load_official, "keyframe-unet", path, config=KEYFRAME_CONFIG)
    assert "mis-shaped keys: in_layer.weight (16, 5, 3, 3) (expected (16, 4, 3, 3))" in message
    assert "missing" not in message and "unexpected" not in message


def test_misshaped_renamed_key_is_named_as_in_the_checkpoint(keyframe_files):
    path = keyframe_files[3]
    key = "down_samples.1.resnet_attn_blocks.0.3.temporal_resnet_blocks.1.2.weight"
    _rewrite(path, lambda c: c["unet"].__setitem__(key, torch.zeros(1)))
    assert key in _error(load_official, "keyframe-unet", path, config=KEYFRAME_CONFIG)


def test_missing_key_is_named(keyframe_files):
    path = keyframe_files[3]
    _rewrite(path, lambda c: c["unet"].pop("out_layer.2.bias"))
    message = _error(load_official, "keyframe-unet", path, config=KEYFRAME_CONFIG)
    assert "missing keys: out_layer.2.bias" in message and "unexpected" not in message


def test_unexpected_key_is_named(keyframe_files):
    path = keyframe_files[3]
    _rewrite(path, lambda c: c["unet"].__setitem__("extra.weight", torch.zeros(3)))
    message = _error(load_official, "keyframe-unet", path, config=KEYFRAME_CONFIG)
    assert "unexpected keys: extra.weight" in message and "missing" not in message


def test_full_size_default_config_on_tiny_checkpoint_explains_config(keyframe_files):
    message = _error(load_official, "keyframe-unet", keyframe_files[3])
    assert "does not match the model configuration" in message and "--config" in message


def test_bad_text_projection_keys(keyframe_files):
    path = keyframe_files[3]
    _rewrite(path, lambda c: c["projections"].pop("t5.1.bias"))
    assert "unexpected text projection keys" in _error(load_official, "keyframe-unet", path, config=KEYFRAME_CONFIG)


def test_wrong_config_key(keyframe_files):
    path = keyframe_files[3]
    message = _error(load_official, "keyframe-unet", path, config={**KEYFRAME_CONFIG, "num_frame": 3})
    assert "unknown official config keys ['num_frame']" in message
    message = _error(load_official, "keyframe-unet", path, config={**KEYFRAME_CONFIG, "interpolation": True})
    assert "does not describe a keyframe-unet" in message
    message = _error(load_official, "interpolation-unet", path, config=KEYFRAME_CONFIG)
    assert "does not describe a interpolation-unet" in message


def test_convert_refuses_non_empty_output_folder(keyframe_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    message = _error(convert_official, "keyframe-unet", keyframe_files[3], out, config=KEYFRAME_CONFIG)
    assert "not empty" in message and str(out) in message
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


def test_convert_leaves_nothing_when_loading_fails(keyframe_files, tmp_path):
    path = keyframe_files[3]
    _rewrite(path, lambda c: c["unet"].pop("out_layer.2.bias"))
    out = tmp_path / "out"
    assert "missing keys" in _error(convert_official, "keyframe-unet", path, out, config=KEYFRAME_CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_convert_leaves_nothing_when_writing_fails(keyframe_files, tmp_path, monkeypatch):
    path = keyframe_files[3]

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(official, "save_file", fail)  # after the U-Net is written, before the rest
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        convert_official("keyframe-unet", path, out, config=KEYFRAME_CONFIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    assert not any(name.startswith(".out.") for name in os.listdir(tmp_path))
