"""Inception score of videos with the UCF-101 C3D classifier, computed as TGANv2 (Saito et al. 2020) does.

Protocol (TGANv2 ``tgan2/models/c3d/c3d_ucf101.py``, ``evaluations/inception_score.py`` and
``scripts/compute_inception_score.py``):

- one clip per video: its first 16 frames;
- pixels: TGANv2 scales its data to ``(p − 128) / 128`` and the classifier's first step maps a generated clip back
  by ``128x + 128``, so C3D sees pixel values ``p`` in [0, 255]: uint8 as it is, float ``v`` in [0, 1] as ``255v``;
  channels are reordered RGB → BGR (the Caffe weights' order);
- size: every frame is resized straight to 112×112, bilinear with aligned corners (Chainer 6's
  ``F.resize_images``), aspect ratio not kept. There is no 128×171 resize and centre crop as in C3D's own training:
  TGANv2 feeds square 192×192 clips (centre crops of 192×256 UCF-101 frames), so crop frames to a square first to
  match it;
- mean: ``mean2.npz``'s 3×16 mean clip, cropped at rows and columns 8:120 as TGANv2 does, is subtracted;
- score: softmax of fc8 (101 classes); TGANv2 reports the mean ± std over 10 independent draws of 2048 videos of
  the score of each whole draw (``n_loops=10``, ``n_samples=2048``, ``splits=1``), which is ``inception_score`` of
  20480 videos in draw order with 10 splits — the defaults here. (TGANv2 adds 1e-20 to the probabilities before
  taking logs; ``inception_score`` uses 0·log 0 = 0 instead, a difference far below reported precision.)

Both files come from explicit local paths, never a download: TGANv2 distributes the Chainer conversion of the Caffe
model ``c3d_ucf101_finetune_whole_iter_20000`` (Tran et al. 2015) as ``conv3d_deepnetA_ucf.npz`` and the mean clip
as ``mean2.npz``.
"""

from pathlib import Path
from typing import Iterable, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import FusionFramesError
from .i3d import batches, load_state
from .metrics import inception_score

TGAN2_RELEASE = "https://github.com/mitmul/tgan2/releases/download/untagged-d2d4900c6c1bb09d9f5a"
CONVS = (("conv1a", 3, 64), ("conv2a", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256), ("conv4a", 256, 512),
         ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512))
POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2), "conv5b": (2, 2, 2)}


class C3D(nn.Module):
    """C3D (Tran et al. 2015) on (B, 3, 16, 112, 112) mean-subtracted BGR clips in pixel units → (B, classes)
    logits."""

    def __init__(self, num_classes: int = 101):
        super().__init__()
        for name, cin, cout in CONVS:
            self.add_module(name, nn.Conv3d(cin, cout, 3, padding=1))
        self.fc6, self.fc7 = nn.Linear(512 * 4 * 4, 4096), nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, _, _ in CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in POOL_AFTER:
                # Ceil mode is Caffe's and Chainer's (cover_all) pooling: it only matters at pool5 (7 → 4), where
                # c3d-pytorch's padding (0, 1, 1) would shift the windows the weights were trained with.
                x = F.max_pool3d(x, POOL_AFTER[name], ceil_mode=True)
        x = self.dropout(x.flatten(1))
        x = self.dropout(F.relu(self.fc6(x)))
        return self.fc8(self.dropout(F.relu(self.fc7(x))))


def _missing(path: Path, file: str, reason: str) -> FusionFramesError:
    return FusionFramesError(
        f"the C3D inception score needs TGANv2's {file}; {path} {reason}. It is distributed at "
        f"{TGAN2_RELEASE}/{file}: download it elsewhere and pass its path")


def _npz(path, file: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise _missing(path, file, "does not exist")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except Exception as error:
        raise _missing(path, file, f"is not a readable .npz ({error})") from None


def load_c3d(path) -> C3D:
    """C3D from TGANv2's Chainer ``conv3d_deepnetA_ucf.npz`` (``conv1a/W``, ``conv1a/b``, …; same tensor layouts)."""
    names = {"W": "weight", "b": "bias"}
    state = {}
    for key, value in _npz(path, "conv3d_deepnetA_ucf.npz").items():
        layer, _, param = key.partition("/")
        state[f"{layer}.{names.get(param, param)}"] = torch.from_numpy(value)
    return load_state(C3D(), state, lambda reason: _missing(Path(path), "conv3d_deepnetA_ucf.npz",
                                                             f"does not hold the C3D weights: {reason}"))


def load_mean(path) -> np.ndarray:
    """``mean2.npz``'s mean clip, cropped to 3×16×112×112 as TGANv2 crops it."""
    mean = _npz(path, "mean2.npz").get("mean")
    if mean is None or mean.ndim != 4 or mean.shape[:2] != (3, 16) or min(mean.shape[2:]) < 120:
        raise _missing(Path(path), "mean2.npz", "has no (3, 16, ≥ 120, ≥ 120) array 'mean'")
    return mean[:, :, 8:120, 8:120]


class InceptionScoreC3D:
    """``InceptionScoreC3D(weights, mean)(videos)`` → (mean, std); videos are (F, H, W, 3) arrays, any iterable.
    ``mean`` is ``mean2.npz``'s path or the already cropped (3, 16, 112, 112) mean clip."""

    frames, size = 16, 112

    def __init__(self, classifier, mean, device="cpu", batch_size: int = 16, samples: int = 10 * 2048,
                 splits: int = 10):
        if not isinstance(classifier, nn.Module):
            classifier = load_c3d(classifier)
        self.classifier = classifier.eval().requires_grad_(False).to(device)
        mean = load_mean(mean) if isinstance(mean, (str, Path)) else np.asarray(mean)
        if mean.shape != (3, self.frames, self.size, self.size):
            raise FusionFramesError(f"the mean clip must be (3, 16, 112, 112), got {mean.shape}")
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=device)
        self.device, self.batch_size, self.samples, self.splits = torch.device(device), batch_size, samples, splits

    def _prepare(self, clip: torch.Tensor) -> torch.Tensor:
        """(16, H, W, 3) in [0, 1] → (3, 16, 112, 112) BGR pixel values minus the mean clip."""
        x = rearrange(clip.to(self.device), "t h w c -> t c h w") * 255
        x = F.interpolate(x, (self.size, self.size), mode="bilinear", align_corners=True)
        return rearrange(x, "t c h w -> c t h w").flip(0) - self.mean

    @torch.no_grad()
    def probabilities(self, videos: Iterable, samples: Optional[int] = None) -> np.ndarray:
        """(samples, classes) softmax outputs, classified ``batch_size`` clips at a time (``samples`` overrides the
        protocol's count)."""
        out = []
        for batch in batches(videos, self.frames, samples or self.samples, self.batch_size, "videos"):
            logits = self.classifier(torch.stack([self._prepare(clip) for clip in batch]))
            out.append(logits.double().softmax(dim=-1).cpu().numpy())
        return np.concatenate(out)

    def __call__(self, videos: Iterable) -> Tuple[float, float]:
        return inception_score(self.probabilities(videos), splits=self.splits)
