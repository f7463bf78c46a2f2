"""Captioned video files as a map-style training dataset, decoded with PyAV.

:class:`VideoClips` reads one of three sources:

* a folder of videos (``.mp4 .mov .webm .mkv .avi``, searched recursively, hidden files ignored), each captioned by a
  same-stem ``.txt`` next to it (``clip.mp4`` + ``clip.txt``);
* a CSV index with a header naming at least the columns ``path`` and ``caption`` (others are ignored);
* a JSONL index, one ``{"path": ..., "caption": ...}`` object per line.

Relative paths in an index resolve against the index file's folder. Items follow
:class:`~fusionframes.data.procedural.ProceduralVideos`: ``num_frames`` instants ``1 / fps`` seconds apart (2 FPS,
the paper's keyframes, by default) or, with ``skip_frames``, ``s / 24`` seconds apart for an ``s`` drawn per item
(the paper's 24 FPS footage). Any source frame rate is resampled by time: each wanted instant takes the decoded frame
whose timestamp is nearest (the earlier one on a tie).

Every file is probed when the dataset is built (container and stream headers only, no decoding). Files that cannot
be opened, hold no video stream, have no caption or are too short for a clip are left out and listed in
:attr:`VideoClips.skipped` as ``(path, reason)``, with one warning summarising them; a source with no usable video at
all is a :class:`~fusionframes.errors.FusionFramesError` before training starts. A file that fails later, while its
frames are decoded, is added to ``skipped`` (once) and the item of the next usable index is returned instead, so a
long run trains through it. With ``DataLoader`` workers each worker holds its own copy of ``skipped``.

Item ``i`` depends only on ``(seed, i)`` (clip start drawn from ``np.random.default_rng((seed, i))``), so a resumed
run sees exactly the same clips.
"""

import csv
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import FusionFramesError
from .sampling import SOURCE_FPS, check_sampling

VIDEO_EXTENSIONS: Tuple[str, ...] = (".mp4", ".mov", ".webm", ".mkv", ".avi")
CSV_EXTENSIONS: Tuple[str, ...] = (".csv",)
JSONL_EXTENSIONS: Tuple[str, ...] = (".jsonl", ".ndjson")
SHOWN = 3  # skipped files named in a warning or an error


@dataclass(frozen=True)
class VideoFile:
    """A probed, usable video. ``span`` is the time from the first frame to the last (seconds), ``start_time`` the
    stream's first timestamp (seconds), ``fps`` its average frame rate."""

    path: str
    caption: str
    span: float
    fps: float
    start_time: float


class _Unusable(Exception):
    """A video that cannot give a clip; its message is the reason reported."""


def _describe_error(error: BaseException) -> str:
    message = getattr(error, "strerror", None) or str(error) or "no message"
    return f"{type(error).__name__}: {message}"


def video_stream(container):
    """The first video stream of an open PyAV container. Raises ``_Unusable``."""
    if not container.streams.video:
        raise _Unusable("no video stream")
    return container.streams.video[0]


def probe_container(container) -> Tuple[float, float, float]:
    """``(span, fps, start_time)`` of an open container's first video stream from its headers, without decoding.
    ``span`` = duration − one frame: the time from the first frame to the last. Raises ``_Unusable``."""
    stream = video_stream(container)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not (math.isfinite(fps) and fps > 0):
        raise _Unusable("unknown frame rate")
    time_base = stream.time_base
    if stream.duration and time_base:
        duration = float(stream.duration * time_base)
    elif container.duration:  # Matroska/WebM store no per-stream duration
        duration = container.duration / av.time_base
    elif stream.frames:
        duration = stream.frames / fps
    else:
        raise _Unusable("unknown duration")
    start = float(stream.start_time * time_base) if stream.start_time is not None and time_base else 0.0
    return duration - 1.0 / fps, fps, start


def open_video(source):
    """``av.open`` of a path or a binary file object (``io.BytesIO`` of a file's bytes). Raises ``_Unusable``."""
    try:
        return av.open(source if hasattr(source, "read") else str(source))
    except Exception as error:  # PyAV raises its FFmpegError subclasses, OSError, …
        raise _Unusable(f"unreadable ({_describe_error(error)})") from None


def probe(path: Union[str, Path]) -> Tuple[float, float, float]:
    """``(span, fps, start_time)`` of ``path``'s first video stream (see :func:`probe_container`)."""
    with open_video(path) as container:
        return probe_container(container)


