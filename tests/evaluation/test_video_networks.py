"""FVD (I3D) and the C3D inception score end to end on randomly initialised networks of the real architectures
(no pretrained weights), with the protocols' preprocessing checked on inputs whose answer is known."""

import re

import numpy as np
import pytest
import torch
from torch import nn

from fusionframes import FusionFramesError
from fusionframes.evaluation.c3d import C3D, TGAN2_RELEASE, InceptionScoreC3D, load_c3d, load_mean
from fusionframes.evaluation.i3d import FVD, I3D, I3D_URL, MaxPoolSame, load_i3d
from fusionframes.evaluation.metrics import inception_score


@pytest.fixture(scope="module")
def i3d():
    # PyTorch's default initialisation shrinks activations to near-constants through I3D's depth; He
    # initialisation keeps random features informative enough for distances to mean something.
    torch.manual_seed(0)
    model = I3D()
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


def _videos(n: int, seed: int, frames: int = 16, size=(24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, frames, *size, 3), dtype=np.uint8)


def _small(fvd: FVD) -> FVD:
    fvd.size = 64  # the network at 64×64 keeps these tests fast; the 224×224 resize is checked with a probe
    return fvd


def test_parameter_counts_are_the_published_ones():
    # pytorch-i3d's InceptionI3d(num_classes=400) has 12,697,264 parameters, the UCF-101 C3D 78,409,573.
    assert sum(p.numel() for p in I3D().parameters()) == 12_697_264
    assert sum(p.numel() for p in C3D().parameters()) == 78_409_573


def test_i3d_shapes_and_tensorflow_same_padding(i3d):
    with torch.no_grad():
        full = torch.randn(1, 3, 16, 224, 224)
        assert i3d.Conv3d_1a_7x7(full).shape == (1, 64, 8, 112, 112)
        assert i3d(full).shape == (1, 400)
        small = torch.randn(2, 3, 16, 64, 64)
        assert i3d.features(small).shape == (2, 1024) and i3d(small).shape == (2, 400)
    x = -torch.ones(1, 1, 3, 5, 5)  # SAME max-pooling never picks a padded position
    assert torch.equal(MaxPoolSame((3, 3, 3), (1, 1, 1))(x), x)
    assert MaxPoolSame((1, 3, 3), (1, 2, 2))(x).shape == (1, 1, 3, 3, 3)


def test_fvd_is_zero_against_itself_and_grows_with_a_shift(i3d):
    real = _videos(3, 0)
    shifted = np.clip(real.astype(int) + 60, 0, 255).astype(np.uint8)
    fvd = _small(FVD(i3d, batch_size=2, samples=3))
    far = fvd(real, shifted)
    assert far > 1
    assert abs(fvd(real, list(real))) < 1e-5 * far
    assert fvd(real.astype(np.float32) / 255, shifted) == pytest.approx(far, rel=1e-4)


def test_fvd_features_are_deterministic_batched_and_stop_at_the_sample_count(i3d):
    videos = _videos(3, 1)
    fvd = _small(FVD(i3d, batch_size=2, samples=3))
    features = fvd.features(videos)
    assert features.shape == (3, 400)
    assert np.array_equal(features, fvd.features(iter(videos)))
    np.testing.assert_allclose(features, _small(FVD(i3d, batch_size=3, samples=3)).features(videos), atol=1e-4)
    drawn = []

    def generated():
        for video in _videos(5, 2):
            drawn.append(video)
            yield video

    fvd.features(generated())
    assert len(drawn) == 3


class _Probe(nn.Module):
    """StyleGAN-V's detector signature, reporting the input it gets: channel means, flags, T, H, W."""

    def forward(self, x, rescale: bool = False, resize: bool = False, return_features: bool = False):
        seen = torch.tensor([float(rescale), float(resize), float(return_features), float(x.shape[2]),
                             float(x.shape[3]), float(x.shape[4])])
        return torch.cat([x.mean(dim=(2, 3, 4)), seen.expand(x.shape[0], 6)], dim=1)


def test_fvd_feeds_a_torchscript_detector_as_stylegan_v_does(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_Probe()).save(str(path))
    fvd = FVD(path, samples=2)
    assert isinstance(fvd.detector, torch.jit.ScriptModule)
    videos = np.zeros((2, 20, 30, 40, 3), np.uint8)
    videos[..., 0] = 255
    videos[1, ..., 1] = 51
    features = fvd.features(videos)
    np.testing.assert_allclose(features[:, :3], [[1, -1, -1], [1, -0.6, -1]], atol=1e-6)  # p / 255 · 2 − 1
    np.testing.assert_array_equal(features[:, 3:], [[0, 0, 1, 16, 224, 224]] * 2)


