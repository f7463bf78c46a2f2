"""Writing videos: H.264 MP4 through PyAV (bundled FFmpeg), written atomically."""

import os
import tempfile
from pathlib import Path

import av
import numpy as np

from .errors import FusionFramesError


def write_video(frames: np.ndarray, path, fps: float = 30.0, crf: int = 18) -> Path:
    """``frames`` uint8 (F, H, W, 3) → H.264 MP4 at ``path``; a failed write leaves no file behind."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise FusionFramesError(f"frames must be uint8 (frames, height, width, 3), got {frames.dtype} {frames.shape}")
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise FusionFramesError(f"output must be an .mp4 file, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # H.264 with yuv420p needs even sizes: pad by edge replication rather than rescale.
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("libx264", rate=round(fps))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_video(path) -> np.ndarray:
    """All frames of a video file as uint8 (F, H, W, 3)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