def _read_index(source: Path) -> Tuple[List[Tuple[str, Optional[str]]], List[Tuple[str, str]]]:
    """``(entries, skipped)``: entries are ``(path, caption or None)``; rows lacking a path are skipped."""
    suffix = source.suffix.lower()
    entries: List[Tuple[str, Optional[str]]] = []
    skipped: List[Tuple[str, str]] = []
    folder = source.parent

    def add(row_name: str, path, caption):
        if not isinstance(path, str) or not path.strip():
            skipped.append((row_name, "no path in the index row"))
            return
        resolved = Path(path.strip()).expanduser()
        if not resolved.is_absolute():
            resolved = folder / resolved
        entries.append((str(resolved.resolve()), caption if isinstance(caption, str) else None))

    try:
        if suffix in CSV_EXTENSIONS:
            with open(source, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                columns = [c.strip() for c in (reader.fieldnames or [])]
                missing = [c for c in ("path", "caption") if c not in columns]
                if missing:
                    raise FusionFramesError(f"the CSV index {source} needs a header with the columns path and "
                                            f"caption; missing {', '.join(missing)} (header: {columns})")
                reader.fieldnames = columns
                for row in reader:
                    add(f"{source}:{reader.line_num}", row.get("path"), row.get("caption"))
        elif suffix in JSONL_EXTENSIONS:
            with open(source, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        skipped.append((f"{source}:{number}", f"invalid JSON ({error.msg})"))
                        continue
                    if not isinstance(record, dict):
                        skipped.append((f"{source}:{number}", "not a JSON object"))
                        continue
                    add(f"{source}:{number}", record.get("path"), record.get("caption"))
        else:
            raise FusionFramesError(f"unknown index format {source.suffix or '(no extension)'!r} for {source}; give "
                                    f"a folder of videos, a CSV ({', '.join(CSV_EXTENSIONS)}) or a JSONL "
                                    f"({', '.join(JSONL_EXTENSIONS)}) index")
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FusionFramesError(f"cannot read the index {source}: {error}") from None
    return entries, skipped


def _scan_folder(folder: Path) -> Tuple[List[Tuple[str, Optional[str]]], List[Tuple[str, str]]]:
    entries: List[Tuple[str, Optional[str]]] = []
    skipped: List[Tuple[str, str]] = []
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    for video in videos:
        text = video.with_suffix(".txt")
        if not text.is_file():
            skipped.append((str(video.resolve()), f"no caption (expected {text.name} next to it)"))
            continue
        try:
            caption = text.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            skipped.append((str(video.resolve()), f"unreadable caption {text.name} ({error})"))
            continue
        entries.append((str(video.resolve()), caption))
    return entries, skipped


def _summary(skipped: Sequence[Tuple[str, str]], shown: int = SHOWN) -> str:
    text = "; ".join(f"{path}: {reason}" for path, reason in skipped[:shown])
    return text + (f"; … and {len(skipped) - shown} more" if len(skipped) > shown else "")


# -- sampling and decoding, shared with the tar-shard source (:mod:`fusionframes.data.shards`) ---------------------


def clip_duration(num_frames: int, fps: Optional[float], skip_frames: Optional[Sequence[int]],
                  skip: Optional[int] = None) -> float:
    """Seconds from a clip's first instant to its last (with the largest skip when ``skip`` is None)."""
    if skip_frames is None:
        return (num_frames - 1) / fps
    return (num_frames - 1) * (skip or max(skip_frames)) / SOURCE_FPS


def check_span(span: float, needed: float) -> None:
    """Raises ``_Unusable`` when a video's first-to-last-frame ``span`` cannot hold a clip of ``needed`` seconds."""
    if span + 1e-6 < needed:
        raise _Unusable(f"too short ({max(span, 0.0):.2f} s from first to last frame; a clip needs {needed:.2f} s)")


def draw_clip(rng: np.random.Generator, span: float, num_frames: int, fps: Optional[float],
              skip_frames: Optional[Sequence[int]]) -> Tuple[float, np.ndarray, Optional[int]]:
    """``(start, times, skip)`` of a clip drawn with ``rng`` from a video spanning ``span`` seconds: the skip (None
    unless ``skip_frames``), then a uniform start; ``times`` are float64 seconds from the clip's start."""
    skip = skip_frames[int(rng.integers(len(skip_frames)))] if skip_frames else None
    spacing = skip / SOURCE_FPS if skip else 1.0 / fps
    times = np.arange(num_frames, dtype=np.float64) * spacing
    start = float(rng.random() * max(0.0, span - float(times[-1])))
    return start, times, skip


def resize_crop(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (H, W, 3) → float32 (3, size, size) in [0, 255]: shorter side to ``size``, centre crop."""
    tensor = torch.from_numpy(image).permute(2, 0, 1).float()
    h, w = tensor.shape[1:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        tensor = F.interpolate(tensor[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return tensor[:, top:top + size, left:left + size]


def pick_frames(container, stream, fps: float, start_time: float, wanted: np.ndarray, size: int,
                seek: bool) -> Optional[list]:
    """For each wanted time (seconds from the stream's start, which is ``start_time``) the nearest decoded frame of
    a stream at ``fps``, resized (:func:`resize_crop`); None when a seek landed after the first wanted time or gave
    no frame at all (the caller then decodes from the beginning, which also tells a damaged file from an imprecise
    index). Raises ``_Unusable`` when the stream ends well before the last wanted time."""
    time_base, period = stream.time_base, 1.0 / fps
    if seek:
        target = start_time + float(wanted[0]) - period  # a frame before: it may be the nearest
        container.seek(int(math.floor(target / time_base)), stream=stream, backward=True, any_frame=False)
    picked: list = [None] * len(wanted)
    j, previous, last = 0, None, (None, None)  # previous: (time, frame); last: (frame, tensor) picked last

    def take(frame):
        nonlocal last
        if last[0] is not frame:
            last = (frame, resize_crop(frame.to_ndarray(format="rgb24"), size))
        return last[1]

    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        t = float(frame.pts * time_base) - start_time
        if previous is None and seek and t > wanted[0] + 0.5 * period:
            return None
        while j < len(wanted) and t >= wanted[j]:
            use_previous = previous is not None and wanted[j] - previous[0] <= t - wanted[j]
            picked[j] = take(previous[1] if use_previous else frame)
            j += 1
        if j == len(wanted):
            return picked
        previous = (t, frame)
    if previous is None and seek:  # nothing after the seek: let the caller try from the beginning
        return None
    # End of stream: the remaining instants may lie up to a frame after the last frame's timestamp.
    while j < len(wanted):
        if previous is None or wanted[j] - previous[0] > 1.5 * period:
            reached = "no frame decoded" if previous is None else f"the last frame decoded is at {previous[0]:.2f} s"
            raise _Unusable(f"decoding ended early ({reached}, a clip needs {wanted[j]:.2f} s)")
        picked[j] = take(previous[1])
        j += 1
    return picked


def read_clip(container, fps: float, start_time: float, wanted: np.ndarray, size: int,
              pick: Optional[Callable] = None) -> torch.Tensor:
    """float32 (3, F, size, size) in [-1, 1]: the frames of an open container's first video stream nearest the
    ``wanted`` times (seconds from the stream's start). Seeks near the first instant when it is late enough, and
    decodes from the beginning when the seek overshot. ``pick(container, stream, wanted, seek)`` replaces
    :func:`pick_frames` (with ``fps``, ``start_time`` and ``size`` bound)."""
    stream = video_stream(container)
    if pick is None:
        def pick(container, stream, wanted, seek):
            return pick_frames(container, stream, fps, start_time, wanted, size, seek)
    seek = float(wanted[0]) > 2.0 / fps
    picked = pick(container, stream, wanted, seek)
    if picked is None:  # the seek overshot or found nothing: decode from the start instead
        container.seek(0)  # the container's own start; the stream's timestamps are checked frame by frame
        picked = pick(container, stream, wanted, False)
    return torch.stack(picked, dim=1).div_(127.5).sub_(1.0).clamp_(-1.0, 1.0)


def clip_item(frames: torch.Tensor, caption: str, labels: dict, times: np.ndarray, skip: Optional[int]) -> dict:
    """The item format shared by every data source (see :class:`VideoClips`)."""
    item = dict(frames=frames, caption=caption, labels=labels, times=torch.from_numpy(times.astype(np.float32)))
    if skip is not None:
        item["skip_frames"] = skip
    return item


def describe_failure(error: BaseException) -> str:
    """The reason reported for a video whose decoding raised ``error``."""
    return str(error) if isinstance(error, _Unusable) else f"decoding failed ({_describe_error(error)})"


class VideoClips(Dataset):
    """Map-style dataset of clips from captioned video files; item ``i`` depends only on ``(seed, i)``.

    ``source``: a folder of videos with same-stem ``.txt`` captions, or a ``.csv`` / ``.jsonl`` index (see the
    module documentation). Frames are ``num_frames`` instants from a random start, ``1 / fps`` seconds apart
    (default 2 FPS) or, when ``skip_frames`` is given (an int or a sequence to draw one from per item), ``s / 24``
    seconds apart. A video must hold the longest possible clip (the largest skip) between its first and last frame.

    An item is ``dict(frames=float32 (3, F, size, size) in [-1, 1], caption=str, labels=dict(path=str,
    start=float), times=float32 (F,))`` (``times``: the instants in seconds from the clip's start) plus
    ``skip_frames=int`` when ``skip_frames`` was given. Frames are resized (antialiased) so the shorter side is
    ``size`` and centre-cropped to a square.

    ``videos`` lists the usable :class:`VideoFile`\\ s (``len(self)`` of them); ``skipped`` lists ``(path, reason)``
    of every file left out, at construction or later when its decoding failed.
    """

    def __init__(self, source: Union[str, Path], size: int = 128, num_frames: int = 16, fps: Optional[float] = None,
                 skip_frames: Union[None, int, Sequence[int]] = None, seed: int = 0):
        self.size, self.num_frames, self.fps, self.skip_frames, self.seed = check_sampling(
            size, num_frames, fps, skip_frames, seed)

        self.source = Path(source).expanduser()
        if not self.source.exists():
            raise FusionFramesError(f"the data source {self.source} does not exist")
        entries, skipped = _scan_folder(self.source) if self.source.is_dir() else _read_index(self.source)
        self.skipped: List[Tuple[str, str]] = list(skipped)
        needed = self.clip_duration()
        self.videos: List[VideoFile] = []
        for path, caption in entries:
            caption = (caption or "").strip()
            if not caption:
                self.skipped.append((path, "empty caption"))
                continue
            if not Path(path).is_file():
                self.skipped.append((path, "file not found"))
                continue
            try:
                span, rate, start = probe(path)
                check_span(span, needed)
            except _Unusable as reason:
                self.skipped.append((path, str(reason)))
                continue
            self.videos.append(VideoFile(path, caption, span, rate, start))
        self._failed: set = set()
        total = len(self.videos) + len(self.skipped)
        if not self.videos:
            raise FusionFramesError(f"no usable video in {self.source} ({total} entries"
                                    + (f", all skipped: {_summary(self.skipped)})" if self.skipped else ")"))
        if self.skipped:
            warnings.warn(f"VideoClips: skipped {len(self.skipped)} of {total} videos in {self.source} (listed in "
                          f".skipped): {_summary(self.skipped)}", stacklevel=2)

    # -- sampling ------------------------------------------------------------------------------------------------

    def clip_duration(self, skip: Optional[int] = None) -> float:
        """Seconds from a clip's first instant to its last (with the largest skip when ``skip`` is None)."""
        return clip_duration(self.num_frames, self.fps, self.skip_frames, skip)

    def __len__(self) -> int:
        return len(self.videos)

    def _index(self, index) -> int:
        index, n = int(index), len(self.videos)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} videos")
        return index

    def describe(self, index: int) -> dict:
        """Everything about item ``index`` but its pixels: ``video``, ``start`` and ``times`` (seconds, ``times``
        from the clip's start), ``skip`` (None unless ``skip_frames`` was given)."""
        index = self._index(index)
        video = self.videos[index]
        start, times, skip = draw_clip(np.random.default_rng((self.seed, index)), video.span, self.num_frames,
                                       self.fps, self.skip_frames)
        return dict(video=video, start=start, times=times, skip=skip)

    # -- decoding ------------------------------------------------------------------------------------------------

    def _pick(self, container, stream, video: VideoFile, wanted: np.ndarray, seek: bool) -> Optional[list]:
        """:func:`pick_frames` for ``video`` (the decoding hook: tests wrap it)."""
        return pick_frames(container, stream, video.fps, video.start_time, wanted, self.size, seek)

    def _decode(self, video: VideoFile, wanted: np.ndarray) -> torch.Tensor:
        with av.open(video.path) as container:  # an error here is reported as "decoding failed (…)"
            return read_clip(container, video.fps, video.start_time, wanted, self.size,
                             pick=lambda container, stream, wanted, seek: self._pick(container, stream, video,
                                                                                      wanted, seek))

    def _load(self, index: int) -> dict:
        info = self.describe(index)
        video = info["video"]
        frames = self._decode(video, info["start"] + info["times"])
        return clip_item(frames, video.caption, {"path": video.path, "start": info["start"]}, info["times"],
                         info["skip"])

    def __getitem__(self, index: int) -> dict:
        index = self._index(index)
        n = len(self.videos)
        for k in range(n):
            j = (index + k) % n
            if j in self._failed:
                continue
            try:
                return self._load(j)
            except Exception as error:  # never crash a long run on one bad file: record it, serve the next index
                reason = describe_failure(error)
                self._failed.add(j)
                path = self.videos[j].path
                self.skipped.append((path, reason))
                warnings.warn(f"VideoClips: skipping {path}: {reason}", stacklevel=2)
        raise FusionFramesError(f"every video in {self.source} failed to decode: {_summary(self.skipped)}")
