"""RLFN family: Residual Local Feature Network (Kong et al., CVPRW 2022; code bytedance/RLFN).

Written from bytedance/RLFN ``model/block.py`` (RLFB, the trimmed ESA) and kept numerically identical:
each RLFB is three 3x3 conv + LeakyReLU(0.05) (in -> mid -> mid -> in), an identity skip over the three,
a 1x1 conv, then ESA (16 channels; no ``conv_max``/``conv3_`` and no ReLU: 1x1 conv, 3x3 conv stride 2
without padding, max-pool 7 stride 3, 3x3 conv, bilinear resize back with align_corners=False, plus a
1x1 conv of the first 1x1 output, 1x1 conv, sigmoid, multiply). Network: 3x3 head conv, RLFBs in a chain
(no concatenation), 3x3 conv, skip from the head, conv + PixelShuffle tail. RGB 0..255 in and out.

Three registered configurations (module names are the official repository's: ``conv_1``,
``block_N``, ``conv_2``, ``upsampler``):

- ``rlfn``: the paper's RLFN, 52 features, 6 RLFBs (``model/rlfn.py``).
- ``rlfn-s``: the paper's RLFN-S, 48 features, 6 RLFBs (``model/rlfn_s.py``).
- ``rlfn-ntire``: the NTIRE 2022 ESR submission of team ByteESR (runtime-track winner), a pruned RLFN-S:
  46 features, 48 mid channels, 4 RLFBs (``model/rlfn_ntire.py`` ``RLFN_Prune``; the challenge's copy
  ``models/team04_rlfn.py`` ``RLFN_cut`` names the same tensors ``fea_conv``, ``B1``..``B4``,
  ``LR_conv``; its ``team04_rlfn.pth`` is loaded through a key map).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import Checkpoint, register_model

_PAPER = (
    "Kong, Li, Liu, Liu, He, Bai, Chen, Fu: Residual Local Feature Network for Efficient "
    "Super-Resolution, CVPR 2022 Workshops (NTIRE 2022 ESR runtime-track winner, team ByteESR)"
)


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2)


class ESA(nn.Module):
    """The trimmed enhanced spatial attention of RLFN (bytedance/RLFN ``block.ESA``)."""

    def __init__(self, esa_channels: int, n_feats: int):
        super().__init__()
        f = esa_channels
        self.conv1 = nn.Conv2d(n_feats, f, kernel_size=1)
        self.conv_f = nn.Conv2d(f, f, kernel_size=1)
        self.conv2 = nn.Conv2d(f, f, kernel_size=3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, kernel_size=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)
        c3 = self.conv3(v_max)
        c3 = F.interpolate(c3, (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
        cf = self.conv_f(c1_)
        c4 = self.conv4(c3 + cf)
        return x * self.sigmoid(c4)


class RLFB(nn.Module):
    """Residual local feature block."""

    def __init__(self, in_channels: int, mid_channels: int | None = None, esa_channels: int = 16):
        super().__init__()
        mid_channels = in_channels if mid_channels is None else mid_channels
        self.c1_r = _conv(in_channels, mid_channels, 3)
        self.c2_r = _conv(mid_channels, mid_channels, 3)
        self.c3_r = _conv(mid_channels, in_channels, 3)
        self.c5 = _conv(in_channels, in_channels, 1)
        self.esa = ESA(esa_channels, in_channels)
        self.act = nn.LeakyReLU(0.05, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c1_r(x))
        out = self.act(self.c2_r(out))
        out = self.act(self.c3_r(out))
        out = out + x
        return self.esa(self.c5(out))


class RLFN(nn.Module):
    """RLFN trunk; ``feature_channels``, ``mid_channels`` (default: feature_channels) and ``num_blocks``
    select RLFN (52, -, 6), RLFN-S (48, -, 6) or the NTIRE 2022 model (46, 48, 4)."""

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 3,
        out_channels: int = 3,
        feature_channels: int = 52,
        mid_channels: int | None = None,
        num_blocks: int = 6,
        esa_channels: int = 16,
    ):
        super().__init__()
        self.num_blocks = num_blocks
        self.conv_1 = _conv(in_channels, feature_channels, 3)
        for i in range(1, num_blocks + 1):
            setattr(self, f"block_{i}", RLFB(feature_channels, mid_channels, esa_channels))
        self.conv_2 = _conv(feature_channels, feature_channels, 3)
        self.upsampler = nn.Sequential(
            _conv(feature_channels, out_channels * scale * scale, 3), nn.PixelShuffle(scale)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_feature = self.conv_1(x)
        out = out_feature
        for i in range(1, self.num_blocks + 1):
            out = getattr(self, f"block_{i}")(out)
        out_low_resolution = self.conv_2(out) + out_feature
        return self.upsampler(out_low_resolution)


_NTIRE_KEYS = (
    (re.compile(r"^fea_conv\."), "conv_1."),
    (re.compile(r"^B(\d+)\."), r"block_\1."),
    (re.compile(r"^LR_conv\."), "conv_2."),
)


def ntire_team04_keys(state_dict: dict) -> dict:
    """``RLFN_cut`` names of the NTIRE 2022 challenge copy -> the official ``RLFN_Prune`` names."""
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _NTIRE_KEYS:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


@register_model(
    "rlfn",
    scales=(2, 3, 4),
    input_range=255.0,
    channels="rgb",
    paper=_PAPER,
    notes=(
        "bytedance/RLFN model/rlfn.py RLFN: 52 features, 6 RLFBs, ESA 16. parameters() = 526,856 / "
        "533,891 / 543,740 (x2/x3/x4; the paper reports x2 and x4 only); the authors' rlfn_x2.pth / "
        "rlfn_x4.pth (bytedance/RLFN @bccfde9 model_zoo, not in ../shared/weights) load strictly. RGB 0..255."
    ),
)
def build_rlfn(scale: int = 4, **config) -> RLFN:
    config.setdefault("feature_channels", 52)
    config.setdefault("num_blocks", 6)
    return RLFN(scale=scale, **config)


@register_model(
    "rlfn-s",
    scales=(2, 3, 4),
    input_range=255.0,
    channels="rgb",
    paper=_PAPER,
    notes=(
        "bytedance/RLFN model/rlfn_s.py RLFN_S, the paper's RLFN-S: 48 features, 6 RLFBs, ESA 16. "
        "parameters() = 454,620 / 461,115 / 470,208 (x2/x3/x4); the authors' rlfn_s_x2.pth / rlfn_s_x4.pth "
        "(bytedance/RLFN @bccfde9 model_zoo, not in ../shared/weights) load strictly. Not the 317K NTIRE "
        "2022 model: that is rlfn-ntire. RGB 0..255."
    ),
)
def build_rlfn_s(scale: int = 4, **config) -> RLFN:
    config.setdefault("feature_channels", 48)
    config.setdefault("num_blocks", 6)
    return RLFN(scale=scale, **config)


@register_model(
    "rlfn-ntire",
    scales=(4,),
    input_range=255.0,
    channels="rgb",
    paper=_PAPER,
    published_params={4: 317_000},
    checkpoints=(
        Checkpoint(
            filename="team04_rlfn.pth",
            sha256="ca81b7757708ce749ac3766589690db6c2729961d026c0137e7659924ec36622",
            scales=(4,),
            source="ofsoundof/NTIRE2022_ESR @e95ba4a : model_zoo/team04_rlfn.pth",
            key_map=ntire_team04_keys,
            notes=(
                "the NTIRE 2022 submission (RLFN_cut key names, mapped to the official ones); same "
                "values as bytedance/RLFN model_zoo/rlfn_ntire_x4.pth"
            ),
        ),
        Checkpoint(
            filename="rlfn_ntire2024_baseline.pth",
            sha256="3c9be7b9d7a4bece9b68c83a56a1ffb38010f76413d5f215be6b4be842e18fb2",
            scales=(4,),
            source="Amazingren/NTIRE2024_ESR @6404fa4 : model_zoo/team00_rlfn.pth",
            notes="the NTIRE 2024 baseline file: the official key names, the same values as team04_rlfn.pth",
        ),
    ),
    notes=(
        "The NTIRE 2022 ESR model of team ByteESR (runtime-track winner; called RLFN-S in some tables, "
        "but the paper's RLFN-S is the 48-feature, 6-block rlfn-s): bytedance/RLFN model/rlfn_ntire.py "
        "RLFN_Prune = ofsoundof/NTIRE2022_ESR models/team04_rlfn.py RLFN_cut: 46 features, 48 mid "
        "channels, 4 RLFBs, ESA 16. parameters() = 317,218 at x4 (published 0.317M). RGB 0..255 "
        "(data_range 255 in the challenge's test_demo.py)."
    ),
)
def build_rlfn_ntire(scale: int = 4, **config) -> RLFN:
    config.setdefault("feature_channels", 46)
    config.setdefault("mid_channels", 48)
    config.setdefault("num_blocks", 4)
    return RLFN(scale=scale, **config)
