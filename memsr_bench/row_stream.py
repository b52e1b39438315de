"""Row streaming: a local convolutional network run over full-width bands of LR rows, each layer computing
each of its output rows once (a line-buffer executor).

Tiles with a halo recompute the halo: at 1 GiB FMEN-S x4 on a 4000x3000 photo runs 1.165x the image's
pixels through the network (25 tiles), which caps the throughput at 0.86x whole-image inference. Here the
network's aten graph (``make_fx`` of the functionalized model) is run layer by layer over bands of rows,
top to bottom. Each layer keeps the rows it has computed that its consumers still need (a 3x3 convolution
needs one row above the rows it computes next, a skip connection keeps the rows its deeper branch has not
reached yet) and computes, at each step, every output row its inputs now allow, up to a band's worth (also
for the rows left below the last band). Nothing is recomputed and the memory is that of one band of rows
across the network plus the retained rows, independent of the image height.

Exactness. Every op computes the same sums of the same products as in whole-image inference: a
convolution over rows ``[a, b)`` reads the input rows its outputs see, with explicit zero rows at the image
border (what the kernel writes into its columns for implicit padding) and vertical padding 0; pointwise
ops (in place, as the models' own activations, when no other op reads their operand), channel
concatenations and splits, and pixel shuffle act row by row. Under
:func:`memsr_bench.tiling.size_independent_kernels` (per-pixel arithmetic independent of the tensor size, as for
tiles) the output is bit-identical to whole-image inference.

Supported graphs: ``aten.convolution`` with stride 1, not transposed, and vertical padding that keeps the
height (``2·pad = dilation·(k−1)``); the pointwise ops of ``POINTWISE`` whose other tensor operands are
constants of height and width 1; ``cat`` and ``split_with_sizes`` along channels; ``pixel_shuffle``. Any
other op that touches the image (pooling, strided convolutions, interpolation, reshapes, whole-image
statistics) makes :func:`trace_rows` return the reason instead, and the tiler is used.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.fx import GraphModule, Node

__all__ = ["POINTWISE", "Conv2dArgs", "ConvInto", "RowProgram", "conv2d_into", "trace_rows"]

_aten = torch.ops.aten

# Ops applied element by element (their tensor operands broadcast over rows and columns).
POINTWISE = {
    _aten.add.Tensor,
    _aten.sub.Tensor,
    _aten.mul.Tensor,
    _aten.div.Tensor,
    _aten.add.Scalar,
    _aten.sub.Scalar,
    _aten.mul.Scalar,
    _aten.div.Scalar,
    _aten.neg.default,
    _aten.relu.default,
    _aten.leaky_relu.default,
    _aten.sigmoid.default,
    _aten.silu.default,
    _aten.gelu.default,
    _aten.tanh.default,
    _aten.hardswish.default,
    _aten.hardtanh.default,
    _aten.clamp.default,
    _aten.clamp_min.default,
    _aten.clamp_max.default,
    _aten.elu.default,
    _aten.mish.default,
    _aten._prelu_kernel.default,
}
_CONVOLUTION = _aten.convolution.default
_CAT = _aten.cat.default
_PIXEL_SHUFFLE = _aten.pixel_shuffle.default
_SPLITS = (_aten.split_with_sizes_copy.default, _aten.split_with_sizes.default)


@dataclass(frozen=True)
class Conv2dArgs:
    """A convolution step's constants: ``conv2d(x, weight, bias, 1, padding, dilation, groups)`` over rows
    (``padding`` is (0, horizontal): the rows above and below are given explicitly)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    def out_width(self, width: int) -> int:
        kw = int(self.weight.shape[3])
        return width + 2 * self.padding[1] - self.dilation[1] * (kw - 1)


@dataclass
class _Step:
    """One row-producing node: what it computes and its line buffer (rows ``[first, done)`` of its output)."""

    kind: str  # "input", "conv", "pointwise", "cat", "shuffle", "channels"
    name: str
    inputs: list[int]  # indices of the row-producing steps it reads
    height_factor: int  # its rows per LR row (pixel shuffle multiplies it)
    run: Callable[..., torch.Tensor] | None = None
    pad: tuple[int, int] = (0, 0)  # conv: input rows above / below an output row
    factor: int = 1  # pixel shuffle's upscale factor
    run_inplace: Callable[..., torch.Tensor] | None = None  # pointwise: the same op writing into its first operand
    conv: Conv2dArgs | None = None  # conv: its constants
    last_of: list[int] = field(default_factory=list)  # inputs whose last consumer (in order) this step is
    consumers: list[int] = field(default_factory=list)


