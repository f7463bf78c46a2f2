"""Clip-sampling arguments shared by every data source: frames at a rate (keyframes) or at a skip-frame."""

import math
from typing import Optional, Tuple

import numpy as np

from ..errors import FusionFramesError

SOURCE_FPS = 24  # skip-frame s means frames s/24 s apart, as in the paper's 24 FPS footage


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise FusionFramesError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_sampling(size, num_frames, fps, skip_frames, seed) -> Tuple[int, int, Optional[float],
                                                                      Optional[Tuple[int, ...]], int]:
    """Validated ``(size, num_frames, fps, skip_frames, seed)``: ``fps`` defaults to 2 and is None in skip mode;
    ``skip_frames`` (an int or a sequence) becomes a tuple, or None."""
    size = check_positive_int("size", size)
    num_frames = check_positive_int("num_frames", num_frames)
    if fps is not None and skip_frames is not None:
        raise FusionFramesError("give either fps or skip_frames, not both")
    if skip_frames is not None:
        choices = (skip_frames,) if isinstance(skip_frames, (int, np.integer)) else tuple(skip_frames)
        if not choices:
            raise FusionFramesError("skip_frames must name at least one skip")
        skips: Optional[Tuple[int, ...]] = tuple(check_positive_int("skip_frames", s) for s in choices)
        fps = None
    else:
        fps = 2.0 if fps is None else fps
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
            raise FusionFramesError(f"fps must be a positive number, got {fps!r}")
        fps, skips = float(fps), None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FusionFramesError(f"seed must be a non-negative integer, got {seed!r}")
    return size, num_frames, fps, skips, int(seed)
