"""Training data. ``procedural``: captioned videos of moving shapes rendered in continuous time; ``video``: captioned
video files (a folder, a CSV or a JSONL index) decoded with PyAV; ``shards``: captioned videos streamed from
WebDataset tar shards."""

from .procedural import (BACKGROUNDS, COLORS, HELD_OUT_COMBINATIONS, HELD_OUT_PHRASINGS, MAX_DURATION, MOTIONS,
                         SHAPES, SIZES, SPEEDS, ClipSpec, ProceduralVideos, canonical_caption, caption, coverage,
                         render, sample_spec)
from .shards import ShardStream, VideoShards
from .video import VIDEO_EXTENSIONS, VideoClips, VideoFile

__all__ = ["BACKGROUNDS", "COLORS", "HELD_OUT_COMBINATIONS", "HELD_OUT_PHRASINGS", "MAX_DURATION", "MOTIONS", "SHAPES",
           "SIZES", "SPEEDS", "ClipSpec", "ProceduralVideos", "canonical_caption", "caption", "coverage", "render",
           "sample_spec", "ShardStream", "VIDEO_EXTENSIONS", "VideoClips", "VideoFile", "VideoShards"]
