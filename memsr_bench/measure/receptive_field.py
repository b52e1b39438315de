"""Receptive field of an SR model: does each output pixel depend on a bounded LR neighbourhood, and how far.

One pass on *fake* tensors (:func:`memsr_bench.measure.fake_pass.fake_forward`: shapes only, no kernel
runs) where a dispatch mode sees every aten operator and propagates, per tensor storage, an affine
dependence record for each spatial axis: pixel ``i`` of the tensor depends on LR pixels ``j`` with
``sigma*i + lo <= j <= sigma*i + hi`` (``sigma``: LR pixels per tensor pixel, a fraction). The rules
are exact for convolutions (also transposed, strided, dilated), max/avg pooling, pixel (un)shuffle,
padding, interpolation (nearest, bilinear, bicubic; the taps' reach, border clamping included) and
element-wise ops, which merge the ranges of their inputs.

Besides the radius, a record carries

* ``grid``: the LR shift the model is equivariant to -- every tensor of ``sigma = a/b`` (reduced)
  needs shifts that are multiples of ``a`` (e.g. ESA's stride-2 conv then stride-3 max-pool: 6), so a
  tile must start at a multiple of ``grid`` to reproduce the whole-image output;
* ``size_dependent``: an interpolation to a *size* (not a scale factor) whose source positions depend
  on the image size (ESA resizes its pooled map back to the input's size): the bounds hold for the
  analysed LR size, and tiles of other sizes do not reproduce the whole-image output exactly;
* ``reason`` (non-local): the first op whose output depends on the whole image (reductions over H or
  W, adaptive pooling to a size other than the input's, instance/group/batch statistics) or whose
  spatial layout is not analysed (tokens reshaped out of NCHW, attention, ``roll``): conservative,
  ``local=False``.

The radius is the largest Chebyshev distance, in LR pixels, between the LR pixel an output pixel lies
in (``(y // scale, x // scale)``) and an LR pixel it depends on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from memsr_bench.measure.op_costs import bind_call

__all__ = ["ReceptiveField", "receptive_field"]

F = Fraction
_Axis = tuple[Fraction, Fraction, Fraction]  # sigma, lo, hi


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of ``model`` at ``scale``, analysed on an LR input of ``lr_size``."""

    model: str
    scale: int
    local: bool
    radius: int | None  # LR pixels (Chebyshev) around the LR pixel an output pixel lies in; None if not local
    grid: int  # LR shift (in pixels) the model is equivariant to
    size_dependent: bool
    reason: str | None
    lr_size: tuple[int, int]
    bounds: tuple[tuple[float, float], tuple[float, float]] | None  # (lo, hi) per axis, H then W

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scale": self.scale,
            "local": self.local,
            "radius": self.radius,
            "grid": self.grid,
            "size_dependent": self.size_dependent,
            "reason": self.reason,
            "lr_size": list(self.lr_size),
        }


@dataclass(frozen=True)
class _Rec:
    axes: tuple[_Axis, _Axis] | None  # None: not local
    grid: int = 1
    size_dependent: bool = False
    reason: str | None = None


def _merge(recs: Sequence[_Rec], op: str) -> _Rec:
    grid = math.lcm(*(r.grid for r in recs))
    size_dep = any(r.size_dependent for r in recs)
    for r in recs:
        if r.axes is None:
            return _Rec(None, grid, size_dep, r.reason)
    axes = []
    for k in range(2):
        sigmas = {r.axes[k][0] for r in recs}
        if len(sigmas) > 1:
            return _Rec(None, grid, size_dep, f"{op} mixes tensors of different resolutions (not analysed)")
        axes.append((sigmas.pop(), min(r.axes[k][1] for r in recs), max(r.axes[k][2] for r in recs)))
    return _Rec((axes[0], axes[1]), grid, size_dep, None)


def _lost(rec: _Rec, reason: str) -> _Rec:
    return _Rec(None, rec.grid, rec.size_dependent, rec.reason or reason)


def _with_axes(rec: _Rec, axes: list[_Axis], size_dependent: bool = False) -> _Rec:
    grid = math.lcm(rec.grid, *(a[0].numerator for a in axes))
    return _Rec((axes[0], axes[1]), grid, rec.size_dependent or size_dependent, None)


def _pair(value: Any, default: int) -> tuple[int, int]:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return default, default
    if isinstance(value, int):
        return value, value
    vals = [int(v) for v in value]
    return (vals[0], vals[0]) if len(vals) == 1 else (vals[-2], vals[-1])


