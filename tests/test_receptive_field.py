"""``memsr-bench receptive-field`` (issue 14, item 1): the LR neighbourhood each output pixel depends on.

- every zoo model at every scale is analysed; the models with whole-image statistics (IMDN/RFDN
  contrast channel attention, LatticeNet's global pooling) and SwinIR (window attention, not
  analysed) are ``local: false`` with a reason, ESA models have grid 6 (stride-2 conv, stride-3 pool);
- perturbation checks on real forwards (float64, random weights): one LR pixel changed in the middle,
  the changed HR region's extent in LR pixels never exceeds the reported radius, and equals it for
  conv stacks; for a non-local model a far pixel changes;
- small synthetic networks: strides, pooling, pixel (un)shuffle, padding modes, interpolation,
  slices written into padded buffers, global statistics;
- the command's JSON.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from memsr_bench.cli import main
from memsr_bench.measure.receptive_field import receptive_field
from memsr_bench.model import load_model
from zoo.registry import get_spec

NON_LOCAL = {"imdn", "rfdn", "rfdn-l", "latticenet", "swinir-light", "swinir-mini"}
ESA = {"e-rfdn", "efdn", "rlfn", "rlfn-ntire", "rlfn-s"}


def _measured_radius(model: nn.Module, scale: int, channels: int, size: int, at: tuple[int, int] | None = None) -> int:
    """Largest LR Chebyshev distance from the perturbed LR pixel to the LR pixel of a changed HR pixel."""
    torch.manual_seed(0)
    x = torch.rand(1, channels, size, size, dtype=torch.float64)
    y0, x0 = at or (size // 2, size // 2)
    moved = x.clone()
    moved[:, :, y0, x0] += 1.0
    with torch.no_grad():
        diff = (model(moved) - model(x)).abs().amax(dim=(0, 1))
    ys, xs = torch.nonzero(diff > 0, as_tuple=True)
    return max(int((ys // scale - y0).abs().max()), int((xs // scale - x0).abs().max()))


def _loaded(name: str, scale: int, **config):
    loaded = load_model(name, scale, config=config)
    channels = 1 if loaded.entry.spec.channels == "y" else 3
    return loaded.module.double().eval(), channels


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_model_is_covered(name: str):
    for scale in get_spec(name).scales:
        model, channels = _loaded(name, scale)
        rf = receptive_field(model, scale, name=name, channels=channels, lr_size=(48, 48))
        assert rf.as_dict()["model"] == name and rf.scale == scale
        assert rf.local == (name not in NON_LOCAL), rf
        if rf.local:
            assert rf.radius is not None and rf.radius > 0 and rf.reason is None
        else:
            assert rf.radius is None and rf.reason
        assert rf.grid == (6 if name in ESA else 1)
        assert rf.size_dependent == (name in ESA)


@pytest.mark.parametrize(
    ("name", "scale", "config", "exact"),
    [
        ("fsrcnn", 2, {}, True),
        ("fsrcnn", 3, {}, True),
        ("fsrcnn", 4, {}, True),
        ("plain", 2, {}, True),
        ("plain", 4, {}, True),
        ("srcnn", 3, {}, True),
        ("edsr-baseline", 2, {"n_resblocks": 2, "n_feats": 16}, True),
        ("edsr-baseline", 4, {"n_resblocks": 2, "n_feats": 16}, True),
        ("carn-m", 2, {}, True),
        ("span", 4, {}, True),
        ("imdn-rtc", 2, {}, True),
        ("fmen-s-deploy", 2, {}, False),
        ("fmen-s", 4, {}, False),
        ("rlfn-ntire", 4, {}, False),
    ],
)
def test_perturbation_never_exceeds_the_radius(name: str, scale: int, config: dict, exact: bool):
    model, channels = _loaded(name, scale, **config)
    first = receptive_field(model, scale, channels=channels)
    size = min(2 * first.radius + 8, 72)
    rf = receptive_field(model, scale, channels=channels, lr_size=(size, size))
    measured = _measured_radius(model, scale, channels, size)
    assert measured <= rf.radius
    if exact:
        assert measured == rf.radius


def test_imdn_is_not_local():
    model, channels = _loaded("imdn", 2)
    rf = receptive_field(model, 2, channels=channels, lr_size=(40, 40))
    assert not rf.local and "whole-image" in rf.reason
    # a pixel in one corner changes the output in the opposite corner, beyond any conv stack's reach
    assert _measured_radius(model, 2, channels, 40, at=(1, 1)) == 38


def test_esa_grid_and_bound():
    model, channels = _loaded("rlfn-ntire", 4)
    for size in (36, 48):
        rf = receptive_field(model, 4, channels=channels, lr_size=(size, size))
        assert rf.local and rf.grid == 6 and rf.size_dependent
        assert _measured_radius(model, 4, channels, size, at=(3, 5)) <= rf.radius


class _Strided(nn.Module):
    """Stride-2 conv, stride-3 max-pool, bilinear x6 by scale factor, residual, pixel shuffle x2."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.Conv2d(8, 12, 3, padding=1)

    def forward(self, x):
        y = F.max_pool2d(self.a(x), 3, stride=3)
        y = F.interpolate(self.b(y), scale_factor=6, mode="bilinear", align_corners=False)
        return F.pixel_shuffle(self.up(self.c(x) * torch.sigmoid(y)), 2)


