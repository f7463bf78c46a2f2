"""Official MoVQ checkpoints (KV 1.0 ``movq.pt``, KV 1.1 ``video_movq.pt`` and the paper's other video decoders):
key coverage at full size (meta), real-file round trips at tiny size, and the config/checkpoint errors."""

from pathlib import Path

import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.convert.official import (OFFICIAL_VIDEO_DECODER_KWARGS, convert_official, default_official_config,
                                           load_official, model_config, official_state_to_model)
from fusionframes.models.movq import VIDEO_DECODERS, MoVQ
from fusionframes.models.presets import KV1_MOVQ, count_parameters
from tests.conftest import assert_same_output, assert_same_weights, config_dict, randn, randomize

# Every key and shape of the official checkpoints (copied from the project's reference material).
MANIFESTS = Path(__file__).resolve().parents[1] / "reference" / "manifests"
# Decoder parameter counts of the official modules (the paper's Table 3 column), and the encoder side.
DECODER_COUNTS = {"conv3x1x1": 203_210_271, "conv3x3x3": 539_803_167, "conv3x1x1-attn": 220_053_023,
                  "conv3x3x3-attn": 556_645_919, "resblock-attn": 220_268_035, "3d-conv": 419_461_123}
IMAGE_MOVQ_COUNT = 270_603_567

# Tiny, but with the official GroupNorm(32): norm_groups is no official kwarg, so channels are multiples of 32.
OFFICIAL_TINY = dict(double_z=False, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2],
                     num_res_blocks=1, attn_resolutions=[8], dropout=0.0)
OURS_TINY = {k: v for k, v in OFFICIAL_TINY.items() if k != "double_z"}



def read_manifest(name) -> dict:
    lines = (MANIFESTS / name).read_text().splitlines()
    assert lines[0] == "key\tshape"
    rows = [line.split("\t") for line in lines[1:] if line]
    return {key: tuple(int(n) for n in shape.split("x")) for key, shape in rows}


def video_manifest_name(variant) -> str:
    return f"kv1_movq_video_decoder_{variant.replace('-', '_')}.tsv"


def meta_state(manifest: dict) -> dict:
    return {k: torch.empty(*s, device="meta") for k, s in manifest.items()}


def video_movq_manifest(variant) -> dict:
    """The whole official video MoVQ: the image MoVQ's encoder/quant convs plus the variant's decoder."""
    image = {k: s for k, s in read_manifest("kv1_movq.tsv").items() if not k.startswith("decoder.")}
    return {**image, **{f"decoder.{k}": s for k, s in read_manifest(video_manifest_name(variant)).items()}}


def _error(func, *args, **kwargs) -> str:
    with pytest.raises(FusionFramesError) as info:
        func(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- full size, meta device


def test_full_size_image_movq_loads_strictly():
    manifest = read_manifest("kv1_movq.tsv")
    model, extras = official_state_to_model("movq", meta_state(manifest))
    assert type(model) is MoVQ and extras == {}
    assert model.config.video_decoder is None and model.config.spatial_attention_zq == "per-frame"
    assert model.quantize is None
    state = model.state_dict()
    assert list(state) == list(manifest)  # same keys, in the official order
    assert all(tuple(state[k].shape) == s for k, s in manifest.items())
    assert count_parameters(model) == IMAGE_MOVQ_COUNT


@pytest.mark.parametrize("variant", list(VIDEO_DECODERS))
def test_full_size_video_movq_loads_strictly(variant):
    manifest = video_movq_manifest(variant)
    config = {**default_official_config("movq"), **OFFICIAL_VIDEO_DECODER_KWARGS[variant]}
    model, extras = official_state_to_model("video-movq", meta_state(manifest), config)
    assert extras == {}
    assert model.config.video_decoder == variant
    assert model.config.spatial_attention_zq == "first-frame"  # KV 1.1's decoding, reproduced exactly
    state = model.state_dict()
    assert set(state) == set(manifest)
    assert all(tuple(state[k].shape) == s for k, s in manifest.items())
    assert count_parameters(model.decoder) == DECODER_COUNTS[variant]


def test_every_video_decoder_has_a_manifest():
    assert {video_manifest_name(v) for v in VIDEO_DECODERS} == \
        {p.name for p in MANIFESTS.glob("kv1_movq_video_decoder_*.tsv")}


def test_default_official_configs():
    assert model_config("movq", None) == {**KV1_MOVQ, "video_decoder": None, "spatial_attention_zq": "per-frame"}
    assert model_config("video-movq", None) == {**KV1_MOVQ, "video_decoder": "conv3x3x3-attn",
                                                "spatial_attention_zq": "first-frame"}
    assert default_official_config("video-movq") == {**default_official_config("movq"),
                                                     **OFFICIAL_VIDEO_DECODER_KWARGS["conv3x3x3-attn"]}
    model, _ = official_state_to_model("video-movq", meta_state(video_movq_manifest("conv3x3x3-attn")))
    assert model.config.video_decoder == "conv3x3x3-attn"


def test_explicit_default_flags_are_accepted():
    config = {**OFFICIAL_TINY, **OFFICIAL_VIDEO_DECODER_KWARGS["conv3x1x1"], "resamp_with_conv": True,
              "give_pre_end": False, "add_conv": False, "temporal_mid_blocks": True, "flicker_augmentation": False,
              "temporal_attention_block": False, "temporal_blocks": False, "build_3D_decoder": False}
    assert model_config("video-movq", config)["video_decoder"] == "conv3x1x1"
    image = {**OFFICIAL_TINY, "temporal": False, "temporal_attention_block": False}
    assert model_config("movq", image)["video_decoder"] is None


# ---------------------------------------------------------------- tiny size, real files


def tiny_official_file(tmp_path, video_decoder=None, seed=0):
    zq = "first-frame" if video_decoder else "per-frame"
    model = randomize(MoVQ(**OURS_TINY, video_decoder=video_decoder, spatial_attention_zq=zq), seed=seed).eval()
    path = tmp_path / ("video_movq.pt" if video_decoder else "movq.pt")
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, path)
    return model, path


