"""SRCNN (Dong, Loy, He, Tang, ECCV 2014 / TPAMI 2016), the 9-1-5 network, as a zoo model.

The 9-1-5 configuration (f1=9, f2=1, f3=5, n1=64, n2=32) is the one whose size matches the 8K of
FMEN's Table 3: 64*81 + 32*64 + 32*25 = 8,032 weights (the SRCNN paper's "8,032 parameters",
biases not counted), 8,129 parameters with the 97 biases (``sum(p.numel() for p in
model.parameters())``). The 9-5-5 network would have 57,281.

SRCNN works on a bicubic-upscaled Y channel. So that the zoo model takes the LR image like every
other model, the module upscales first with **PyTorch's** bicubic
(``F.interpolate(mode="bicubic", align_corners=False)``: a = -0.75, no antialiasing, border
clamping), which is NOT MATLAB's ``imresize`` (a = -0.5); a model trained on MATLAB-upscaled
inputs will lose some quality this way. Then conv 9x9 1->64 + ReLU, conv 1x1 64->32 + ReLU,
conv 5x5 32->1, all zero-padded to keep the size (the paper's network uses valid convolutions;
the padded form is what PyTorch re-implementations use). Output: exactly s x the input size.
No public weights are available here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import register_model

PARAMS = 8_129


class SRCNN(nn.Module):
    """SRCNN on the Y channel (0..1) of the LR image; upscales with PyTorch bicubic inside."""

    def __init__(
        self,
        scale: int = 2,
        num_channels: int = 1,
        n1: int = 64,
        n2: int = 32,
        f1: int = 9,
        f2: int = 1,
        f3: int = 5,
        upscale: bool = True,
    ):
        super().__init__()
        self.scale = scale
        self.upscale = upscale
        self.conv1 = nn.Conv2d(num_channels, n1, kernel_size=f1, padding=f1 // 2)
        self.conv2 = nn.Conv2d(n1, n2, kernel_size=f2, padding=f2 // 2)
        self.conv3 = nn.Conv2d(n2, num_channels, kernel_size=f3, padding=f3 // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upscale:
            h, w = x.shape[-2:]
            x = F.interpolate(x, size=(h * self.scale, w * self.scale), mode="bicubic", align_corners=False)
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.conv3(x)


@register_model(
    "srcnn",
    scales=(2, 3, 4),
    input_range=1.0,
    channels="y",
    paper="Dong, Loy, He, Tang, Image Super-Resolution Using Deep Convolutional Networks, TPAMI 2016",
    published_params={2: 8_000, 3: 8_000, 4: 8_000},
    notes=(
        "SRCNN 9-1-5 (n1=64, n2=32) on the Y channel (0..1) of the LR image: the module first upscales "
        "with PyTorch bicubic (F.interpolate, align_corners=False; NOT MATLAB imresize), then 3 "
        "zero-padded convs. 8,129 parameters = 8,032 weights (published 8K, biases not counted) + 97 "
        "biases. Build with upscale=False to feed an already bicubic-upscaled Y (then the output has "
        "the input's size). No public weights."
    ),
)
def build_srcnn(scale: int = 2, **config) -> SRCNN:
    return SRCNN(scale=scale, **config)
