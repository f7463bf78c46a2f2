"""Analytic text-video alignment: read a procedural-style video's labels from its pixels and score a generator.

:func:`read_video_labels` looks only at pixels. Background: the median colour of a thin border ring, nearest of
the procedural backgrounds. Foreground: pixels far (in RGB) from the background after a 3×3 binomial smoothing,
opened to drop specks and kept around the frame's dominant blob; a per-pixel coverage ``alpha`` is the projection of
the raw pixel on the background → foreground colour axis (exact for anti-aliased renders). Colour: the hue (or, for
an unsaturated bright core, white) of the median colour of the foreground core. Shape: rotation-invariant angular
harmonics of the coverage around its centroid, ``|Σ α r² e^{ikθ}| / Σ α r²`` for k = 3, 4, 5 (a triangle has only
the 3rd, a square the 4th, a star the 5th, a circle none). Motion: a least-squares straight line with constant speed
through the per-frame coverage centroids; the displacement it implies over the clip gives the direction (8 sectors of
45°) or "still" when shorter than ``still_threshold`` of the frame side; its RMS residual (px) measures how straight
and even the path is. Background steadiness: the temporal standard deviation of each frame's mean background colour.

:func:`evaluate_alignment` calls ``generate(prompt)`` for every prompt of a labelled set (by default the shipped
held-out set of :mod:`fusionframes.evaluation.prompts`) and reports per-attribute accuracy overall and per group, the
straight-path RMS of moving objects and the flicker; :func:`evaluate_renders` does the same on true renders of the
set's clip specs (the ceiling: a perfect generator).
"""

import math
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np

from ..data.procedural import BACKGROUNDS, COLORS, DIRECTIONS, MOTIONS, render
from ..errors import FusionFramesError

# Playback frame rate of each ``fps`` level of FusionFramesPipeline (mirrors ``fusionframes.pipeline.FPS``, which this
# module does not import: the pipeline pulls in diffusers) and the frames a default 16-keyframe video has at each.
FPS_LEVELS: Dict[str, int] = {"low": 2, "medium": 8, "high": 30}
DEFAULT_KEYFRAMES = 16
KEYFRAME_SPACING = 0.5  # seconds of scene time between keyframes (2 FPS keyframes)
ATTRIBUTES = ("color", "shape", "motion", "background")
GROUPS = ("seen", "unseen_phrasing", "held_out_combination")

STILL_THRESHOLD = 0.05  # a displacement shorter than this fraction of the frame side over the clip is "still"
FLICKER_THRESHOLD = 2.0  # a background whose mean colour varies less than this (std, 0-255 levels) is steady
WHITE_MAX_SATURATION = 0.35  # every named hue has saturation ≥ 0.76; white has 0
# |harmonic k| of each polygon's coverage (measured on renders, independent of size and rotation).
SHAPE_HARMONICS: Dict[str, Dict[int, float]] = {"triangle": {3: 0.549}, "square": {4: 0.287}, "star": {5: 0.67}}
CIRCLE_MAX_SCORE = 0.3  # below this fraction of every polygon's own harmonic, the shape is a circle
# Issue targets on the held-out prompt set.
TARGETS = dict(color=0.95, motion=0.90, shape=0.85, max_gap=0.05, path_rms_px_at_128=2.0)


def _hsv(rgb: Sequence[float]):
    r, g, b = (float(v) / 255.0 for v in rgb)
    hi, lo = max(r, g, b), min(r, g, b)
    if hi - lo < 1e-9:
        return 0.0, 0.0, hi
    if hi == r:
        hue = ((g - b) / (hi - lo)) % 6.0
    elif hi == g:
        hue = (b - r) / (hi - lo) + 2.0
    else:
        hue = (r - g) / (hi - lo) + 4.0
    return 60.0 * hue, (hi - lo) / hi, hi


COLOR_HUES: Dict[str, float] = {name: _hsv(rgb)[0] for name, rgb in COLORS.items() if name != "white"}


