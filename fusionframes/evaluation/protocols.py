"""The paper's benchmark protocols as resumable drivers: UCF-101 (FVD + IS) and MSR-VTT (CLIPSIM).

A driver generates its N samples in batches and stores each batch's measurements (I3D logits, C3D probabilities,
CLIPSIM scores) in an output folder as soon as the batch is done, so an interrupted run — a crash at sample
1,500 of 2,048 — resumes at the first missing batch. The folder records what it measures (model, prompts,
settings, seed); resuming it with anything else is refused rather than mixing two runs.

- UCF-101 (zero-shot, as the paper and its peers evaluate it): the prompts are the 101 class names, written as
  words ("ApplyEyeMakeup" → "apply eye makeup"), sample i using class i mod 101 and seed ``seed + i``; 2048
  generated videos (the paper's IS count) and 2048 real clips of 16 frames, each from a video drawn at random (with
  replacement, seeded) at a random start, as StyleGAN-V samples real clips; FVD from ``i3d.py``, IS from ``c3d.py``
  (10 splits over the 2048 generated videos).
- MSR-VTT: the captions of the test split (``test_videodatainfo.json``: every caption of every test video, in file
  order; or a text file with one caption per line), one video per caption with seed ``seed + i``; CLIPSIM from
  ``clipsim.py``, its mean over the videos reported.
"""

import hashlib
import json
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import FusionFramesError
from ..video_io import claim_folder, write_atomic
from .i3d import stylegan_statistics
from .metrics import frechet_distance, inception_score

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")


class MeasurementStore:
    """One ``.npz`` per finished batch under ``folder``, plus ``identity.json`` (what the run measures)."""

    def __init__(self, folder, identity: dict):
        if Path(folder).exists() and not Path(folder).is_dir():
            raise FusionFramesError(f"{folder} is a file; name a folder for the protocol's measurements")
        self.folder = claim_folder(folder, identity, f"{folder} holds measurements of another run (model, prompts, "
                                                     f"settings, seed or batch size differ); choose a new --out "
                                                     f"folder or delete it")

    def _path(self, part: str, start: int, stop: int) -> Path:
        return self.folder / f"{part}-{start:06d}-{stop:06d}.npz"

    def has(self, part: str, start: int, stop: int) -> bool:
        return self._path(part, start, stop).is_file()

    def save(self, part: str, start: int, stop: int, arrays: Dict[str, np.ndarray]) -> None:
        write_atomic(self._path(part, start, stop), lambda tmp: np.savez(tmp, **arrays))

    def load(self, part: str, spans: Sequence[tuple]) -> Dict[str, np.ndarray]:
        loaded = []
        for start, stop in spans:
            with np.load(self._path(part, start, stop)) as arrays:  # closed at once: thousands of batches
                loaded.append({key: arrays[key] for key in arrays.files})
        return {key: np.concatenate([arrays[key] for arrays in loaded]) for key in loaded[0]}


def measure_in_batches(store: MeasurementStore, part: str, count: int, batch_size: int,
                       measure: Callable[[int, int], Dict[str, np.ndarray]],
                       progress: Optional[Callable[[int], None]] = None) -> Dict[str, np.ndarray]:
    """``measure(start, stop)`` for every batch not yet stored; then every batch's arrays concatenated."""
    spans = [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]
    for start, stop in spans:
        if not store.has(part, start, stop):
            store.save(part, start, stop, measure(start, stop))
        if progress is not None:
            progress(stop - start)
    return store.load(part, spans)


def class_prompt(name: str) -> str:
    """A UCF-101 class folder name as words: "ApplyEyeMakeup" → "apply eye makeup", "YoYo" → "yo yo"."""
    return " ".join(re.findall(r"[A-Z][a-z]*|[a-z]+|\d+", name)).lower()


def ucf101_videos(root) -> Dict[str, List[Path]]:
    """{class folder name: its videos}, from the UCF-101 layout ``root/ClassName/v_ClassName_gXX_cYY.avi``."""
    root = Path(root)
    if not root.is_dir():
        raise FusionFramesError(f"UCF-101 folder {root} does not exist; pass the folder holding the 101 class "
                                f"folders (UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi, …)")
    classes = {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
               for d in sorted(root.iterdir()) if d.is_dir()}
    classes = {name: videos for name, videos in classes.items() if videos}
    if not classes:
        raise FusionFramesError(f"{root} holds no class folders with videos ({', '.join(VIDEO_SUFFIXES)})")
    return classes


def read_clip(path, draw: int, frames: int) -> np.ndarray:
    """``frames`` consecutive frames, uint8 (F, H, W, 3), from start ``draw`` mod the number of valid starts (a
    uniform draw over a large range is then a uniform start whatever the video's length)."""
    import av

    try:
        with av.open(str(path)) as container:
            video = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, OSError) as error:
        raise FusionFramesError(f"cannot read the video {path}: {error}") from None
    if len(video) < frames:
        raise FusionFramesError(f"{path} has {len(video)} frames; the protocol's clips need {frames}")
    start = draw % (len(video) - frames + 1)
    return np.stack(video[start:start + frames])


