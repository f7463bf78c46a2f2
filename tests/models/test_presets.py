"""Full-size presets, built on the meta device: exact parameter counts against the official modules."""

import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.models import InterpolationUNet, Kandinsky3UNet, KeyframeUNet, MaskedInterpolationUNet
from fusionframes.models import temporal_parameter_names
from fusionframes.models.presets import PRESETS, build_preset, count_parameters, preset_parameters

# The first three are the official modules' counts (shared/reference/manifests/parameter_counts.json); the
# Conv1dAttn3dBlocks variant adds no parameters. The others have no official module: their counts are pinned as
# computed from this package, so any change to those layouts shows up here.
EXPECTED = {
    "kandinsky3-unet": 3_038_562_820,
    "kv1-keyframe-unet": 4_143_739_012,
    "kv1-interpolation-unet": 3_872_572_046,
    "kv1-keyframe-unet-conv1d-attn3d-blocks": 4_143_739_012,
    "kv1-keyframe-unet-conv3d-attn1d-blocks": 4_216_598_980,
    "kv1-keyframe-unet-conv1d-attn1d-layers": 3_913_798_276,
    "kv1-masked-interpolation-unet": 3_916_494_918,
}
# The official MoVQ modules' counts; video decoders count decoder parameters only, as the paper's Table 3.
MOVQ_EXPECTED = {
    "kv1-movq": 270_603_567,
    "kv1-movq-encoder": 109_485_316,
    "kv1-movq-decoder": 161_118_211,
    "kv1-video-decoder-conv3x1x1": 203_210_271,
    "kv1-video-decoder-conv3x3x3": 539_803_167,
    "kv1-video-decoder-conv3x1x1-attn": 220_053_023,
    "kv1-video-decoder-conv3x3x3-attn": 556_645_919,
    "kv1-video-decoder-resblock-attn": 220_268_035,
    "kv1-video-decoder-3d-conv": 419_461_123,
}
CLASSES = {
    "kandinsky3-unet": Kandinsky3UNet, "kv1-interpolation-unet": InterpolationUNet,
    "kv1-masked-interpolation-unet": MaskedInterpolationUNet,
}


def test_every_preset_is_pinned():
    assert set(PRESETS) == set(EXPECTED) | set(MOVQ_EXPECTED)


@pytest.mark.parametrize("name", list(MOVQ_EXPECTED))
def test_movq_preset_parameter_count(name):
    assert preset_parameters(name) == MOVQ_EXPECTED[name]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_preset_parameter_count(name):
    model = build_preset(name, "meta")
    assert type(model) is CLASSES.get(name, KeyframeUNet)
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) == EXPECTED[name]


def test_keyframe_temporal_parameters_are_the_difference_to_t2i():
    model = build_preset("kv1-keyframe-unet", "meta")
    params = dict(model.named_parameters())
    temporal = sum(params[n].numel() for n in temporal_parameter_names(model))
    assert temporal == EXPECTED["kv1-keyframe-unet"] - EXPECTED["kandinsky3-unet"] == 1_105_176_192


def test_interpolation_null_embedding_is_a_buffer_outside_the_count():
    model = build_preset("kv1-interpolation-unet", "meta")
    assert dict(model.named_buffers())["null_embedding"].shape == (4096,)
    assert "null_embedding" not in dict(model.named_parameters())


def test_preset_dtype():
    model = build_preset("kandinsky3-unet", "meta", torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_unknown_preset():
    with pytest.raises(FusionFramesError, match="unknown preset 'kv2'.*kandinsky3-unet"):
        build_preset("kv2", "meta")
