"""RFDN family: RFDN / RFDN-L (Liu, Tang, Wu, ECCVW 2020) and E-RFDN, the AIM 2020 ESR winner.

- ``e-rfdn``: njulj/RFDN ``RFDN.py`` + ``block.py`` exactly (nf=50, 4 RFDBs with enhanced spatial
  attention, ESA, of 12 channels; all RFDB outputs concatenated, 1x1 fusion + LeakyReLU(0.05), 3x3 conv,
  skip from the head, conv + PixelShuffle tail). Module names are the reference's, so ``RFDN_AIM.pth``
  loads as is. The same bytes are the NTIRE 2022/2023 ESR "RFDN baseline". Reads and writes RGB 0..255.
- ``rfdn`` / ``rfdn-l``: the paper's RFDN (nf=48) and RFDN-L (nf=52), 6 RFDBs each. The paper's plain
  RFDB ends in IMDN's contrast-aware channel attention (CCA) where E-RFDN puts ESA; with CCA reduction 4
  the counts are exactly the published ones (534K/541K/550K and 626K/633K/643K at x2/x3/x4). The
  authors released no code or weights for these two; the layout is the E-RFDN code with ESA -> CCA.

ESA (reference ``block.ESA``): 1x1 conv nf->f, 3x3 conv stride 2 without padding, max-pool 7 stride 3,
3x3 conv + ReLU, 3x3 conv + ReLU, 3x3 conv, bilinear resize back (align_corners=False), plus a 1x1 conv of
the first 1x1 conv's output, 1x1 conv f->nf, sigmoid, multiply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.imdn import CCALayer
from zoo.registry import Checkpoint, register_model

_PAPER = (
    "Liu, Tang, Wu: Residual Feature Distillation Network for Lightweight Image Super-Resolution, "
    "ECCV 2020 Workshops (AIM 2020 efficient SR challenge winner: E-RFDN)"
)


def _conv(in_ch: int, out_ch: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2)


class ESA(nn.Module):
    """Enhanced spatial attention as in njulj/RFDN ``block.ESA`` (f = n_feats // 4 there)."""

    def __init__(self, n_feats: int, f: int | None = None):
        super().__init__()
        f = n_feats // 4 if f is None else f
        self.conv1 = nn.Conv2d(n_feats, f, kernel_size=1)
        self.conv_f = nn.Conv2d(f, f, kernel_size=1)
        self.conv_max = nn.Conv2d(f, f, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(f, f, kernel_size=3, stride=2, padding=0)
        self.conv3 = nn.Conv2d(f, f, kernel_size=3, padding=1)
        self.conv3_ = nn.Conv2d(f, f, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(f, n_feats, kernel_size=1)
        self.sigmoid = nn.Sigmoid()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        c1 = self.conv2(c1_)
        v_max = F.max_pool2d(c1, kernel_size=7, stride=3)
        v_range = self.relu(self.conv_max(v_max))
        c3 = self.relu(self.conv3(v_range))
        c3 = self.conv3_(c3)
        c3 = F.interpolate(c3, (x.size(2), x.size(3)), mode="bilinear", align_corners=False)
        cf = self.conv_f(c1_)
        c4 = self.conv4(c3 + cf)
        return x * self.sigmoid(c4)


class RFDB(nn.Module):
    """Residual feature distillation block: three (1x1 distillation conv, shallow residual block) steps,
    a 3x3 conv, concat of the 4 distilled parts, 1x1 fusion, then ESA (E-RFDN) or CCA (paper RFDN).
    No skip around the block (as in the reference)."""

    def __init__(self, channels: int, attention: str = "esa", cca_reduction: int = 4):
        super().__init__()
        self.dc = channels // 2
        self.rc = channels
        self.c1_d = _conv(channels, self.dc, 1)
        self.c1_r = _conv(channels, self.rc, 3)
        self.c2_d = _conv(self.rc, self.dc, 1)
        self.c2_r = _conv(self.rc, self.rc, 3)
        self.c3_d = _conv(self.rc, self.dc, 1)
        self.c3_r = _conv(self.rc, self.rc, 3)
        self.c4 = _conv(self.rc, self.dc, 3)
        self.act = nn.LeakyReLU(0.05, inplace=True)
        self.c5 = _conv(self.dc * 4, channels, 1)
        if attention == "esa":
            self.esa = ESA(channels)
        elif attention == "cca":
            self.cca = CCALayer(channels, reduction=cca_reduction)
        else:
            raise ValueError(f"attention must be 'esa' or 'cca', not {attention!r}")
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled_c1 = self.act(self.c1_d(x))
        r_c1 = self.act(self.c1_r(x) + x)

        distilled_c2 = self.act(self.c2_d(r_c1))
        r_c2 = self.act(self.c2_r(r_c1) + r_c1)

        distilled_c3 = self.act(self.c3_d(r_c2))
        r_c3 = self.act(self.c3_r(r_c2) + r_c2)

        r_c4 = self.act(self.c4(r_c3))

        out = self.c5(torch.cat([distilled_c1, distilled_c2, distilled_c3, r_c4], dim=1))
        return self.esa(out) if self.attention == "esa" else self.cca(out)


class RFDN(nn.Module):
    """RFDN / E-RFDN trunk (module names of njulj/RFDN: fea_conv, B1..Bn, c, LR_conv, upsampler)."""

    def __init__(
        self,
        scale: int = 4,
        in_nc: int = 3,
        out_nc: int = 3,
        nf: int = 50,
        num_modules: int = 4,
        attention: str = "esa",
    ):
        super().__init__()
        self.num_modules = num_modules
        self.fea_conv = _conv(in_nc, nf, 3)
        for i in range(1, num_modules + 1):
            setattr(self, f"B{i}", RFDB(nf, attention=attention))
        self.c = nn.Sequential(
            nn.Conv2d(nf * num_modules, nf, 1, padding=0), nn.LeakyReLU(0.05, inplace=True)
        )
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(_conv(nf, out_nc * scale * scale, 3), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_fea = self.fea_conv(x)
        outs = []
        out = out_fea
        for i in range(1, self.num_modules + 1):
            out = getattr(self, f"B{i}")(out)
            outs.append(out)
        out_b = self.c(torch.cat(outs, dim=1))
        out_lr = self.LR_conv(out_b) + out_fea
        return self.upsampler(out_lr)


@register_model(
    "e-rfdn",
    scales=(4,),
    input_range=255.0,
    channels="rgb",
    paper=_PAPER,
    published_params={4: 433_000},
    checkpoints=(
        Checkpoint(
            filename="RFDN_AIM.pth",
            sha256="11af8ec8ebd68689e90ef1e29044f9804c72d3bd9f7573820b7b26035782760c",
            scales=(4,),
            source="njulj/RFDN @7cf4e25 : trained_model/RFDN_AIM.pth",
            notes="the authors' AIM 2020 weights (also the NTIRE 2022/2023 RFDN baseline); keys match",
        ),
    ),
    notes=(
        "njulj/RFDN RFDN(nf=50, num_modules=4) with ESA (12 channels, conv_max and conv3_ used). "
        "parameters() = 433,448 at x4. RGB 0..255 in and out (the reference test feeds uint8 values "
        "as float), no mean shift."
    ),
)
def build_e_rfdn(scale: int = 4, **config) -> RFDN:
    config.setdefault("nf", 50)
    config.setdefault("num_modules", 4)
    config.setdefault("attention", "esa")
    return RFDN(scale=scale, **config)


@register_model(
    "rfdn",
    scales=(2, 3, 4),
    input_range=255.0,
    channels="rgb",
    paper=_PAPER,
    published_params={2: 534_000, 3: 541_000, 4: 550_000},
    notes=(
        "Paper RFDN: nf=48, 6 RFDBs ending in CCA (reduction 4) instead of E-RFDN's ESA; no code or "
        "weights were released, so this is the E-RFDN code with ESA -> CCA, the layout whose "
        "parameters() = 534,036 / 540,531 / 549,624 (x2/x3/x4) give the published 534K/541K/550K. "
        "RGB 0..255 like E-RFDN (the authors trained in the EDSR framework, rgb_range 255; assumed, as no "
        "test code for this variant exists)."
    ),
)
def build_rfdn(scale: int = 4, **config) -> RFDN:
    config.setdefault("nf", 48)
    config.setdefault("num_modules", 6)
    config.setdefault("attention", "cca")
    return RFDN(scale=scale, **config)


@register_model(
    "rfdn-l",
    scales=(2, 3, 4),
    input_range=255.0,
    channels="rgb",
    paper=_PAPER,
    published_params={2: 626_000, 3: 633_000, 4: 643_000},
    notes=(
        "Paper RFDN-L: as rfdn with nf=52. parameters() = 625,962 / 632,997 / 642,846 (x2/x3/x4); "
        "published 626K/633K/643K (RFDN paper's comparison table). No code or weights were released; "
        "RGB 0..255 as rfdn."
    ),
)
def build_rfdn_l(scale: int = 4, **config) -> RFDN:
    config.setdefault("nf", 52)
    config.setdefault("num_modules", 6)
    config.setdefault("attention", "cca")
    return RFDN(scale=scale, **config)
