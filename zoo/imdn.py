"""IMDN family: IMDN (Hui et al., ACM MM 2019), IMDN-RTC and the NTIRE 2022 ESR IMDN baseline.

Written from the public reference code and kept numerically identical to it (same layers, split
sizes, LeakyReLU slope 0.05, in-place activations, where the skips are):

- ``imdn``: Zheng222/IMDN ``model/architecture.py`` ``IMDN`` with ``model/block.py`` ``IMDModule``
  (information multi-distillation block with contrast-aware channel attention, CCA). Module names
  equal the reference's, so the authors' checkpoints load after their ``module.`` prefix is dropped.
- ``imdn-rtc``: ``IMDN_RTC`` of the same file (12 features, 5 ``IMDModule_speed`` blocks without CCA,
  a 1x1 conv inside one long skip); ``model.N...`` keys as in ``model_RTC.pth``.
- ``imdn-ntire2022``: the simplified IMDN that is the NTIRE 2022 Efficient SR baseline
  (ofsoundof/NTIRE2022_ESR ``models/imdn_baseline.py`` with KAIR's ``basicblock.IMDBlock``: no CCA,
  8 blocks, a 3x3 conv closing the body, one long skip). KAIR-style keys (``model.1.sub.0.conv1.0``)
  as in ``imdn_baseline.pth``.

All of them read and write RGB in 0..1 (no mean shift) and upsample with a 3x3 conv to 3*s*s
channels followed by PixelShuffle(s).
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import Checkpoint, register_model

_PAPER = (
    "Hui, Gao, Yang, Wang: Lightweight Image Super-Resolution with Information Multi-distillation "
    "Network, ACM MM 2019"
)
_IMDN_SOURCE = "Zheng222/IMDN @8f158e6 : checkpoints/{file}"
_IMDN_SHA256 = {
    2: "740b39653592bd3f49955a21cd9e16f2d37f2c413368cc09327601b8fbe42ce1",
    3: "11b1716a19bc16e5e353e1db798d476169338e631eb170c82d765559888cb028",
    4: "e660c38221147217a136debeb99eb304d62d9c0f73ac421ed66281b619719714",
}


def _conv(in_ch: int, out_ch: int, kernel_size: int, bias: bool = True) -> nn.Conv2d:
    """The reference ``conv_layer``: stride 1, zero 'same' padding."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=(kernel_size - 1) // 2, bias=bias)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.05, inplace=True)


def _pixelshuffle_tail(in_ch: int, out_ch: int, scale: int) -> list[nn.Module]:
    return [_conv(in_ch, out_ch * scale * scale, 3), nn.PixelShuffle(scale)]


def stdv_channels(x: torch.Tensor) -> torch.Tensor:
    """Per-channel (population) standard deviation over H and W, as in the reference (same op order)."""
    spatial = x.size(2) * x.size(3)
    mean = x.sum(3, keepdim=True).sum(2, keepdim=True) / spatial
    variance = (x - mean).pow(2).sum(3, keepdim=True).sum(2, keepdim=True) / spatial
    return variance.pow(0.5)