def _outputs(model):
    with torch.no_grad():
        return model.decode(randn(1, 4, 3, 8, 8, seed=1)), model.encode(randn(2, 3, 16, 16, seed=2))


def test_image_movq_load_official_round_trip(tmp_path):
    model, path = tiny_official_file(tmp_path)
    loaded = load_official("movq", path, config=OFFICIAL_TINY)
    assert type(loaded) is MoVQ
    assert config_dict(loaded) == config_dict(model)
    assert_same_weights(loaded, model)
    for actual, expected in zip(_outputs(loaded.eval()), _outputs(model)):
        assert_same_output(actual, expected)


@pytest.mark.parametrize("variant", ["conv3x1x1-attn", "3d-conv"])
def test_video_movq_load_official_round_trip(tmp_path, variant):
    model, path = tiny_official_file(tmp_path, variant, seed=1)
    loaded = load_official("video-movq", path, config={**OFFICIAL_TINY, **OFFICIAL_VIDEO_DECODER_KWARGS[variant]})
    assert loaded.config.video_decoder == variant and loaded.config.spatial_attention_zq == "first-frame"
    assert_same_weights(loaded, model)
    for actual, expected in zip(_outputs(loaded.eval()), _outputs(model)):
        assert_same_output(actual, expected)


def test_video_movq_convert_official_round_trip(tmp_path):
    model, path = tiny_official_file(tmp_path, "conv3x3x3-attn", seed=2)
    out = tmp_path / "converted"
    config = {**OFFICIAL_TINY, **OFFICIAL_VIDEO_DECODER_KWARGS["conv3x3x3-attn"]}
    assert convert_official("video-movq", path, out, config=config) == out
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    loaded = MoVQ.from_pretrained(out).eval()
    assert config_dict(loaded) == config_dict(model)
    assert loaded.config.video_decoder == "conv3x3x3-attn" and loaded.config.spatial_attention_zq == "first-frame"
    assert_same_weights(loaded, model)
    for actual, expected in zip(_outputs(loaded), _outputs(model)):
        assert_same_output(actual, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted", path.name]  # no staging folder left


def test_image_movq_convert_official_round_trip(tmp_path):
    model, path = tiny_official_file(tmp_path, seed=3)
    out = tmp_path / "movq"
    convert_official("movq", path, out, config=OFFICIAL_TINY)
    loaded = MoVQ.from_pretrained(out).eval()
    assert config_dict(loaded) == config_dict(model) and loaded.config.video_decoder is None
    assert_same_weights(loaded, model)
    for actual, expected in zip(_outputs(loaded), _outputs(model)):
        assert_same_output(actual, expected)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("flags", [
    dict(temporal_blocks=True),  # temporal ResNet blocks without temporal attention
    dict(temporal_attention_block=True),  # attention alone
    dict(temporal=True, temporal_blocks=True, temporal_attention_block=True),
    dict(build_3D_decoder=True, temporal_attention_block=True),
    dict(temporal=True, build_3D_decoder=True),
    dict(temporal=True, temporal_kernel_size=(3, 1, 1)),  # padding left at (1, 1, 1)
    dict(temporal=True, temporal_kernel_size=(5, 1, 1), temporal_conv_padding=(2, 0, 0)),
])
def test_flags_that_select_no_paper_decoder(flags):
    message = _error(model_config, "video-movq", {**OFFICIAL_TINY, **flags})
    assert "these official video-decoder flags select no decoder of the paper" in message
    for key in flags:
        assert key in message


@pytest.mark.parametrize("key, value", [("double_z", True), ("flicker_augmentation", True), ("add_conv", True),
                                        ("resamp_with_conv", False), ("temporal_mid_blocks", False)])
def test_unsupported_fixed_kwargs(key, value):
    component = "video-movq" if key in ("flicker_augmentation", "temporal_mid_blocks") else "movq"
    config = {**OFFICIAL_TINY, **(OFFICIAL_VIDEO_DECODER_KWARGS["conv3x3x3"] if component == "video-movq" else {}),
              key: value}
    message = _error(model_config, component, config)
    assert f"official MoVQ config {key}={value!r} is not supported" in message


def test_unknown_config_key():
    message = _error(model_config, "movq", {**OFFICIAL_TINY, "temporal_kernel": 3})
    assert "unknown official MoVQ config keys ['temporal_kernel']" in message and "temporal_kernel_size" in message


def test_image_flags_for_video_movq_and_video_flags_for_movq():
    message = _error(model_config, "video-movq", OFFICIAL_TINY)
    assert "describe an image decoder, not a video-movq" in message
    message = _error(model_config, "movq", {**OFFICIAL_TINY, **OFFICIAL_VIDEO_DECODER_KWARGS["resblock-attn"]})
    assert "describe resblock-attn, not a movq" in message
    # the default image config given to video-movq, as a user converting video_movq.pt might
    assert "not a video-movq" in _error(official_state_to_model, "video-movq", {}, default_official_config("movq"))


def test_checkpoint_that_is_not_a_dict_of_tensors(tmp_path):
    path = tmp_path / "movq.pt"
    torch.save([torch.zeros(1)], path)
    assert "holds a list, not a checkpoint dictionary" in _error(load_official, "movq", path, OFFICIAL_TINY)
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}}, path)
    assert "is not a MoVQ state dict of tensors" in _error(load_official, "movq", path, OFFICIAL_TINY)
    assert str(path) in _error(load_official, "movq", path, OFFICIAL_TINY)