def classify_color(rgb: Sequence[float]) -> str:
    """The named colour of an RGB triple: white when unsaturated, else the nearest named hue (circular)."""
    hue, saturation, _ = _hsv(rgb)
    if saturation < WHITE_MAX_SATURATION:
        return "white"
    return min(COLOR_HUES, key=lambda name: abs(math.remainder(hue - COLOR_HUES[name], 360.0)))


def classify_background(rgb: Sequence[float]) -> str:
    """The nearest procedural background colour (RGB distance)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return min(BACKGROUNDS, key=lambda name: float(np.sum((rgb - np.asarray(BACKGROUNDS[name])) ** 2)))


def classify_shape(harmonics: Dict[int, float]) -> str:
    """Shape from the angular harmonics k = 3, 4, 5 of the coverage (see the module docstring)."""
    scores = {shape: harmonics[k] / ref for shape, h in SHAPE_HARMONICS.items() for k, ref in h.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] >= CIRCLE_MAX_SCORE else "circle"


def classify_direction(dx: float, dy: float, still: float) -> str:
    """One of the 9 motions from a displacement (image coordinates, y down) and the "still" radius."""
    if math.hypot(dx, dy) < still:
        return "still"
    angle = math.atan2(dy, dx)
    return min((m for m in MOTIONS if m != "still"),
               key=lambda m: abs(math.remainder(angle - math.atan2(DIRECTIONS[m][1], DIRECTIONS[m][0]), 2 * math.pi)))


# ---------------------------------------------------------------------------------------------------------------
# Image helpers (numpy only)
# ---------------------------------------------------------------------------------------------------------------


def _smooth(x: np.ndarray) -> np.ndarray:
    """3×3 binomial filter over the last two axes (height, width) with edge replication: uint8 in, float32 out."""
    x = x.astype(np.uint16)  # 16 × 255 fits
    v = x << 1
    v[..., 1:, :] += x[..., :-1, :]
    v[..., :1, :] += x[..., :1, :]
    v[..., :-1, :] += x[..., 1:, :]
    v[..., -1:, :] += x[..., -1:, :]
    w = v << 1
    w[..., 1:] += v[..., :-1]
    w[..., :1] += v[..., :1]
    w[..., :-1] += v[..., 1:]
    w[..., -1:] += v[..., -1:]
    out = w.astype(np.float32)
    out *= np.float32(1 / 16)
    return out


def _dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Binary dilation of (F, H, W) by a (2r+1)² square."""
    for _ in range(radius):
        p = np.pad(mask, [(0, 0), (1, 1), (1, 1)])
        rows = p[:, :-2] | p[:, 1:-1] | p[:, 2:]
        mask = rows[:, :, :-2] | rows[:, :, 1:-1] | rows[:, :, 2:]
    return mask


