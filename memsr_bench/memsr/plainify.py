"""Stage 1 of MemSR: turn a residual teacher into an exactly equivalent plain network.

``plainify(teacher)`` walks the teacher's module structure and returns a :class:`zoo.plain.PlainSR`
(a stack of convs, each followed by ReLU or identity, no skips) that computes the same function,
plus a :class:`PlainifyReport`. The upsampler tail and the output mean shift are kept as they are.

What it converts (anything else raises :class:`UnsupportedLayerError` naming the layer):

- ``nn.Conv2d`` (odd square kernel, "same" zero padding, stride 1, dilation 1; grouped convs become
  dense block-diagonal kernels), ``zoo.plain.ConstChannelConv``;
- ``nn.ReLU``, ``nn.Identity``, ``nn.Dropout`` in eval mode, ``nn.BatchNorm2d`` in eval mode (an affine
  1x1 layer), EDSR's ``MeanShift`` (a fixed 1x1 layer);
- identity skips: EDSR's ``ResBlock`` (``x + res_scale * body(x)``), EDSR's global skip, and
  :class:`Residual` (``x + scale * body(x)`` around any convertible body: skips may nest freely);
- ``nn.Sequential`` of the above; whole models: ``zoo.edsr.EDSR`` (EDSR, EDSR-baseline, any width,
  depth, scale, ``res_scale``) and ``zoo.plain.PlainSR``.

How it is exact. Every layer is kept in float64 as a kernel over ``[1, x]``: a constant-1 channel that
is zero-padded like the feature (MemSR's trick). A layer's bias is that channel's centre tap; folding
an affine 1x1 layer (mean shift, BatchNorm) into the following k x k conv spreads its bias over the
k x k taps of the constant channel, which is what makes the fold exact on the image border too.
A skip ``x + s * F(x)`` whose branch ``F`` is the plain layers ``L_1 .. L_n`` becomes ``n`` layers:
layer ``i`` outputs ``[carry, L_i(...)]`` where ``carry`` holds ``x`` (identity kernel at the centre
tap, block-diagonal with ``L_i``), and the last layer outputs ``decode(carry) + s * L_n(...)``.
While ``x`` crosses no ReLU it is carried as is; crossing a ReLU it is protected in one of two ways:

- ``carry="offset"`` (MemSR): carry ``x + B`` (``B = skip_offset``, 1000 by default) so that the ReLU
  leaves it alone, and subtract ``B`` when decoding. Exact as long as every carried value stays above
  ``-B`` (true for EDSR features on 0..255 images); float32 rounds ``x + B`` to about 6e-5 at B = 1000.
- ``carry="split"`` (exact for every input, twice the carry width): carry ``[relu(x), relu(-x)]`` and
  decode ``relu(x) - relu(-x) = x``.

A branch that is a single identity-activated conv merges with its skip into one conv
(``s * W + identity``). Identity-activated 1x1 layers fold into a neighbour. With the offset carry an
EDSR-baseline body becomes widths ``[64, (192, 128) x 16, 64]``: the head conv (64); per residual
block ``conv1 + ReLU`` -> ``[global-skip carry 64, block-skip carry 64, branch 64]`` and
``conv2`` -> ``[global-skip carry 64, block output 64]``; the body conv closes the global skip (64).

The input mean shift is kept as the plain model's separate fixed ``sub_mean`` layer by default (the
plain convs then have ordinary biases); ``fold_input_shift=True`` folds it into the first conv instead
(MemSR's choice), which makes the plain model use constant-channel convs (``const_channel=True``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from memsr_bench.errors import MemsrInputError
from zoo.edsr import EDSR, MeanShift, ResBlock
from zoo.plain import ConstChannelConv, PlainSR

__all__ = [
    "CARRY_MODES",
    "PlainifyReport",
    "Residual",
    "UnsupportedLayerError",
    "format_widths",
    "max_abs_diff",
    "plainify",
]

CarryMode = Literal["offset", "split"]
CARRY_MODES: tuple[str, ...] = ("offset", "split")


class UnsupportedLayerError(MemsrInputError):
    """A teacher layer that cannot be converted exactly; ``where`` is the layer's module path."""


