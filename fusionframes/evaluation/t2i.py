"""The text-to-image stage on its own: "a {colour} {shape}" for every colour and shape, each image read back by the
alignment reader. The keyframe model keeps the T2I model's spatial weights frozen and inherits what they draw, so
colour, shape and the black background (what a prompt that names none means) are worth checking before temporal
blocks are trained on it."""

from typing import Callable, List, Sequence

import numpy as np

from ..data.procedural import COLORS, SHAPES
from ..errors import FusionFramesError
from .alignment import read_video_labels


def t2i_prompts() -> List[dict]:
    return [dict(prompt=f"a {color} {shape}", color=color, shape=shape) for color in COLORS for shape in SHAPES]


def evaluate_t2i(generate: Callable[[Sequence[str], int], np.ndarray], seeds: int = 2) -> dict:
    """``generate(prompts, seed)`` → uint8 images (N, H, W, 3). Every prompt once per seed 0 … ``seeds`` − 1;
    returns accuracy of colour, shape and background (black), the mean background level (0–255; black is 0) and
    the per-image rows."""
    if seeds < 1:
        raise FusionFramesError(f"seeds must be ≥ 1, got {seeds}")
    prompts, rows = t2i_prompts(), []
    for seed in range(seeds):
        images = generate([p["prompt"] for p in prompts], seed)
        for p, image in zip(prompts, images):
            labels = read_video_labels(np.stack([image, image]))  # a still "video": the reader wants a time axis
            rows.append(dict(**p, seed=seed, read_color=labels["color"], read_shape=labels["shape"],
                             background=labels["background"],
                             background_level=float(np.mean(labels["background_rgb"]))))
    accuracy = dict(color=np.mean([r["read_color"] == r["color"] for r in rows]),
                    shape=np.mean([r["read_shape"] == r["shape"] for r in rows]),
                    background=np.mean([r["background"] == "black" for r in rows]))
    return dict(accuracy={k: float(v) for k, v in accuracy.items()}, images=len(rows),
                background_level=float(np.mean([r["background_level"] for r in rows])), per_image=rows)
