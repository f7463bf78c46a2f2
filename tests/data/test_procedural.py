"""The procedural captioned-video data: exact labels recovered from real renders, continuity in time, held-out
combinations and phrasings, the dataset's items."""

import itertools
import math
import re
import time

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from fusionframes import FusionFramesError
from fusionframes.data import (BACKGROUNDS, COLORS, HELD_OUT_COMBINATIONS, HELD_OUT_PHRASINGS, MAX_DURATION, MOTIONS,
                               SHAPES, ClipSpec, ProceduralVideos, canonical_caption, caption, render, sample_spec)
from fusionframes.data import procedural as P

DIRECTIONS8 = [m for m in MOTIONS if m != "still"]


# -- analytic readers: they look only at pixels, never at the spec ------------------------------------------------

def background_of(frame: np.ndarray) -> np.ndarray:
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]]).astype(float)
    return np.median(border, axis=0)


def weights(frame: np.ndarray) -> np.ndarray:
    """Per-pixel foreground weight ∝ coverage: distance of the pixel from the background colour."""
    return np.abs(frame.astype(float) - background_of(frame)).sum(-1)


def centroid(frame: np.ndarray) -> np.ndarray:
    w = weights(frame)
    ys, xs = np.indices(w.shape)
    return np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()


def read_colour(frame: np.ndarray):
    w = weights(frame)
    core = w >= 0.98 * w.max()
    mean = frame[core].astype(float).mean(0)
    name = min(COLORS, key=lambda c: np.abs(np.asarray(COLORS[c]) - mean).sum())
    return name, mean


def read_motion(first: np.ndarray, last: np.ndarray, still_px: float = 0.25) -> str:
    dx, dy = centroid(last) - centroid(first)
    if math.hypot(dx, dy) < still_px:
        return "still"
    angle = math.atan2(dy, dx)
    return min(DIRECTIONS8, key=lambda m: abs(math.remainder(angle - math.atan2(P.DIRECTIONS[m][1],
                                                                                 P.DIRECTIONS[m][0]), 2 * math.pi)))


def fill_ratio(frame: np.ndarray) -> float:
    """Shape area / bounding-box area: circle π/4, square 1, triangle 1/2, star ≈ 0.33."""
    w = weights(frame)
    alpha = w / w.max()
    ys, xs = np.nonzero(alpha > 0.5)
    return alpha.sum() / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))


def read_shape(frame: np.ndarray) -> str:
    r = fill_ratio(frame)
    return "square" if r > 0.9 else "circle" if r > 0.65 else "triangle" if r > 0.42 else "star"


def specs(n: int, seed: int = 0, **kwargs):
    rng = np.random.default_rng(seed)
    return [sample_spec(rng, **kwargs) for _ in range(n)]


# -- rendering ----------------------------------------------------------------------------------------------------

def test_labels_are_recovered_from_renders():
    """Colour, motion direction (9 classes) and position read back from pixels on 150 random clips."""
    for spec in specs(150, seed=1):
        first, last = render(spec, [0.0, MAX_DURATION], size=64)
        name, mean = read_colour(first)
        assert name == spec.color and np.abs(mean - COLORS[spec.color]).max() < 2, spec
        assert read_motion(first, last) == spec.motion, spec
        expected = spec.centre([0.0])[0] * 64 - 0.5  # pixel-index coordinates of the true centre
        assert np.abs(centroid(first) - expected).max() < 0.1, spec


def test_still_shapes_do_not_move():
    spec = ClipSpec("white", "star", "still", x0=0.3, y0=0.6)
    frames = render(spec, [0.0, 1.0, MAX_DURATION], size=64)
    assert (frames == frames[0]).all() and spec.speed == "none"


def test_shape_is_recovered_from_its_area_ratio_at_medium_size():
    rng = np.random.default_rng(2)
    for shape in SHAPES:
        for _ in range(8):
            spec = ClipSpec(str(rng.choice(list(COLORS))), shape, "still", str(rng.choice(list(BACKGROUNDS))),
                            "medium", x0=rng.uniform(0.2, 0.8), y0=rng.uniform(0.2, 0.8))
            assert read_shape(render(spec, [0.0], size=128)[0]) == shape, (spec, fill_ratio(render(spec, [0.0])[0]))


