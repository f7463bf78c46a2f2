"""Domain FVD: the network's size, the protocol's frame choice, and that the shipped network measures what it should
(labels of held-out renders, distances that grow with damage and vanish for identical sets)."""

import numpy as np
import pytest
import torch

from fusionframes.data.procedural import ClipSpec, render
from fusionframes.errors import FusionFramesError
from fusionframes.evaluation import degrade, load_prompt_set, render_times, spec_of
from fusionframes.evaluation.domain import (FEATURES, DomainFVD, DomainVideoNet, label_accuracy, load_domain_network,
                                            prepare)


def test_the_network_has_its_exact_size_and_feature_width():
    model = DomainVideoNet()
    assert sum(p.numel() for p in model.parameters()) == 566_588
    assert model(torch.zeros(2, 3, 16, 64, 64)).shape == (2, FEATURES)
    with pytest.raises(FusionFramesError, match=r"takes \(B, 3, 16, 64, 64\) clips"):
        model(torch.zeros(1, 3, 8, 64, 64))


def test_the_protocol_reads_the_same_instants_at_every_frame_rate():
    spec = ClipSpec("red", "circle", "right")
    low, high = render(spec, render_times("low"), 128), render(spec, render_times("high"), 128)
    assert len(low) == 16 and len(high) == 241
    torch.testing.assert_close(prepare(high), prepare(low))
    assert prepare(low).shape == (3, 16, 64, 64) and -1 <= prepare(low).min() and prepare(low).max() <= 1
    torch.testing.assert_close(prepare(low.astype(np.float32) / 255), prepare(low), atol=1e-6, rtol=0)


@pytest.mark.parametrize("video, message", [
    (np.zeros((1, 8, 8, 3), np.uint8), "frames ≥ 2"),
    (np.zeros((4, 8, 8), np.uint8), "frames ≥ 2"),
    (np.full((4, 8, 8, 3), 2.0, np.float32), "uint8 or float in"),
])
def test_bad_videos_are_clear_errors(video, message):
    with pytest.raises(FusionFramesError, match=message):
        prepare(video)


def test_missing_or_wrong_weights_are_clear_errors(tmp_path):
    with pytest.raises(FusionFramesError, match="domain network weights not found.*python -m"):
        load_domain_network(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(FusionFramesError, match="is not a domain network"):
        load_domain_network(tmp_path / "other.safetensors")


@pytest.fixture(scope="module")
def shipped():
    return load_domain_network()


@pytest.fixture(scope="module")
def renders():
    records = load_prompt_set()[::4]
    return [render(spec_of(r), render_times("low"), 128) for r in records]


def test_the_shipped_network_reads_held_out_renders(shipped):
    """Measured on 256 clips: colour, motion, background 100%, size 98%; shape 33% (chance 25%: not learned at
    64², a known limitation of this network, so the distance is nearly blind to shape)."""
    accuracy = label_accuracy(shipped, clips=96, seed=7)
    assert min(accuracy[k] for k in ("color", "motion", "background")) >= 0.95, accuracy
    assert accuracy["size"] >= 0.9, accuracy


def test_domain_fvd_vanishes_for_identical_sets_and_grows_with_damage(shipped, renders):
    fvd = DomainFVD(shipped)
    real = fvd.features(renders)
    assert abs(fvd.distance(real, real)) < 1e-3  # sqrtm round-off of a rank-deficient covariance
    distances = [fvd.distance(real, fvd.features(degrade(v, noise=n, blur=b, seed=i) for i, v in enumerate(renders)))
                 for n, b in ((2, 0.5), (20, 2.0), (60, 4.0))]
    assert distances[0] < distances[1] < distances[2], distances
    frozen = fvd.distance(real, fvd.features(np.repeat(v[:1], len(v), axis=0) for v in renders))  # no motion
    assert frozen > distances[0], (frozen, distances)


def test_fewer_than_two_videos_is_a_clear_error(shipped, renders):
    fvd = DomainFVD(shipped)
    with pytest.raises(FusionFramesError, match="at least 2 videos on each side, got 4 and 1"):
        fvd.distance(fvd.features(renders[:4]), fvd.features(renders[:1]))
