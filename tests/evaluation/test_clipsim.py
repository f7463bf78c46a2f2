"""CLIPSIM end to end on a randomly initialised CLIP of the real architecture (no pretrained weights)."""

import numpy as np
import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.evaluation.clipsim import CLIPSim


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, text_encoder):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    _, tokenizer = text_encoder  # any tokenizer serves a random CLIP; this one is packaged offline
    folder = tmp_path_factory.mktemp("clip")
    config = CLIPConfig(text_config=dict(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77),
                        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=32, patch_size=8),
                        projection_dim=16)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_clipsim_is_the_mean_over_frames_of_the_cosine(clip_folder):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (4, 48, 64, 3), dtype=np.uint8) for _ in range(2))
    score = CLIPSim(clip_folder, batch_size=3)
    sa, sb, sab = score([a, b, np.concatenate([a, b])], ["a red ball"] * 3)
    assert -1 <= sa <= 1 and sa != pytest.approx(sb)
    assert sab == pytest.approx((sa + sb) / 2, abs=1e-6)  # equal lengths: the mean of the two means
    assert CLIPSim(clip_folder, batch_size=64)([a], ["a red ball"])[0] == pytest.approx(sa, abs=1e-6)
    assert score([a], ["a blue square"])[0] != pytest.approx(sa)


def test_clipsim_errors_name_what_is_needed(clip_folder, tmp_path):
    with pytest.raises(FusionFramesError, match="openai/clip-vit-base-patch32"):
        CLIPSim(tmp_path / "nothing")
    score = CLIPSim(clip_folder)
    with pytest.raises(FusionFramesError, match="2 videos for 1 captions"):
        score([np.zeros((1, 8, 8, 3), np.uint8)] * 2, ["x"])
    with pytest.raises(FusionFramesError, match="uint8"):
        score([np.zeros((1, 8, 8, 3), np.float32)], ["x"])
