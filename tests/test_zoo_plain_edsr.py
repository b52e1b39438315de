"""EDSR / EDSR-baseline and the plain networks (generic ``plain``, MemSR's Plain-M).

- exact parameter counts for every registered model and scale (EDSR's frozen MeanShift is not
  counted, as in the published figures);
- official EDSR state-dict names, MeanShift as buffers, strict loading;
- small models recomputed by hand with torch.nn.functional;
- the plain constructor honours per-layer widths, activations, biases and kernel sizes, and its
  constant-channel mode folds an input mean shift exactly, border included.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo import edsr as ed
from zoo import plain as pl
from zoo.registry import get_spec

SCALES = (2, 3, 4)
NAMES = ("edsr-baseline", "edsr", "plain", "plain-m")

PARAMS = {
    "edsr-baseline": {2: 1_369_859, 3: 1_554_499, 4: 1_517_571},
    "edsr": {2: 40_729_603, 3: 43_680_003, 4: 43_089_923},
    "plain": {2: 409_731, 3: 594_371, 4: 557_443},  # default: 8 x 64, EDSR tail
    "plain-m": {2: 1_369_859, 3: 1_554_499, 4: 1_517_571},  # same conv shapes as EDSR-baseline
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv_count(c_in: int, c_out: int, k: int = 3, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def _edsr_formula(scale: int, n_resblocks: int, n_feats: int) -> int:
    up = (
        2 * _conv_count(n_feats, 4 * n_feats) if scale == 4 else _conv_count(n_feats, scale * scale * n_feats)
    )
    return (
        _conv_count(3, n_feats)
        + (2 * n_resblocks + 1) * _conv_count(n_feats, n_feats)
        + up
        + _conv_count(n_feats, 3)
    )


def _randomize(model: nn.Module, seed: int, std: float = 0.1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


# ---------------------------------------------------------------------------------------------
# registry and sizes


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", SCALES)
def test_parameter_count(name, scale):
    model = get_spec(name).build(scale=scale)
    assert _n_params(model) == PARAMS[name][scale]
    if name.startswith("edsr"):
        cfg = {"edsr": (32, 256), "edsr-baseline": (16, 64)}[name]
        assert PARAMS[name][scale] == _edsr_formula(scale, *cfg)


def test_registry_metadata():
    for name in NAMES:
        spec = get_spec(name)
        assert spec.input_range == 255.0 and spec.channels == "rgb" and spec.scales == SCALES
        assert spec.checkpoints == ()
    assert get_spec("edsr-baseline").published_params == PARAMS["edsr-baseline"]
    assert get_spec("plain-m").published_params == {2: 1_219_000, 3: 1_219_000, 4: 1_219_000}
    assert get_spec("edsr").published_params == {4: 43_000_000}
    assert get_spec("edsr").family == "edsr" and get_spec("plain-m").family == "plain"


@pytest.mark.parametrize("scale", SCALES)
def test_reduced_edsr_teacher_is_configurable(scale):
    """The MemSR tools build reduced teachers, e.g. 5 blocks of 24 features."""
    model = get_spec("edsr-baseline").build(scale=scale, n_resblocks=5, n_feats=24, res_scale=0.5)
    assert len(model.body) == 6 and model.body[0].res_scale == 0.5
    assert _n_params(model) == _edsr_formula(scale, 5, 24)


def test_plain_m_published_count_relation():
    """1,219K does not depend on the scale: it is the body without the tail (see the notes)."""
    model = get_spec("plain-m").build(scale=2)
    convs = model.convs
    assert len(convs) == 34 and all(c.out_channels == 64 for c in convs)
    inner = sum(_n_params(c) for c in convs[1:])  # the 33 64->64 convs with biases
    assert inner == 1_218_624 and round(inner / 1000) == 1219
    assert sum(_n_params(c) for c in convs) == 1_220_416
    assert sum(c.weight.numel() for c in convs) == 1_218_240


def test_plain_m_slides_macs_match_a_pixelshuffle_tail():
    """MemSR's slides: 636 / 285 / 162 G at a 1920x1080 output (thop, bias adds counted)."""
    lr = {2: (540, 960), 3: (360, 640), 4: (270, 480)}
    for scale, published in {2: 636, 3: 285, 4: 162}.items():
        model = get_spec("plain-m").build(scale=scale, tail="pixelshuffle")
        per_pixel = sum(
            m.weight.numel() + m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)
        )
        assert round(per_pixel * lr[scale][0] * lr[scale][1] / 1e9) == published


# ---------------------------------------------------------------------------------------------
# EDSR


