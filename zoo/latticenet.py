"""LatticeNet (Luo et al., ECCV 2020), as in the public weights' code.

Reference: ymff0592/super-resolution @7bb1ce0, ``model/latticenet.py`` and ``model/common.py``
(an EDSR/RCAN-style code base; the only public LatticeNet weights, ``premodel/LatticeNet_x{2,3,4}.pt``).
Module and attribute names follow that file, so its checkpoints load strictly with no key map.

Structure (64 features, 4 lattice blocks):

- ``sub_mean``: 1x1 conv 3->3 initialised to ``x - 255 * DIV2K_mean`` (``add_mean``: ``+``);
- head: ``conv1`` 3x3 3->64, ``conv2`` 3x3 64->64, no activation between them;
- 4 ``LatticeBlock``\\s (two butterfly units, each a 3-conv branch 64->48->48->64 with
  LeakyReLU(0.05) after every conv, combined with combination coefficients ``CC``; then a 1x1
  ``compress`` 128->64 of the concatenated upper/lower outputs);
- ``CC``: contrast-aware channel attention, ``(sigmoid-MLP(mean) + sigmoid-MLP(std)) / 2`` with
  the *unbiased* per-channel standard deviation (``torch.std``), reduction 16;
- backward feature fusion (``T_tdm*``/``L_tdm*``: 1x1 convs 64->32 + ReLU, fused from the last
  block back to the first), plus a global skip from the head;
- tail: 3x3 64->64 (no activation), 3x3 64->3*s^2, PixelShuffle(s).

Mean shift and parameter counting: the reference builds ``MeanShift`` as an ``nn.Conv2d`` and
"freezes" it with ``self.requires_grad = False`` -- a plain attribute on the module, which freezes
nothing. Its 24 values (9 weights + 3 biases, twice) were therefore trained: in the public files
they are no longer the identity / DIV2K mean (e.g. ``add_mean.weight`` diagonal ~0.93/0.87/0.83
for x2/x3/x4). They are real learned parameters that change the output, so the zoo keeps them as
``nn.Parameter``\\s (trainable, as the reference effectively had them) and loads their values
from the file. ``sum(p.numel() for p in model.parameters())`` is then 756,196 / 764,851 /
776,968 for x2 / x3 / x4; without the two mean shifts it is 756,172 / 764,827 / 776,944, the
figure of ``../shared/weights/README.md`` and of the paper (756K / 765K / 777K), whose method
treats the mean shift as a fixed constant. ``params_without_mean_shift`` gives that count.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.registry import Checkpoint, register_model

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)

_SOURCE = "ymff0592/super-resolution @7bb1ce0 : premodel/LatticeNet_x{s}.pt"
_SHA256 = {
    2: "ac9e517e8952a1c96ef83ef7a327233a28f99f95c413f32ab62e3c7e4f59f8c4",
    3: "b1abeb84b02bfb1e186e6b2a1ee58167654285839909912f302b307ae75d1005",
    4: "abee214c6fb7a68cf9e781fe2cc5434cf49f53bba719fe58e6c69f71aa604436",
}

#: ``sum(p.numel() for p in model.parameters())`` of the zoo module (mean shifts included).
PARAMS = {2: 756_196, 3: 764_851, 4: 776_968}
#: The same without the 24 mean-shift values (the weights README and the paper's figure).
PARAMS_WITHOUT_MEAN_SHIFT = {2: 756_172, 3: 764_827, 4: 776_944}


def mean_shift(rgb_range: float, rgb_mean=DIV2K_RGB_MEAN, sign: int = -1) -> nn.Conv2d:
    """The reference's ``common.MeanShift`` (std 1): a 1x1 conv, identity weight, bias ``sign*range*mean``."""
    conv = nn.Conv2d(3, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean))
    return conv


class CC(nn.Module):
    """Combination coefficient: contrast-aware channel attention (mean and std pooling)."""

    def __init__(self, channel: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_mean = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )
        self.conv_std = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ca_mean = self.conv_mean(self.avg_pool(x))
        b, c, _, _ = x.size()
        # unbiased std over the spatial positions, as torch.std in the reference (NaN for 1 pixel)
        ca_std = torch.std(x.reshape(b, c, -1), dim=2, keepdim=True).view(b, c, 1, 1)
        ca_var = self.conv_std(ca_std)
        return (ca_mean + ca_var) / 2.0


def _branch(n_feat: int, n_diff: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(n_feat, n_feat - n_diff, kernel_size=3, padding=1, bias=True),
        nn.LeakyReLU(0.05),
        nn.Conv2d(n_feat - n_diff, n_feat - n_diff, kernel_size=3, padding=1, bias=True),
        nn.LeakyReLU(0.05),
        nn.Conv2d(n_feat - n_diff, n_feat, kernel_size=3, padding=1, bias=True),
        nn.LeakyReLU(0.05),
    )


