"""EFDN: the NTIRE 2025 Efficient SR challenge baseline (Amazingren/NTIRE2025_ESR ``models/team00_EFDN.py``).

Written from that file in its deploy form (the released ``team00_EFDN.pth``): module names follow it, so
the checkpoint loads strictly. A 3x3 head conv (48 features); four cells, each a 1x1 conv + PReLU, two
re-parameterised 3x3 convs (``rep_conv`` + PReLU), four 1x1 "branch" convs (48 -> 24) of the cell input
and of the three outputs, concatenated and fused by a 1x1 conv, then ESA (the RFDN one, f = 12) and the
cell's skip; cells 2-4 read a 1x1 fusion of two earlier cells (``local_fuse``: cells 1+2, 2+3, 2+4, as
the official forward has it); a skip from the head; 3x3 conv + PixelShuffle; the output clamped to 0..1.
RGB 0..1 in and out (test_demo.py data_range 1.0). 276,192 parameters at x4 (published 0.276 M).
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import Checkpoint, register_model
from zoo.rfdn import ESA


class _ConvAct(nn.Module):
    """A conv + per-channel PReLU (``conv1x1``/``rep_conv`` and ``act`` in the official names)."""

    def __init__(self, n_feats: int, kernel_size: int, name: str):
        super().__init__()
        setattr(self, name, nn.Conv2d(n_feats, n_feats, kernel_size, padding=kernel_size // 2))
        self._conv_name = name
        self.act = nn.PReLU(num_parameters=n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(getattr(self, self._conv_name)(x))


class Cell(nn.Module):
    def __init__(self, n_feats: int = 48):
        super().__init__()
        self.conv1 = _ConvAct(n_feats, 1, "conv1x1")
        self.conv2 = _ConvAct(n_feats, 3, "rep_conv")
        self.conv3 = _ConvAct(n_feats, 3, "rep_conv")
        self.fuse = nn.Conv2d(n_feats * 2, n_feats, 1)
        self.att = ESA(n_feats)
        self.branch = nn.ModuleList([nn.Conv2d(n_feats, n_feats // 2, 1) for _ in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(x)
        out2 = self.conv2(out1)
        out3 = self.conv3(out2)
        parts = [branch(t) for branch, t in zip(self.branch, (x, out1, out2, out3), strict=True)]
        return self.att(self.fuse(torch.cat(parts, dim=1))) + x


class EFDN(nn.Module):
    def __init__(self, scale: int = 4, n_feats: int = 48, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        self.head = nn.Conv2d(in_channels, n_feats, 3, padding=1)
        self.cells = nn.ModuleList([Cell(n_feats) for _ in range(4)])
        self.local_fuse = nn.ModuleList([nn.Conv2d(n_feats * 2, n_feats, 1) for _ in range(3)])
        self.tail = nn.Sequential(nn.Conv2d(n_feats, out_channels * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out0 = self.head(x)
        out1 = self.cells[0](out0)
        out2 = self.cells[1](out1)
        out3 = self.cells[2](self.local_fuse[0](torch.cat([out1, out2], dim=1)))
        out4 = self.cells[3](self.local_fuse[1](torch.cat([out2, out3], dim=1)))
        # the official forward fuses cell 2 (not 3) with cell 4 here; the weights were trained so
        fused = self.local_fuse[2](torch.cat([out2, out4], dim=1))
        return self.tail(fused + out0).clamp(0, 1)


@register_model(
    "efdn",
    scales=(4,),
    input_range=1.0,
    channels="rgb",
    paper="NTIRE 2025 Efficient SR challenge baseline (EFDN, Amazingren/NTIRE2025_ESR team00_EFDN)",
    published_params={4: 276_000},
    checkpoints=(
        Checkpoint(
            filename="efdn_ntire2025_baseline.pth",
            sha256="71069f10ef234cd123f45ac8e69099f0a1fdc0c16afcfe2189e50071d47ce477",
            scales=(4,),
            source="Amazingren/NTIRE2025_ESR @b69fb66 : model_zoo/team00_EFDN.pth",
        ),
    ),
    notes="deploy form of the NTIRE 2025 baseline: 276,192 parameters; output clamped to 0..1; RGB 0..1",
)
def build_efdn(scale: int = 4, **config) -> EFDN:
    return EFDN(scale=scale, **config)