class CCALayer(nn.Module):
    """Contrast-aware channel attention: sigmoid(MLP(std + mean)) scales the channels."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = stdv_channels(x) + self.avg_pool(x)
        return x * self.conv_du(y)


class IMDModule(nn.Module):
    """Information multi-distillation block (IMDB), with CCA (``cca=True``) or without (the RTC speed
    variant, whose 1x1 fusion conv reads the 4 distilled parts directly)."""

    def __init__(self, channels: int, distillation_rate: float = 0.25, cca: bool = True):
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = int(channels - self.distilled)
        self.c1 = _conv(channels, channels, 3)
        self.c2 = _conv(self.remaining, channels, 3)
        self.c3 = _conv(self.remaining, channels, 3)
        self.c4 = _conv(self.remaining, self.distilled, 3)
        self.act = _lrelu()
        # the reference's IMDModule fuses ``channels`` inputs, IMDModule_speed ``4 * distilled`` (equal
        # whenever channels is a multiple of 4, as in every released model)
        self.c5 = _conv(channels if cca else self.distilled * 4, channels, 1)
        self.cca = CCALayer(self.distilled * 4) if cca else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), split, dim=1)
        d4 = self.c4(r3)
        out = torch.cat([d1, d2, d3, d4], dim=1)
        if self.cca is not None:
            out = self.cca(out)
        return self.c5(out) + x


class IMDN(nn.Module):
    """IMDN: conv head, ``num_modules`` IMDBs whose outputs are all concatenated, 1x1 fusion + LeakyReLU,
    3x3 conv, skip from the head, conv + PixelShuffle tail. Module names are the reference's."""

    def __init__(self, scale: int = 4, in_nc: int = 3, out_nc: int = 3, nf: int = 64, num_modules: int = 6):
        super().__init__()
        self.num_modules = num_modules
        self.fea_conv = _conv(in_nc, nf, 3)
        for i in range(1, num_modules + 1):
            setattr(self, f"IMDB{i}", IMDModule(nf))
        self.c = nn.Sequential(nn.Conv2d(nf * num_modules, nf, 1, padding=0), _lrelu())
        self.LR_conv = _conv(nf, nf, 3)
        self.upsampler = nn.Sequential(*_pixelshuffle_tail(nf, out_nc, scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out_fea = self.fea_conv(x)
        outs = []
        out = out_fea
        for i in range(1, self.num_modules + 1):
            out = getattr(self, f"IMDB{i}")(out)
            outs.append(out)
        out_b = self.c(torch.cat(outs, dim=1))
        out_lr = self.LR_conv(out_b) + out_fea
        return self.upsampler(out_lr)


class ShortcutBlock(nn.Module):
    """``x + sub(x)`` (the ``sub`` name keeps the reference's state-dict keys)."""

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.sub = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sub(x)


class IMDNRTC(nn.Module):
    """IMDN_RTC (real-time winner of the AI in RTC 2019 challenge): conv head, then
    x + conv1x1(IMDB_speed^5(x)), then conv + PixelShuffle; everything in one ``model`` Sequential."""

    def __init__(self, scale: int = 2, in_nc: int = 3, out_nc: int = 3, nf: int = 12, num_modules: int = 5):
        super().__init__()
        body = [IMDModule(nf, cca=False) for _ in range(num_modules)]
        body.append(_conv(nf, nf, 1))
        self.model = nn.Sequential(
            _conv(in_nc, nf, 3),
            ShortcutBlock(nn.Sequential(*body)),
            *_pixelshuffle_tail(nf, out_nc, scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class IMDBlock(nn.Module):
    """KAIR's simplified IMDB (``models/basicblock.py`` ``IMDBlock``): three conv+LeakyReLU(0.05) with
    channel splits, a plain 3x3 conv, 1x1 fusion, identity skip; no channel attention."""

    def __init__(self, channels: int = 64, d_rate: float = 0.25, negative_slope: float = 0.05):
        super().__init__()
        self.d_nc = int(channels * d_rate)
        self.r_nc = int(channels - self.d_nc)

        def conv_act(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.LeakyReLU(negative_slope, inplace=True))

        self.conv1 = conv_act(channels, channels)
        self.conv2 = conv_act(self.r_nc, channels)
        self.conv3 = conv_act(self.r_nc, channels)
        self.conv4 = nn.Conv2d(self.r_nc, self.d_nc, 3, 1, 1)
        self.conv1x1 = nn.Conv2d(self.d_nc * 4, channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.d_nc, self.r_nc)
        d1, r1 = torch.split(self.conv1(x), split, dim=1)
        d2, r2 = torch.split(self.conv2(r1), split, dim=1)
        d3, r3 = torch.split(self.conv3(r2), split, dim=1)
        d4 = self.conv4(r3)
        return x + self.conv1x1(torch.cat((d1, d2, d3, d4), dim=1))


class IMDNBaseline(nn.Module):
    """The NTIRE 2022 ESR baseline IMDN (KAIR layout): head conv, x + conv(IMDBlock^nb(x)), conv +
    PixelShuffle; everything in one ``model`` Sequential."""

    def __init__(self, scale: int = 4, in_nc: int = 3, out_nc: int = 3, nc: int = 64, nb: int = 8):
        super().__init__()
        body: list[nn.Module] = [IMDBlock(nc) for _ in range(nb)]
        body.append(nn.Conv2d(nc, nc, 3, 1, 1))
        self.model = nn.Sequential(
            nn.Conv2d(in_nc, nc, 3, 1, 1),
            ShortcutBlock(nn.Sequential(*body)),
            nn.Conv2d(nc, out_nc * scale * scale, 3, 1, 1),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


@register_model(
    "imdn",
    scales=(2, 3, 4),
    input_range=1.0,
    channels="rgb",
    paper=_PAPER,
    published_params={2: 694_000, 3: 703_000, 4: 715_000},
    checkpoints=tuple(
        Checkpoint(
            filename=f"IMDN_x{s}.pth",
            sha256=_IMDN_SHA256[s],
            scales=(s,),
            source=_IMDN_SOURCE.format(file=f"IMDN_x{s}.pth"),
            notes="the authors' weights; keys carry a DataParallel 'module.' prefix (stripped by the loader)",
        )
        for s in (2, 3, 4)
    ),
    notes=(
        "Zheng222/IMDN architecture.py IMDN: nf=64, 6 IMDBs with CCA (reduction 16), distillation 1/4, "
        "LeakyReLU(0.05). parameters() = 694,404 / 703,059 / 715,176 (x2/x3/x4). RGB 0..1, no mean shift."
    ),
)
def build_imdn(scale: int = 4, **config) -> IMDN:
    return IMDN(scale=scale, **config)


@register_model(
    "imdn-rtc",
    scales=(2,),
    input_range=1.0,
    channels="rgb",
    paper=_PAPER + " (IMDN_RTC: winner of the AI in RTC 2019 image SR challenge, real-time track)",
    published_params={},
    checkpoints=(
        Checkpoint(
            filename="model_RTC.pth",
            sha256="5696ca25971477a93f2a3f3b235039e30afefff1bb560efdc48c0f880635a2ab",
            scales=(2,),
            source="Zheng222/IMDN @8f158e6 : checkpoints/model_RTC.pth",
            notes="the authors' weights; keys match the zoo module",
        ),
    ),
    notes=(
        "Zheng222/IMDN architecture.py IMDN_RTC: nf=12, 5 IMDModule_speed blocks (no CCA; 3 distilled "
        "channels), 1x1 conv, one long skip. parameters() = 20,190 at x2 (the released model; no count "
        "was published). RGB 0..1."
    ),
)
def build_imdn_rtc(scale: int = 2, **config) -> IMDNRTC:
    return IMDNRTC(scale=scale, **config)


@register_model(
    "imdn-ntire2022",
    scales=(4,),
    input_range=1.0,
    channels="rgb",
    paper=(
        "Li et al., NTIRE 2022 Challenge on Efficient Super-Resolution: Methods and Results, CVPRW 2022 "
        "(baseline: IMDN, " + _PAPER + ")"
    ),
    published_params={4: 894_000},
    checkpoints=(
        Checkpoint(
            filename="imdn_baseline.pth",
            sha256="115b4cc557eba9daaf1a6543c4858014c7e2a410655aafef7c8348ae54acc203",
            scales=(4,),
            source="ofsoundof/NTIRE2022_ESR @e95ba4a : model_zoo/imdn_baseline.pth",
            notes="KAIR-style keys (model.1.sub.N.conv1.0...); the zoo module uses the same names",
        ),
    ),
    notes=(
        "ofsoundof/NTIRE2022_ESR models/imdn_baseline.py IMDN(nc=64, nb=8) with KAIR basicblock.IMDBlock "
        "(no CCA), LeakyReLU(0.05), a 3x3 conv closing the body and one long skip. parameters() = 893,936 "
        "at x4. RGB 0..1 (data_range 1.0 in the challenge's test_demo.py)."
    ),
)
def build_imdn_ntire2022(scale: int = 4, **config) -> IMDNBaseline:
    return IMDNBaseline(scale=scale, **config)