def _check(model: nn.Module, scale: int, size: int, exact: bool = False, channels: int = 3) -> int:
    model = model.double().eval()
    rf = receptive_field(model, scale, channels=channels, lr_size=(size, size))
    assert rf.local, rf
    measured = _measured_radius(model, scale, channels, size)
    assert measured <= rf.radius
    if exact:
        assert measured == rf.radius
    return rf.grid


def test_strided_pool_and_upsample_set_the_grid():
    torch.manual_seed(1)
    assert _check(_Strided(), 2, 36) == 6


class _PadThenConv(nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.conv = nn.Conv2d(3, 3, 3)
        self.conv2 = nn.Conv2d(3, 3 * 4, 5, padding=4, dilation=2)

    def forward(self, x):
        return F.pixel_shuffle(self.conv2(self.conv(F.pad(x, (1, 1, 1, 1), mode=self.mode))), 2)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_padding_modes_and_dilation(mode: str):
    torch.manual_seed(2)
    _check(_PadThenConv(mode), 2, 30, exact=mode == "constant")  # reflection reaches 2 pixels further at borders


class _Unshuffle(nn.Module):
    """pixel_unshuffle / conv / pixel_shuffle x4 and a transposed conv, as in some efficient SR models."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(12, 3 * 16, 3, padding=1)
        self.deconv = nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1)

    def forward(self, x):
        y = F.pixel_shuffle(self.conv(F.pixel_unshuffle(x, 2)), 4)
        return y + self.deconv(x) + F.interpolate(x, scale_factor=2, mode="nearest")


def test_unshuffle_transposed_conv_and_nearest():
    torch.manual_seed(3)
    assert _check(_Unshuffle(), 2, 30) == 2


class _PaddedBuffer(nn.Module):
    """Writes the input into the middle of a constant buffer, then a conv without padding (FMEN's pad)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        n, c, h, w = x.shape
        out = torch.zeros(n, c, h + 2, w + 2, dtype=x.dtype)
        out[:, :, 1 : h + 1, 1 : w + 1] = x
        y = self.conv(out)
        return self.conv2(y + x[:, :, :, :])


def test_slices_written_into_a_buffer_keep_their_offset():
    torch.manual_seed(4)
    model = _PaddedBuffer().double()
    rf = receptive_field(model, 1, lr_size=(20, 20))
    assert rf.radius == 2  # the crop shifts back: conv (1) + conv (1)
    assert _measured_radius(model, 1, 3, 20) == 2


@pytest.mark.parametrize(
    ("block", "word"),
    [
        (nn.AdaptiveAvgPool2d(1), "adaptive_avg_pool2d"),
        (nn.InstanceNorm2d(3), "norm"),
        (lambda x: x.mean(dim=(2, 3), keepdim=True), "mean"),
        (lambda x: x.std(dim=(2, 3), keepdim=True), "std"),
    ],
)
def test_whole_image_statistics_are_not_local(block, word: str):
    class Net(nn.Module):
        def forward(self, x):
            return F.interpolate(x * block(x), scale_factor=2, mode="nearest")

    rf = receptive_field(Net(), 2, lr_size=(16, 16))
    assert not rf.local and rf.radius is None and word in rf.reason


def test_cli_json(capsys):
    assert main(["receptive-field", "fsrcnn", "--scale", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in ("model", "scale", "local", "radius", "grid", "reason")} == {
        "model": "fsrcnn",
        "scale": 3,
        "local": True,
        "radius": 8,
        "grid": 1,
        "reason": None,
    }
    assert main(["receptive-field", "imdn", "--input", "32x32"]) == 0
    text = capsys.readouterr().out
    assert "local: no" in text and "whole-image" in text


class _CropPad(nn.Module):
    """Reads a spatial slice (a view with an offset) and pads it back."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return F.pad(self.conv(x)[:, :, 2:-2, 3:-1], (3, 1, 2, 2)) + x


def test_spatial_slices_are_read_at_their_offset():
    torch.manual_seed(5)
    model = _CropPad().double()
    assert receptive_field(model, 1, lr_size=(20, 20)).radius == 1
    assert _measured_radius(model, 1, 3, 20) == 1