class _Unsupported(Exception):
    pass


def _is_constant_operand(value: Any) -> bool:
    """A tensor that broadcasts over rows and columns (height and width 1), or a plain number."""
    if isinstance(value, torch.Tensor):  # a 1-D tensor broadcasts along the width: only a single value is constant
        return value.numel() == 1 or (value.dim() >= 2 and value.shape[-1] == 1 and value.shape[-2] == 1)
    return isinstance(value, (int, float, bool)) or value is None


ConvInto = Callable[[torch.Tensor, Conv2dArgs, torch.Tensor], None]


def conv2d_into(x: torch.Tensor, conv: Conv2dArgs, out: torch.Tensor) -> None:
    """``out[...] = conv2d(x)``: the default way a :class:`RowProgram` computes a convolution into its line
    buffer (a temporary output, copied). :func:`memsr_bench.tiling.upscale_image` passes one that writes the
    chunks of large convolutions straight into ``out``."""
    out.copy_(torch.nn.functional.conv2d(x, conv.weight, conv.bias, 1, conv.padding, conv.dilation, conv.groups))


class RowProgram:
    """A model's graph checked for row streaming; :meth:`run` streams an image's rows through it.

    ``run`` takes the LR image as an iterator of row bands (N x C x rows x W, in order, ``height`` rows in
    all) and yields the output's rows in order as soon as they are final, in bands of varying height.

    Each step keeps its rows as a list of pieces (contiguous tensors, consecutive rows), so that a band's
    new rows are never copied to join the rows kept from the band before: a convolution computes the few
    output rows whose inputs straddle two pieces from a small joined copy, and the rest from the new piece
    itself, all into one output tensor; the other ops work piece by piece."""

    def __init__(self, steps: list[_Step], output: int, scale: int):
        self.steps = steps
        self.output = output
        self.scale = scale

    def run(
        self, bands: Iterator[torch.Tensor], height: int, conv_into: ConvInto = conv2d_into
    ) -> Iterator[torch.Tensor]:
        n = len(self.steps)
        done = [0] * n
        first = [0] * n
        pieces: list[list[torch.Tensor]] = [[] for _ in range(n)]
        heights = [height * step.height_factor for step in self.steps]

        def views(i: int, start: int, stop: int) -> list[torch.Tensor]:
            """Rows ``[start, stop)`` of step ``i``'s output: views of its pieces, in order."""
            parts, row = [], first[i]
            for piece in pieces[i]:
                rows_in = piece.shape[2]
                a, b = max(start, row), min(stop, row + rows_in)
                if a < b:
                    parts.append(piece if (a, b) == (row, row + rows_in) else piece[:, :, a - row : b - row])
                row += rows_in
            return parts

        def rows(i: int, start: int, stop: int) -> torch.Tensor:
            """Rows ``[start, stop)`` of step ``i``'s output as one contiguous tensor (a whole piece: no copy)."""
            parts = views(i, start, stop)
            return parts[0].contiguous() if len(parts) == 1 else torch.cat(parts, dim=2)

        def cuts(i: int, start: int, stop: int) -> list[int]:
            """The rows strictly inside ``(start, stop)`` where one of step ``i``'s pieces ends and the next begins."""
            found, row = [], first[i]
            for piece in pieces[i][:-1]:
                row += piece.shape[2]
                if start < row < stop:
                    found.append(row)
            return found

        def needed_from(c: int) -> int:
            """The first row of its inputs that step ``c`` will read from now on."""
            step = self.steps[c]
            if step.kind == "conv":
                return max(0, done[c] - step.pad[0])
            if step.kind == "shuffle":
                return done[c] // step.factor
            return done[c]

        def trim(i: int) -> None:
            keep = min((needed_from(c) for c in self.steps[i].consumers), default=done[i])
            if keep <= first[i]:
                return
            kept, row = [], first[i]
            for piece in pieces[i]:
                rows_in = piece.shape[2]
                if row + rows_in > keep:  # the rows a consumer still needs; a view would keep the whole piece alive
                    kept.append(piece if row >= keep else piece[:, :, keep - row :].clone())
                row += rows_in
            pieces[i], first[i] = kept, keep

        def append(i: int, new: list[torch.Tensor]) -> None:
            if not pieces[i]:
                first[i] = done[i]
            pieces[i].extend(new)
            done[i] += sum(piece.shape[2] for piece in new)

        def sweep(cap: int) -> Iterator[torch.Tensor]:
            """Each step computes the rows its inputs allow, at most ``cap`` LR rows' worth, in order."""
            for i in range(1, n):
                step = self.steps[i]
                reach = min(self._reach(step, done, heights), done[i] + cap * step.height_factor)
                if reach > done[i]:
                    if step.kind == "conv":
                        new = [self._conv(step, done[i], reach, heights, rows, cuts, conv_into)]
                    elif step.kind == "shuffle":
                        (j,) = step.inputs
                        new = [step.run(view) for view in views(j, done[i] // step.factor, reach // step.factor)]
                    else:
                        new = self._piecewise(i, done[i], reach, views, cuts, first, done)
                    append(i, new)
                    del new
                for j in step.last_of:
                    trim(j)
                if i == self.output and pieces[i]:
                    out, pieces[i], first[i] = pieces[i], [], done[i]
                    yield from out
                    del out

        # At most a band's worth of rows per step and sweep: once the last band is in, every layer could compute
        # all its remaining rows (up to the receptive radius below the band) in one sweep, which made the run's
        # peak (CARN-M x2 on 8-row bands: predicted 553 MiB at the end of the image, 310 MiB before it).
        band_rows = 1
        for band in bands:
            band_rows = max(band_rows, band.shape[2])
            append(0, [band])
            del band
            yield from sweep(band_rows)
        while done[self.output] < heights[self.output]:
            before = list(done)
            yield from sweep(band_rows)
            if done == before:
                break
        if done[self.output] != heights[self.output]:
            raise RuntimeError(f"row streaming ended at row {done[self.output]} of {heights[self.output]}")

    @staticmethod
    def _reach(step: _Step, done: list[int], heights: list[int]) -> int:
        """How many output rows of ``step`` its inputs' rows computed so far determine."""
        if step.kind == "conv":
            (i,) = step.inputs
            if done[i] >= heights[i]:
                return heights[i]
            return max(0, done[i] - step.pad[1])
        if step.kind == "shuffle":
            return done[step.inputs[0]] * step.factor
        return min(done[i] for i in step.inputs)

    def _conv(self, step: _Step, start: int, stop: int, heights: list[int], rows, cuts, conv_into) -> torch.Tensor:
        """Output rows ``[start, stop)`` of a convolution step, in one tensor: the rows whose input rows straddle
        two pieces of the input from a joined copy of those rows, each run between them from one piece."""
        (j,) = step.inputs
        above, below = step.pad
        # output rows whose input rows (r - above .. r + below) straddle a cut or cross the image border: computed
        # from a small joined (or zero-padded) copy, so that the other rows are never copied
        near: list[tuple[int, int]] = [(cut - below, cut + above) for cut in cuts(j, start - above, stop + below)]
        near += [(0, above), (heights[j] - below, heights[j])]
        dirty: list[list[int]] = []
        for lo, hi in sorted(near):
            a, b = max(start, lo), min(stop, hi)
            if a >= b:
                continue
            if dirty and a <= dirty[-1][1]:
                dirty[-1][1] = max(dirty[-1][1], b)
            else:
                dirty.append([a, b])
        segments, row = [], start
        for a, b in dirty:
            segments += [(row, a), (a, b)] if row < a else [(a, b)]
            row = b
        if row < stop:
            segments.append((row, stop))
        out = None
        for a, b in segments:
            lo, hi = a - above, b + below
            piece = rows(j, max(lo, 0), min(hi, heights[j]))
            if lo < 0 or hi > heights[j]:  # zero rows at the image border, as the kernel pads
                piece = torch.nn.functional.pad(piece, (0, 0, max(0, -lo), max(0, hi - heights[j])))
            if out is None:
                channels, width = int(step.conv.weight.shape[0]), step.conv.out_width(piece.shape[3])
                out = piece.new_empty((piece.shape[0], channels, stop - start, width))
            conv_into(piece, step.conv, out[:, :, a - start : b - start])
            del piece
        return out

    def _piecewise(self, i: int, start: int, stop: int, views, cuts, first, done) -> list[torch.Tensor]:
        """Rows ``[start, stop)`` of a pointwise, concatenation or channel-slice step ``i``, one output piece per
        run of rows that lies within one piece of every input."""
        step = self.steps[i]
        bounds = sorted({start, stop, *(c for k in step.inputs for c in cuts(k, start, stop))})
        j = step.inputs[0]
        # its first operand is read by nothing else, and exactly these rows: overwrite it (as the model's in-place
        # activations do) instead of allocating new rows; never the caller's band or the output
        in_place = (
            step.run_inplace is not None
            and self.steps[j].consumers == [i]
            and j not in (0, self.output)
            and (first[j], done[j]) == (start, stop)
            and step.inputs.count(j) == 1
        )
        run = step.run_inplace if in_place else step.run
        return [run(*(views(k, a, b)[0] for k in step.inputs)) for a, b in zip(bounds, bounds[1:], strict=False)]


def trace_rows(module: nn.Module, channels: int, scale: int) -> RowProgram | str:
    """The :class:`RowProgram` of ``module`` (an image-to-image network of ``channels`` input channels and
    upscaling factor ``scale``), or the reason it cannot be streamed by rows."""
    from torch.func import functionalize
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.utils._python_dispatch import _disable_current_modes

    from memsr_bench.measure.fake_pass import module_device

    example = torch.zeros(1, channels, 12, 12, device=module_device(module))
    try:
        # without the dispatch modes active around the call (size_independent_kernels'): the graph of the model itself
        with _disable_current_modes(), torch.inference_mode():
            graph = make_fx(functionalize(module, remove="mutations_and_views"))(example)
    except Exception as err:  # noqa: BLE001 - any failure to trace means: not streamable
        return f"its forward cannot be traced to an aten graph ({type(err).__name__})"
    graph.graph.eliminate_dead_code()  # e.g. the unused parts of a split: never computed, never held
    try:
        return _program(graph, scale)
    except _Unsupported as err:
        return str(err)


def _program(graph: GraphModule, scale: int) -> RowProgram:
    steps: list[_Step] = []
    index: dict[Node, int] = {}  # row-producing node -> its step
    constants: dict[Node, Any] = {}
    splits: set[Node] = set()
    output = None
    for node in graph.graph.nodes:
        if node.op == "placeholder":
            if steps:
                raise _Unsupported("its forward takes more than one tensor")
            index[node] = 0
            steps.append(_Step("input", node.name, [], 1))
        elif node.op == "get_attr":
            constants[node] = getattr(graph, node.target)
        elif node.op == "output":
            result = node.args[0]
            if isinstance(result, (list, tuple)):
                if len(result) != 1:
                    raise _Unsupported("it returns more than one tensor")
                (result,) = result
            if result not in index:
                raise _Unsupported("its output does not depend on its input")
            output = index[result]
        elif node.op != "call_function":
            raise _Unsupported(f"its graph has a {node.op} node")
        elif not any(a in index or a in splits for a in node.all_input_nodes):
            args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda a: constants[a])
            constants[node] = node.target(*args, **kwargs)  # from constants only: evaluated once
        else:
            step = _step_of(node, index, constants, steps)
            if step is None:  # a split of a feature map: its getitems are the steps
                splits.add(node)
            else:
                index[node] = len(steps)
                steps.append(step)
    if output is None or steps[output].height_factor != scale:
        raise _Unsupported(f"its output is not {scale}x its input's height")
    last: dict[int, int] = {}
    for i, step in enumerate(steps):
        for j in step.inputs:
            if i not in steps[j].consumers:
                steps[j].consumers.append(i)
            last[j] = i
    for j, i in last.items():
        steps[i].last_of.append(j)
    return RowProgram(steps, output, scale)


def _op_name(node: Node) -> str:
    return getattr(node.target, "__name__", str(node.target))


def _step_of(node: Node, index: dict[Node, int], constants: dict[Node, Any], steps: list[_Step]) -> _Step | None:
    """The step of a call node that reads rows, or None for a split (handled through its getitems)."""
    target = node.target

    def source(x: Any) -> int:
        if x not in index:
            raise _Unsupported(f"{_op_name(node)} reads a constant where a feature map is expected ({node.name})")
        return index[x]

    if target in _SPLITS:
        x, _, *rest = node.args
        dim = rest[0] if rest else node.kwargs.get("dim", 0)
        source(x)
        if dim not in (1, -3):
            raise _Unsupported(f"it splits a feature map along dimension {dim} ({node.name})")
        return None
    if target is operator.getitem:
        split, item = node.args
        if split.target not in _SPLITS:
            raise _Unsupported(f"it indexes the result of {_op_name(split)} ({node.name})")
        x, sizes = split.args[0], split.args[1]
        i = source(x)
        start = sum(int(v) for v in sizes[:item])
        stop = start + int(sizes[item])
        return _Step("channels", node.name, [i], steps[i].height_factor, run=lambda t: t[:, start:stop].contiguous())
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor) or value.dim() != 4:
        raise _Unsupported(f"{_op_name(node)} does not give an image-shaped tensor ({node.name})")
    if target is _CONVOLUTION:
        x, weight, bias, stride, padding, dilation, transposed, _, groups = node.args
        i = source(x)
        if weight not in constants or (bias is not None and bias not in constants):
            raise _Unsupported(f"a convolution's weights depend on the image ({node.name})")
        weight = constants[weight]
        bias = constants[bias] if bias is not None else None
        kh = int(weight.shape[2])
        if transposed or list(stride) != [1, 1] or 2 * int(padding[0]) != int(dilation[0]) * (kh - 1):
            raise _Unsupported(
                f"a convolution changes the height (stride {list(stride)}, padding {list(padding)}, "
                f"kernel {kh}, transposed {transposed}) ({node.name})"
            )
        conv = Conv2dArgs(weight, bias, (0, int(padding[1])), (int(dilation[0]), int(dilation[1])), int(groups))
        pad = int(padding[0])
        return _Step("conv", node.name, [i], steps[i].height_factor, pad=(pad, pad), conv=conv)
    if target is _PIXEL_SHUFFLE:
        x, factor = node.args
        i, factor = source(x), int(factor)
        return _Step(
            "shuffle",
            node.name,
            [i],
            steps[i].height_factor * factor,
            run=lambda t: torch.pixel_shuffle(t, factor),
            factor=factor,
        )
    if target is _CAT:
        tensors, *rest = node.args
        dim = rest[0] if rest else node.kwargs.get("dim", 0)
        inputs = [source(t) for t in tensors]
        if dim not in (1, -3):
            raise _Unsupported(f"it concatenates feature maps along dimension {dim} ({node.name})")
        return _Step("cat", node.name, inputs, _same_factor(inputs, steps, node), run=lambda *ts: torch.cat(ts, 1))
    if target in POINTWISE:
        return _pointwise(node, index, constants, steps)
    raise _Unsupported(f"{_op_name(node)} is not row-local or not supported by the row streamer ({node.name})")


