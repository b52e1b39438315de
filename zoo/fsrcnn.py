"""FSRCNN (Dong, Loy, Tang, ECCV 2016), as in the public re-implementation whose weights we use.

Reference: yjn870/FSRCNN-pytorch, ``models.py`` at 597b52f (the ``refs/pull/6/head`` branch that
carries ``weights/fsrcnn_x{2,3,4}.pth``). These are a re-implementation's weights (trained on the
91-image set with Adam), not the FSRCNN authors' Caffe/MATLAB models. Module names follow that
file, so the checkpoints load strictly with no key map.

FSRCNN(d=56, s=12, m=4) on the Y channel (BT.601, 0..1) of the LR image. That code trains and
tests on Y = (16 + (64.738 R + 129.057 G + 25.064 B) / 256) / 255 (64.738: a typo for BT.601's
65.738). Set5 PSNR of these weights: 37.12 / 33.22 / 30.50 dB (x2/x3/x4) in that code's own
protocol, as its README says -- but that protocol bicubic-*resizes* the HR image to a multiple of
the scale instead of cropping it, which for x3 resamples 4 of the 5 images and inflates x3 by
~0.6 dB. With the papers' convention (MATLAB ``LR_bicubic`` files, modcropped HR, BT.601 float Y,
SR Y rounded to 0..255 levels, s-pixel border crop) they give 37.10 / 32.59 / 30.50 dB; FMEN's
Table 3 lists 37.00 / 33.18 / 30.72 for the authors' FSRCNN.

- ``first_part``: 5x5 conv 1->56 (padding 2) + PReLU(56);
- ``mid_part``: 1x1 conv 56->12 + PReLU(12), 4 x (3x3 conv 12->12, padding 1, + PReLU(12)),
  1x1 conv 12->56 + PReLU(56)  (the re-implementation zero-pads, unlike the paper);
- ``last_part``: ConvTranspose2d 56->1, kernel 9, stride s, padding 4, output_padding s-1: the
  output is exactly (s*H, s*W) for every H, W: (H-1)*s - 2*4 + 9 + (s-1) = s*H.

12,809 parameters at every scale (the deconvolution's 56*81 + 1 = 4,537 do not depend on the
stride). Published: 12.46K in the FSRCNN paper (weights only, their counting) and 13K in FMEN's
Table 3.
"""

from __future__ import annotations

from torch import nn

from zoo.registry import Checkpoint, register_model

PARAMS = 12_809

_SHA256 = {
    2: "1af70e2cbf0d11b942008d6c425e469e9fe275a68f3ac8b6c21e8672d6e67b69",
    3: "f65b55819c1258048bc8c1ca96f9e24bd4339f779951d7f928144c08e3868d75",
    4: "c15150d6787d487f38a68e66be5ec8a964182403af494e6a935fa03eeb56a630",
}


class FSRCNN(nn.Module):
    def __init__(self, scale: int = 2, num_channels: int = 1, d: int = 56, s: int = 12, m: int = 4):
        super().__init__()
        self.scale = scale
        self.first_part = nn.Sequential(
            nn.Conv2d(num_channels, d, kernel_size=5, padding=5 // 2), nn.PReLU(d)
        )
        mid: list[nn.Module] = [nn.Conv2d(d, s, kernel_size=1), nn.PReLU(s)]
        for _ in range(m):
            mid.extend([nn.Conv2d(s, s, kernel_size=3, padding=3 // 2), nn.PReLU(s)])
        mid.extend([nn.Conv2d(s, d, kernel_size=1), nn.PReLU(d)])
        self.mid_part = nn.Sequential(*mid)
        self.last_part = nn.ConvTranspose2d(
            d, num_channels, kernel_size=9, stride=scale, padding=9 // 2, output_padding=scale - 1
        )

    def forward(self, x):
        x = self.first_part(x)
        x = self.mid_part(x)
        return self.last_part(x)


@register_model(
    "fsrcnn",
    scales=(2, 3, 4),
    input_range=1.0,
    channels="y",
    paper="Dong, Loy, Tang, Accelerating the Super-Resolution Convolutional Neural Network, ECCV 2016",
    published_params={2: 13_000, 3: 13_000, 4: 13_000},
    checkpoints=tuple(
        Checkpoint(
            filename=f"fsrcnn_x{s}.pth",
            sha256=_SHA256[s],
            scales=(s,),
            source=f"yjn870/FSRCNN-pytorch, ref refs/pull/6/head @597b52f : weights/fsrcnn_x{s}.pth",
            notes="a re-implementation's weights (91-image set, Adam, zero padding), not the FSRCNN authors'",
        )
        for s in (2, 3, 4)
    ),
    notes=(
        "FSRCNN(56,12,4) on the Y channel (0..1) of the LR image; deconvolution padding 4 and "
        "output_padding s-1 give exactly s x the input size. 12,809 parameters at every scale "
        "(published 13K in FMEN Table 3; 12.46K in the paper, weights only). Weights are "
        "yjn870/FSRCNN-pytorch's re-implementation, not the authors'."
    ),
)
def build_fsrcnn(scale: int = 2, **config) -> FSRCNN:
    return FSRCNN(scale=scale, **config)