def test_sampled_clips_stay_inside_the_frame():
    """Whole shape in frame from t = 0 to the maximum duration: the border stays pure background."""
    for spec in specs(60, seed=3):
        for frame in render(spec, [0.0, MAX_DURATION / 2, MAX_DURATION], size=64):
            bg = np.asarray(BACKGROUNDS[spec.background], np.uint8)
            border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
            assert (border == bg).all(), spec
    for spec in specs(2000, seed=4):  # analytically, many more
        for t in (0.0, MAX_DURATION):
            x, y = spec.centre([t])[0]
            assert spec.extent <= min(x, y, 1 - x, 1 - y), spec


def test_time_is_continuous_and_each_frame_is_exact():
    spec = ClipSpec("green", "star", "down-right", "navy", "large", "fast", x0=0.3, y0=0.3, rotation=17.0)
    a, b = render(spec, [2.5, 2.5 + 1e-3]).astype(int)
    assert 0 < np.abs(a - b).max() <= 2  # 0.008 px apart: nearly equal, yet not frozen
    times = np.array([0.0, 0.37, 1 / 30, 2.5, 7.9])
    frames = render(spec, times)
    for k, t in enumerate(times):  # a frame depends only on its own time, not on the frame rate around it
        assert np.array_equal(frames[k], render(spec, [t])[0])


@pytest.mark.parametrize("motion", ["right", "up-left", "down"])
def test_centroid_moves_on_a_straight_line_at_constant_speed(motion):
    vx, vy = ClipSpec("yellow", "triangle", motion, speed="fast").velocity
    spec = ClipSpec("yellow", "triangle", motion, "gray", "medium", "fast", x0=0.5 - 4 * vx, y0=0.5 - 4 * vy,
                    rotation=30.0)  # centred at t = 4 s, mid-way through the clip
    times = np.linspace(0.0, MAX_DURATION, 9)
    points = np.stack([centroid(f) for f in render(spec, times, size=128)])
    design = np.stack([np.ones_like(times), times], axis=1)
    coef, *_ = np.linalg.lstsq(design, points, rcond=None)
    assert np.abs(design @ coef - points).max() < 0.5
    np.testing.assert_allclose(coef[1], np.asarray(spec.velocity) * 128, atol=0.02)  # px / s


def test_edges_are_anti_aliased():
    spec = ClipSpec("white", "circle", "still", size="medium", x0=0.5, y0=0.5)
    frame = render(spec, [0.0])[0, :, :, 0]
    intermediate = ((frame > 0) & (frame < 255)).sum()
    assert intermediate >= 2 * math.pi * spec.radius * 128 * 0.8  # about one partial pixel per pixel of perimeter
    area = P.coverage(spec, [0.0])[0].sum()
    assert abs(area - math.pi * (spec.radius * 128) ** 2) < 0.5  # coverage integrates to the true area
    shifted = render(ClipSpec("white", "circle", "still", x0=0.5 + 0.3 / 128, y0=0.5), [0.0])[0, :, :, 0]
    assert 0 < np.abs(shifted.astype(int) - frame).max() < 128  # a subpixel shift changes edges partially


def test_rendering_speed():
    spec = ClipSpec("blue", "star", "up-right", "gray", "large", "normal", x0=0.3, y0=0.7, rotation=10.0)
    times = np.arange(33) / 24
    render(spec, times)
    best = min(_timed(render, spec, times) for _ in range(3))
    assert best < 0.2, best


def _timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


# -- held-out combinations ----------------------------------------------------------------------------------------

def test_held_out_combinations_are_a_balanced_tenth():
    held = HELD_OUT_COMBINATIONS
    assert len(set(held)) == len(held) == 32 and 0.09 < len(held) / (8 * 4 * 9) < 0.12
    for a, b in itertools.combinations(range(3), 2):  # every pair of attributes held out at most once
        pairs = [(h[a], h[b]) for h in held]
        assert len(set(pairs)) == len(pairs)
    assert {h[0] for h in held} == set(COLORS) and {h[1] for h in held} == set(SHAPES)
    assert {h[2] for h in held} == set(MOTIONS)


