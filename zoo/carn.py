"""CARN and CARN-M (Ahn et al., ECCV 2018), as in the authors' code.

Reference: nmhkahn/CARN-pytorch @40d3514, ``carn/model/carn.py``, ``carn/model/carn_m.py`` and
``carn/model/ops.py``. Module and attribute names follow those files, so the public
``checkpoint/carn_m.pth`` loads strictly with no key map.

Both are *multi-scale* models: one network holds the x2, x3 and x4 upsamplers
(``upsample.up2/up3/up4``) and the reference ``forward(x, scale)`` picks one. The zoo builds the
full multi-scale layout for every scale (so the one public file loads strictly into the x2, x3
and x4 models alike) and stores the scale: ``forward(x)`` runs that scale's path
(``forward(x, scale=s)`` still overrides it, as in the reference).

- Input and output RGB in 0..1 (``ToTensor``); DIV2K mean shift inside, a frozen 1x1 conv
  (``sub_mean.shifter``/``add_mean.shifter``, ``requires_grad=False``, still ``nn.Parameter``\\s).
- ``entry`` 3x3 3->64; three cascading blocks ``b1..b3`` with 1x1 fusion convs ``c1..c3`` (+ReLU)
  over the running concatenation; the upsampler (3x3 conv + ReLU + PixelShuffle; x4 = two x2
  stages); ``exit`` 3x3 64->3.
- CARN: each block has three residual blocks (3x3, ReLU, 3x3, ``relu(out + x)``) and its own
  cascading 1x1 convs; upsampler convs are not grouped.
- CARN-M (``group=4``): each block holds ONE efficient residual block (3x3 group conv, ReLU,
  3x3 group conv, ReLU, 1x1 conv, ``relu(out + x)``) applied three times with shared weights;
  the upsampler convs are group convs too.

Parameter counts (``sum(p.numel() for p in model.parameters())``, every upsampler and the two
frozen mean shifts included, the same at every scale since the layout is the same):
CARN-M 414,811 (= the public file; published 412K), CARN 1,591,963 (published 1,592K).
The parts a single scale actually runs (``active_params(model, scale)``): CARN-M
257,051 / 303,451 / 294,171 and CARN 964,187 / 1,148,827 / 1,111,899 for x2 / x3 / x4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import Checkpoint, register_model

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)

#: ``sum(p.numel() for p in model.parameters())``: all three upsamplers and the mean shifts.
PARAMS = {"carn-m": 414_811, "carn": 1_591_963}
#: Parameters used by the path of one scale (the other two upsamplers left out).
ACTIVE_PARAMS = {
    "carn-m": {2: 257_051, 3: 303_451, 4: 294_171},
    "carn": {2: 964_187, 3: 1_148_827, 4: 1_111_899},
}


class MeanShift(nn.Module):
    def __init__(self, mean_rgb=DIV2K_RGB_MEAN, sub: bool = True):
        super().__init__()
        sign = -1 if sub else 1
        self.shifter = nn.Conv2d(3, 3, 1, 1, 0)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(torch.tensor([m * sign for m in mean_rgb]))
        for p in self.shifter.parameters():  # frozen, as in the reference
            p.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ksize: int = 3, stride: int = 1, pad: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, ksize, stride, pad), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class EResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, group: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, groups=group),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class _UpsampleBlock(nn.Module):
    def __init__(self, n_channels: int, scale: int, group: int = 1):
        super().__init__()
        modules: list[nn.Module] = []
        if scale in (2, 4, 8):
            for _ in range(int(math.log(scale, 2))):
                modules += [
                    nn.Conv2d(n_channels, 4 * n_channels, 3, 1, 1, groups=group),
                    nn.ReLU(inplace=True),
                    nn.PixelShuffle(2),
                ]
        elif scale == 3:
            modules += [
                nn.Conv2d(n_channels, 9 * n_channels, 3, 1, 1, groups=group),
                nn.ReLU(inplace=True),
                nn.PixelShuffle(3),
            ]
        else:
            raise ValueError(f"CARN upsampler: scale x{scale} is not supported (2, 3, 4, 8)")
        self.body = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpsampleBlock(nn.Module):
    def __init__(self, n_channels: int, scale: int, multi_scale: bool, group: int = 1):
        super().__init__()
        self.multi_scale = multi_scale
        if multi_scale:
            self.up2 = _UpsampleBlock(n_channels, scale=2, group=group)
            self.up3 = _UpsampleBlock(n_channels, scale=3, group=group)
            self.up4 = _UpsampleBlock(n_channels, scale=4, group=group)
        else:
            self.up = _UpsampleBlock(n_channels, scale=scale, group=group)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        if not self.multi_scale:
            return self.up(x)
        if scale == 2:
            return self.up2(x)
        if scale == 3:
            return self.up3(x)
        if scale == 4:
            return self.up4(x)
        raise ValueError(f"CARN multi-scale upsampler: no path for scale x{scale} (2, 3, 4)")


class CarnBlock(nn.Module):
    """CARN's cascading block: three residual blocks with cascading 1x1 fusions."""

    def __init__(self, in_channels: int = 64, out_channels: int = 64):
        super().__init__()
        self.b1 = ResidualBlock(64, 64)
        self.b2 = ResidualBlock(64, 64)
        self.b3 = ResidualBlock(64, 64)
        self.c1 = BasicBlock(64 * 2, 64, 1, 1, 0)
        self.c2 = BasicBlock(64 * 3, 64, 1, 1, 0)
        self.c3 = BasicBlock(64 * 4, 64, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0 = o0 = x
        c1 = torch.cat([c0, self.b1(o0)], dim=1)
        o1 = self.c1(c1)
        c2 = torch.cat([c1, self.b2(o1)], dim=1)
        o2 = self.c2(c2)
        c3 = torch.cat([c2, self.b3(o2)], dim=1)
        return self.c3(c3)


class CarnMBlock(nn.Module):
    """CARN-M's cascading block: one efficient residual block applied three times (shared weights)."""

    def __init__(self, in_channels: int = 64, out_channels: int = 64, group: int = 1):
        super().__init__()
        self.b1 = EResidualBlock(64, 64, group=group)
        self.c1 = BasicBlock(64 * 2, 64, 1, 1, 0)
        self.c2 = BasicBlock(64 * 3, 64, 1, 1, 0)
        self.c3 = BasicBlock(64 * 4, 64, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0 = o0 = x
        c1 = torch.cat([c0, self.b1(o0)], dim=1)
        o1 = self.c1(c1)
        c2 = torch.cat([c1, self.b1(o1)], dim=1)
        o2 = self.c2(c2)
        c3 = torch.cat([c2, self.b1(o2)], dim=1)
        return self.c3(c3)


class CARN(nn.Module):
    """CARN (``mobile=False``) or CARN-M (``mobile=True``, ``group=4``) for ``scale``; RGB 0..1."""

    def __init__(self, scale: int = 4, mobile: bool = False, group: int = 1, multi_scale: bool = True):
        super().__init__()
        if multi_scale and scale not in (2, 3, 4):
            raise ValueError(f"multi-scale CARN has x2/x3/x4 paths only, not x{scale}")
        self.scale = scale
        self.sub_mean = MeanShift(DIV2K_RGB_MEAN, sub=True)
        self.add_mean = MeanShift(DIV2K_RGB_MEAN, sub=False)
        self.entry = nn.Conv2d(3, 64, 3, 1, 1)
        if mobile:
            self.b1 = CarnMBlock(64, 64, group=group)
            self.b2 = CarnMBlock(64, 64, group=group)
            self.b3 = CarnMBlock(64, 64, group=group)
        else:  # the reference's carn.py builds its blocks without the group argument
            self.b1 = CarnBlock(64, 64)
            self.b2 = CarnBlock(64, 64)
            self.b3 = CarnBlock(64, 64)
        self.c1 = BasicBlock(64 * 2, 64, 1, 1, 0)
        self.c2 = BasicBlock(64 * 3, 64, 1, 1, 0)
        self.c3 = BasicBlock(64 * 4, 64, 1, 1, 0)
        self.upsample = UpsampleBlock(64, scale=scale, multi_scale=multi_scale, group=group)
        self.exit = nn.Conv2d(64, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor, scale: int | None = None) -> torch.Tensor:
        scale = self.scale if scale is None else scale
        x = self.sub_mean(x)
        x = self.entry(x)
        c0 = o0 = x
        c1 = torch.cat([c0, self.b1(o0)], dim=1)
        o1 = self.c1(c1)
        c2 = torch.cat([c1, self.b2(o1)], dim=1)
        o2 = self.c2(c2)
        c3 = torch.cat([c2, self.b3(o2)], dim=1)
        o3 = self.c3(c3)
        out = self.upsample(o3, scale=scale)
        out = self.exit(out)
        return self.add_mean(out)


def active_params(model: CARN, scale: int | None = None) -> int:
    """Parameters on the path of one scale: all of them but the other scales' upsamplers."""
    scale = model.scale if scale is None else scale
    up = model.upsample
    if not up.multi_scale:
        return sum(p.numel() for p in model.parameters())
    unused = {id(p) for s in (2, 3, 4) if s != scale for p in getattr(up, f"up{s}").parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in unused)


_PAPER = (
    "Ahn, Kang, Sohn, Fast, Accurate, and Lightweight Super-Resolution with Cascading Residual Network, "
    "ECCV 2018"
)


@register_model(
    "carn-m",
    scales=(2, 3, 4),
    input_range=1.0,
    channels="rgb",
    paper=_PAPER,
    published_params={2: 412_000, 3: 412_000, 4: 412_000},
    checkpoints=(
        Checkpoint(
            filename="carn_m.pth",
            sha256="d48a759a84509351facb6b7c6d5bd6edec98b98519b8c464ee4ab44d2ba964ff",
            scales=(2, 3, 4),
            source="nmhkahn/CARN-pytorch @40d3514 : checkpoint/carn_m.pth",
            notes="the authors' multi-scale weights: one file for x2, x3 and x4; keys match the zoo module",
        ),
    ),
    notes=(
        "Multi-scale model (group 4): every scale's module holds the x2/x3/x4 upsamplers so that "
        "carn_m.pth loads strictly, and forward(x) runs the stored scale's path. parameters() = "
        "414,811 at every scale (all upsamplers + 24 frozen mean-shift values; published 412K); the "
        "path of one scale uses 257,051 / 303,451 / 294,171 (x2/x3/x4). RGB 0..1, DIV2K mean shift inside."
    ),
)
def build_carn_m(scale: int = 4, **config) -> CARN:
    config.setdefault("group", 4)
    return CARN(scale=scale, mobile=True, **config)


@register_model(
    "carn",
    scales=(2, 3, 4),
    input_range=1.0,
    channels="rgb",
    paper=_PAPER,
    published_params={2: 1_592_000, 3: 1_592_000, 4: 1_592_000},
    notes=(
        "Full CARN, multi-scale layout of nmhkahn/CARN-pytorch carn.py (group 1); no public weights "
        "are available here. parameters() = 1,591,963 at every scale (all upsamplers + 24 frozen "
        "mean-shift values; published 1,592K); the path of one scale uses 964,187 / 1,148,827 / "
        "1,111,899 (x2/x3/x4). RGB 0..1, DIV2K mean shift inside."
    ),
)
def build_carn(scale: int = 4, **config) -> CARN:
    return CARN(scale=scale, mobile=False, **config)
