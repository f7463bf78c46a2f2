"""FusionFrames: text-to-video by keyframes, group interpolation and a MoVQ video decoder (arXiv 2311.13073)."""

from .errors import FusionFramesError

__version__ = "0.1.0"
__all__ = ["FusionFramesError", "__version__"]
