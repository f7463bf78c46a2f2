"""Procedural captioned video: coloured shapes moving in straight lines, rendered exactly at any time.

A clip is a :class:`ClipSpec` (colour, shape, motion, background, size, speed, start position, rotation). The shape's
centre moves in continuous time, ``centre(t) = start + velocity · t`` (image fractions, x to the right, y down,
velocity in image fractions per second), so a frame rate or a skip-frame is only the list of times passed to
:func:`render`. Frames are drawn from analytic signed distances with a one-pixel linear edge (box-filter
anti-aliasing) and vectorised over frames with numpy.

:func:`sample_spec` draws specs whose whole shape stays inside the frame for the clip's duration (8 s by default);
:func:`caption` writes varied English for a spec. Two things never reach the training distribution:

* ``HELD_OUT_COMBINATIONS``: 32 of the 288 colour × shape × motion triples (11%), produced only by
  ``sample_spec(rng, held_out=True)``, to measure compositional generalisation. Every colour × shape,
  colour × motion and shape × motion pair is held out at most once, so each pair is still seen in training.
* ``HELD_OUT_PHRASINGS``: templates and synonyms used only by ``caption(spec, rng, unseen=True)``, to measure how
  far the model leans on the text encoder rather than on memorised wording.

:class:`ProceduralVideos` is a map-style torch dataset: item ``i`` depends only on ``(seed, i)``, so a training run
resumes its data position exactly.
"""

import math
import re
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import FusionFramesError
from .sampling import SOURCE_FPS, check_positive_int, check_sampling

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------------

COLORS: Dict[str, Tuple[int, int, int]] = {
    "red": (225, 30, 35),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 30),
    "green": (40, 200, 60),
    "cyan": (0, 215, 225),
    "blue": (40, 80, 240),
    "purple": (150, 50, 210),
    "white": (255, 255, 255),
}
SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "star")
MOTIONS: Tuple[str, ...] = ("left", "right", "up", "down", "up-left", "up-right", "down-left", "down-right", "still")
# Unit direction of each motion in image coordinates (x right, y down).
_D = 1 / math.sqrt(2)
DIRECTIONS: Dict[str, Tuple[float, float]] = {
    "left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0),
    "up-left": (-_D, -_D), "up-right": (_D, -_D), "down-left": (-_D, _D), "down-right": (_D, _D), "still": (0.0, 0.0),
}
BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (110, 110, 110),
    "navy": (20, 30, 90),
    "dark green": (20, 75, 35),
}
BACKGROUND_PROBS: Dict[str, float] = {"black": 0.55, "gray": 0.15, "navy": 0.15, "dark green": 0.15}
# Size = the shape's nominal radius as a fraction of the image side.
SIZES: Dict[str, float] = {"small": 0.07, "medium": 0.10, "large": 0.13}
# Speed in image fractions per second; "none" is the speed of a still shape.
SPEEDS: Dict[str, float] = {"slow": 0.025, "normal": 0.04, "fast": 0.06}
NO_SPEED = "none"
MAX_DURATION = 8.0  # seconds a sampled clip stays wholly inside the frame (16 keyframes at 2 FPS = 7.5 s)
MARGIN = 0.02  # free border (image fraction) kept around the shape

STAR_INNER_RATIO = 0.382  # inner / outer radius of a regular five-pointed star (pentagram outline)
# Each shape's outline in units of its nominal radius (y down), and its circumradius (the extent kept in frame).
_SHAPE_SCALE = {"circle": 1.0, "square": 0.9, "triangle": 1.3, "star": 1.35}


def _shape_vertices(shape: str) -> Optional[np.ndarray]:
    s = _SHAPE_SCALE[shape]
    if shape == "circle":
        return None
    if shape == "square":
        return s * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    if shape == "triangle":  # equilateral, pointing up; its centroid is the origin
        angles = np.radians([-90.0, 30.0, 150.0])
        return s * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    angles = np.radians(-90.0 + 36.0 * np.arange(10))  # star: 5 points, the first pointing up
    radii = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER_RATIO) * s
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def shape_extent(shape: str) -> float:
    """Distance from the centre to the farthest point of the outline, in units of the nominal radius."""
    return _SHAPE_SCALE[shape] * (math.sqrt(2) if shape == "square" else 1.0)