def test_edsr_state_dict_has_official_names_and_meanshift_buffers():
    model = ed.EDSR(scale=4, n_resblocks=2, n_feats=8)
    keys = list(model.state_dict())
    assert keys[:4] == ["sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"]
    for key in (
        "head.0.weight",
        "body.0.body.0.weight",
        "body.1.body.2.bias",
        "body.2.weight",
        "tail.0.0.weight",
        "tail.0.2.weight",
        "tail.1.bias",
    ):
        assert key in keys
    params = dict(model.named_parameters())
    assert not any(k.endswith("mean.weight") or k.endswith("mean.bias") for k in params)
    x3 = ed.EDSR(scale=3, n_resblocks=1, n_feats=8)
    assert "tail.0.0.weight" in x3.state_dict() and "tail.0.2.weight" not in x3.state_dict()
    # an official-layout state dict (MeanShift included) loads strictly
    other = ed.EDSR(scale=4, n_resblocks=2, n_feats=8)
    _randomize(other, 1)
    model.load_state_dict(other.state_dict(), strict=True)
    assert torch.equal(model.tail[1].weight, other.tail[1].weight)


def test_meanshift_values():
    sub, add = ed.MeanShift(255.0, sign=-1), ed.MeanShift(255.0, sign=1)
    x = torch.rand(1, 3, 4, 5) * 255
    mean = torch.tensor(ed.DIV2K_RGB_MEAN).view(1, 3, 1, 1) * 255
    torch.testing.assert_close(sub(x), x - mean)
    torch.testing.assert_close(add(sub(x)), x)


def test_edsr_with_zero_tail_outputs_the_mean():
    model = ed.EDSR(scale=2, n_resblocks=1, n_feats=8)
    with torch.no_grad():
        model.tail[1].weight.zero_()
        model.tail[1].bias.zero_()
        out = model(torch.rand(1, 3, 5, 7) * 255)
    expected = (torch.tensor(ed.DIV2K_RGB_MEAN) * 255).view(1, 3, 1, 1).expand(1, 3, 10, 14)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("scale", SCALES)
def test_edsr_by_hand(scale):
    model = ed.EDSR(scale=scale, n_resblocks=2, n_feats=8, res_scale=0.5).eval()
    _randomize(model, scale)
    x = torch.rand(1, 3, 9, 11) * 255
    mean = (torch.tensor(ed.DIV2K_RGB_MEAN) * 255).view(1, 3, 1, 1)

    def conv(m, t):
        return F.conv2d(t, m.weight, m.bias, padding=m.weight.shape[-1] // 2)

    h = conv(model.head[0], x - mean)
    r = h
    for block in model.body[:2]:
        r = r + 0.5 * conv(block.body[2], F.relu(conv(block.body[0], r)))
    r = conv(model.body[2], r) + h
    if scale == 4:
        r = F.pixel_shuffle(conv(model.tail[0][0], r), 2)
        r = F.pixel_shuffle(conv(model.tail[0][2], r), 2)
    else:
        r = F.pixel_shuffle(conv(model.tail[0][0], r), scale)
    expected = conv(model.tail[1], r) + mean
    with torch.no_grad():
        got = model(x)
    assert got.shape == (1, 3, 9 * scale, 11 * scale)
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-4)


def test_edsr_rejects_unsupported_scale():
    with pytest.raises(ValueError, match="scales"):
        ed.EDSR(scale=5, n_resblocks=1, n_feats=4)


# ---------------------------------------------------------------------------------------------
# plain networks


def test_plain_constructor_honours_per_layer_settings():
    model = pl.PlainSR(
        widths=[8, 6, 5, 7],
        scale=3,
        acts=["relu", "identity", False, True],
        bias=[True, False, True, False],
        kernel_sizes=[3, 1, 5, 3],
        tail="pixelshuffle",
        add_mean=False,
    )
    convs = model.convs
    assert [tuple(c.weight.shape) for c in convs] == [(8, 3, 3, 3), (6, 8, 1, 1), (5, 6, 5, 5), (7, 5, 3, 3)]
    assert [c.bias is not None for c in convs] == [True, False, True, False]
    assert [c.padding for c in convs] == [(1, 1), (0, 0), (2, 2), (1, 1)]
    acts = [m for i, m in enumerate(model.body) if i % 2 == 1]
    assert [type(a) for a in acts] == [nn.ReLU, nn.Identity, nn.Identity, nn.ReLU]
    assert model.acts == ("relu", "identity", "identity", "relu")
    assert model.sub_mean is None and model.add_mean is None
    assert tuple(model.tail[0].weight.shape) == (27, 7, 3, 3)
    assert model(torch.rand(1, 3, 5, 4)).shape == (1, 3, 15, 12)
    keys = list(model.state_dict())
    assert keys[:3] == ["body.0.weight", "body.0.bias", "body.2.weight"]


def test_plain_rejects_bad_arguments():
    with pytest.raises(ValueError, match="acts"):
        pl.PlainSR([8, 8], acts=["relu"])
    with pytest.raises(ValueError, match="activation"):
        pl.PlainSR([8], acts=["gelu"])
    with pytest.raises(ValueError, match="odd"):
        pl.PlainSR([8], kernel_sizes=2)
    with pytest.raises(ValueError, match="tail"):
        pl.PlainSR([8], tail="deconv")
    with pytest.raises(ValueError, match="widths"):
        pl.PlainSR([])


