from .interpolation import InterpolationUNet, MaskedInterpolationUNet
from .temporal import TEMPORAL_VARIANTS
from .unet import Kandinsky3UNet, KeyframeUNet, temporal_parameter_names, train_temporal_only

__all__ = ["Kandinsky3UNet", "KeyframeUNet", "InterpolationUNet", "MaskedInterpolationUNet", "TEMPORAL_VARIANTS",
           "temporal_parameter_names", "train_temporal_only"]