def _held_out_combinations() -> Tuple[Tuple[str, str, str], ...]:
    # One motion per colour × shape pair: motion index (c + 2s) mod 9. As 2 is invertible mod 9, each colour × motion
    # and shape × motion pair is also held out at most once.
    return tuple((c, s, MOTIONS[(ci + 2 * si) % len(MOTIONS)])
                 for ci, c in enumerate(COLORS) for si, s in enumerate(SHAPES))


HELD_OUT_COMBINATIONS: Tuple[Tuple[str, str, str], ...] = _held_out_combinations()
# The longest clip in which every shape, at every size, still has a feasible (slow) speed and start.
LONGEST_DURATION = (1 - 2 * (max(SIZES.values()) * max(map(shape_extent, SHAPES)) + MARGIN)) / min(SPEEDS.values())
_HELD_OUT_SET = frozenset(HELD_OUT_COMBINATIONS)
_TRAIN_TRIPLES = tuple((c, s, m) for c in COLORS for s in SHAPES for m in MOTIONS if (c, s, m) not in _HELD_OUT_SET)

# ---------------------------------------------------------------------------------------------------------------
# Clip specification and sampling
# ---------------------------------------------------------------------------------------------------------------


def _check_choice(what: str, value, choices) -> None:
    if value not in choices:
        raise FusionFramesError(f"unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}")


