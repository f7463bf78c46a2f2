"""Training data. ``procedural``: captioned videos of moving shapes rendered in continuous time."""

from .procedural import (BACKGROUNDS, COLORS, HELD_OUT_COMBINATIONS, HELD_OUT_PHRASINGS, MAX_DURATION, MOTIONS,
                         SHAPES, SIZES, SPEEDS, ClipSpec, ProceduralVideos, canonical_caption, caption, coverage,
                         render, sample_spec)

__all__ = ["BACKGROUNDS", "COLORS", "HELD_OUT_COMBINATIONS", "HELD_OUT_PHRASINGS", "MAX_DURATION", "MOTIONS", "SHAPES",
           "SIZES", "SPEEDS", "ClipSpec", "ProceduralVideos", "canonical_caption", "caption", "coverage", "render",
           "sample_spec"]
