"""Each stage's clips, sampled as the paper does (§5): keyframes at 2 FPS, interpolation clips of 4G+1 frames at a
random skip-frame, 8 consecutive frames for the video decoder, single frames for T2I and the image MoVQ."""

from ..data.procedural import ProceduralVideos
from ..errors import FusionFramesError
from .config import RunConfig


def make_dataset(config: RunConfig):
    d, stage = config.data, config.stage
    if d.source != "procedural":
        raise FusionFramesError(f"unknown data.source {d.source!r}; available: procedural")
    common = dict(length=d.length, size=d.size, seed=d.seed)
    if stage in ("t2i", "movq"):
        return ProceduralVideos(num_frames=1, **common)
    if stage in ("interpolation", "masked-interpolation"):
        return ProceduralVideos(num_frames=d.num_frames, skip_frames=d.skip_frames, **common)
    if stage == "video-decoder":
        return ProceduralVideos(num_frames=d.num_frames, skip_frames=1, **common)  # consecutive source frames
    return ProceduralVideos(num_frames=d.num_frames, fps=d.fps, **common)