class LatticeBlock(nn.Module):
    """Two butterfly-structured residual units combined by learned channel coefficients."""

    def __init__(self, n_feat: int = 64, n_diff: int = 16):
        super().__init__()
        self.conv_block0 = _branch(n_feat, n_diff)
        self.fea_ca1 = CC(n_feat)
        self.x_ca1 = CC(n_feat)
        self.conv_block1 = _branch(n_feat, n_diff)
        self.fea_ca2 = CC(n_feat)
        self.x_ca2 = CC(n_feat)
        self.compress = nn.Conv2d(2 * n_feat, n_feat, kernel_size=1, padding=0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # analysis unit
        x_feature_shot = self.conv_block0(x)
        fea_ca1 = self.fea_ca1(x_feature_shot)
        x_ca1 = self.x_ca1(x)
        p1z = x + fea_ca1 * x_feature_shot
        q1z = x_feature_shot + x_ca1 * x
        # synthesis unit
        x_feat_long = self.conv_block1(p1z)
        fea_ca2 = self.fea_ca2(q1z)
        p3z = x_feat_long + fea_ca2 * q1z
        x_ca2 = self.x_ca2(x_feat_long)
        q3z = q1z + x_ca2 * x_feat_long
        return self.compress(torch.cat((p3z, q3z), 1))


def _tdm(n_feat: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, kernel_size=1, padding=0, bias=True), nn.ReLU())


class LatticeNet(nn.Module):
    """LatticeNet for one scale; input and output RGB in 0..``rgb_range`` (255 for the public weights)."""

    def __init__(self, scale: int = 4, n_feats: int = 64, n_diff: int = 16, rgb_range: float = 255.0):
        super().__init__()
        self.scale = scale
        self.sub_mean = mean_shift(rgb_range, DIV2K_RGB_MEAN, -1)
        self.conv1 = nn.Conv2d(3, n_feats, kernel_size=3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(n_feats, n_feats, kernel_size=3, padding=1, bias=True)
        self.body_unit1 = LatticeBlock(n_feats, n_diff)
        self.body_unit2 = LatticeBlock(n_feats, n_diff)
        self.body_unit3 = LatticeBlock(n_feats, n_diff)
        self.body_unit4 = LatticeBlock(n_feats, n_diff)
        self.T_tdm1 = _tdm(n_feats)
        self.L_tdm1 = _tdm(n_feats)
        self.T_tdm2 = _tdm(n_feats)
        self.L_tdm2 = _tdm(n_feats)
        self.T_tdm3 = _tdm(n_feats)
        self.L_tdm3 = _tdm(n_feats)
        self.tail = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, kernel_size=3, padding=1, bias=True),
            nn.Conv2d(n_feats, 3 * scale**2, kernel_size=3, padding=1, bias=True),
            nn.PixelShuffle(scale),
        )
        self.add_mean = mean_shift(rgb_range, DIV2K_RGB_MEAN, +1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.sub_mean(x)
        x = self.conv1(x)
        x = self.conv2(x)

        res1 = self.body_unit1(x)
        res2 = self.body_unit2(res1)
        res3 = self.body_unit3(res2)
        res4 = self.body_unit4(res3)

        # backward feature fusion: from the deepest block back to the first
        out = torch.cat((self.T_tdm1(res4), self.L_tdm1(res3)), 1)
        out = torch.cat((self.T_tdm2(out), self.L_tdm2(res2)), 1)
        out = torch.cat((self.T_tdm3(out), self.L_tdm3(res1)), 1)

        out = self.tail(out + x)
        return self.add_mean(out)


def params_without_mean_shift(model: LatticeNet) -> int:
    """Parameter count without ``sub_mean``/``add_mean`` (the paper's and the weights README's figure)."""
    shift = {id(p) for m in (model.sub_mean, model.add_mean) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in shift)


@register_model(
    "latticenet",
    scales=(2, 3, 4),
    input_range=255.0,
    channels="rgb",
    paper="Luo et al., LatticeNet: Towards Lightweight Image Super-resolution with Lattice Block, ECCV 2020",
    published_params={2: 756_000, 3: 765_000, 4: 777_000},
    checkpoints=tuple(
        Checkpoint(
            filename=f"LatticeNet_x{s}.pt",
            sha256=_SHA256[s],
            scales=(s,),
            source=_SOURCE.format(s=s),
            notes="third-party release (not the LatticeNet authors'); keys match the zoo module",
        )
        for s in (2, 3, 4)
    ),
    notes=(
        "RGB 0..255 in and out; DIV2K mean shift inside (sub_mean/add_mean 1x1 convs). The release "
        "trained the mean shifts (the reference's freeze is a no-op), so they are kept as parameters: "
        "parameters() = 756,196 / 764,851 / 776,968 (x2/x3/x4), i.e. 756,172 / 764,827 / 776,944 "
        "(published 756K/765K/777K) + 24 mean-shift values. CC uses the unbiased std (torch.std)."
    ),
)
def build_latticenet(scale: int = 4, **config) -> LatticeNet:
    return LatticeNet(scale=scale, **config)
