"""FusionFrames: text-to-video by keyframes, group interpolation and a MoVQ video decoder (arXiv 2311.13073)."""

from pathlib import Path

from .allocator import keep_freed_memory
from .errors import FusionFramesError

__version__ = "0.1.0"

# The small model trained by `make train-default` on procedural captioned video (package data).
DEFAULT_MODEL = Path(__file__).parent / "default_model"


def load_default_pipeline(dtype=None, device=None, text_encoder=None):
    """The embedded default model as a :class:`FusionFramesPipeline` (offline: its text encoder is packaged);
    ``text_encoder`` overrides it with a local folder of a compatible (384-d, same tokenizer) encoder."""
    from .pipeline import FusionFramesPipeline

    if not (DEFAULT_MODEL / "pipeline.json").is_file():
        raise FusionFramesError(f"the default model is missing from {DEFAULT_MODEL}; reinstall fusionframes, or "
                                f"rebuild it with `make train-default`")
    return FusionFramesPipeline.from_pretrained(DEFAULT_MODEL, text_encoder=text_encoder, dtype=dtype, device=device)


__all__ = ["DEFAULT_MODEL", "FusionFramesError", "keep_freed_memory", "load_default_pipeline", "__version__"]