def _same_factor(inputs: list[int], steps: list[_Step], node: Node) -> int:
    factors = {steps[i].height_factor for i in inputs}
    if len(factors) != 1:
        raise _Unsupported(f"{_op_name(node)} combines feature maps of different heights ({node.name})")
    return factors.pop()


@dataclass(frozen=True)
class _RowSlot:
    """Where a pointwise op's row operand goes in its arguments."""

    position: int


def _pointwise(node: Node, index: dict[Node, int], constants: dict[Node, Any], steps: list[_Step]) -> _Step:
    inputs: list[int] = []

    def slot(a: Node) -> Any:
        if a in index:
            inputs.append(index[a])
            return _RowSlot(len(inputs) - 1)
        value = constants[a]
        if not _is_constant_operand(value):
            raise _Unsupported(f"{_op_name(node)} reads a constant that varies over the image ({node.name})")
        return value

    args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), slot)

    def caller(target) -> Callable[..., torch.Tensor]:
        def run(*tensors: torch.Tensor) -> torch.Tensor:
            def fill(v: Any) -> Any:
                return tensors[v.position] if isinstance(v, _RowSlot) else v

            return target(*[fill(a) for a in args], **{k: fill(v) for k, v in kwargs.items()})

        return run

    step = _Step("pointwise", node.name, inputs, _same_factor(inputs, steps, node), run=caller(node.target))
    inplace = _inplace_variant(node.target)
    value = node.meta.get("val")
    first_value = node.args[0].meta.get("val") if isinstance(node.args[0], Node) else None
    if (
        inplace is not None
        and args[0] == _RowSlot(0)
        and isinstance(value, torch.Tensor)
        and isinstance(first_value, torch.Tensor)
        and value.shape == first_value.shape
        and value.dtype == first_value.dtype
    ):
        step.run_inplace = caller(inplace)
    return step


def _inplace_variant(op) -> Any:
    """``aten.relu_.default`` for ``aten.relu.default`` and so on, or None."""
    packet = getattr(torch.ops.aten, op.overloadpacket.__name__ + "_", None)
    return getattr(packet, op._overloadname, None) if packet is not None else None