class Residual(nn.Module):
    """``x + scale * body(x)``: an identity skip around ``body`` (to build teachers with nested skips)."""

    def __init__(self, body: nn.Module, scale: float = 1.0):
        super().__init__()
        self.body = body
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x) * self.scale


# ------------------------------------------------------------------------------------ the plain IR


@dataclass(frozen=True)
class _Layer:
    """One plain layer: ``act(weight * x + const * one)``, ``one`` the zero-padded constant channel."""

    weight: Tensor  # (C_out, C_in, k, k) float64
    const: Tensor  # (C_out, k, k) float64
    act: str  # "relu" | "identity"
    parts: tuple[tuple[str, int], ...]  # what the output channels hold, in order
    source: str  # teacher module path(s)

    @property
    def k(self) -> int:
        return int(self.weight.shape[-1])

    @property
    def c_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def c_in(self) -> int:
        return int(self.weight.shape[1])


@dataclass(frozen=True)
class _Act:
    path: str


@dataclass(frozen=True)
class _Res:
    ops: tuple
    scale: float
    path: str


_F64 = torch.float64


def _eye_kernel(c: int, k: int) -> Tensor:
    w = torch.zeros(c, c, k, k, dtype=_F64)
    w[torch.arange(c), torch.arange(c), k // 2, k // 2] = 1.0
    return w


def _centre(values: Tensor, k: int) -> Tensor:
    """``(C,)`` values at the centre tap of a ``(C, k, k)`` constant kernel."""
    out = torch.zeros(values.shape[0], k, k, dtype=_F64)
    out[:, k // 2, k // 2] = values.to(_F64)
    return out


def _dense_weight(conv: nn.Conv2d) -> Tensor:
    w = conv.weight.detach().to("cpu", _F64)
    g = conv.groups
    if g == 1:
        return w.clone()
    c_out, c_in_g, k, _ = w.shape
    dense = torch.zeros(c_out, c_in_g * g, k, k, dtype=_F64)
    o_g = c_out // g
    for j in range(g):
        dense[j * o_g : (j + 1) * o_g, j * c_in_g : (j + 1) * c_in_g] = w[j * o_g : (j + 1) * o_g]
    return dense


def _conv_layer(conv: nn.Conv2d, path: str) -> _Layer:
    k = conv.kernel_size
    if k[0] != k[1] or k[0] % 2 != 1:
        raise UnsupportedLayerError(path, f"conv kernel {tuple(k)} is not square and odd")
    k = k[0]
    if tuple(conv.stride) != (1, 1) or tuple(conv.dilation) != (1, 1):
        raise UnsupportedLayerError(
            path, f"conv with stride {tuple(conv.stride)} / dilation {tuple(conv.dilation)} (need 1)"
        )
    padding = (k // 2, k // 2) if conv.padding == "same" else tuple(conv.padding)
    if padding != (k // 2, k // 2) or conv.padding_mode != "zeros":
        raise UnsupportedLayerError(
            path, f"conv padding {conv.padding!r} ({conv.padding_mode}) is not 'same' zero padding"
        )
    w = _dense_weight(conv)
    if isinstance(conv, ConstChannelConv):
        if conv.groups != 1:
            raise UnsupportedLayerError(path, "grouped ConstChannelConv")
        const, w = w[:, 0].clone(), w[:, 1:].clone()
    else:
        bias = conv.bias.detach().to("cpu", _F64) if conv.bias is not None else torch.zeros(w.shape[0], dtype=_F64)
        const = _centre(bias, k)
    return _Layer(w, const, "identity", ((path, w.shape[0]),), path)


def _affine_layer(scale_matrix: Tensor, shift: Tensor, path: str) -> _Layer:
    """A 1x1 layer ``A x + c`` (identity activation)."""
    a = scale_matrix.detach().to("cpu", _F64)
    return _Layer(a[:, :, None, None].clone(), _centre(shift, 1), "identity", ((path, a.shape[0]),), path)


def _same_forward(module: nn.Module, base: type) -> bool:
    """True when ``module`` computes what ``base`` computes (no overridden forward)."""
    return type(module).forward is base.forward


_SUPPORTED = (
    "only convs (odd square kernel, same zero padding, stride 1), ReLU, identity, BatchNorm/Dropout in "
    "eval mode, mean shifts, identity skips (ResBlock, Residual) and nn.Sequential can be converted exactly"
)


def _ops(module: nn.Module, path: str) -> list:
    """The plain-IR operations of ``module`` (a path-named list of layers, activations and skips)."""
    name = path or "<model>"
    kind = type(module).__name__
    if isinstance(module, nn.Sequential) and _same_forward(module, nn.Sequential):
        ops: list = []
        for child_name, child in module.named_children():
            ops += _ops(child, f"{path}.{child_name}" if path else child_name)
        return ops
    if isinstance(module, ResBlock) and _same_forward(module, ResBlock):
        return [_Res(tuple(_ops(module.body, f"{path}.body")), float(module.res_scale), name)]
    if isinstance(module, Residual) and _same_forward(module, Residual):
        return [_Res(tuple(_ops(module.body, f"{path}.body")), float(module.scale), name)]
    if isinstance(module, ConstChannelConv) and _same_forward(module, ConstChannelConv):
        return [_conv_layer(module, name)]
    if isinstance(module, nn.Conv2d) and _same_forward(module, nn.Conv2d):
        return [_conv_layer(module, name)]
    if isinstance(module, MeanShift) and _same_forward(module, MeanShift):
        return [_affine_layer(module.weight[:, :, 0, 0], module.bias, name)]
    if isinstance(module, nn.ReLU) and _same_forward(module, nn.ReLU):
        return [_Act(name)]
    if isinstance(module, nn.Identity) and _same_forward(module, nn.Identity):
        return []
    if isinstance(module, nn.Dropout) and _same_forward(module, nn.Dropout):
        if module.training and module.p > 0:
            raise UnsupportedLayerError(name, "Dropout in train mode is random; call teacher.eval() first")
        return []
    if isinstance(module, nn.BatchNorm2d) and _same_forward(module, nn.BatchNorm2d):
        if module.training or module.running_mean is None or module.running_var is None:
            raise UnsupportedLayerError(
                name,
                "BatchNorm in train mode (batch statistics) is not a fixed map; call teacher.eval() first",
            )
        n = module.num_features
        ref = module.running_mean.detach().to("cpu", _F64)
        gamma = module.weight.detach().to("cpu", _F64) if module.weight is not None else torch.ones(n, dtype=_F64)
        beta = module.bias.detach().to("cpu", _F64) if module.bias is not None else torch.zeros(n, dtype=_F64)
        s = gamma / torch.sqrt(module.running_var.detach().to("cpu", _F64) + module.eps)
        return [_affine_layer(torch.diag(s), beta - ref * s, name)]
    raise UnsupportedLayerError(name, f"{kind} cannot be converted to a plain network: {_SUPPORTED}")


# ------------------------------------------------------------------------------------ folding


def _merge_back(a: _Layer, b: _Layer) -> _Layer:
    """``b`` (1x1) after ``a`` (identity activation): one layer with ``a``'s kernel size. Exact."""
    m = b.weight[:, :, 0, 0]
    w = torch.einsum("om,miuv->oiuv", m, a.weight)
    const = torch.einsum("om,muv->ouv", m, a.const)
    const[:, a.k // 2, a.k // 2] += b.const[:, 0, 0]
    return _Layer(w, const, b.act, b.parts, f"{a.source} + {b.source}")


def _merge_forward(a: _Layer, b: _Layer) -> _Layer:
    """``a`` (1x1, identity activation) before ``b`` (k x k): exact on the border because ``a``'s bias
    moves into ``b``'s constant-channel kernel on every tap (the constant channel is zero-padded)."""
    m = a.weight[:, :, 0, 0]
    w = torch.einsum("omuv,mi->oiuv", b.weight, m)
    const = b.const + torch.einsum("omuv,m->ouv", b.weight, a.const[:, 0, 0])
    return _Layer(w, const, b.act, b.parts, f"{a.source} + {b.source}")


def _simplify(layers: list[_Layer], frozen_first: bool = False) -> list[_Layer]:
    """Fold every identity-activated 1x1 layer into a neighbouring layer."""
    out = list(layers)
    changed = True
    while changed:
        changed = False
        for j in range(len(out) - 1):
            a, b = out[j], out[j + 1]
            if a.act != "identity" or (frozen_first and j == 0):
                continue
            if b.k == 1:
                merged = _merge_back(a, b)
            elif a.k == 1:
                merged = _merge_forward(a, b)
            else:
                continue
            out[j : j + 2] = [merged]
            changed = True
            break
    return out


# ------------------------------------------------------------------------------------ skips


def _transition(state: str, act: str, c: int, mode: str, offset: float) -> tuple[str, Tensor, Tensor]:
    """Carry state after a layer with activation ``act``: (new state, matrix new<-old, constant)."""
    if state == "plain" and act == "relu":
        if mode == "offset":
            return "offset", torch.eye(c, dtype=_F64), torch.full((c,), float(offset), dtype=_F64)
        return (
            "split",
            torch.cat([torch.eye(c, dtype=_F64), -torch.eye(c, dtype=_F64)]),
            torch.zeros(2 * c, dtype=_F64),
        )
    width = 2 * c if state == "split" else c
    return state, torch.eye(width, dtype=_F64), torch.zeros(width, dtype=_F64)


def _decode(state: str, c: int, offset: float) -> tuple[Tensor, Tensor]:
    if state == "split":
        return torch.cat([torch.eye(c, dtype=_F64), -torch.eye(c, dtype=_F64)], dim=1), torch.zeros(c, dtype=_F64)
    shift = -float(offset) if state == "offset" else 0.0
    return torch.eye(c, dtype=_F64), torch.full((c,), shift, dtype=_F64)


def _residual(inner: list[_Layer], c: int, s: float, path: str, mode: str, offset: float) -> list[_Layer]:
    """Plain layers computing ``x + s * inner(x)`` for ``x`` of width ``c``."""
    if not inner:
        return [
            _Layer(
                _eye_kernel(c, 1) * (1.0 + s),
                torch.zeros(c, 1, 1, dtype=_F64),
                "identity",
                ((path, c),),
                path,
            )
        ]
    if inner[-1].c_out != c:
        raise UnsupportedLayerError(path, f"skip adds a {inner[-1].c_out}-channel branch to a {c}-channel input")
    if len(inner) == 1 and inner[0].act == "identity":
        lay = inner[0]
        return [
            _Layer(
                s * lay.weight + _eye_kernel(c, lay.k),
                s * lay.const,
                "identity",
                ((path, c),),
                f"{lay.source} + skip",
            )
        ]

    out: list[_Layer] = []
    state, cw = "plain", c
    for i, lay in enumerate(inner):
        k, mid = lay.k, lay.k // 2
        n_in = c if i == 0 else cw + lay.c_in
        h_cols = slice(0, c) if i == 0 else slice(cw, cw + lay.c_in)
        if i == len(inner) - 1 and lay.act == "identity":  # closing layer: decode(carry) + s * branch
            dec, dec_const = _decode(state, c, offset)
            w = torch.zeros(c, n_in, k, k, dtype=_F64)
            w[:, :cw, mid, mid] = dec
            w[:, h_cols] = s * lay.weight
            const = s * lay.const
            const[:, mid, mid] += dec_const
            out.append(_Layer(w, const, "identity", ((path, c),), f"{lay.source} + skip"))
            return out
        new_state, trans, trans_const = _transition(state, lay.act, c, mode, offset)
        new_cw = trans.shape[0]
        w = torch.zeros(new_cw + lay.c_out, n_in, k, k, dtype=_F64)
        w[:new_cw, :cw, mid, mid] = trans
        w[new_cw:, h_cols] = lay.weight
        const = torch.cat([_centre(trans_const, k), lay.const])
        carry_note = {"plain": "as is", "offset": f"+{offset:g}", "split": "relu(x), relu(-x)"}[new_state]
        parts = ((f"carry of {path} ({carry_note})", new_cw), *lay.parts)
        out.append(_Layer(w, const, lay.act, parts, lay.source))
        state, cw = new_state, new_cw
    # the branch ends with a ReLU: close with a 1x1 identity layer (folded into the next conv later)
    last = inner[-1]
    dec, dec_const = _decode(state, c, offset)
    w = torch.zeros(c, cw + last.c_out, 1, 1, dtype=_F64)
    w[:, :cw, 0, 0] = dec
    w[:, cw:, 0, 0] = s * torch.eye(last.c_out, dtype=_F64)
    out.append(_Layer(w, _centre(dec_const, 1), "identity", ((path, c),), f"{path} (skip sum)"))
    return out


def _lower(ops: Sequence, c_in: int, mode: str, offset: float) -> list[_Layer]:
    layers: list[_Layer] = []
    c = c_in
    for op in ops:
        if isinstance(op, _Layer):
            if op.c_in != c:
                raise UnsupportedLayerError(op.source, f"expects {op.c_in} input channels but receives {c}")
            layers.append(op)
            c = op.c_out
        elif isinstance(op, _Act):
            if layers and layers[-1].act == "identity":
                layers[-1] = replace(layers[-1], act="relu", source=f"{layers[-1].source} + {op.path}")
            elif not layers:  # an activation with no conv before it: an identity 1x1 conv + ReLU
                layers.append(
                    _Layer(_eye_kernel(c, 1), torch.zeros(c, 1, 1, dtype=_F64), "relu", ((op.path, c),), op.path)
                )
            # relu(relu(x)) == relu(x): nothing to do
        else:  # _Res
            inner = _simplify(_lower(op.ops, c, mode, offset))
            layers += _residual(inner, c, op.scale, op.path, mode, offset)
    return layers


# ------------------------------------------------------------------------------------ whole models


@dataclass
class _Structure:
    ops: list
    in_channels: int
    sub_mean: MeanShift | None  # kept as a separate fixed layer
    tail: nn.Module
    tail_kind: str
    add_mean: MeanShift | None
    scale: int
    n_skips: int


def _count_skips(ops: Sequence) -> int:
    return sum(1 + _count_skips(op.ops) for op in ops if isinstance(op, _Res))


def _structure(teacher: nn.Module, fold_input_shift: bool) -> _Structure:
    if isinstance(teacher, EDSR) and _same_forward(teacher, EDSR):
        head_conv = next(m for m in teacher.head.modules() if isinstance(m, nn.Conv2d))
        ops: list = []
        sub_mean = None
        if fold_input_shift:
            ops += _ops(teacher.sub_mean, "sub_mean")
        else:
            _ops(teacher.sub_mean, "sub_mean")  # validates it
            sub_mean = teacher.sub_mean
        ops += _ops(teacher.head, "head")
        ops.append(_Res(tuple(_ops(teacher.body, "body")), 1.0, "body (global skip)"))
        tail, add_mean, kind = teacher.tail, teacher.add_mean, "edsr"
        in_channels = head_conv.in_channels
    elif isinstance(teacher, PlainSR) and _same_forward(teacher, PlainSR):
        ops = []
        sub_mean = None
        if teacher.sub_mean is not None:
            if fold_input_shift:
                ops += _ops(teacher.sub_mean, "sub_mean")
            else:
                sub_mean = teacher.sub_mean
        ops += _ops(teacher.body, "body")
        tail, add_mean, kind = teacher.tail, teacher.add_mean, teacher.tail_kind
        first = teacher.convs[0]
        in_channels = first.in_channels - (1 if isinstance(first, ConstChannelConv) else 0)
    else:
        raise UnsupportedLayerError(
            "<model>",
            f"{type(teacher).__name__} is not a supported teacher (zoo.edsr.EDSR / edsr-baseline / edsr or "
            "zoo.plain.PlainSR; build custom teachers from EDSR with Residual blocks in its body)",
        )
    return _Structure(ops, in_channels, sub_mean, tail, kind, add_mean, int(teacher.scale), _count_skips(ops))


def _tail_out_channels(tail: nn.Module) -> int:
    convs = [m for m in tail.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UnsupportedLayerError("tail", "the tail has no conv")
    last = convs[-1]
    shuffles = [m for m in tail.modules() if isinstance(m, nn.PixelShuffle)]
    if shuffles and isinstance(list(tail.children())[-1], nn.PixelShuffle):  # conv + PixelShuffle tail
        return last.out_channels // shuffles[-1].upscale_factor ** 2
    return last.out_channels


def format_widths(widths: Sequence[int]) -> str:
    """Compact widths: ``[64, (192, 128) x16, 64]`` (a repeated pair is written once with a count)."""
    items: list[str] = []
    w = list(widths)
    i = 0
    while i < len(w):
        best = (1, 1)  # (period, repeats)
        for period in (1, 2, 3):
            reps = 1
            while w[i + reps * period : i + (reps + 1) * period] == w[i : i + period] and i + (
                reps + 1
            ) * period <= len(w):
                reps += 1
            if reps > 1 and reps * period > best[0] * best[1]:
                best = (period, reps)
        period, reps = best
        if reps > 1:
            group = w[i : i + period]
            body = str(group[0]) if period == 1 else "(" + ", ".join(map(str, group)) + ")"
            items.append(f"{body} x{reps}")
            i += period * reps
        else:
            items.append(str(w[i]))
            i += 1
    return "[" + ", ".join(items) + "]"


@dataclass
class PlainifyReport:
    """What :func:`plainify` built, and why the widths are what they are."""

    teacher: str
    scale: int
    widths: list[int]
    acts: list[str]
    kernel_sizes: list[int]
    const_channel: bool
    input_shift: str  # "separate" (sub_mean kept), "folded" (into the first conv), "none"
    carry: str
    skip_offset: float
    n_skips: int
    teacher_params: int
    plain_params: int
    layers: list[dict[str, Any]] = field(default_factory=list)
    max_abs_diff: float | None = None  # filled by checks (teacher vs plain on a random image)

    @property
    def widths_text(self) -> str:
        return format_widths(self.widths)

    def explanation(self) -> str:
        carry = (
            f"a carried skip is the identity at the centre tap; it is offset by +{self.skip_offset:g} where it "
            "crosses a ReLU (exact while carried values stay above "
            f"-{self.skip_offset:g}) and the offset is removed where the skip closes"
            if self.carry == "offset"
            else "a carried skip crossing a ReLU is held as [relu(x), relu(-x)] (twice its width) and decoded "
            "as their difference: exact for every input"
        )
        return (
            f"{len(self.widths)} plain layers, widths {self.widths_text}. Each layer's channels are, in order, "
            f"the skips it carries (one block per open skip, {self.n_skips} skips in the teacher) and the teacher "
            f"layer's own output; {carry}. A skip around a single identity-activated conv merges into that conv; "
            "identity-activated 1x1 layers (mean shift, BatchNorm, skip sums after a ReLU) fold into a neighbour. "
            f"Input mean shift: {self.input_shift}. Biases: "
            + ("constant-channel kernels (ConstChannelConv)." if self.const_channel else "ordinary conv biases.")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "teacher": self.teacher,
            "scale": self.scale,
            "widths": self.widths,
            "widths_text": self.widths_text,
            "acts": self.acts,
            "kernel_sizes": self.kernel_sizes,
            "const_channel": self.const_channel,
            "input_shift": self.input_shift,
            "carry": self.carry,
            "skip_offset": self.skip_offset,
            "n_skips": self.n_skips,
            "teacher_params": self.teacher_params,
            "plain_params": self.plain_params,
            "params": self.plain_params,
            "max_abs_diff": self.max_abs_diff,
            "explanation": self.explanation(),
            "layers": self.layers,
        }


def _load_plain(plain: PlainSR, layers: list[_Layer], dtype: torch.dtype) -> None:
    with torch.no_grad():
        for conv, lay in zip(plain.convs, layers, strict=True):
            if isinstance(conv, ConstChannelConv):
                conv.weight.copy_(torch.cat([lay.const[:, None], lay.weight], dim=1).to(dtype))
            else:
                conv.weight.copy_(lay.weight.to(dtype))
                conv.bias.copy_(lay.const[:, lay.k // 2, lay.k // 2].to(dtype))


def plainify(
    teacher: nn.Module,
    *,
    carry: CarryMode = "offset",
    skip_offset: float = 1000.0,
    fold_input_shift: bool = False,
    dtype: torch.dtype = torch.float32,
) -> tuple[PlainSR, PlainifyReport]:
    """Convert ``teacher`` into an equivalent :class:`~zoo.plain.PlainSR` (eval mode, CPU, ``dtype``).

    Raises :class:`UnsupportedLayerError` (a ``MemsrInputError``) naming the first layer that cannot be
    converted exactly; it never returns an approximate model. The teacher is not modified.
    """
    if carry not in CARRY_MODES:
        raise MemsrInputError("carry", f"must be one of {CARRY_MODES}, not {carry!r}")
    if not skip_offset > 0:
        raise MemsrInputError("skip_offset", f"must be positive, not {skip_offset}")
    st = _structure(teacher, fold_input_shift)
    layers = _simplify(_lower(st.ops, st.in_channels, carry, skip_offset))
    if not layers:
        raise UnsupportedLayerError("<model>", "the teacher has no conv before its tail")
    out_channels = _tail_out_channels(st.tail)
    needs_const = any(
        bool((lay.const.abs().sum() - lay.const[:, lay.k // 2, lay.k // 2].abs().sum()) > 0) for lay in layers
    )
    plain = PlainSR(
        widths=[lay.c_out for lay in layers],
        scale=st.scale,
        acts=[lay.act for lay in layers],
        bias=True,
        kernel_sizes=[lay.k for lay in layers],
        in_channels=st.in_channels,
        out_channels=out_channels,
        tail=st.tail_kind,
        sub_mean=st.sub_mean is not None,
        add_mean=st.add_mean is not None,
        const_channel=needs_const,
    )
    plain = plain.to(dtype)
    _load_plain(plain, layers, dtype)
    try:
        plain.tail.load_state_dict(copy.deepcopy(st.tail).cpu().to(dtype).state_dict(), strict=True)
    except RuntimeError as err:
        raise UnsupportedLayerError(
            "tail", f"the tail is not an EDSR/pixel-shuffle tail: {str(err).splitlines()[0]}"
        ) from None
    with torch.no_grad():
        for name in ("sub_mean", "add_mean"):
            src = st.sub_mean if name == "sub_mean" else st.add_mean
            if src is not None:
                getattr(plain, name).weight.copy_(src.weight)
                getattr(plain, name).bias.copy_(src.bias)
    plain = plain.eval()
    from zoo.registry import get_spec

    plain.zoo_spec = get_spec("plain")
    report = PlainifyReport(
        teacher=type(teacher).__name__,
        scale=st.scale,
        widths=[lay.c_out for lay in layers],
        acts=[lay.act for lay in layers],
        kernel_sizes=[lay.k for lay in layers],
        const_channel=needs_const,
        input_shift="separate" if st.sub_mean is not None else ("folded" if fold_input_shift else "none"),
        carry=carry,
        skip_offset=float(skip_offset),
        n_skips=st.n_skips,
        teacher_params=sum(p.numel() for p in teacher.parameters()),
        plain_params=sum(p.numel() for p in plain.parameters()),
        layers=[
            {
                "index": i,
                "width": lay.c_out,
                "act": lay.act,
                "kernel": lay.k,
                "parts": [{"holds": name, "channels": n} for name, n in lay.parts],
                "source": lay.source,
            }
            for i, lay in enumerate(layers)
        ],
    )
    return plain, report


def max_abs_diff(
    teacher: nn.Module,
    plain: nn.Module,
    size: tuple[int, int] = (23, 17),
    seed: int = 0,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Max |teacher(x) - plain(x)| on a random image ``x`` uniform in 0..255 (outputs in 0..255)."""
    gen = torch.Generator().manual_seed(seed)
    c = next(m for m in plain.modules() if isinstance(m, nn.Conv2d))
    c_in = c.in_channels - (1 if isinstance(c, ConstChannelConv) else 0)
    x = torch.rand(batch, c_in, *size, generator=gen, dtype=torch.float64) * 255.0
    t = copy.deepcopy(teacher).to(dtype).eval()
    p = copy.deepcopy(plain).to(dtype).eval()
    with torch.no_grad():
        return float((t(x.to(dtype)) - p(x.to(dtype))).abs().max())
