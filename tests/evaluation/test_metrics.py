"""Metrics against closed forms and scikit-image, without any pretrained network."""

import numpy as np
import pytest
import torch

from fusionframes import FusionFramesError
from fusionframes.evaluation.metrics import (feature_statistics, frechet_distance, inception_score, mse, psnr,
                                             ssim)


def test_frechet_distance_matches_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 8))
    sigma = a @ a.T + np.eye(8)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    # Σ₂ = c²Σ₁ commutes with Σ₁: tr(Σ₁ + c²Σ₁ − 2cΣ₁) = (1 − c)² tr Σ₁.
    expected = np.sum((mu1 - mu2) ** 2) + (1 - 3.0) ** 2 * np.trace(sigma)
    assert frechet_distance(mu1, sigma, mu2, 9.0 * sigma) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, sigma, mu1, sigma) == pytest.approx(0.0, abs=1e-8)
    # 1-D: (μ₁ − μ₂)² + (σ₁ − σ₂)².
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)


def test_frechet_distance_of_sampled_gaussians_approaches_the_truth():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 4))
    y = rng.standard_normal((20000, 4)) * 2.0 + 1.0
    d = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    assert d == pytest.approx(4 * 1.0 + 4 * (2.0 - 1.0) ** 2, rel=0.03)
    with pytest.raises(FusionFramesError, match="statistics do not match"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(FusionFramesError, match=r"features must be \(N ≥ 2, D\)"):
        feature_statistics(np.zeros(5))


def test_inception_score_limits():
    uniform = np.full((100, 10), 0.1)
    assert inception_score(uniform, splits=10) == pytest.approx((1.0, 0.0))
    confident = np.eye(7)[np.arange(700) % 7]  # 7 classes used equally, each prediction certain
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(7.0) and std == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(FusionFramesError, match="sum to 1"):
        inception_score(np.ones((20, 3)), splits=2)


def test_psnr_from_a_known_mse():
    a = torch.zeros(2, 3, 8, 8)
    b = a + 0.1
    assert torch.allclose(mse(a, b), torch.full((2,), 0.01, dtype=torch.float64))
    assert torch.allclose(psnr(a, b), torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.allclose(psnr(a * 255, b * 255, data_range=255), torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.isinf(psnr(a, a)).all()


def test_ssim_is_one_on_identical_images_and_agrees_with_scikit_image():
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is a test dependency")
    rng = np.random.default_rng(2)
    x = rng.random((3, 32, 40))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    assert ssim(x, x).item() == pytest.approx(1.0)
    ours = ssim(x, y).item()
    reference = metrics.structural_similarity(x, y, channel_axis=0, data_range=1.0, gaussian_weights=True,
                                              sigma=1.5, use_sample_covariance=False)
    assert ours == pytest.approx(reference, abs=1e-10)
    with pytest.raises(FusionFramesError, match="at least 11×11"):
        ssim(x[:, :8, :8], y[:, :8, :8])


def test_lpips_per_image_is_the_spatially_averaged_weighted_feature_distance():
    from fusionframes.evaluation.metrics import lpips
    from fusionframes.training.perceptual import TAPS, PerceptualLoss
    from tests.conftest import randomize

    network = randomize(PerceptualLoss(), seed=3, std=0.05)
    network.lin.apply(lambda m: m.weight.data.abs_() if hasattr(m, "weight") else None)  # LPIPS heads are ≥ 0
    a, b = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    d = lpips(a, b, network)
    assert d.shape == (3,) and (d > 0).all() and lpips(a, a, network).abs().max() == 0
    torch.testing.assert_close(d, lpips(b, a, network))
    expected = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():  # written out: normalise channels, squared difference, 1×1 head, spatial mean, sum
        x, y = ((a * 2 - 1) - network.shift) / network.scale, ((b * 2 - 1) - network.shift) / network.scale
        tap = 0
        for i, layer in enumerate(network.features):
            x, y = layer(x), layer(y)
            if i in TAPS:
                nx = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                ny = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                w = network.lin[tap].weight.view(1, -1, 1, 1)
                expected += ((nx - ny).pow(2) * w).sum(1).mean(dim=(1, 2)).double()
                tap += 1
    torch.testing.assert_close(d, expected, atol=1e-6, rtol=1e-4)
    with pytest.raises(FusionFramesError, match="LPIPS compares RGB images of one shape"):
        lpips(a, b[:, :, :16], network)