def test_i3d_weight_files_and_their_errors(tmp_path, i3d):
    from safetensors.torch import save_file

    save_file(i3d.state_dict(), tmp_path / "i3d.safetensors")
    torch.save(i3d.state_dict(), tmp_path / "rgb_imagenet.pt")
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        for name in ("i3d.safetensors", "rgb_imagenet.pt"):
            assert torch.equal(load_i3d(tmp_path / name)(x), i3d(x))
    with pytest.raises(FusionFramesError, match=re.escape(f"i3d_torchscript.pt, distributed at {I3D_URL}")):
        load_i3d(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a network")
    with pytest.raises(FusionFramesError, match="neither TorchScript nor a readable state dict"):
        load_i3d(tmp_path / "junk.pt")
    torch.save({"fc.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(FusionFramesError, match=r"does not hold I3D weights: missing \['Conv3d_1a_7x7"):
        load_i3d(tmp_path / "other.pt")


def test_fvd_input_errors(i3d):
    with pytest.raises(FusionFramesError, match="uses 3 real videos and got 2; pass samples=2"):
        FVD(i3d, samples=3)(_videos(2, 0), _videos(3, 0))
    with pytest.raises(FusionFramesError, match=r"uint8 or float in \[0, 1\]"):
        FVD(i3d, samples=1).features(_videos(1, 0).astype(np.float32))
    with pytest.raises(FusionFramesError, match="frames ≥ 16"):
        FVD(i3d, samples=1).features(_videos(1, 0, frames=8))


def test_c3d_inception_score_end_to_end():
    torch.manual_seed(0)
    score = InceptionScoreC3D(C3D(), np.zeros((3, 16, 112, 112)), batch_size=2, samples=3, splits=1)
    videos = _videos(3, 3, size=(40, 40))
    probabilities = score.probabilities(videos)
    assert probabilities.shape == (3, 101) and np.allclose(probabilities.sum(axis=1), 1)
    mean, std = score(videos)
    assert (mean, std) == inception_score(probabilities, splits=1)  # a second pass gives the same outputs
    assert 1 - 1e-12 <= mean <= 101 and std == 0


def test_c3d_preprocessing_follows_tgan2():
    mean = np.random.default_rng(0).random((3, 16, 112, 112)).astype(np.float32)
    score = InceptionScoreC3D(nn.Identity(), mean, samples=1)
    clip = torch.zeros(16, 56, 56, 3)
    clip[..., 0], clip[..., 2] = 1.0, 0.2  # R = 255, B = 51
    expected = torch.tensor([51.0, 0.0, 255.0]).view(3, 1, 1, 1) - torch.from_numpy(mean)  # BGR pixels − mean
    torch.testing.assert_close(score._prepare(clip), expected)
    ramp = torch.linspace(0, 1, 7).view(1, 1, 7, 1).expand(16, 7, 7, 3)
    x = score._prepare(ramp) + torch.from_numpy(mean)
    assert x.shape == (3, 16, 112, 112)
    # Aligned corners: output column j samples input column 6j / 111 (half-pixel centres would give 0 at j = 1).
    torch.testing.assert_close(x[..., 1], torch.full((3, 16, 112), 255 / 111), rtol=0, atol=1e-4)
    torch.testing.assert_close(x[..., -1], torch.full((3, 16, 112), 255.0), rtol=0, atol=1e-4)


def test_c3d_files_and_their_errors(tmp_path):
    with pytest.raises(FusionFramesError, match=re.escape(f"distributed at {TGAN2_RELEASE}/conv3d_deepnetA_ucf.npz")):
        load_c3d(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an archive")
    with pytest.raises(FusionFramesError, match="is not a readable .npz"):
        load_c3d(tmp_path / "junk.npz")
    np.savez(tmp_path / "partial.npz", **{"conv1a/W": np.zeros((64, 3, 3, 3, 3), np.float32),
                                          "conv1a/b": np.zeros(64, np.float32)})
    with pytest.raises(FusionFramesError, match=r"does not hold the C3D weights: missing \['conv2a.weight'"):
        load_c3d(tmp_path / "partial.npz")
    np.savez(tmp_path / "wrong.npz", **{"conv1a/W": np.zeros((64, 3, 3, 3), np.float32)})
    with pytest.raises(FusionFramesError, match="size mismatch for conv1a.weight"):
        load_c3d(tmp_path / "wrong.npz")

    with pytest.raises(FusionFramesError, match=re.escape(f"distributed at {TGAN2_RELEASE}/mean2.npz")):
        load_mean(tmp_path / "mean2.npz")
    full = np.random.default_rng(0).random((3, 16, 128, 171)).astype(np.float32)
    np.savez(tmp_path / "mean2.npz", mean=full)
    assert np.array_equal(load_mean(tmp_path / "mean2.npz"), full[:, :, 8:120, 8:120])
    np.savez(tmp_path / "flat.npz", mean=full[0])
    with pytest.raises(FusionFramesError, match="has no .* array 'mean'"):
        load_mean(tmp_path / "flat.npz")
    with pytest.raises(FusionFramesError, match=r"must be \(3, 16, 112, 112\)"):
        InceptionScoreC3D(nn.Identity(), full)