@dataclass(frozen=True)
class ClipSpec:
    """One clip: what is drawn and how it moves. ``x0, y0`` is the centre at t = 0 (image fractions, y down);
    ``rotation`` is the shape's fixed orientation in degrees, counter-clockwise on screen."""

    color: str
    shape: str
    motion: str
    background: str = "black"
    size: str = "medium"
    speed: str = "normal"
    x0: float = 0.5
    y0: float = 0.5
    rotation: float = 0.0

    def __post_init__(self):
        _check_choice("colour", self.color, tuple(COLORS))
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("motion", self.motion, MOTIONS)
        _check_choice("background", self.background, tuple(BACKGROUNDS))
        _check_choice("size", self.size, tuple(SIZES))
        if self.motion == "still":
            object.__setattr__(self, "speed", NO_SPEED)  # a still shape has no speed
        else:
            _check_choice("speed", self.speed, tuple(SPEEDS))
        for name in ("x0", "y0", "rotation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value):
                raise FusionFramesError(f"{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def velocity(self) -> Tuple[float, float]:
        """(vx, vy) in image fractions per second."""
        if self.motion == "still":
            return 0.0, 0.0
        dx, dy = DIRECTIONS[self.motion]
        v = SPEEDS[self.speed]
        return dx * v, dy * v

    @property
    def radius(self) -> float:
        """Nominal radius as a fraction of the image side."""
        return SIZES[self.size]

    @property
    def extent(self) -> float:
        """Distance from the centre to the farthest point of the shape, as a fraction of the image side."""
        return SIZES[self.size] * shape_extent(self.shape)

    @property
    def held_out(self) -> bool:
        return (self.color, self.shape, self.motion) in _HELD_OUT_SET

    def centre(self, times) -> np.ndarray:
        """Centres (F, 2) = (x, y) in image fractions at ``times`` (seconds)."""
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        vx, vy = self.velocity
        return np.stack([self.x0 + vx * t, self.y0 + vy * t], axis=1)

    def labels(self) -> dict:
        """Every attribute as plain Python values, plus whether the triple is held out."""
        return dict(asdict(self), held_out=self.held_out)


def _generator(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def sample_spec(rng, held_out: bool = False, *, duration: float = MAX_DURATION, rotation: bool = False,
                background: Optional[str] = None) -> ClipSpec:
    """A random clip. ``held_out=False`` never yields a triple of ``HELD_OUT_COMBINATIONS``; ``held_out=True`` yields
    only those. The start is uniform over the positions from which the whole shape stays in the frame (with a
    ``MARGIN``) from t = 0 to ``duration`` seconds; speeds too fast for that are not drawn. ``rotation=True`` draws a
    random orientation (default: upright). ``background`` fixes the background (default: black with probability
    0.55, else gray, navy or dark green)."""
    rng = _generator(rng)
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and duration >= 0):
        raise FusionFramesError(f"duration must be a non-negative number of seconds, got {duration!r}")
    if duration > LONGEST_DURATION:
        raise FusionFramesError(f"a clip of {duration:g} s is too long: shapes would leave the frame; "
                                f"use clips of at most {LONGEST_DURATION:.1f} s")
    color, shape, motion = _pick(rng, HELD_OUT_COMBINATIONS if held_out else _TRAIN_TRIPLES)
    if background is None:
        names = list(BACKGROUND_PROBS)
        background = names[int(rng.choice(len(names), p=list(BACKGROUND_PROBS.values())))]
    size = _pick(rng, tuple(SIZES))
    extent = SIZES[size] * shape_extent(shape) + MARGIN
    lo, hi = extent, 1.0 - extent
    dx, dy = DIRECTIONS[motion]
    if motion == "still":
        speed = NO_SPEED
    else:
        speed = _pick(rng, [s for s, v in SPEEDS.items() if max(abs(dx), abs(dy)) * v * duration <= hi - lo])
    v = SPEEDS.get(speed, 0.0)
    start = []
    for d in (dx, dy):
        shift = d * v * duration
        start.append(float(rng.uniform(lo - min(shift, 0.0), hi - max(shift, 0.0))))
    angle = float(rng.uniform(0.0, 360.0)) if rotation else 0.0
    return ClipSpec(color, shape, motion, background, size, speed, start[0], start[1], angle)


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def _polygon_sdf(px: np.ndarray, py: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Exact signed distance (negative inside) from points to a simple polygon (crossing-number sign)."""
    d2 = None
    inside = None
    n = len(verts)
    for i in range(n):
        vix, viy = verts[i]
        vjx, vjy = verts[i - 1]
        ex, ey = vjx - vix, vjy - viy
        wx, wy = px - vix, py - viy
        h = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        bx, by = wx - ex * h, wy - ey * h
        dd = bx * bx + by * by
        d2 = dd if d2 is None else np.minimum(d2, dd)
        c1, c2, c3 = py >= viy, py < vjy, ex * wy > ey * wx
        flip = (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
        inside = flip if inside is None else inside ^ flip
    return np.where(inside, -1.0, 1.0) * np.sqrt(d2)


def coverage(spec: ClipSpec, times, size: int = 128) -> np.ndarray:
    """Fraction of each pixel covered by the shape, float32 (F, size, size) in [0, 1]."""
    if not (isinstance(size, (int, np.integer)) and size >= 1):
        raise FusionFramesError(f"size must be a positive integer number of pixels, got {size!r}")
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(times)):
        raise FusionFramesError("times must be finite numbers of seconds")
    size = int(size)
    frames = len(times)
    centres = spec.centre(times) * size  # pixel units; pixel (i, j) covers [j, j+1) × [i, i+1)
    radius = spec.radius * size
    half = spec.extent * size + 1.0  # geometric extent plus the anti-aliased edge
    patch = int(math.ceil(2 * half)) + 2
    origin = np.floor(centres - half).astype(np.int64)  # (F, 2) top-left pixel of each frame's patch
    offsets = np.arange(patch, dtype=np.float64) + 0.5
    local_x = (origin[:, 0:1] + offsets - centres[:, 0:1]) / radius  # (F, P), in units of the radius
    local_y = (origin[:, 1:2] + offsets - centres[:, 1:2]) / radius
    px, py = local_x[:, None, :], local_y[:, :, None]
    verts = _shape_vertices(spec.shape)
    if verts is None:
        sdf = np.sqrt(px * px + py * py) - 1.0
    else:
        a = math.radians(spec.rotation)  # counter-clockwise on screen (y down)
        rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        sdf = _polygon_sdf(px, py, verts @ rot.T)
    alpha = np.clip(0.5 - sdf * radius, 0.0, 1.0).astype(np.float32)  # one-pixel linear edge
    out = np.zeros((frames, size, size), dtype=np.float32)
    for f in range(frames):
        x, y = int(origin[f, 0]), int(origin[f, 1])
        x0, x1, y0, y1 = max(x, 0), min(x + patch, size), max(y, 0), min(y + patch, size)
        if x1 > x0 and y1 > y0:
            out[f, y0:y1, x0:x1] = alpha[f, y0 - y:y1 - y, x0 - x:x1 - x]
    return out


def render(spec: ClipSpec, times, size: int = 128) -> np.ndarray:
    """The clip at ``times`` (seconds, any spacing): uint8 (F, size, size, 3). Each frame depends only on its own
    time, so a frame rate, a skip-frame or a single instant are all just a choice of times."""
    alpha = coverage(spec, times, size)[..., None]
    background = np.asarray(BACKGROUNDS[spec.background], dtype=np.float32)
    foreground = np.asarray(COLORS[spec.color], dtype=np.float32)
    return np.rint(background + alpha * (foreground - background)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------------------------
# Every table has the words used in training captions and, separately, words reserved for unseen-phrasing prompts.

COLOR_WORDS: Dict[str, Tuple[str, ...]] = {
    "red": ("red", "scarlet"), "orange": ("orange",), "yellow": ("yellow",), "green": ("green", "lime green"),
    "cyan": ("cyan", "turquoise"), "blue": ("blue",), "purple": ("purple",), "white": ("white",),
}
UNSEEN_COLOR_WORDS: Dict[str, Tuple[str, ...]] = {
    "red": ("crimson",), "orange": ("tangerine",), "yellow": ("canary yellow",), "green": ("emerald",),
    "cyan": ("aqua",), "blue": ("royal blue",), "purple": ("violet",), "white": ("snow-white",),
}
SHAPE_WORDS: Dict[str, Tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle", "triangular shape"),
    "star": ("star", "five-pointed star"),
}
UNSEEN_SHAPE_WORDS: Dict[str, Tuple[str, ...]] = {
    "circle": ("orb", "sphere"), "square": ("tile",), "triangle": ("pyramid",), "star": ("pentagram",),
}
BACKGROUND_WORDS: Dict[str, Tuple[str, ...]] = {
    "gray": ("gray", "grey"), "navy": ("navy", "navy blue", "dark blue"), "dark green": ("dark green", "forest green"),
}
UNSEEN_BACKGROUND_WORDS: Dict[str, Tuple[str, ...]] = {
    "gray": ("slate gray",), "navy": ("midnight blue",), "dark green": ("pine green",),
}
SIZE_WORDS: Dict[str, Tuple[str, ...]] = {
    "small": ("small", "tiny", "little"), "medium": ("medium-sized", "mid-sized"), "large": ("large", "big"),
}
UNSEEN_SIZE_WORDS: Dict[str, Tuple[str, ...]] = {
    "small": ("miniature",), "medium": ("average-sized",), "large": ("giant",),
}
SPEED_WORDS: Dict[str, Tuple[str, ...]] = {
    "slow": ("slowly", "gently", "at a slow pace"), "normal": ("steadily", "at a steady pace"),
    "fast": ("quickly", "fast", "rapidly", "at high speed"),
}
UNSEEN_SPEED_WORDS: Dict[str, Tuple[str, ...]] = {
    "slow": ("sluggishly",), "normal": ("at an even pace",), "fast": ("swiftly", "briskly"),
}
# Verbs of motion: (participle, finite third person).
VERBS: Tuple[Tuple[str, str], ...] = (
    ("moving", "moves"), ("drifting", "drifts"), ("sliding", "slides"), ("gliding", "glides"),
    ("heading", "heads"), ("travelling", "travels"), ("going", "goes"), ("floating", "floats"),
)
UNSEEN_VERBS: Tuple[Tuple[str, str], ...] = (
    ("cruising", "cruises"), ("coasting", "coasts"), ("making its way", "makes its way"),
)


def _diagonal(vertical: str, horizontal: str, top: str, bottom: str) -> Tuple[str, ...]:
    edge = top if vertical == "up" else bottom
    upper = "upper" if vertical == "up" else "lower"
    return (f"{vertical} and to the {horizontal}", f"{vertical} and {horizontal}", f"toward the {upper} {horizontal}",
            f"towards the {edge} {horizontal}", f"to the {upper} {horizontal}",
            f"diagonally {vertical} and to the {horizontal}")


DIRECTION_WORDS: Dict[str, Tuple[str, ...]] = {
    "left": ("left", "to the left", "leftward", "leftwards", "towards the left", "toward the left"),
    "right": ("right", "to the right", "rightward", "rightwards", "towards the right", "toward the right"),
    "up": ("up", "upward", "upwards", "towards the top", "toward the top"),
    "down": ("down", "downward", "downwards", "towards the bottom", "toward the bottom"),
    "up-left": _diagonal("up", "left", "top", "bottom"),
    "up-right": _diagonal("up", "right", "top", "bottom"),
    "down-left": _diagonal("down", "left", "top", "bottom"),
    "down-right": _diagonal("down", "right", "top", "bottom"),
}
UNSEEN_DIRECTION_WORDS: Dict[str, Tuple[str, ...]] = {
    "left": ("in a leftward direction", "toward the left-hand side"),
    "right": ("in a rightward direction", "toward the right-hand side"),
    "up": ("in an upward direction", "toward the top edge"),
    "down": ("in a downward direction", "toward the bottom edge"),
    "up-left": ("toward the top-left corner",), "up-right": ("toward the top-right corner",),
    "down-left": ("toward the bottom-left corner",), "down-right": ("toward the bottom-right corner",),
}
# Verbs that carry their direction: (participle, finite).
DIRECTED_VERBS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "up": (("rising", "rises"), ("climbing", "climbs")),
    "down": (("falling", "falls"), ("sinking", "sinks"), ("descending", "descends")),
}
UNSEEN_DIRECTED_VERBS: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "up": (("ascending", "ascends"),), "down": (("dropping", "drops"),),
}
# Still: participial phrases, finite phrases and adjectives before the noun.
STILL_PARTICIPLES = ("sitting still", "standing still", "staying still", "holding still", "not moving",
                     "resting in place", "staying in one place", "at rest", "staying put", "motionless", "stationary")
STILL_FINITE = ("sits still", "stands still", "stays still", "does not move", "doesn't move", "rests in place",
                "stays in one place", "is at rest", "stays put", "is motionless", "remains stationary", "remains still")
STILL_ADJECTIVES = ("motionless", "stationary", "still", "unmoving")
UNSEEN_STILL_PARTICIPLES = ("frozen in place", "keeping its position")
UNSEEN_STILL_FINITE = ("is frozen in place", "keeps its position", "never moves")
UNSEEN_STILL_ADJECTIVES = ("immobile",)

# Templates: {obj} noun phrase, {part} participial motion, {fin} finite motion, {bg} background suffix (or "").
TEMPLATES_PARTICIPLE = ("{obj} {part}{bg}", "{obj} {part}{bg}", "{obj} {part}{bg}", "a video of {obj} {part}{bg}",
                        "a clip of {obj} {part}{bg}", "an animation of {obj} {part}{bg}", "{obj}, {part}{bg}",
                        "there is {obj} {part}{bg}", "{obj} is {part}{bg}", "a shot of {obj} {part}{bg}")
TEMPLATES_FINITE = ("{obj} {fin}{bg}", "{obj} {fin}{bg}", "{obj} that {fin}{bg}", "in the video, {obj} {fin}{bg}")
TEMPLATES_NO_MOTION = ("{obj}{bg}", "a video of {obj}{bg}", "a clip of {obj}{bg}")  # with a still adjective
BACKGROUND_TEMPLATES = (" on a {b} background", " against a {b} background", " on a {b} backdrop",
                        " over a {b} background", ", {b} background")
BACKGROUND_PREFIXES = ("on a {b} background, ", "against a {b} backdrop, ")
UNSEEN_TEMPLATES_PARTICIPLE = ("footage showing {obj} {part}{bg}", "we see {obj} {part}{bg}")
UNSEEN_TEMPLATES_FINITE = ("watch as {obj} {fin}{bg}", "in this scene, {obj} {fin}{bg}")
UNSEEN_TEMPLATES_NO_MOTION = ("footage showing {obj}{bg}", "we see {obj}{bg}")
UNSEEN_BACKGROUND_TEMPLATES = (" set against {b}", " with a {b} background behind it")


def _flatten(*tables) -> Tuple[str, ...]:
    out = []
    for table in tables:
        values = table.values() if isinstance(table, dict) else [table]
        for value in values:
            for item in value:
                out.extend(item if isinstance(item, tuple) else (item,))
    return tuple(out)


# Every phrase that only unseen captions use. Matched as whole words, case-insensitively, they never occur in a
# training caption (tested).
HELD_OUT_PHRASINGS: Tuple[str, ...] = tuple(dict.fromkeys(
    _flatten(UNSEEN_COLOR_WORDS, UNSEEN_SHAPE_WORDS, UNSEEN_BACKGROUND_WORDS, UNSEEN_SIZE_WORDS, UNSEEN_SPEED_WORDS,
             UNSEEN_VERBS, UNSEEN_DIRECTION_WORDS, UNSEEN_DIRECTED_VERBS, UNSEEN_STILL_PARTICIPLES,
             UNSEEN_STILL_FINITE, UNSEEN_STILL_ADJECTIVES)
    + ("footage showing", "we see", "watch as", "in this scene", "set against", "behind it")))


def motion_words(motion: str, unseen: bool = True) -> Tuple[str, ...]:
    """Every word or phrase a caption may use for ``motion`` (with the unseen ones if ``unseen``)."""
    if motion == "still":
        words = STILL_PARTICIPLES + STILL_FINITE + STILL_ADJECTIVES
        return words + (UNSEEN_STILL_PARTICIPLES + UNSEEN_STILL_FINITE + UNSEEN_STILL_ADJECTIVES if unseen else ())
    words = DIRECTION_WORDS[motion] + _flatten(DIRECTED_VERBS.get(motion, ()))
    return words + (UNSEEN_DIRECTION_WORDS[motion] + _flatten(UNSEEN_DIRECTED_VERBS.get(motion, ())) if unseen else ())


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _choose(rng, seen: Sequence, unseen: Sequence, use_unseen: bool):
    return _pick(rng, unseen if (use_unseen and unseen) else seen)


def caption(spec: ClipSpec, rng, unseen: bool = False, p_size: float = 0.3, p_speed: float = 0.35) -> str:
    """A random English description of ``spec``. The colour and shape are always named; the background only when it
    is not black (black is what a caption naming none means); the size with probability ``p_size``, the speed of a
    moving shape with probability ``p_speed``.

    ``unseen=False`` uses only training phrasings. ``unseen=True`` always uses a held-out template and, slot by slot
    with probability 1/2, held-out synonyms: every such caption contains a phrase of ``HELD_OUT_PHRASINGS``.
    """
    rng = _generator(rng)

    def slot(seen, held):  # one word slot: held-out synonyms half of the time in unseen mode
        return _choose(rng, seen, held, unseen and rng.random() < 0.5)

    color = slot(COLOR_WORDS[spec.color], UNSEEN_COLOR_WORDS[spec.color])
    shape = slot(SHAPE_WORDS[spec.shape], UNSEEN_SHAPE_WORDS[spec.shape])
    words = [color, shape]
    if rng.random() < p_size:
        words.insert(0, slot(SIZE_WORDS[spec.size], UNSEEN_SIZE_WORDS[spec.size]))

    still_adjective = spec.motion == "still" and rng.random() < 0.3
    if still_adjective:
        words.insert(0, slot(STILL_ADJECTIVES, UNSEEN_STILL_ADJECTIVES))
    noun_phrase = " ".join(words)
    obj = f"{_pick(rng, ('a', 'a', 'the'))} {noun_phrase}"
    if obj.startswith("a "):
        obj = f"{_article(noun_phrase)} {noun_phrase}"

    part = fin = ""
    if spec.motion == "still":
        part = slot(STILL_PARTICIPLES, UNSEEN_STILL_PARTICIPLES)
        fin = slot(STILL_FINITE, UNSEEN_STILL_FINITE)
    else:
        directed = DIRECTED_VERBS.get(spec.motion, ())
        unseen_directed = UNSEEN_DIRECTED_VERBS.get(spec.motion, ())
        if directed and rng.random() < 0.3:
            p, f = slot(directed, unseen_directed)
        else:
            (p, f), direction = slot(VERBS, UNSEEN_VERBS), slot(DIRECTION_WORDS[spec.motion],
                                                                    UNSEEN_DIRECTION_WORDS[spec.motion])
            p, f = f"{p} {direction}", f"{f} {direction}"
        if rng.random() < p_speed:
            adverb = slot(SPEED_WORDS[spec.speed], UNSEEN_SPEED_WORDS[spec.speed])
            if adverb.endswith("ly") and rng.random() < 0.5:
                p, f = f"{adverb} {p}", f"{adverb} {f}"
            else:
                p, f = f"{p} {adverb}", f"{f} {adverb}"
        part, fin = p, f

    bg = prefix = ""
    if spec.background != "black":
        name = slot(BACKGROUND_WORDS[spec.background], UNSEEN_BACKGROUND_WORDS[spec.background])
        if unseen:
            bg = _pick(rng, UNSEEN_BACKGROUND_TEMPLATES).format(b=name)
        elif rng.random() < 0.25:
            prefix = _pick(rng, BACKGROUND_PREFIXES).format(b=name)
        else:
            bg = _pick(rng, BACKGROUND_TEMPLATES).format(b=name)

    if still_adjective:
        templates = UNSEEN_TEMPLATES_NO_MOTION if unseen else TEMPLATES_NO_MOTION
    elif rng.random() < 0.6:
        templates = UNSEEN_TEMPLATES_PARTICIPLE if unseen else TEMPLATES_PARTICIPLE
    else:
        templates = UNSEEN_TEMPLATES_FINITE if unseen else TEMPLATES_FINITE
    text = prefix + _pick(rng, templates).format(obj=obj, part=part, fin=fin, bg=bg)
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.4:
        text += "."
    return text


def canonical_caption(spec: ClipSpec) -> str:
    """The plainest training-distribution caption: "a red circle moving to the left on a gray background"."""
    motion = {"left": "moving to the left", "right": "moving to the right", "up": "moving up", "down": "moving down",
              "still": "sitting still"}.get(spec.motion)
    motion = motion or f"moving {DIRECTION_WORDS[spec.motion][0]}"  # diagonals: "moving up and to the left"
    bg = "" if spec.background == "black" else f" on a {BACKGROUND_WORDS[spec.background][0]} background"
    return f"{_article(spec.color)} {spec.color} {spec.shape} {motion}{bg}"


def mentions(text: str, phrases: Sequence[str]) -> bool:
    """Whether ``text`` contains one of ``phrases`` as whole words (case-insensitive)."""
    return any(re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", text, re.IGNORECASE) for p in phrases)


# ---------------------------------------------------------------------------------------------------------------
# Dataset
# ---------------------------------------------------------------------------------------------------------------



class ProceduralVideos(Dataset):
    """Map-style dataset of procedural clips; item ``i`` depends only on ``(seed, i)``.

    Frames are ``num_frames`` instants ``spacing`` seconds apart from t = 0, with ``spacing = 1 / fps`` (default
    2 FPS: keyframes) or, when ``skip_frames`` is given (an int or a sequence of ints to draw from per item),
    ``s / 24`` seconds for a drawn ``s`` (interpolation clips). ``num_frames=1`` gives single images (T2I).
    Specs are drawn so the shape stays wholly in frame for ``max(8 s, clip duration)``.

    An item is ``dict(frames=float32 (3, F, size, size) in [-1, 1], caption=str, labels=dict, times=float32 (F,))``
    plus ``skip_frames=int`` when ``skip_frames`` was given. ``held_out=True`` draws only held-out combinations;
    ``unseen_captions=True`` writes captions with held-out phrasings.
    """

    def __init__(self, length: int = 100_000, size: int = 128, num_frames: int = 16, fps: Optional[float] = None,
                 skip_frames: Union[None, int, Sequence[int]] = None, held_out: bool = False, seed: int = 0,
                 unseen_captions: bool = False, rotation: bool = False):
        self.length = check_positive_int("length", length)
        self.size, self.num_frames, self.fps, self.skip_frames, self.seed = check_sampling(
            size, num_frames, fps, skip_frames, seed)
        self.held_out, self.unseen_captions, self.rotation = bool(held_out), bool(unseen_captions), bool(rotation)

    def __len__(self) -> int:
        return self.length

    def _index(self, index) -> int:
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} clips")
        return index

    def describe(self, index: int) -> dict:
        """Everything about item ``index`` but its pixels: ``spec``, ``times`` (seconds), ``caption``, ``skip``."""
        rng = np.random.default_rng((self.seed, self._index(index)))
        skip = _pick(rng, self.skip_frames) if self.skip_frames else None
        spacing = skip / SOURCE_FPS if skip else 1.0 / self.fps
        times = np.arange(self.num_frames, dtype=np.float64) * spacing
        spec = sample_spec(rng, self.held_out, duration=max(MAX_DURATION, float(times[-1])), rotation=self.rotation)
        return dict(spec=spec, times=times, caption=caption(spec, rng, unseen=self.unseen_captions), skip=skip)

    def __getitem__(self, index: int) -> dict:
        info = self.describe(index)
        frames = render(info["spec"], info["times"], self.size)
        tensor = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div_(127.5).sub_(1.0)
        item = dict(frames=tensor, caption=info["caption"], labels=info["spec"].labels(),
                    times=torch.from_numpy(info["times"].astype(np.float32)))
        if info["skip"] is not None:
            item["skip_frames"] = info["skip"]
        return item
