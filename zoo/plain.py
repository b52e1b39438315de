"""Plain super-resolution networks: a stack of convs with per-layer widths and activations (ReLU or
identity), no skip connections, then an upsampler tail. This is the student family of MemSR (Wu, Lee,
Ma, ICML 2022; code wukailu/MemSR) and what the MemSR conversion produces from a residual teacher.

Conventions, as in MemSR's code (``EDSR_layerwise_Model`` and the ``MemSR_Init`` student):
- input RGB in 0..255 (``rgb_range``); MemSR folds the teacher's input mean shift into the first
  conv, so by default there is no input ``sub_mean`` here (``sub_mean=True`` keeps it as a separate
  fixed layer, which is exact at the image border where folding into a biased conv is not);
- the tail is the teacher's EDSR tail kept as is: EDSR upsampler (conv C->4C + PixelShuffle(2) per
  factor 2, or conv C->9C + PixelShuffle(3)), conv C->3, then ``add_mean`` (DIV2K mean, fixed
  buffers as in ``zoo.edsr.MeanShift``); ``tail="pixelshuffle"`` gives conv C->3s^2 + PixelShuffle;
- MemSR's layers are bias-free convs over the input with a constant-1 channel prepended at index 0
  (zero-padded like the image, so a "bias" spread over the k x k taps is border-aware);
  ``const_channel=True`` builds exactly that, the default uses ordinary conv biases (identical when
  the constant channel's weights sit only at the centre tap, as after converting a teacher).

Plain-M (``plain-m``): the MemSR student with ``fix_r = 64``: 34 3x3 convs of width 64 (the teacher's
head conv, 2 x 16 residual-block convs and the body conv) with the teacher's activations
(identity, (ReLU, identity) x 16, identity), plus the EDSR tail.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from zoo.edsr import DIV2K_RGB_MEAN, MeanShift, Upsampler, default_conv
from zoo.registry import register_model

__all__ = ["ConstChannelConv", "PlainSR", "memsr_edsr_acts"]

_ACTS = {"relu": "relu", "identity": "identity", "id": "identity", "none": "identity", "linear": "identity"}


class ConstChannelConv(nn.Conv2d):
    """A bias-free conv over ``[1, x]``: a constant-1 channel is prepended at index 0 (MemSR's trick).

    The constant channel is zero-padded like ``x``, so its kernel acts as a bias that knows where the
    image border is. ``in_channels`` is the width of ``x``; the weight has ``in_channels + 1`` inputs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(in_channels + 1, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(torch.cat([torch.ones_like(x[:, :1]), x], dim=1))


def _per_layer(value, n: int, name: str) -> list:
    if isinstance(value, (str, bool, int)) or value is None:
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name} needs one entry per layer ({n}), got {len(values)}")
    return values


def _act_name(a) -> str:
    if a is None or a is False:
        return "identity"
    if a is True:
        return "relu"
    if isinstance(a, str) and a.lower() in _ACTS:
        return _ACTS[a.lower()]
    raise ValueError(f"activation must be 'relu' or 'identity' (or True/False), got {a!r}")


def memsr_edsr_acts(n_resblocks: int = 16) -> list[str]:
    """Activations of the plain layers that MemSR derives from an EDSR teacher with ``n_resblocks``:
    head (identity), then per residual block (ReLU, identity), then the body conv (identity)."""
    return ["identity"] + ["relu", "identity"] * n_resblocks + ["identity"]


class PlainSR(nn.Module):
    """A plain SR network: ``[sub_mean] -> conv_1 -> act_1 -> ... -> conv_L -> act_L -> tail -> [add_mean]``.

    Args:
        widths: output channels of each body conv (``len(widths)`` layers; the first reads
            ``in_channels``).
        scale: upscaling factor of the tail.
        acts: per layer ``"relu"`` or ``"identity"`` (or True/False); one value applies to all.
            Default: ReLU after every layer.
        bias: per layer (or one for all) whether the conv has a bias.
        kernel_sizes: per layer (or one for all) odd kernel size, default 3.
        tail: ``"edsr"`` (EDSR upsampler + conv to ``out_channels``) or ``"pixelshuffle"``
            (conv to ``out_channels * scale**2`` + PixelShuffle).
        sub_mean / add_mean: fixed DIV2K mean shift at the input / output (``rgb_range`` scaled).
        const_channel: realise each layer's bias as MemSR's constant-1 input channel
            (:class:`ConstChannelConv`) instead of a conv bias.
        inplace_act: use in-place ReLUs (lower peak memory at inference).
    State-dict keys: ``body.<2i>`` for conv i, ``tail.*`` (EDSR's names for ``tail="edsr"``),
    ``sub_mean`` / ``add_mean`` when present.
    """

    def __init__(
        self,
        widths: Sequence[int],
        scale: int = 2,
        acts: Sequence[str | bool] | str | bool | None = "relu",
        bias: Sequence[bool] | bool = True,
        kernel_sizes: Sequence[int] | int = 3,
        in_channels: int = 3,
        out_channels: int = 3,
        tail: str = "edsr",
        sub_mean: bool = False,
        add_mean: bool = True,
        rgb_range: float = 255.0,
        rgb_mean: Sequence[float] = DIV2K_RGB_MEAN,
        const_channel: bool = False,
        inplace_act: bool = False,
    ):
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive ints, got {widths}")
        n = len(widths)
        self.scale = scale
        self.widths = tuple(widths)
        self.acts = tuple(_act_name(a) for a in _per_layer(acts, n, "acts"))
        self.biases = tuple(bool(b) for b in _per_layer(bias, n, "bias"))
        self.kernel_sizes = tuple(int(k) for k in _per_layer(kernel_sizes, n, "kernel_sizes"))
        if any(k % 2 != 1 for k in self.kernel_sizes):
            raise ValueError(f"kernel sizes must be odd, got {self.kernel_sizes}")
        self.const_channel = const_channel

        self.sub_mean = MeanShift(rgb_range, rgb_mean, sign=-1) if sub_mean else None
        layers: list[nn.Module] = []
        c_in = in_channels
        for c_out, act, has_bias, k in zip(widths, self.acts, self.biases, self.kernel_sizes, strict=True):
            if const_channel and has_bias:
                layers.append(ConstChannelConv(c_in, c_out, k))
            else:
                layers.append(default_conv(c_in, c_out, k, bias=has_bias))
            layers.append(nn.ReLU(inplace=inplace_act) if act == "relu" else nn.Identity())
            c_in = c_out
        self.body = nn.Sequential(*layers)

        if tail == "edsr":
            self.tail = nn.Sequential(Upsampler(scale, c_in), default_conv(c_in, out_channels, 3))
        elif tail == "pixelshuffle":
            self.tail = nn.Sequential(default_conv(c_in, out_channels * scale**2, 3), nn.PixelShuffle(scale))
        else:
            raise ValueError(f"tail must be 'edsr' or 'pixelshuffle', got {tail!r}")
        self.tail_kind = tail
        self.add_mean = MeanShift(rgb_range, rgb_mean, sign=1) if add_mean else None

    @property
    def convs(self) -> list[nn.Conv2d]:
        """The body convs, in order."""
        return [m for m in self.body if isinstance(m, nn.Conv2d)]

    def forward(self, x: Tensor) -> Tensor:
        if self.sub_mean is not None:
            x = self.sub_mean(x)
        x = self.tail(self.body(x))
        if self.add_mean is not None:
            x = self.add_mean(x)
        return x


_PAPER = (
    "Wu, Lee, Ma, MemSR: Training Memory-efficient Lightweight Model for Image Super-Resolution, ICML 2022"
)


@register_model(
    "plain",
    scales=(2, 3, 4),
    input_range=255.0,
    paper=_PAPER,
    notes="generic plain network; configure widths/acts/bias/kernel_sizes/tail/const_channel. Default: "
    "8 3x3 convs of width 64 with ReLU, EDSR tail, output mean shift.",
)
def plain(scale: int = 2, **config) -> PlainSR:
    return PlainSR(scale=scale, **{"widths": (64,) * 8, **config})


@register_model(
    "plain-m",
    scales=(2, 3, 4),
    input_range=255.0,
    paper=_PAPER,
    published_params={2: 1_219_000, 3: 1_219_000, 4: 1_219_000},
    notes="MemSR Plain-M (fix_r=64): 34 3x3 convs of width 64, activations identity,(ReLU,identity)x16,"
    "identity, EDSR tail, output mean shift. Params 1,369,859 / 1,554,499 / 1,517,571 at x2/x3/x4 (the "
    "same conv shapes as EDSR-baseline). The published 1,219K is one figure for all scales, so it leaves "
    "the scale-dependent tail out: the 33 64->64 convs with biases are 1,218,624; all 34 body convs are "
    "1,220,416 with biases, 1,218,240 without. The slides' MACs (636 / 285 / 162 G at a 1920x1080 output) "
    "match these 34 convs with a conv+PixelShuffle tail instead (tail='pixelshuffle': 636.25 / 284.77 / "
    "161.75 G counting bias adds as thop does); MemSR's released code keeps the EDSR tail, used here.",
)
def plain_m(scale: int = 2, **config) -> PlainSR:
    return PlainSR(scale=scale, **{"widths": (64,) * 34, "acts": memsr_edsr_acts(16), **config})