def real_clip_plan(videos: Dict[str, List[Path]], samples: int, seed: int) -> List[tuple]:
    """(path, start draw) for each real clip: a video drawn uniformly with replacement, a random start."""
    every = [path for paths in videos.values() for path in paths]
    rng = np.random.default_rng(seed)
    return [(every[i], int(draw)) for i, draw in zip(rng.integers(0, len(every), samples),
                                                     rng.integers(0, 1 << 30, samples))]


def ucf101(generate: Callable[[List[str], List[int]], List[np.ndarray]], data, fvd, inception, out, identity: dict,
           samples: int = 2048, batch_size: int = 4, seed: int = 0, frames: int = 16,
           progress: Optional[Callable[[int], None]] = None) -> dict:
    """FVD (real vs generated I3D logits) and IS (C3D) of ``samples`` class-name videos; resumable in ``out``.

    ``generate(prompts, seeds)`` returns uint8 (F ≥ 16, H, W, 3) videos; ``fvd`` an ``FVD``, ``inception`` an
    ``InceptionScoreC3D``; ``identity`` describes the generator (model, settings) for the resume check."""
    videos = ucf101_videos(data)
    names = sorted(videos)
    prompts = [class_prompt(names[i % len(names)]) for i in range(samples)]
    digest = hashlib.sha256(json.dumps([[n, [p.name for p in videos[n]]] for n in names]).encode()).hexdigest()
    store = MeasurementStore(out, {"protocol": "ucf101", "samples": samples, "seed": seed, "frames": frames,
                                   "batch_size": batch_size, "data": digest[:16], **identity})
    plan = real_clip_plan(videos, samples, seed)

    def real(start, stop):
        clips = [read_clip(path, draw, frames) for path, draw in plan[start:stop]]
        return {"i3d": fvd.features(clips, "real", samples=len(clips))}

    def generated(start, stop):
        clips = [np.asarray(v)[:frames] for v in generate(prompts[start:stop], list(range(seed + start,
                                                                                          seed + stop)))]
        return {"i3d": fvd.features(clips, "generated", samples=len(clips)),
                "c3d": inception.probabilities(clips, samples=len(clips))}

    # Generated first: a model whose videos are too short for the protocol fails at its first batch.
    fake = measure_in_batches(store, "generated", samples, batch_size, generated, progress)
    real_features = measure_in_batches(store, "real", samples, batch_size, real, progress)["i3d"]
    score, spread = inception_score(fake["c3d"], splits=min(10, samples))
    return {"fvd": frechet_distance(*stylegan_statistics(real_features), *stylegan_statistics(fake["i3d"])),
            "is": score, "is_std": spread, "samples": samples, "classes": len(names), "seed": seed}


def msrvtt_captions(path) -> List[str]:
    """Test-split captions from MSR-VTT's ``test_videodatainfo.json`` (file order), or one per line of a text file."""
    path = Path(path)
    if not path.is_file():
        raise FusionFramesError(f"MSR-VTT captions file {path} does not exist; pass test_videodatainfo.json "
                                f"(MSR-VTT's test annotations) or a text file with one caption per line")
    if path.suffix.lower() == ".json":
        try:
            info = json.loads(path.read_text())
            test = {v["video_id"] for v in info["videos"] if v.get("split", "test") == "test"}
            captions = [s["caption"].strip() for s in info["sentences"] if s["video_id"] in test]
        except (ValueError, KeyError, TypeError) as error:
            raise FusionFramesError(f"{path} is not MSR-VTT's annotation format (videos[].video_id/split, "
                                    f"sentences[].video_id/caption): {error}") from None
    else:
        captions = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not captions:
        raise FusionFramesError(f"{path} holds no test captions")
    return captions


def msrvtt(generate: Callable[[List[str], List[int]], List[np.ndarray]], captions: Sequence[str], clipsim, out,
           identity: dict, samples: Optional[int] = None, batch_size: int = 4, seed: int = 0,
           progress: Optional[Callable[[int], None]] = None) -> dict:
    """Mean CLIPSIM of one generated video per caption (the first ``samples`` captions); resumable in ``out``."""
    captions = list(captions)[:samples] if samples else list(captions)
    digest = hashlib.sha256("\n".join(captions).encode()).hexdigest()
    store = MeasurementStore(out, {"protocol": "msrvtt", "captions": digest[:16], "samples": len(captions),
                                   "seed": seed, "batch_size": batch_size, **identity})

    def scores(start, stop):
        videos = generate(captions[start:stop], list(range(seed + start, seed + stop)))
        return {"clipsim": np.asarray(clipsim(videos, captions[start:stop]), dtype=np.float64)}

    values = measure_in_batches(store, "generated", len(captions), batch_size, scores, progress)["clipsim"]
    return {"clipsim": float(values.mean()), "clipsim_std": float(values.std()), "samples": len(captions),
            "seed": seed}
