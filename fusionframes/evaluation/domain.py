"""Domain FVD: a Fréchet video distance for the procedural domain, with a small video network trained on it.

I3D features measure Kinetics-400 actions; a moving shape on a flat background hardly moves them. The domain
network is a 3D CNN trained here, with labels, to tell colour, shape, motion, background and size apart on
procedural renders (degraded with blur and noise so that imperfect, generated-looking video lands near its
render), and its pooled features feed the usual Fréchet distance. The weights ship with the package
(``domain_video_net.safetensors``, made by ``python -m fusionframes.evaluation.domain``).

Protocol (fixed, so that numbers compare): 16 frames evenly spread over the whole clip (index
``round(linspace(0, F − 1, 16))``, so 16 keyframes at 2 FPS and 241 frames at 30 FPS show the same instants),
each resized to 64×64 (bilinear, antialiased), scaled to [−1, 1]; the 64-d features of every clip; mean and
covariance (N − 1); ``frechet_distance``. Real clips are renders of the same clip specs as the prompts.
"""

import time
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.procedural import BACKGROUNDS, COLORS, MOTIONS, SHAPES, SIZES, ProceduralVideos, render
from ..errors import FusionFramesError
from ..video_io import write_atomic
from .alignment import degrade
from .metrics import feature_statistics, frechet_distance

WEIGHTS = Path(__file__).with_name("domain_video_net.safetensors")
FRAMES, SIZE, FEATURES = 16, 64, 64
LABELS = {"color": tuple(COLORS), "shape": SHAPES, "motion": MOTIONS, "background": tuple(BACKGROUNDS),
          "size": tuple(SIZES)}


def _unit(c_in: int, c_out: int, stride) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU())


class DomainVideoNet(nn.Module):
    """(B, 3, 16, 64, 64) in [−1, 1] → (B, 64) features; ``heads`` classify each label from them."""

    def __init__(self):
        super().__init__()
        # Averaged over time and space at the end: a shape is the same shape anywhere in the frame.
        self.body = nn.Sequential(_unit(3, 32, (1, 2, 2)), _unit(32, 64, 2), _unit(64, 96, 2),
                                  _unit(96, 128, (1, 2, 2)), nn.Conv3d(128, FEATURES, 1), nn.AdaptiveAvgPool3d(1),
                                  nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(FEATURES, len(values)) for name, values in LABELS.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (3, FRAMES, SIZE, SIZE):
            raise FusionFramesError(f"the domain network takes (B, 3, {FRAMES}, {SIZE}, {SIZE}) clips, got "
                                    f"{tuple(x.shape)}")
        return self.body(x)

    def classify(self, x: torch.Tensor) -> dict:
        features = self(x)
        return {name: head(features) for name, head in self.heads.items()}


def prepare(video) -> torch.Tensor:
    """One video, uint8 (F ≥ 2, H, W, 3) or float in [0, 1], → (3, 16, 64, 64) in [−1, 1] (the protocol above)."""
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3 or len(video) < 2:
        raise FusionFramesError(f"videos must be (frames ≥ 2, height, width, 3), got shape {video.shape}")
    if video.dtype == np.uint8:
        clip = torch.from_numpy(np.ascontiguousarray(video)).float() / 255
    elif np.issubdtype(video.dtype, np.floating) and 0 <= video.min() and video.max() <= 1:
        clip = torch.from_numpy(np.ascontiguousarray(video)).float()
    else:
        raise FusionFramesError(f"videos must be uint8 or float in [0, 1], got {video.dtype} in "
                                f"[{video.min()}, {video.max()}]")
    clip = clip[np.rint(np.linspace(0, len(clip) - 1, FRAMES)).astype(int)]
    clip = F.interpolate(rearrange(clip, "t h w c -> t c h w"), (SIZE, SIZE), mode="bilinear", antialias=True,
                         align_corners=False)
    return rearrange(clip, "t c h w -> c t h w") * 2 - 1


def load_domain_network(path=None) -> DomainVideoNet:
    """The shipped network (``path=None``) or one saved by :func:`train_domain_network`."""
    path = Path(path) if path is not None else WEIGHTS
    if not path.is_file():
        raise FusionFramesError(f"domain network weights not found: {path} (make them with `python -m "
                                f"fusionframes.evaluation.domain --out {path}`)")
    model = DomainVideoNet()
    try:
        model.load_state_dict({k: v.float() for k, v in load_file(path).items()})
    except RuntimeError as error:
        raise FusionFramesError(f"{path} is not a domain network: {str(error).splitlines()[0]}") from None
    return model.eval().requires_grad_(False)


class DomainFVD:
    """``DomainFVD()(real_videos, generated_videos)``: videos are (F, H, W, 3) arrays, any iterable of them."""

    def __init__(self, network=None, device="cpu", batch_size: int = 16):
        self.network = (network if isinstance(network, nn.Module) else load_domain_network(network)).to(device)
        self.device, self.batch_size = torch.device(device), batch_size

    @torch.no_grad()
    def features(self, videos: Iterable) -> np.ndarray:
        out, batch = [], []
        for video in videos:
            batch.append(prepare(video))
            if len(batch) == self.batch_size:
                out.append(self.network(torch.stack(batch).to(self.device)).double().cpu().numpy())
                batch = []
        if batch:
            out.append(self.network(torch.stack(batch).to(self.device)).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURES))

    @staticmethod
    def distance(real_features: np.ndarray, generated_features: np.ndarray) -> float:
        if min(len(real_features), len(generated_features)) < 2:
            raise FusionFramesError(f"domain FVD needs at least 2 videos on each side, got {len(real_features)} "
                                    f"and {len(generated_features)}")
        return frechet_distance(*feature_statistics(real_features), *feature_statistics(generated_features))

    def __call__(self, real: Iterable, generated: Iterable) -> float:
        return self.distance(self.features(real), self.features(generated))