def test_held_out_combinations_only_when_asked():
    rng = np.random.default_rng(5)
    train = [sample_spec(rng) for _ in range(2000)]
    assert not any(s.held_out for s in train)
    assert {(s.color, s.shape, s.motion) for s in train}.isdisjoint(HELD_OUT_COMBINATIONS)
    assert {s.color for s in train} == set(COLORS) and {s.motion for s in train} == set(MOTIONS)
    held = [sample_spec(rng, held_out=True) for _ in range(400)]
    assert all(s.held_out for s in held)
    assert {(s.color, s.shape, s.motion) for s in held} == set(HELD_OUT_COMBINATIONS)


# -- captions -----------------------------------------------------------------------------------------------------

def captions(n: int, seed: int, unseen: bool = False):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        spec = sample_spec(rng, held_out=bool(rng.random() < 0.2))
        out.append((spec, caption(spec, rng, unseen=unseen)))
    return out


def test_training_captions_name_every_attribute_in_seen_words_only():
    for spec, text in captions(2000, seed=6):
        assert P.mentions(text, P.COLOR_WORDS[spec.color]), text
        assert P.mentions(text, P.SHAPE_WORDS[spec.shape]), text
        assert P.mentions(text, P.motion_words(spec.motion, unseen=False)), text
        if spec.background == "black":
            assert not re.search(r"background|backdrop|black", text, re.I), text
        else:
            assert P.mentions(text, P.BACKGROUND_WORDS[spec.background]), text
        assert not P.mentions(text, HELD_OUT_PHRASINGS), text


def test_unseen_captions_always_use_held_out_phrasings():
    for spec, text in captions(500, seed=7, unseen=True):
        assert P.mentions(text, HELD_OUT_PHRASINGS), text
        assert P.mentions(text, P.COLOR_WORDS[spec.color] + P.UNSEEN_COLOR_WORDS[spec.color]), text
        assert P.mentions(text, P.SHAPE_WORDS[spec.shape] + P.UNSEEN_SHAPE_WORDS[spec.shape]), text
        assert P.mentions(text, P.motion_words(spec.motion)), text


def test_no_seen_phrase_contains_a_held_out_one():
    seen = P._flatten(P.COLOR_WORDS, P.SHAPE_WORDS, P.BACKGROUND_WORDS, P.SIZE_WORDS, P.SPEED_WORDS, P.VERBS,
                      P.DIRECTION_WORDS, P.DIRECTED_VERBS, P.STILL_PARTICIPLES, P.STILL_FINITE, P.STILL_ADJECTIVES,
                      P.TEMPLATES_PARTICIPLE, P.TEMPLATES_FINITE, P.TEMPLATES_NO_MOTION, P.BACKGROUND_TEMPLATES,
                      P.BACKGROUND_PREFIXES)
    for phrase in seen:
        assert not P.mentions(phrase, HELD_OUT_PHRASINGS), phrase
    assert P.mentions("a red orb", ["orb"]) and not P.mentions("in orbit", ["orb"])


def test_captions_are_varied_and_reproducible():
    spec = ClipSpec("orange", "circle", "up-left", "gray", "small", "slow", 0.7, 0.7)
    texts = [caption(spec, np.random.default_rng(i)) for i in range(300)]
    assert len(set(texts)) >= 150
    assert texts[:5] == [caption(spec, np.random.default_rng(i)) for i in range(5)]
    assert texts[0] != texts[1]
    assert canonical_caption(spec) == "an orange circle moving up and to the left on a gray background"
    assert canonical_caption(ClipSpec("red", "star", "still")) == "a red star sitting still"


# -- specs and errors ---------------------------------------------------------------------------------------------

def test_spec_validation_and_sampling_errors():
    with pytest.raises(FusionFramesError, match="unknown colour 'pink'.*'red'"):
        ClipSpec("pink", "circle", "left")
    with pytest.raises(FusionFramesError, match="unknown motion"):
        ClipSpec("red", "circle", "sideways")
    with pytest.raises(FusionFramesError, match="x0 must be a finite number"):
        ClipSpec("red", "circle", "left", x0=float("nan"))
    with pytest.raises(FusionFramesError, match="too long"):
        sample_spec(0, duration=60.0)
    with pytest.raises(FusionFramesError, match="size must be a positive integer"):
        render(ClipSpec("red", "circle", "left"), [0.0], size=0)
    assert sample_spec(3) == sample_spec(np.random.default_rng(3))
    assert ClipSpec("red", "circle", "left", x0=np.float32(0.25)).x0 == 0.25
    for seed in range(300):  # the longest clip allowed still keeps every shape in frame, by restricting speeds
        spec = sample_spec(seed, duration=P.LONGEST_DURATION)
        centres = spec.centre([0.0, P.LONGEST_DURATION])
        assert (centres >= spec.extent).all() and (centres <= 1 - spec.extent).all(), spec