def _erode(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    return ~_dilate(~mask, radius)


def _border_ring(height: int, width: int) -> np.ndarray:
    width_px = max(1, round(0.015 * min(height, width)))
    ring = np.zeros((height, width), dtype=bool)
    ring[:width_px], ring[-width_px:], ring[:, :width_px], ring[:, -width_px:] = True, True, True, True
    return ring


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 5 and frames.shape[0] == 1:  # a batch of one video
        frames = frames[0]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise FusionFramesError(f"frames must be uint8 (frames, height, width, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] < 1 or min(frames.shape[1:3]) < 8:
        raise FusionFramesError(f"a video needs at least one frame of at least 8×8 pixels, got {frames.shape}")
    return frames


def fps_value(fps: Union[str, float, None]) -> Optional[float]:
    """Frames per second of a pipeline ``fps`` level ("low", "medium", "high") or of a number; None stays None."""
    if fps is None:
        return None
    if isinstance(fps, str):
        if fps not in FPS_LEVELS:
            raise FusionFramesError(f"unknown fps {fps!r}; choose low, medium, high or a number of frames per second")
        return float(FPS_LEVELS[fps])
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (math.isfinite(fps) and fps > 0):
        raise FusionFramesError(f"fps must be low, medium, high or a positive number, got {fps!r}")
    return float(fps)


# ---------------------------------------------------------------------------------------------------------------
# Reading one video
# ---------------------------------------------------------------------------------------------------------------


def _no_object(result: dict, frames: int) -> dict:
    result.update(found=False, color=None, color_rgb=None, hue=None, saturation=None, shape=None, harmonics=None,
                  motion=None, displacement_px=None, velocity_px=None, track=np.full((frames, 2), np.nan),
                  area=np.zeros(frames), valid_frames=0, path_rms_px=float("nan"))
    return result


def read_video_labels(frames, *, fps: Union[str, float, None] = None, times: Optional[Sequence[float]] = None,
                      still_threshold: float = STILL_THRESHOLD, shape_frames: int = 8) -> dict:
    """Labels of a procedural-style video read from its pixels alone.

    ``frames``: uint8 (F, H, W, 3). ``times`` (seconds, one per frame) or ``fps`` (a number or a pipeline level) set
    the time axis of the constant-speed fit and the units of ``velocity_px`` (px per second); with neither, frames are
    one time unit apart. A displacement over the clip shorter than ``still_threshold`` × the frame side reads as
    "still". ``shape_frames`` frames (evenly spaced) are used for the shape.

    Returns a dict: ``found`` (whether a foreground object was seen), ``background`` (name), ``background_rgb``,
    ``color`` (name), ``color_rgb`` (median of the foreground core), ``hue`` (degrees), ``saturation``, ``shape``,
    ``harmonics`` ({3, 4, 5: magnitude}), ``motion`` (one of the 9), ``displacement_px`` (dx, dy over the clip, from
    the fit), ``velocity_px``, ``track`` (F, 2) centroid (x, y) in pixels (NaN where no object), ``area`` (F,) in
    pixels, ``valid_frames``, ``path_rms_px`` (RMS distance of the track from the fitted straight constant-speed path),
    ``flicker`` (max over channels of the std over time of the background's mean colour, 0-255 levels) and
    ``background_step`` (max over channels of the mean absolute frame-to-frame change of that mean). Labels that
    cannot be read (no object) are None.
    """
    frames = _check_frames(frames)
    count, height, width = frames.shape[:3]
    if times is not None:
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        if len(t) != count or not np.all(np.isfinite(t)):
            raise FusionFramesError(f"times must be {count} finite numbers, one per frame")
    else:
        rate = fps_value(fps)
        t = np.arange(count, dtype=np.float64) / (rate or 1.0)
    if not (isinstance(still_threshold, (int, float)) and still_threshold >= 0):
        raise FusionFramesError(f"still_threshold must be a non-negative fraction, got {still_threshold!r}")

    planes = np.ascontiguousarray(frames.transpose(3, 0, 1, 2))  # (3, F, H, W)
    raw = planes.astype(np.float32)
    smooth = _smooth(planes)
    ring = _border_ring(height, width)
    bg_frames = np.median(smooth[:, :, ring], axis=2)  # (3, F): each frame's background colour
    bg_rgb = np.median(bg_frames, axis=1)
    result = dict(background=classify_background(bg_rgb), background_rgb=[float(v) for v in bg_rgb])

    smooth -= bg_frames[:, :, None, None]
    dist = np.sqrt(smooth[0] ** 2 + smooth[1] ** 2 + smooth[2] ** 2)  # (F, H, W)
    del smooth
    floor = max(20.0, 6.0 * float(np.median(dist[:, ring])))  # well above the background's own noise
    candidates = dist[dist > floor]
    mask = np.zeros(dist.shape, dtype=bool)
    if candidates.size:
        high = float(np.percentile(candidates, 95))  # the foreground's typical distance from the background
        mask = _dilate(_erode(dist > max(floor, 0.5 * high)))  # half coverage, specks removed
    # Keep each frame's dominant blob: pixels within a generous radius of the mask pixel nearest their median.
    boxes = {}  # frame → (y0, y1, x0, x1) holding the support
    for f in np.flatnonzero(mask.any(axis=(1, 2))):
        py, px = np.nonzero(mask[f])
        # Anchored on the mask pixel nearest the median: with two blobs apart the median lies between them.
        nearest = np.argmin((py - np.median(py)) ** 2 + (px - np.median(px)) ** 2)
        cy, cx = py[nearest], px[nearest]
        reach = 2.5 * math.sqrt(len(py) / math.pi) + 3.0
        keep = (py - cy) ** 2 + (px - cx) ** 2 <= reach * reach
        mask[f, py[~keep], px[~keep]] = False
        py, px = py[keep], px[keep]
        boxes[f] = (max(py.min() - 3, 0), min(py.max() + 4, height), max(px.min() - 3, 0), min(px.max() + 4, width))
    support = _dilate(mask, 3)  # the anti-aliased (or blurred) edge and thin tips the opening cut

    background = ~_dilate(support, 1)
    bg_count = background.sum(axis=(1, 2))
    bg_mean = np.einsum("cfhw,fhw->fc", raw, background.astype(np.float32)) / np.maximum(bg_count, 1)[:, None]
    bg_mean = bg_mean[bg_count > 0]
    result["flicker"] = float(bg_mean.std(axis=0).max()) if len(bg_mean) else float("nan")
    result["background_step"] = float(np.abs(np.diff(bg_mean, axis=0)).mean(axis=0).max()) if len(bg_mean) > 1 \
        else 0.0

    if not boxes:
        return _no_object(result, count)

    # Colour: median of the core (the most foreground-like half of the mask), from the raw pixels.
    core = mask & (dist >= np.percentile(dist[mask], 50))
    fg_rgb = np.median(raw[:, core], axis=1)
    hue, saturation, _ = _hsv(fg_rgb)
    result.update(found=True, color=classify_color(fg_rgb), color_rgb=[float(v) for v in fg_rgb], hue=hue,
                  saturation=saturation)

    # Coverage: projection of each pixel on the background → foreground colour axis, inside the support; then the
    # centroid and (on evenly spaced frames, preferring those wholly in view) the angular harmonics.
    axis = fg_rgb[:, None] - bg_frames  # (3, F)
    norm2 = np.maximum((axis * axis).sum(axis=0), 1.0)
    area = np.zeros(count)
    track = np.full((count, 2), np.nan)
    alphas = {}
    for f, (y0, y1, x0, x1) in boxes.items():
        patch = raw[:, f, y0:y1, x0:x1] - bg_frames[:, f, None, None]
        a = np.einsum("chw,c->hw", patch, axis[:, f]) / norm2[f]
        a = np.clip(a, 0.0, 1.0) * support[f, y0:y1, x0:x1]
        area[f] = total = float(a.sum())
        if total >= 2.0:
            xc, yc = np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5  # pixel centres, as the renderer
            track[f] = (a.sum(axis=0) @ xc) / total, (a.sum(axis=1) @ yc) / total
            alphas[f] = a
    valid = np.isfinite(track[:, 0])
    result.update(track=track, area=area, valid_frames=int(valid.sum()))
    if not valid.any():
        return _no_object(result, count)

    index = np.flatnonzero(valid)
    inside = [f for f in index if not (support[f] & ring).any()]
    index = np.asarray(inside) if inside else index
    index = index[np.unique(np.linspace(0, len(index) - 1, min(shape_frames, len(index))).round().astype(int))]
    harmonics = {k: [] for k in (3, 4, 5)}
    for f in index:
        y0, y1, x0, x1 = boxes[f]
        dx, dy = np.arange(x0, x1)[None, :] + 0.5 - track[f, 0], np.arange(y0, y1)[:, None] + 0.5 - track[f, 1]
        w = alphas[f] * (dx * dx + dy * dy)
        phase = np.exp(1j * np.arctan2(dy, dx))
        total = max(float(w.sum()), 1e-9)
        for k in harmonics:
            harmonics[k].append(abs(np.sum(w * phase ** k)) / total)
    harmonics = {k: float(np.median(v)) for k, v in harmonics.items()}
    result.update(shape=classify_shape(harmonics), harmonics=harmonics)

    # Motion: least-squares constant-velocity line through the valid centroids.
    tv, pts = t[valid], track[valid]
    if len(tv) >= 2 and np.ptp(tv) > 0:
        design = np.stack([np.ones_like(tv), tv - tv.mean()], axis=1)
        coef, *_ = np.linalg.lstsq(design, pts, rcond=None)
        residual = pts - design @ coef
        velocity = coef[1]
        displacement = velocity * np.ptp(tv)
        rms = float(np.sqrt((residual ** 2).sum(axis=1).mean()))
    else:
        velocity = displacement = np.zeros(2)
        rms = float("nan")
    result.update(motion=classify_direction(float(displacement[0]), float(displacement[1]),
                                            still_threshold * min(height, width)),
                  displacement_px=[float(v) for v in displacement], velocity_px=[float(v) for v in velocity],
                  path_rms_px=rms)
    return result


# ---------------------------------------------------------------------------------------------------------------
# Degrading renders (robustness checks)
# ---------------------------------------------------------------------------------------------------------------


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def degrade(frames: np.ndarray, noise: float = 0.0, blur: float = 0.0, seed=0) -> np.ndarray:
    """``frames`` blurred by a Gaussian of ``blur`` px (std) then with i.i.d. Gaussian noise of std ``noise`` (0-255
    levels) added, rounded and clipped back to uint8: imperfect, generated-looking video."""
    out = np.ascontiguousarray(_check_frames(frames).transpose(3, 0, 1, 2), dtype=np.float32)  # (3, F, H, W)
    if blur > 0:
        k = _gaussian_kernel(blur).astype(np.float32)
        r = len(k) // 2
        for _ in range(2):  # separable: along the width, then (transposed) along the height
            size = out.shape[-1]
            p = np.pad(out, [(0, 0)] * 3 + [(r, r)], mode="edge")
            out = k[0] * p[..., :size]
            for i in range(1, len(k)):
                out += k[i] * p[..., i:i + size]
            out = out.swapaxes(2, 3)
    if noise > 0:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(noise)
    out = out.transpose(1, 2, 3, 0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Scoring a generator on a labelled prompt set
# ---------------------------------------------------------------------------------------------------------------


def _rate(values: List[bool]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def _finite(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None  # None where undefined: the report stays plain JSON


def _stats(values: List[Optional[float]]) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not len(v):
        return dict(count=0, mean=None, median=None, p90=None, max=None)
    return dict(count=int(len(v)), mean=float(v.mean()), median=float(np.median(v)),
                p90=float(np.percentile(v, 90)), max=float(v.max()))


def _score(rows: List[dict], fps: Optional[float], still_threshold: float, flicker_threshold: float,
           seconds: float) -> dict:
    def accuracy(subset):
        acc = {a: _rate([r["predicted"][a] == r["expected"][a] for r in subset]) for a in ATTRIBUTES}
        acc["all"] = _rate([all(r["predicted"][a] == r["expected"][a] for a in ATTRIBUTES) for r in subset])
        return dict(count=len(subset), **acc)

    groups = {g: accuracy([r for r in rows if r["group"] == g]) for g in GROUPS if any(r["group"] == g for r in rows)}
    extra = sorted({r["group"] for r in rows} - set(GROUPS))
    groups.update({g: accuracy([r for r in rows if r["group"] == g]) for g in extra})
    gaps = {}
    if "seen" in groups:
        for g in groups:
            if g != "seen":
                gaps[g] = {a: groups["seen"][a] - groups[g][a] for a in ATTRIBUTES + ("all",)}
    confusion = {a: {} for a in ATTRIBUTES}
    for r in rows:
        for a in ATTRIBUTES:
            row = confusion[a].setdefault(r["expected"][a], {})
            key = str(r["predicted"][a])
            row[key] = row.get(key, 0) + 1
    moving = [r for r in rows if r["expected"]["motion"] != "still"]
    rms = _stats([r["path_rms_px"] for r in moving])
    rms128 = _stats([None if r["path_rms_px"] is None else r["path_rms_px"] * 128.0 / r["size_px"] for r in moving])
    flicker = _stats([r["flicker"] for r in rows])
    flicker["steady_fraction"] = _rate([r["flicker"] is not None and r["flicker"] <= flicker_threshold
                                        for r in rows])
    overall = accuracy(rows)
    report = dict(num_prompts=len(rows), fps=fps, still_threshold=still_threshold,
                  flicker_threshold=flicker_threshold, seconds=seconds,
                  accuracy={k: v for k, v in overall.items() if k != "count"}, groups=groups, gaps=gaps,
                  path_rms_px=rms, path_rms_px_at_128=rms128, flicker=flicker, confusion=confusion, per_prompt=rows)
    max_gap = max((abs(gap[a]) for gap in gaps.values() for a in ("color", "shape", "motion")), default=None)
    report["targets"] = {
        "color": dict(value=overall["color"], target=TARGETS["color"], met=overall["color"] >= TARGETS["color"]),
        "motion": dict(value=overall["motion"], target=TARGETS["motion"], met=overall["motion"] >= TARGETS["motion"]),
        "shape": dict(value=overall["shape"], target=TARGETS["shape"], met=overall["shape"] >= TARGETS["shape"]),
        "max_gap": dict(value=max_gap, target=TARGETS["max_gap"],
                        met=None if max_gap is None else max_gap <= TARGETS["max_gap"]),
        "path_rms_px_at_128": dict(value=rms128["mean"], target=TARGETS["path_rms_px_at_128"],
                                   met=None if rms128["mean"] is None
                                   else rms128["mean"] <= TARGETS["path_rms_px_at_128"]),
        "steady_background": dict(value=flicker["steady_fraction"], target=1.0,
                                  met=flicker["steady_fraction"] == 1.0),
    }
    return report


def _records(prompts) -> List[dict]:
    if prompts is None:
        from .prompts import load_prompt_set
        return load_prompt_set()
    records = []
    for i, p in enumerate(prompts):
        if not isinstance(p, dict) or "prompt" not in p or any(a not in p for a in ATTRIBUTES):
            raise FusionFramesError(f"prompt {i} must be a dict with 'prompt' and labels {', '.join(ATTRIBUTES)}")
        records.append(dict(p, group=p.get("group", "seen"), id=p.get("id", str(i))))
    if not records:
        raise FusionFramesError("the prompt set is empty")
    return records


def _evaluate(records: List[dict], videos: Iterable[np.ndarray], fps: Optional[float],
              still_threshold: float, flicker_threshold: float, progress: Optional[Callable] = None,
              domain_fvd=None, times_of: Optional[Callable[[int], np.ndarray]] = None) -> dict:
    """Score the videos; with ``domain_fvd``, also their distance to renders at ``times_of(frames per video)``."""
    start = time.perf_counter()
    rows, features = [], []
    if domain_fvd is not None:
        videos = _embedded(videos, domain_fvd, features)
    for i, (record, video) in enumerate(zip(records, videos)):
        frames = _check_frames(video)
        labels = read_video_labels(frames, fps=fps, still_threshold=still_threshold)
        rows.append(dict(id=record["id"], group=record["group"], prompt=record["prompt"],
                         expected={a: record[a] for a in ATTRIBUTES}, predicted={a: labels[a] for a in ATTRIBUTES},
                         path_rms_px=_finite(labels["path_rms_px"]), flicker=_finite(labels["flicker"]),
                         frames=int(frames.shape[0]),
                         size_px=int(min(frames.shape[1:3]))))
        if progress is not None:
            progress(i + 1, len(records), rows[-1])
    report = _score(rows, fps, still_threshold, flicker_threshold, time.perf_counter() - start)
    if domain_fvd is not None:
        report["domain_fvd"] = _domain_fvd(domain_fvd, records, np.concatenate(features), times_of(rows[0]["frames"]))
    return report


def _generated(generate: Callable, records: List[dict], batch_size: int):
    """Videos in record order: ``generate(prompt)`` one by one, or ``generate([prompts])`` per batch."""
    if batch_size == 1:
        for record in records:
            yield generate(record["prompt"])
        return
    for start in range(0, len(records), batch_size):
        prompts = [r["prompt"] for r in records[start:start + batch_size]]
        videos = list(generate(prompts))
        if len(videos) != len(prompts):
            raise FusionFramesError(f"generate returned {len(videos)} videos for a batch of {len(prompts)} prompts")
        yield from videos


def _embedded(videos: Iterable[np.ndarray], domain_fvd, features: list):
    """The videos unchanged, each one's domain features appended to ``features`` on the way."""
    for video in videos:
        features.append(domain_fvd.features([video]))
        yield video


def _domain_fvd(domain_fvd, records: List[dict], generated: np.ndarray, times: np.ndarray) -> float:
    """Domain FVD against clean renders of the records' clip specs at ``times`` (the generated videos' span)."""
    from .prompts import spec_of

    return domain_fvd.distance(domain_fvd.features(render(spec_of(r), times) for r in records), generated)


def _generated_times(fps: Union[str, float], frames: int) -> np.ndarray:
    """Scene times a pipeline's ``frames``-frame video at ``fps`` spans (its keyframe count inferred)."""
    if isinstance(fps, str):
        fps_value(fps)
        keyframes = {"low": frames, "medium": (frames + 3) // 4, "high": (frames + 15) // 16}[fps]
        return render_times(fps, keyframes)
    return render_times(fps, num_frames=frames)


def evaluate_alignment(generate: Callable, prompts: Optional[Iterable[dict]] = None,
                       fps: Union[str, float] = "high", *, batch_size: int = 1,
                       still_threshold: float = STILL_THRESHOLD, flicker_threshold: float = FLICKER_THRESHOLD,
                       markdown=None, progress: Optional[Callable] = None, domain_fvd=None) -> dict:
    """Score ``generate(prompt) -> uint8 (F, H, W, 3)`` on a labelled prompt set; with ``batch_size`` > 1,
    ``generate(list of prompts) -> list of such videos`` instead.

    ``prompts``: dicts with ``prompt`` and the intended ``color``, ``shape``, ``motion``, ``background`` (and
    optionally ``group`` and ``id``); default: the shipped held-out set (:func:`prompts.load_prompt_set`). ``fps``:
    the frame rate of the returned videos (a pipeline level or a number; it sets the units of velocities only).
    ``markdown``: a path to write :func:`format_markdown`'s table to. ``progress(done, total, row)`` is called after
    every prompt.

    Returns a dict: ``accuracy`` (color, shape, motion, background, all four), ``groups`` (the same per group, with
    ``count``), ``gaps`` (seen minus each other group), ``path_rms_px`` and ``path_rms_px_at_128`` (statistics over
    prompts asking for motion), ``flicker`` (statistics and ``steady_fraction``), ``confusion`` (expected → predicted
    counts per attribute), ``targets`` (the issue's targets, each with value and whether met) and ``per_prompt``;
    with a :class:`~fusionframes.evaluation.domain.DomainFVD` as ``domain_fvd``, also ``domain_fvd``: the distance
    from the generated videos to renders of the prompts' own clip specs.
    """
    if not callable(generate):
        raise FusionFramesError("generate must be a callable: prompt -> uint8 frames (F, H, W, 3)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise FusionFramesError(f"batch_size must be a positive integer, got {batch_size!r}")
    records = _records(prompts)
    report = _evaluate(records, _generated(generate, records, batch_size), fps_value(fps), still_threshold,
                       flicker_threshold, progress, domain_fvd, lambda frames: _generated_times(fps, frames))
    if markdown is not None:
        Path(markdown).write_text(format_markdown(report))
    return report


def render_times(fps: Union[str, float] = "high", num_keyframes: int = DEFAULT_KEYFRAMES,
                 num_frames: Optional[int] = None) -> np.ndarray:
    """Scene times (s) of the frames a pipeline returns: ``num_keyframes`` keyframes 0.5 s apart, and at a pipeline
    level the T, 4T−3 or 16T−15 frames evenly spread over them; with a number, ``num_frames`` (default T) frames."""
    span = (num_keyframes - 1) * KEYFRAME_SPACING
    if isinstance(fps, str):
        fps_value(fps)
        count = {"low": num_keyframes, "medium": 4 * num_keyframes - 3, "high": 16 * num_keyframes - 15}[fps]
    else:
        rate = fps_value(fps)
        count = num_frames or num_keyframes
        span = (count - 1) / rate if num_frames else span
    return np.linspace(0.0, span, count) if count > 1 else np.zeros(1)


def evaluate_renders(prompts: Optional[Iterable[dict]] = None, fps: Union[str, float] = "high", *, size: int = 128,
                     num_keyframes: int = DEFAULT_KEYFRAMES, noise: float = 0.0, blur: float = 0.0, seed: int = 0,
                     still_threshold: float = STILL_THRESHOLD, flicker_threshold: float = FLICKER_THRESHOLD,
                     markdown=None, progress: Optional[Callable] = None, domain_fvd=None) -> dict:
    """:func:`evaluate_alignment` on true renders of each prompt's clip spec (the ceiling of any generator), at the
    frames a ``num_keyframes`` video has at ``fps``, optionally degraded by :func:`degrade` (``noise``, ``blur``)."""
    from .prompts import spec_of

    records = _records(prompts)
    times = render_times(fps, num_keyframes)

    def frames_of(index, record):
        frames = render(spec_of(record), times, size)
        if noise or blur:
            frames = degrade(frames, noise, blur, seed=np.random.default_rng((seed, index)))
        return frames

    videos = (frames_of(i, record) for i, record in enumerate(records))
    report = _evaluate(records, videos, fps_value(fps), still_threshold, flicker_threshold, progress, domain_fvd,
                       lambda frames: times)
    if markdown is not None:
        Path(markdown).write_text(format_markdown(report))
    return report


# ---------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_markdown(report: dict) -> str:
    """The report as markdown: accuracy per group and attribute, then path straightness, flicker and targets."""
    lines = ["| group | prompts | colour | shape | motion (9) | background | all four |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, g in list(report["groups"].items()) + [("**all**", dict(count=report["num_prompts"],
                                                                        **report["accuracy"]))]:
        lines.append(f"| {name} | {g['count']} | {_pct(g['color'])} | {_pct(g['shape'])} | {_pct(g['motion'])} | "
                     f"{_pct(g['background'])} | {_pct(g['all'])} |")
    rms, rms128, flicker = report["path_rms_px"], report["path_rms_px_at_128"], report["flicker"]
    fps = report["fps"]
    lines += ["", f"- Straight constant-speed path, RMS residual of the centroid over {rms['count']} moving prompts"
                  f"{'' if fps is None else f' at {fps:g} FPS'}: mean {_num(rms['mean'])} px, median "
                  f"{_num(rms['median'])} px, 90th percentile {_num(rms['p90'])} px, max {_num(rms['max'])} px "
                  f"(mean {_num(rms128['mean'])} px at 128 px).",
              f"- Background flicker (std over time of the background's mean colour, 0-255): mean "
              f"{_num(flicker['mean'])}, max {_num(flicker['max'])}; steady (≤ {report['flicker_threshold']:g}) in "
              f"{_pct(flicker['steady_fraction'])} of videos.",
              *([f"- Domain FVD against renders of the same clip specs: {report['domain_fvd']:.2f}."]
                if "domain_fvd" in report else []),
              "", "| target | value | goal | met |", "|---|---:|---:|:---:|"]
    for name, t in report["targets"].items():
        if name in ("max_gap",):
            value, goal = _pct(t["value"]), f"≤ {_pct(t['target'])}"
        elif name == "path_rms_px_at_128":
            value, goal = f"{_num(t['value'])} px", f"≤ {t['target']:g} px"
        else:
            value, goal = _pct(t["value"]), f"≥ {_pct(t['target'])}"
        met = "–" if t["met"] is None else ("yes" if t["met"] else "no")
        lines.append(f"| {name} | {value} | {goal} | {met} |")
    return "\n".join(lines) + "\n"
