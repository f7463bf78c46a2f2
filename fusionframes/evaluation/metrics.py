"""The field's distribution and reconstruction metrics, computed exactly as their reference implementations do.

- Fréchet distance (FID/FVD): ``‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)`` over float64 feature statistics, the
  matrix square root by ``scipy.linalg.sqrtm`` with its imaginary round-off dropped, as StyleGAN-V's FVD and
  pytorch-fid do. ``feature_statistics`` normalises covariances by N − 1 (``np.cov``'s default, pytorch-fid);
  StyleGAN-V's ``FeatureStats`` divides by N, which the FVD of ``i3d.py`` reproduces.
- Inception score: ``exp(E_x KL(p(y|x) ‖ p(y)))`` per split, mean and standard deviation over splits (TGANv2's
  protocol uses 10 splits of C3D softmax outputs).
- LPIPS (VGG16, v0.1) as the lpips package computes it, from local weights (see ``training/perceptual.py``).
- PSNR, MSE on images in [0, ``data_range``]; SSIM with an 11×11 Gaussian window (σ = 1.5), K₁ = 0.01, K₂ = 0.03,
  population statistics, averaged over channels and the valid (unpadded) window positions — scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` which follows
  Wang et al. (2004).
"""

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FusionFramesError


def feature_statistics(features) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (N − 1 normalisation) of (N, D) features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise FusionFramesError(f"features must be (N ≥ 2, D), got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise FusionFramesError(f"statistics do not match: means {mu1.shape} / {mu2.shape}, covariances "
                                f"{sigma1.shape} / {sigma2.shape}")
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product: the reference implementations add ε·I and retry
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def inception_score(probabilities, splits: int = 10) -> Tuple[float, float]:
    """(mean, std) over ``splits`` of exp(E KL(p(y|x) ‖ p(y))) for (N, classes) class probabilities."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < splits or splits < 1:
        raise FusionFramesError(f"need (N ≥ splits, classes) probabilities and splits ≥ 1, got {p.shape}, {splits}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise FusionFramesError("each row of probabilities must be non-negative and sum to 1 (a softmax output)")
    from scipy.special import xlogy  # 0·log 0 = 0

    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, marginal)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def _images(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).double()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise FusionFramesError(f"{name} must be (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    return x


def mse(a, b) -> torch.Tensor:
    """Per-image mean squared error of (N, C, H, W) (or (C, H, W)) images."""
    a, b = _images(a, "a"), _images(b, "b")
    if a.shape != b.shape:
        raise FusionFramesError(f"images differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    return (a - b).pow(2).flatten(1).mean(dim=1)


def psnr(a, b, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, 10·log10(range² / MSE) (infinite for identical images)."""
    return 10 * torch.log10(data_range ** 2 / mse(a, b))


def lpips(a, b, network) -> torch.Tensor:
    """Per-image LPIPS (VGG16, v0.1 linear heads) of (N, 3, H, W) images in [0, 1]; ``network`` is
    ``PerceptualLoss.from_files(vgg16, lpips)`` (``fusionframes.training.perceptual``), weights from local files."""
    a, b = _images(a, "a"), _images(b, "b")
    if a.shape != b.shape or a.shape[1] != 3:
        raise FusionFramesError(f"LPIPS compares RGB images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    param = next(network.parameters())
    with torch.no_grad():
        return network.distances(a.to(param) * 2 - 1, b.to(param) * 2 - 1).double().cpu()


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(a, b, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM of (N, C, H, W) images (see the module docstring for the exact choices)."""
    a, b = _images(a, "a"), _images(b, "b")
    if a.shape != b.shape:
        raise FusionFramesError(f"images differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise FusionFramesError(f"SSIM needs images of at least {window}×{window} pixels, got {tuple(a.shape[-2:])}")
    n, c = a.shape[:2]
    g = _gaussian_window(window, sigma)
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window)

    def blur(x):  # valid positions only: scikit-image crops the (window − 1) / 2 border after filtering
        return F.conv2d(x, kernel, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(dim=1)
