"""LPIPS (Zhang et al. 2018, VGG16 variant) as a training loss, from locally supplied weights only.

No package ships the VGG16 or LPIPS weights without torchvision, and nothing may be downloaded at run time, so
the network is defined here and both files are read from paths the user gives: torchvision's VGG16 state dict
(``features.N.weight`` keys) and LPIPS' v0.1 linear layers (``linK.model.1.weight``).
"""

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from ..errors import FusionFramesError

# VGG16 `features` layout: conv widths, "M" = 2×2 max-pool; indices then match torchvision's state dict.
VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
WIDTHS = (64, 128, 256, 512, 512)
# LPIPS' input scaling: images in [-1, 1] are shifted and scaled to the statistics VGG was trained on.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _read(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FusionFramesError(f"perceptual-loss weights not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise FusionFramesError(f"cannot read perceptual-loss weights {path}: {error}") from None


class PerceptualLoss(nn.Module):
    def __init__(self):
        super().__init__()
        layers, width = [], 3
        for item in VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(width, item, 3, padding=1), nn.ReLU()]
                width = item
        self.features = nn.Sequential(*layers[:TAPS[-1] + 1])
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in WIDTHS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    @classmethod
    def from_files(cls, vgg16_path, lpips_path) -> "PerceptualLoss":
        model = cls()
        vgg = {k.removeprefix("features."): v for k, v in _read(vgg16_path).items() if k.startswith("features.")}
        lin = {f"{k[3]}.weight": v for k, v in _read(lpips_path).items() if k.startswith("lin") and "model.1" in k}
        for module, state, name in ((model.features, vgg, "VGG16"), (model.lin, lin, "LPIPS")):
            missing, unexpected = module.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise FusionFramesError(f"{name} weights do not fit: missing {missing[:4]}, unexpected "
                                        f"{unexpected[:4]}")
        return model

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean LPIPS distance between image batches in [−1, 1]."""
        return self.distances(x, y).mean()

    def distances(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of each image pair (N,), images in [−1, 1] (the lpips package's spatial average)."""
        h = torch.cat([x, y]).sub(self.shift).div(self.scale)
        total = 0.0
        tap = 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in TAPS:
                a, b = F.normalize(h, dim=1, eps=1e-10).chunk(2)
                total = total + self.lin[tap]((a - b).square()).mean(dim=(1, 2, 3))
                tap += 1
        return total