def _label_batch(data: ProceduralVideos, indices, rng: np.random.Generator, augment: bool):
    clips, targets = [], {name: [] for name in LABELS}
    for i in indices:
        item = data.describe(int(i))
        frames = render(item["spec"], item["times"], SIZE)  # an exact render at the protocol's size
        if augment:  # generated video is blurred and noisy; so the features learn to look past both
            frames = degrade(frames, noise=float(rng.uniform(0, 6)), blur=float(rng.uniform(0, 1.0)), seed=rng)
        clips.append(prepare(frames))
        labels = item["spec"].labels()
        for name, values in LABELS.items():
            targets[name].append(values.index(labels[name]))
    return torch.stack(clips), {name: torch.tensor(v) for name, v in targets.items()}


def train_domain_network(out, steps: int = 1500, batch_size: int = 16, lr: float = 2e-3, seed: int = 0,
                         log_every: int = 100) -> dict:
    """Train the domain network on 16-keyframe renders (every colour × shape × motion, held-out triples
    included: the network is a ruler, not a generator) and save it to ``out``; returns held-out accuracies."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train = ProceduralVideos(length=10 ** 9, num_frames=FRAMES, fps=2.0, seed=seed)
    model = DomainVideoNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    start = time.perf_counter()
    for step in range(steps):
        x, y = _label_batch(train, range(step * batch_size, (step + 1) * batch_size), rng, augment=True)
        logits = model.classify(x)
        loss = sum(F.cross_entropy(logits[name], y[name]) for name in LABELS)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {loss.item():.4f}  {time.perf_counter() - start:.0f} s", flush=True)
    model.eval()
    accuracy = label_accuracy(model, clips=256, seed=seed + 1)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    write_atomic(Path(out), lambda tmp: save_file(state, tmp, metadata={"steps": str(steps), "seed": str(seed)}))
    return accuracy


@torch.no_grad()
def label_accuracy(model: DomainVideoNet, clips: int = 256, seed: int = 1, augment: bool = True) -> dict:
    """Per-label accuracy on renders of held-out combinations (degraded like the training clips)."""
    data = ProceduralVideos(length=clips, num_frames=FRAMES, fps=2.0, held_out=True, seed=seed)
    rng = np.random.default_rng(seed)
    correct = {name: 0 for name in LABELS}
    for start in range(0, clips, 32):
        x, y = _label_batch(data, range(start, min(start + 32, clips)), rng, augment)
        for name, logits in model.classify(x).items():
            correct[name] += int((logits.argmax(-1) == y[name]).sum())
    return {name: count / clips for name, count in correct.items()}


def main(argv: Optional[list] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fusionframes.evaluation.domain",
                                     description="Train the domain FVD network (the shipped one: the defaults).")
    parser.add_argument("--out", default=str(WEIGHTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    accuracy = train_domain_network(args.out, args.steps, args.batch_size, seed=args.seed)
    print("held-out accuracy: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in accuracy.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