def _window(rec: _Rec, kernel, stride, padding, dilation) -> _Rec:
    """Conv / pool: out pixel i reads in pixels s*i - p + t*d, t in [0, k-1]."""
    axes = []
    for k in range(2):
        sigma, lo, hi = rec.axes[k]
        axes.append(
            (sigma * stride[k], lo - sigma * padding[k], hi + sigma * (dilation[k] * (kernel[k] - 1) - padding[k]))
        )
    return _with_axes(rec, axes)


_POINTWISE = frozenset(
    """add sub rsub mul div neg abs pow sqrt rsqrt exp log log1p reciprocal relu relu6 leaky_relu prelu
    _prelu_kernel gelu silu sigmoid tanh hardtanh hardswish hardsigmoid elu selu celu softplus mish clamp
    clamp_min clamp_max where maximum minimum masked_fill to _to_copy clone contiguous alias detach copy
    expand expand_as lerp addcmul addcdiv fill zero dropout native_dropout round floor ceil sign
    lift_fresh _native_batch_norm_legit_no_training square sub_ mul_ erf sin cos threshold fmod remainder
    nan_to_num type_as logical_not eq ne lt le gt ge bitwise_and bitwise_or""".split()
)
_REDUCTIONS = frozenset(
    "sum mean std var amax amin max min norm var_mean std_mean logsumexp prod argmax argmin nansum nanmean".split()
)
_VIEWS_DIM = frozenset("slice select narrow split split_with_sizes chunk unbind unsqueeze squeeze".split())
_RESHAPES = frozenset("view reshape _unsafe_view flatten unflatten view_as reshape_as".split())
_UPSAMPLE = {
    "upsample_nearest2d": ("nearest", 0),
    "_upsample_nearest_exact2d": ("nearest-exact", 0),
    "upsample_bilinear2d": ("linear", 1),
    "_upsample_bilinear2d_aa": ("aa", 0),
    "upsample_bicubic2d": ("cubic", 2),
}


def _dims(value: Any, ndim: int) -> list[int] | None:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    vals = [value] if isinstance(value, int) else list(value)
    return [int(v) % ndim for v in vals]


