"""Each stage's clips, sampled as the paper does (§5): keyframes at 2 FPS, interpolation clips of 4G+1 frames at a
random skip-frame, 8 consecutive frames for the video decoder, single frames for T2I and the image MoVQ."""

from ..data.procedural import ProceduralVideos
from ..data.shards import VideoShards
from ..data.video import VideoClips
from ..errors import FusionFramesError
from .config import RunConfig


def make_dataset(config: RunConfig):
    d, stage = config.data, config.stage
    if d.source == "procedural":
        source, common = ProceduralVideos, dict(length=d.length, size=d.size, seed=d.seed)
    elif d.source == "shards":
        if not d.path:
            raise FusionFramesError("data.source shards needs data.path (tar shards, e.g. data/shard-{000..099}.tar)")
        source, common = VideoShards, dict(urls=d.path, size=d.size, seed=d.seed)
    elif d.source == "videos":
        if not d.path:
            raise FusionFramesError("data.source videos needs data.path (a folder with .txt captions, or a "
                                    "CSV/JSONL index of path,caption)")
        source, common = VideoClips, dict(source=d.path, size=d.size, seed=d.seed)
    else:
        raise FusionFramesError(f"unknown data.source {d.source!r}; choose procedural, videos or shards")
    dataset = _build(source, stage, d, common)
    dataset.cache_refused = d.source == "shards" and d.cache_dir is not None
    return dataset


def _build(source, stage, d, common):
    if stage in ("t2i", "movq"):
        return source(num_frames=1, **common)
    if stage in ("interpolation", "masked-interpolation"):
        return source(num_frames=d.num_frames, skip_frames=d.skip_frames, **common)
    if stage == "video-decoder":
        return source(num_frames=d.num_frames, skip_frames=1, **common)  # consecutive source frames
    return source(num_frames=d.num_frames, fps=d.fps, **common)