@pytest.mark.parametrize("tail", ["edsr", "pixelshuffle"])
@pytest.mark.parametrize("scale", SCALES)
def test_plain_by_hand(tail, scale):
    model = pl.PlainSR(
        [8, 6, 5],
        scale=scale,
        acts=["relu", "identity", "relu"],
        bias=[True, False, True],
        tail=tail,
        sub_mean=True,
        add_mean=True,
    ).eval()
    _randomize(model, 10 * scale)
    x = torch.rand(1, 3, 9, 11) * 255
    mean = (torch.tensor(ed.DIV2K_RGB_MEAN) * 255).view(1, 3, 1, 1)
    c = model.convs
    h = F.relu(F.conv2d(x - mean, c[0].weight, c[0].bias, padding=1))
    h = F.conv2d(h, c[1].weight, None, padding=1)
    h = F.relu(F.conv2d(h, c[2].weight, c[2].bias, padding=1))
    if tail == "pixelshuffle":
        out = F.pixel_shuffle(F.conv2d(h, model.tail[0].weight, model.tail[0].bias, padding=1), scale)
    else:
        ups = [m for m in model.tail[0] if isinstance(m, nn.Conv2d)]
        for up in ups:
            h = F.pixel_shuffle(F.conv2d(h, up.weight, up.bias, padding=1), 2 if scale == 4 else scale)
        out = F.conv2d(h, model.tail[1].weight, model.tail[1].bias, padding=1)
    expected = out + mean
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-3, rtol=1e-4)


def test_plain_m_structure():
    model = get_spec("plain-m").build(scale=4)
    assert model.widths == (64,) * 34
    assert model.acts == tuple(pl.memsr_edsr_acts(16))
    assert model.acts[:4] == ("identity", "relu", "identity", "relu") and model.acts[-2:] == ("identity",) * 2
    assert model.sub_mean is None and model.add_mean is not None
    # the same conv shapes as EDSR-baseline, in order (head, 2 x 16 block convs, body conv, tail)
    teacher = get_spec("edsr-baseline").build(scale=4)
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert shapes == [tuple(m.weight.shape) for m in teacher.modules() if isinstance(m, nn.Conv2d)]
    assert len(pl.memsr_edsr_acts(5)) == 12


def test_const_channel_equals_bias_at_the_centre_tap():
    biased = pl.PlainSR([6, 5], scale=2, acts=["relu", "identity"], tail="pixelshuffle")
    _randomize(biased, 3)
    const = pl.PlainSR([6, 5], scale=2, acts=["relu", "identity"], tail="pixelshuffle", const_channel=True)
    assert all(isinstance(c, pl.ConstChannelConv) and c.bias is None for c in const.convs)
    assert _n_params(const) == _n_params(biased) - 11 + 9 * (6 + 5)  # bias -> 3x3 taps of the extra channel
    with torch.no_grad():
        for cb, cc in zip(biased.convs, const.convs, strict=True):
            cc.weight.zero_()
            cc.weight[:, 1:] = cb.weight
            cc.weight[:, 0, 1, 1] = cb.bias
        const.tail.load_state_dict(biased.tail.state_dict())
        x = torch.rand(1, 3, 7, 5) * 255
        torch.testing.assert_close(const(x), biased(x), atol=1e-3, rtol=1e-5)


def test_const_channel_folds_an_input_mean_shift_exactly():
    """MemSR's reason for the constant channel: sub_mean folded into the first conv stays exact at
    the border, where folding it into an ordinary bias does not."""
    gen = torch.Generator().manual_seed(4)
    w, b = torch.randn(4, 3, 3, 3, generator=gen), torch.randn(4, generator=gen)
    x = torch.rand(1, 3, 6, 7, generator=gen) * 255
    mean = torch.tensor(ed.DIV2K_RGB_MEAN) * 255
    ref = F.conv2d(x - mean.view(1, 3, 1, 1), w, b, padding=1)
    conv = pl.ConstChannelConv(3, 4, 3)
    with torch.no_grad():
        conv.weight[:, 1:] = w
        conv.weight[:, 0] = -(w * mean.view(1, 3, 1, 1)).sum(dim=1)  # the mean, on every tap
        conv.weight[:, 0, 1, 1] += b
        torch.testing.assert_close(conv(x), ref, atol=1e-3, rtol=1e-5)
    folded_bias = b - (w.sum(dim=(2, 3)) * mean).sum(dim=1)
    plain_fold = F.conv2d(x, w, folded_bias, padding=1)
    torch.testing.assert_close(plain_fold[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-3, rtol=1e-5)
    assert (plain_fold - ref).abs().max() > 1.0


def test_plain_training_step_reaches_every_parameter():
    model = pl.PlainSR([8, 8], scale=2, acts=["relu", "identity"], const_channel=True).train()
    model(torch.rand(2, 3, 6, 6) * 255).mean().backward()
    assert all(p.grad is not None and torch.any(p.grad != 0) for p in model.parameters())
