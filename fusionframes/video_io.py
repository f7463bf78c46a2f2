"""Writing files atomically (videos as H.264 MP4 through PyAV with its bundled FFmpeg, reports, caches)."""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import av
import numpy as np

from .errors import FusionFramesError


def publish(tmp, path, folder: bool = False):
    """Move a finished temporary file or folder into place with the permissions a plain create would give
    (mkstemp/mkdtemp make them owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if folder else 0o666) & ~umask)
    os.replace(tmp, path)


def write_atomic(path, write: Callable[[str], object]) -> Path:
    """``write(tmp)`` fills a temporary file beside ``path`` (same suffix) that becomes ``path`` only once
    complete; on any error or interrupt it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def claim_folder(folder, identity: dict, mismatch: str) -> Path:
    """Create ``folder`` for the run that ``identity`` describes, or check that it was made for that same run;
    another run's folder (or an unreadable stamp) raises ``FusionFramesError(mismatch)``."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp, text = folder / "identity.json", json.dumps(identity, sort_keys=True, default=str)
    if not stamp.is_file():
        write_atomic(stamp, lambda tmp: Path(tmp).write_text(text))
        return folder
    try:
        same = json.loads(stamp.read_text()) == json.loads(text)
    except ValueError:
        same = False
    if not same:
        raise FusionFramesError(mismatch)
    return folder


@contextmanager
def staged_folder(target):
    """Yields a temporary folder beside ``target`` that becomes ``target`` (new or empty) only if the block
    finishes; on any error or interrupt it is removed, so no half-written folder is ever left."""
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            target.rmdir()
        publish(staging, target, folder=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise FusionFramesError(f"frames must be uint8 (frames, height, width, 3), got {frames.dtype} {frames.shape}")
    return frames


def _check_parent(path: Path, create: bool):
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FusionFramesError(f"the folder {path.parent} does not exist; create it or choose another output path")


def write_video(frames: np.ndarray, path, fps: float = 30.0, crf: int = 18, metadata: Optional[dict] = None,
                create_folder: bool = True) -> Path:
    """``frames`` uint8 (F, H, W, 3) → H.264 yuv420p MP4 at ``path`` (plays in browsers); ``metadata`` strings are
    stored in the container. A failed or interrupted write leaves no file behind."""
    frames = _check_frames(frames)
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise FusionFramesError(f"output must be an .mp4 file, got {path}")
    _check_parent(path, create_folder)
    # H.264 with yuv420p needs even sizes: pad by edge replication rather than rescale.
    h, w = frames.shape[1:3]
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w") as container:
            container.metadata.update(metadata or {})
            stream = container.add_stream("libx264", rate=round(fps))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_gif(frames: np.ndarray, path, fps: float = 8.0) -> Path:
    from PIL import Image

    frames, path = _check_frames(frames), Path(path)
    _check_parent(path, create=False)
    fd, tmp = tempfile.mkstemp(suffix=".gif", prefix=f".{path.stem}.", dir=path.parent)
    os.close(fd)
    try:
        images = [Image.fromarray(frame) for frame in frames]
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(20, round(1000 / fps)))
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_frames(frames: np.ndarray, folder) -> Path:
    """One PNG per frame (``frame_00000.png`` …) in a new folder, written to a temporary folder first."""
    from PIL import Image

    frames, folder = _check_frames(frames), Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FusionFramesError(f"frames folder {folder} is not empty; choose a new one")
    _check_parent(folder, create=False)
    with staged_folder(folder) as staging:
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(staging / f"frame_{i:05d}.png")
    return folder


def read_metadata(path) -> dict:
    with av.open(str(path)) as container:
        return dict(container.metadata)


def read_video(path) -> np.ndarray:
    """All frames of a video file as uint8 (F, H, W, 3)."""
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
