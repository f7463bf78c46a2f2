"""The text projection between the frozen encoder and the U-Nets, and the motion classifier beside it."""

import pytest
import torch
import torch.nn.functional as F

from fusionframes.models.text import MotionClassifier, TextProjection
from tests.conftest import assert_same_output, assert_same_weights, config_dict, randn, randomize


def test_text_projection_is_linear_without_bias_then_layer_norm():
    model = randomize(TextProjection(encoder_dim=24, context_dim=16))
    assert model.linear.bias is None
    x = randn(2, 7, 24, seed=1)
    expected = F.layer_norm(x @ model.linear.weight.T, (16,), model.norm.weight, model.norm.bias)
    out = model(x)
    assert out.shape == (2, 7, 16)
    torch.testing.assert_close(out, expected)


def test_text_projection_save_and_load_round_trip(tmp_path):
    model = randomize(TextProjection(encoder_dim=24, context_dim=16))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and list(tmp_path.glob("*.safetensors"))
    loaded = TextProjection.from_pretrained(tmp_path)
    assert config_dict(loaded) == config_dict(model) == {"encoder_dim": 24, "context_dim": 16}
    assert_same_weights(loaded, model)
    x = randn(2, 7, 24, seed=1)
    with torch.no_grad():
        assert_same_output(loaded(x), model(x))


def test_motion_classifier_pools_tokens_by_their_scores():
    model = randomize(MotionClassifier(encoder_dim=24, labels=("left", "right", "still"), heads=2))
    hidden, mask = randn(2, 5, 24, seed=1), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        logits = model(hidden, mask)
        weights = model.score(hidden[0, :3]).softmax(dim=0)  # (3 tokens, 2 heads)
        expected = model.classify((weights.T @ hidden[0, :3]).flatten())
    assert logits.shape == (2, 3)
    torch.testing.assert_close(logits[0], expected)


def test_motion_classifier_ignores_masked_tokens():
    model = randomize(MotionClassifier(encoder_dim=24, labels=("left", "right")))
    hidden, mask = randn(1, 5, 24, seed=1), torch.tensor([[1, 1, 1, 0, 0]], dtype=torch.bool)
    changed = hidden.clone()
    changed[:, 3:] = randn(1, 2, 24, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(changed, mask), model(hidden, mask))
        assert not torch.allclose(model(changed, torch.ones_like(mask)), model(hidden, torch.ones_like(mask)))


def test_motion_classifier_save_and_load_round_trip(tmp_path):
    model = randomize(MotionClassifier(encoder_dim=24, labels=("left", "right", "still"), heads=2))
    model.save_pretrained(tmp_path)
    loaded = MotionClassifier.from_pretrained(tmp_path)
    assert config_dict(loaded) == config_dict(model)
    assert list(loaded.config.labels) == ["left", "right", "still"]
    assert_same_weights(loaded, model)


def test_motion_classifier_needs_two_labels():
    with pytest.raises(ValueError, match="at least 2 labels"):
        MotionClassifier(encoder_dim=24, labels=("left",))