# -- dataset ------------------------------------------------------------------------------------------------------

def test_dataset_items_are_deterministic_per_index():
    ds = ProceduralVideos(length=50, size=32, num_frames=4, seed=11)
    a, b, again = ds[7], ds[8], ProceduralVideos(length=50, size=32, num_frames=4, seed=11)[7]
    assert torch.equal(a["frames"], again["frames"]) and a["caption"] == again["caption"]
    assert a["labels"] == again["labels"]
    assert not torch.equal(a["frames"], b["frames"]) and a["caption"] != b["caption"]
    other = ProceduralVideos(length=50, size=32, num_frames=4, seed=12)[7]
    assert not torch.equal(a["frames"], other["frames"])
    assert torch.equal(ds[-1]["frames"], ds[49]["frames"])
    with pytest.raises(IndexError):
        ds[50]


def test_dataset_item_contents_and_shapes():
    image = ProceduralVideos(length=10, size=64, num_frames=1)[3]
    assert image["frames"].shape == (3, 1, 64, 64) and image["frames"].dtype == torch.float32
    video = ProceduralVideos(length=10, size=128, num_frames=33, skip_frames=range(1, 13), seed=1)[2]
    frames, labels = video["frames"], video["labels"]
    assert frames.shape == (3, 33, 128, 128) and -1 <= frames.min() < frames.max() <= 1
    assert 1 <= video["skip_frames"] <= 12
    np.testing.assert_allclose(video["times"].numpy(), np.arange(33) * video["skip_frames"] / 24, rtol=1e-6)
    spec = ClipSpec(**{k: v for k, v in labels.items() if k != "held_out"})
    expected = torch.from_numpy(render(spec, video["times"].double().numpy(), 128)).permute(3, 0, 1, 2) / 127.5 - 1
    assert torch.allclose(frames, expected.float(), atol=1e-6)  # labels are the whole truth about the clip
    keyframes = ProceduralVideos(length=10, size=32, num_frames=16)[0]
    np.testing.assert_allclose(keyframes["times"].numpy(), np.arange(16) * 0.5)  # default: 2 FPS
    assert "skip_frames" not in keyframes
    batch = default_collate([ProceduralVideos(length=4, size=32, num_frames=2)[i] for i in range(2)])
    assert batch["frames"].shape == (2, 3, 2, 32, 32) and len(batch["caption"]) == 2
    assert set(batch["labels"]) == {"color", "shape", "motion", "background", "size", "speed", "x0", "y0",
                                    "rotation", "held_out"}


def test_dataset_held_out_and_long_clips():
    held = ProceduralVideos(length=40, size=16, num_frames=1, held_out=True, unseen_captions=True)
    for i in range(40):
        info = held.describe(i)
        assert info["spec"].held_out and P.mentions(info["caption"], HELD_OUT_PHRASINGS)
    long = ProceduralVideos(length=100, size=16, num_frames=33, skip_frames=12)  # 16 s clips
    for i in range(100):
        info = long.describe(i)
        spec, times = info["spec"], info["times"]
        centres = spec.centre(times[[0, -1]])
        assert (centres >= spec.extent).all() and (centres <= 1 - spec.extent).all(), spec


@pytest.mark.parametrize("kwargs, message", [
    (dict(fps=2, skip_frames=3), "either fps or skip_frames"),
    (dict(num_frames=0), "num_frames must be a positive integer"),
    (dict(fps=-1.0), "fps must be a positive number"),
    (dict(skip_frames=[]), "at least one skip"),
    (dict(skip_frames=[0]), "skip_frames must be a positive integer"),
    (dict(num_frames=33, skip_frames=30), "too long"),
])
def test_dataset_rejects_bad_arguments(kwargs, message):
    with pytest.raises(FusionFramesError, match=message):
        ProceduralVideos(length=5, **kwargs)[0]