class _Propagate(TorchDispatchMode):
    def __init__(self, lr_size: tuple[int, int]):
        super().__init__()
        self.lr_size = lr_size
        # per storage: the record and its frame (pixel (y, x) at storage element offset + y*sh + x*sw)
        self.storage: dict[int, tuple[_Rec, tuple[int, int, int, int, int] | None]] = {}
        self.frames: dict[int, tuple[int, int, int, int, int] | None] = {}  # of the tensor that created a storage
        self.alive: list[torch.Tensor] = []  # keeps storages alive so that their ids are not reused

    @staticmethod
    def _sid(t: torch.Tensor) -> int:
        return t.untyped_storage()._cdata

    @staticmethod
    def _frame(t: torch.Tensor) -> tuple[int, int, int, int, int] | None:
        if t.dim() < 2:
            return None
        return (t.storage_offset(), *(int(v) for v in t.stride()[-2:]), *(int(v) for v in t.shape[-2:]))

    def _offset(self, t: torch.Tensor, frame) -> tuple[int, int] | None:
        """(dy, dx) of ``t``'s pixel (0, 0) in the frame, or None if ``t`` does not lie on the frame's grid."""
        mine = self._frame(t)
        if frame is None or mine is None:
            return None
        offset, sh, sw, h, w = frame
        _, th, tw, hh, ww = mine
        if (th != sh and hh > 1) or (tw != sw and ww > 1) or sh <= 0 or sw <= 0:
            return None
        delta = t.storage_offset() - offset
        return (delta // sh) % h, (delta // sw) % w

    def get(self, t: torch.Tensor) -> _Rec | None:
        entry = self.storage.get(self._sid(t))
        if entry is None:
            return None
        rec, frame = entry
        if rec.axes is None:
            return rec
        shift = self._offset(t, frame)
        if shift is None:
            view = f"a view {list(t.shape)} with strides {list(t.stride())}"
            return _lost(rec, f"{view} moves the spatial dims (not analysed)")
        if shift == (0, 0):
            return rec
        axes = [(sg, lo + sg * d, hi + sg * d) for (sg, lo, hi), d in zip(rec.axes, shift, strict=True)]
        return replace(rec, axes=(axes[0], axes[1]))

    def set_input(self, t: torch.Tensor) -> None:
        self.alive.append(t)
        self.frames[self._sid(t)] = self._frame(t)
        self.storage[self._sid(t)] = (_Rec(((F(1), F(0), F(0)), (F(1), F(0), F(0)))), self._frame(t))

    def _write(self, t: torch.Tensor, rec: _Rec) -> None:
        """In-place write of ``rec`` (in ``t``'s coordinates) into ``t``, a view of a recorded storage or not."""
        sid = self._sid(t)
        entry = self.storage.get(sid)
        if entry is None:
            entry = (None, self.frames.get(sid, self._frame(t)))
        old, frame = entry
        shift = self._offset(t, frame)
        if rec.axes is not None:
            if shift is None:
                rec = _lost(rec, f"an in-place write into a view {list(t.shape)} (not analysed)")
            else:
                axes = [(sg, lo - sg * d, hi - sg * d) for (sg, lo, hi), d in zip(rec.axes, shift, strict=True)]
                rec = replace(rec, axes=(axes[0], axes[1]))
        self.storage[sid] = (rec if old is None else _merge([old, rec], "an in-place write"), frame)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        for t in outs:
            sid = self._sid(t)
            if sid not in self.frames:
                self.frames[sid] = self._frame(t)
                self.alive.append(t)
        recs = [(t, r) for t in inputs if (r := self.get(t)) is not None]
        if not recs:
            return out
        name = func.overloadpacket.__name__
        inplace = name.endswith("_") and not name.startswith("_")
        new = self.rule(name[:-1] if inplace else name, bind_call(func, args, kwargs), recs, outs)
        in_sids = {self._sid(t) for t in inputs}
        for t in outs:
            self.alive.append(t)
            sid = self._sid(t)
            if inplace:
                self._write(t, new)
            elif sid not in in_sids:
                self.storage[sid] = (new, self.frames[sid])
            # else: a view of an input; get() reads it through its storage's frame
        return out

    # ------------------------------------------------------------------ rules

    def rule(self, name: str, b: dict, recs: list, outs: list[torch.Tensor]) -> _Rec:  # noqa: C901, PLR0911, PLR0912
        first_t, _ = recs[0]
        merged = _merge([r for _, r in recs], name)
        if merged.axes is None:
            return merged
        spatial_in = first_t.dim() >= 2
        nd = first_t.dim()

        if name in ("conv2d", "convolution", "conv_transpose2d", "_convolution", "cudnn_convolution"):
            rec = self.get(b.get("input", first_t)) if isinstance(b.get("input"), torch.Tensor) else merged
            if rec is None:
                return _lost(merged, f"{name} with a weight that depends on the input (not analysed)")
            weight = b["weight"]
            if self.get(weight) is not None:
                return _lost(merged, f"{name} with a weight that depends on the input (not analysed)")
            kernel = tuple(int(s) for s in weight.shape[-2:])
            stride, dilation = _pair(b.get("stride"), 1), _pair(b.get("dilation"), 1)
            transposed = name == "conv_transpose2d" or bool(b.get("transposed", False))
            padding = b.get("padding")
            if isinstance(padding, str):
                if padding == "valid":
                    padding = (0, 0)
                else:  # same: total d*(k-1), the smaller half on the left/top
                    padding = tuple(dilation[k] * (kernel[k] - 1) // 2 for k in range(2))
            padding = _pair(padding, 0)
            if not transposed:
                return _window(rec, kernel, stride, padding, dilation)
            axes = []
            for k in range(2):  # out o reads in i with s*i = o + p - t*d
                sigma, lo, hi = rec.axes[k]
                so = sigma / stride[k]
                axes.append((so, lo + so * (padding[k] - dilation[k] * (kernel[k] - 1)), hi + so * padding[k]))
            return _with_axes(rec, axes)

        if name in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d"):
            kernel = _pair(b.get("kernel_size"), 1)
            stride = _pair(b.get("stride"), 0)
            stride = kernel if stride == (0, 0) else stride
            return _window(merged, kernel, stride, _pair(b.get("padding"), 0), _pair(b.get("dilation"), 1))

        if name in ("pixel_shuffle", "pixel_unshuffle"):
            r = int(b.get("upscale_factor") or b.get("downscale_factor"))
            axes = []
            for sigma, lo, hi in merged.axes:
                if name == "pixel_shuffle":
                    so = sigma / r
                    axes.append((so, lo - so * (r - 1), hi))
                else:
                    axes.append((sigma * r, lo, hi + sigma * (r - 1)))
            return _with_axes(merged, axes)

        if name in _UPSAMPLE:
            return self._upsample(name, b, merged, first_t, outs[0])

        if name in ("pad", "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "circular_pad2d"):
            mode = b.get("mode", "constant") if name == "pad" else name.split("_")[0].replace("reflection", "reflect")
            mode = {"replication": "replicate", "circular": "circular", "constant": "constant"}.get(mode, mode)
            pads = [int(p) for p in (b.get("pad") or b.get("padding"))] + [0, 0, 0, 0]
            if mode == "circular":
                return _lost(merged, "circular padding wraps the image around (not local)")
            axes = []
            for k, (left, right) in enumerate(((pads[2], pads[3]), (pads[0], pads[1]))):
                sigma, lo, hi = merged.axes[k]
                if mode == "reflect":
                    axes.append((sigma, lo - sigma * (left + 2 * max(right, 0)), hi + sigma * max(left, 0)))
                elif mode == "replicate":
                    axes.append((sigma, lo - sigma * (left + max(right, 0)), hi))
                else:
                    axes.append((sigma, lo - sigma * left, hi - sigma * left))
            return _with_axes(merged, axes)

        if name in ("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d"):
            if tuple(outs[0].shape[-2:]) == tuple(first_t.shape[-2:]):
                return merged
            return _lost(merged, f"{name} to {tuple(outs[0].shape[-2:])} pools whole-image statistics")

        if name in ("instance_norm", "group_norm", "native_group_norm", "_native_batch_norm_legit"):
            return _lost(merged, f"{name} normalises by statistics over H and W")
        if name in ("batch_norm", "native_batch_norm", "_batch_norm_impl_index"):
            if b.get("training"):
                return _lost(merged, f"{name} in training mode normalises by batch statistics over H and W")
            return merged
        if name in ("layer_norm", "native_layer_norm"):
            shape = list(b.get("normalized_shape") or [])
            if nd == 4 and len(shape) >= 2:
                return _lost(merged, f"{name} over {shape} normalises by statistics over H and W")
            if nd == 4:
                return _lost(merged, f"{name} over the last dim (W) of an NCHW tensor")
            return merged

        if name in _REDUCTIONS:
            dims = _dims(b.get("dim"), nd)
            if dims is None or any(d >= nd - 2 for d in dims):
                return _lost(
                    merged,
                    f"{name} over dims {b.get('dim')} of a {list(first_t.shape)} tensor (whole-image statistics)",
                )
            return merged

        if name in ("softmax", "_softmax", "log_softmax", "_log_softmax", "cumsum"):
            d = int(b.get("dim")) % nd
            return _lost(merged, f"{name} over a spatial dim (whole-image)") if d >= nd - 2 else merged

        if name == "cat":
            d = int(b.get("dim", 0)) % outs[0].dim()
            if d >= outs[0].dim() - 2:
                return _lost(merged, "cat along a spatial dim (not analysed)")
            return merged

        if name in _VIEWS_DIM:
            d = b.get("dim")
            if name == "squeeze" and d is None:
                same = outs[0].dim() >= 2 and tuple(outs[0].shape[-2:]) == tuple(first_t.shape[-2:])
                return merged if same else _lost(merged, "squeeze of a spatial dim (not analysed)")
            dims = _dims(d if d is not None else 0, nd + (1 if name == "unsqueeze" else 0))
            limit = (nd + 1 if name == "unsqueeze" else nd) - 2
            if dims is not None and all(x < limit for x in dims):
                return merged
            return _lost(merged, f"{name} along a spatial dim (not analysed)")

        if name in _RESHAPES:
            ok = spatial_in and outs[0].dim() >= 2 and tuple(outs[0].shape[-2:]) == tuple(first_t.shape[-2:])
            return (
                merged
                if ok
                else _lost(
                    merged,
                    f"{name} {list(first_t.shape)} -> {list(outs[0].shape)} moves the spatial dims (not analysed)",
                )
            )
        if name in ("permute", "transpose", "t", "movedim"):
            if name == "permute":
                dims = [int(d) % nd for d in b["dims"]]
                ok = dims[-2:] == [nd - 2, nd - 1]
            elif name == "transpose":
                ok = {int(b["dim0"]) % nd, int(b["dim1"]) % nd}.isdisjoint({nd - 2, nd - 1}) or int(
                    b["dim0"]
                ) % nd == int(b["dim1"]) % nd
            else:
                ok = False
            return merged if ok else _lost(merged, f"{name} moves the spatial dims (not analysed)")

        if name == "roll":
            return _lost(merged, "roll shifts the image cyclically (shifted windows; not analysed)")

        if name in _POINTWISE:
            for t, _ in recs:
                if (
                    t.dim() >= 2
                    and outs
                    and t.dim() == outs[0].dim()
                    and t.shape[-2:] != outs[0].shape[-2:]
                    and tuple(t.shape[-2:]) != (1, 1)
                ):
                    return _lost(merged, f"{name} broadcasts over a spatial dim (not analysed)")
            return merged

        return _lost(merged, f"aten.{name} is not analysed")

    def _upsample(self, name: str, b: dict, rec: _Rec, x: torch.Tensor, out: torch.Tensor) -> _Rec:
        mode, reach = _UPSAMPLE[name]
        if mode == "aa":
            return _lost(rec, f"{name} (antialiased resize) is not analysed")
        align = bool(b.get("align_corners") or False)
        factors = b.get("scale_factors")
        if factors is None:
            sh, sw = b.get("scales_h"), b.get("scales_w")
            factors = None if sh is None or sw is None else [sh, sw]
        axes = []
        size_dep = False
        for k in range(2):
            sigma, lo, hi = rec.axes[k]
            n_in, n_out = int(x.shape[-2 + k]), int(out.shape[-2 + k])
            lr = self.lr_size[k]
            if align:
                rho = F(n_in - 1, n_out - 1) if n_out > 1 else F(0)
            elif factors is not None and factors[k]:
                rho = F(1 / float(factors[k])).limit_denominator(10_000)
            else:
                rho = F(n_in, n_out)
            if factors is not None and factors[k] and not align:
                so = sigma * rho
            else:
                so = F(lr, n_out)
                if sigma * rho != so or align:
                    size_dep = True

            low_reach, high_reach = (F(-1), F(0)) if mode.startswith("nearest") else (F(-reach), F(reach))
            if mode == "linear" and not align:
                high_reach += F(1, 2)  # the source index is clamped at 0 (x >= -1/2)
            if mode.startswith("nearest") or mode == "linear" and align:
                low_reach = min(low_reach, F(-1))
            offs_lo = [sigma * (_source(i, rho, mode, align) + low_reach) - so * i for i in (0, n_out - 1)]
            offs_hi = [sigma * (_source(i, rho, mode, align) + high_reach) - so * i for i in (0, n_out - 1)]
            axes.append((so, lo + min(offs_lo), hi + max(offs_hi)))
        return _with_axes(rec, axes, size_dep)


def _source(i: int, rho: Fraction, mode: str, align: bool) -> Fraction:
    """PyTorch's source coordinate of output pixel ``i`` (before flooring to the first tap)."""
    if mode == "nearest" or align:
        return i * rho
    if mode == "nearest-exact":
        return (i + F(1, 2)) * rho
    return (i + F(1, 2)) * rho - F(1, 2)


def _radius(axes: tuple[_Axis, _Axis], scale: int) -> tuple[int, tuple[tuple[float, float], ...]]:
    radius = 0
    bounds = []
    for sigma, lo, hi in axes:
        # output pixel i = s*q + m lies in LR pixel q, sigma*i = q + m*sigma; it reads LR j in [sigma*i+lo, sigma*i+hi]
        s = 1 / sigma
        top = max((m * sigma for m in range(max(int(math.ceil(s)), 1))), default=F(0))
        radius = max(radius, -math.ceil(lo), math.floor(top + hi))
        bounds.append((float(lo), float(hi)))
    return radius, tuple(bounds)


def receptive_field(
    model: nn.Module,
    scale: int,
    *,
    name: str = "",
    channels: int = 3,
    lr_size: tuple[int, int] = (64, 64),
    dtype: torch.dtype | None = None,
) -> ReceptiveField:
    """Analyse ``model`` (an SR network at ``scale``) on a fake LR input of ``lr_size`` (``dtype``: the model's)."""
    from memsr_bench.measure.fake_pass import fake_forward

    if dtype is None:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)

    was_training = {m: m.training for m in model.modules()}
    model.eval()
    prop = _Propagate(tuple(int(s) for s in lr_size))
    try:
        out = fake_forward(model, (1, channels, *lr_size), dtype, [prop], on_input=prop.set_input)
    finally:
        for m, flag in was_training.items():
            m.training = flag
    tensors = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
    rec = prop.get(tensors[0]) if tensors else None
    name = name or type(model).__name__
    if rec is None:
        return ReceptiveField(
            name, scale, False, None, 1, False, "the output does not depend on the input", tuple(lr_size), None
        )
    if rec.axes is None:
        return ReceptiveField(name, scale, False, None, rec.grid, rec.size_dependent, rec.reason, tuple(lr_size), None)
    for sigma, _, _ in rec.axes:
        if sigma != F(1, scale):
            reason = f"the output has {1 / sigma} pixels per LR pixel, not the scale {scale}"
            return ReceptiveField(name, scale, False, None, rec.grid, rec.size_dependent, reason, tuple(lr_size), None)
    radius, bounds = _radius(rec.axes, scale)
    return ReceptiveField(name, scale, True, radius, rec.grid, rec.size_dependent, None, tuple(lr_size), bounds)