def test_missing_decoder_key_is_named():
    manifest = video_movq_manifest("conv3x3x3-attn")
    key = "decoder.up.3.temporal_attn.2.proj_out.weight"
    del manifest[key]
    message = _error(official_state_to_model, "video-movq", meta_state(manifest), source="video_movq.pt")
    assert f"missing keys: {key}" in message and "video_movq.pt" in message
    assert "unexpected" not in message and "mis-shaped" not in message


def test_image_checkpoint_given_as_video_movq_names_the_missing_temporal_keys():
    message = _error(official_state_to_model, "video-movq", meta_state(read_manifest("kv1_movq.tsv")))
    assert "missing keys: decoder.mid.block_1.temporal_merge1" in message and "more" in message


def test_misshaped_key_is_named(tmp_path):
    model, path = tiny_official_file(tmp_path, "conv3x1x1", seed=4)
    state = torch.load(path, weights_only=True)
    state["decoder.mid.block_1.temporal_projection1.weight"] = torch.zeros(64, 64, 3, 3, 3)
    torch.save(state, path)
    message = _error(load_official, "video-movq", path, {**OFFICIAL_TINY, **OFFICIAL_VIDEO_DECODER_KWARGS["conv3x1x1"]})
    assert ("mis-shaped keys: decoder.mid.block_1.temporal_projection1.weight (64, 64, 3, 3, 3) "
            "(expected (64, 64, 3, 1, 1))") in message
    assert "missing" not in message and "unexpected" not in message


def test_unexpected_key_is_named():
    manifest = read_manifest("kv1_movq.tsv")
    state = {**meta_state(manifest), "quantize.embedding.weight": torch.empty(16384, 4, device="meta")}
    message = _error(official_state_to_model, "movq", state)
    assert "unexpected keys: quantize.embedding.weight" in message
