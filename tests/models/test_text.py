"""The text projection between the frozen encoder and the U-Nets."""

import torch
import torch.nn.functional as F

from fusionframes.models.text import TextProjection
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
