"""Upscaling within a memory budget: uint8 image in, uint8 image out, only bands of rows or tiles on the device.

Two ways to cut the image (``method``): **rows** streams full-width bands of LR rows through the network's
graph, each layer computing each of its rows once (:mod:`memsr_bench.row_stream`: no recomputed halo, memory
independent of the image height; for graphs of row-local ops); **tiles** runs halo tiles (any model; the halo
is recomputed by neighbouring tiles). ``auto`` takes rows where the graph allows and a band fits. Both are
planned from predicted peaks (fake-tensor passes of the same code) and the accounting below; for rows the
"tile" is one step of the band executor (``_RowPass``) and the host holds the input and the rows one step finishes.

How the budget (``max_memory_bytes``) is split, all of it counted in bytes:

* ``RUNTIME_ALLOWANCE_BYTES`` (336 MiB): a fixed allowance for what the runtime itself holds. Measured
  once on Linux x86-64 with torch 2.13 CPU: the process RSS (``VmHWM``) is 220 MiB after
  ``import torch``, 236 MiB once fmen-s-deploy is loaded and 310 MiB after the receptive-field analysis
  and the planning (fake-tensor passes import and keep torch's tracing machinery); 320 MiB rounds it up.
  It is not re-measured at run time. To it come the two 8 MiB buffers that chunked convolutions reuse
  (``_CONV_BUFFER_BYTES``, :func:`_conv2d_chunks`).
* the host buffers: the uint8 LR input (``3·H·W``) and the uint8 SR output, held whole by
  :func:`upscale_image` (``3·sH·sW``); :func:`upscale_to_png` holds only one band of output rows
  (one row of tiles, ``3·s·tile_h·sW``) plus the PNG writer's temporaries, and streams the rest to the file;
* one tile at a time: its predicted tensor peak
  (:func:`~memsr_bench.measure.memory_model.predict_peak_memory`, weights and input included) raised by
  the column buffer of PyTorch's native CPU convolution (im2col: ``C_in/groups · kh · kw`` floats per
  output pixel, allocated inside the kernel and invisible to the tensor timeline; e.g. 1800 bytes per
  pixel for a 3x3 conv of 50 channels, measured as RSS; none for a convolution computed in chunks in the
  reused buffers), plus the host-side conversion temporaries of ``ModelUpscaler`` (``_host_bytes``).

Two measured corrections make the whole process stay within the budget (RSS, ``VmHWM``): the tile's
predicted peak is raised by ``_PEAK_MARGIN`` (5 %: fmen-s-deploy on a 400x400 tile peaked 432 MiB above the
runtime for 416 MiB predicted), and glibc's allocator is told to serve every block of 1 MiB or more
with its own mapping (:func:`configure_allocator`), so that a freed feature map goes back to the OS at once,
and the free space of the heaps is returned after each band or tile (:func:`release_free_heap`).
Without it glibc's dynamic threshold (up to 32 MiB) keeps freed tensors in per-thread heaps and RSS
grows past the prediction from tile to tile (carn-m, 300x300 tiles: 1.49 GiB predicted and measured with
a fixed 1 MiB threshold, 1.81 GiB without).

The tiling is chosen to minimise compute: over the numbers of tile rows and columns, the tiles of equal
size (a multiple of the model's grid) whose padded tile (core + 2·halo, clipped at the image) and band fit
what is left of the budget, with the least total padded area (the halo is recomputed by each tile); ties go
to fewer tiles. An affine fit of the tile cost in the padded area screens candidates, and the chosen one is
checked by prediction. A budget where even a 16x16 core does not fit is refused.

Exactness. For a *local* model that is not ``size_dependent`` (see
:mod:`memsr_bench.measure.receptive_field`) the halo is the receptive radius rounded up to the model's
grid and every tile origin lies on the grid, so each output pixel of a tile's core sees exactly the
LR pixels (and image borders) it sees in whole-image inference; only the core (in HR, ``scale`` x the
LR core) is pasted, and the output is bit-identical to whole-image inference on the same device with the
same kernels, provided the kernels' per-pixel arithmetic does not depend on the image size. On CPU,
oneDNN (mkldnn) convolutions do depend on it (their blocking changes the float sums by ~1e-5..1e-4 of
0..255, which flips the uint8 rounding of a few pixels), so by default (``native_kernels=True``) tiles
run with ``torch.backends.mkldnn.flags(enabled=False)``: PyTorch's native CPU kernels, whose results
the tests show to be size-independent; whole-image inference under the same flag is the reference.
On CUDA, cuDNN's TF32 sums depend on the size; in FP32 they did not in our measurements
(:func:`size_independent_kernels`, which sets both).
For Y-only models the bicubic chroma (4-tap kernel) is computed per tile with a halo of at least
``_BICUBIC_HALO`` LR pixels. Other models (not local, or size-dependent) are tiled with overlapping
tiles and a halo of at least ``APPROX_HALO`` LR pixels (best approximation); the plan says so, and when
the whole image fits the budget the deviation from whole-image inference is measured.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import platform
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes, _get_current_dispatch_mode_stack

from memsr_bench.data.image_io import PNG_LEVEL, PngStreamWriter
from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.fake_pass import module_device
from memsr_bench.measure.receptive_field import ReceptiveField, receptive_field
from memsr_bench.row_stream import Conv2dArgs, RowProgram, conv2d_into, trace_rows
from memsr_bench.units import format_bytes

__all__ = [
    "APPROX_HALO",
    "MIN_TILE",
    "RUNTIME_ALLOWANCE_BYTES",
    "TilingPlan",
    "size_independent_kernels",
    "peak_with_conv_workspace",
    "plan_tiling",
    "configure_allocator",
    "largest_whole_input",
    "tile_budget",
    "upscale_image",
    "upscale_to_png",
]

# Column buffer of one chunk of output pixels (_RowChunkedConvolution). Chunks of whole rows when a row fits; a
# narrower chunk costs per call (Python dispatch, small GEMMs): FMEN-S x4 over 256x4000 LR rows took 21.0 s whole
# with 960 KiB chunks (pieces of a row) against 12.5 s with 8 MiB chunks.
_CONV_CHUNK_BYTES = 8 * 2**20
# output pixels of each matrix product of a chunked convolution (_products_in_blocks)
_GEMM_BLOCK = 512
# the input pixels and the columns of a chunk (_conv2d_chunks), resident once made
_CONV_BUFFER_BYTES = 2 * _CONV_CHUNK_BYTES
# measured RSS after imports, model and fake passes: 310 MiB, rounded up to 320 MiB; and the chunked convolutions'
# buffers
RUNTIME_ALLOWANCE_BYTES = 320 * 2**20 + _CONV_BUFFER_BYTES
MIN_TILE = 16  # LR pixels: the smallest tile core accepted
APPROX_HALO = 32  # LR pixels: the least halo for models whose tiles are not exact
_BICUBIC_HALO = 4  # LR pixels: the chroma of Y-only models (MATLAB bicubic, 4 taps, mirrored borders)
# Host temporaries of ModelUpscaler per tile pixel (the float32 model input and output are in the tensor peak):
_HOST_LR_BYTES = 3  # RGB: the uint8 copy of the LR tile
_HOST_SR_BYTES = 6  # RGB, per SR pixel: the isfinite mask and the uint8 result
_HOST_LR_BYTES_Y = 48  # Y-only, per LR pixel: uint8 copy, float64 YCbCr planes, float32 luma
_HOST_SR_BYTES_Y = 3 * 56  # Y-only, per SR pixel: the bicubic chroma and float64 YCbCr planes
_MAX_CHECKS = 24  # tile sizes checked by prediction before the planner settles for the smallest
_PEAK_MARGIN = 1.05  # measured RSS of a tile pass over its prediction (module docstring)
_MMAP_THRESHOLD = 2**20  # bytes: larger blocks get their own mapping, returned to the OS when freed


@dataclass(frozen=True)
class TilingPlan:
    """How an image was (or will be) tiled, and what the budget was spent on (bytes)."""

    model: str
    scale: int
    lr_size: tuple[int, int]
    tile: tuple[int, int]  # LR core size (the last row/column of tiles may be smaller)
    halo: int  # LR pixels on each side (clipped at the image)
    grid: int
    n_tiles: int
    exact: bool  # bit-identical to whole-image inference by construction
    reason: str | None  # why not exact (from the receptive-field analysis)
    budget_bytes: int
    runtime_allowance_bytes: int
    host_buffers_bytes: int  # uint8 input + output (whole, or one band and the PNG writer when streaming)
    tile_peak_bytes: int  # predicted tensor peak + conv workspace of the largest padded tile (+5 %), weights included
    tile_host_bytes: int  # host temporaries of the largest padded tile
    stream: bool = False  # output streamed to a PNG band by band (host_buffers holds one band)
    compute_ratio: float = 1.0  # LR pixels run through the model (padded tiles) / LR pixels of the image
    deviation: dict[str, float] | None = None  # approximate mode: vs whole-image inference, if measured
    deviation_note: str | None = None
    seconds: float | None = None  # wall time of planning, tiles (and streaming)
    cpu_seconds: float | None = None  # CPU time of the process over the same span, all threads
    planning_seconds: float | None = None  # of ``seconds``: the plan (predictions on fake tensors)
    writing_seconds: float | None = None  # of ``seconds``: PNG filtering, compression and writing (streamed runs)
    method: str = "tiles"  # "tiles" (halo tiles) or "rows" (row streaming: tile = (band rows, width), halo 0)

    @property
    def total_bytes(self) -> int:
        return self.runtime_allowance_bytes + self.host_buffers_bytes + self.tile_peak_bytes + self.tile_host_bytes

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"total_bytes": self.total_bytes}

    def describe(self) -> str:
        mode = "exact" if self.exact else "approximate"
        if self.method == "rows":
            return (
                f"{self.model} x{self.scale}: LR {self.lr_size[0]}x{self.lr_size[1]} streamed by rows in "
                f"{self.n_tiles} band(s) of {self.tile[0]} rows ({mode}, each layer's rows computed once); "
                f"{format_bytes(self.total_bytes)} of {format_bytes(self.budget_bytes)}"
            )
        return (
            f"{self.model} x{self.scale}: LR {self.lr_size[0]}x{self.lr_size[1]} in {self.n_tiles} tile(s) of "
            f"{self.tile[0]}x{self.tile[1]} + halo {self.halo} (grid {self.grid}, {mode}, "
            f"{self.compute_ratio:.3f}x the pixels); {format_bytes(self.total_bytes)} of "
            f"{format_bytes(self.budget_bytes)}"
        )


def _channels(loaded) -> int:
    return 1 if loaded.entry.spec.channels == "y" else 3


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class _ConvWorkspace(TorchDispatchMode):
    """Records, for each 2-D convolution of a fake pass, the bytes of the column buffer (im2col) that
    PyTorch's native CPU kernel allocates while it runs. Measured (RSS, torch 2.13): ``C_in/groups · kh
    · kw`` elements per output pixel for a kernel other than 1x1/stride 1/no padding, per group; grouped
    convolutions also copy their inputs and outputs per group, counted here as well. Nothing (0) for a
    convolution computed in place under :func:`size_independent_kernels` (``chunked``): its buffers are in the
    runtime allowance."""

    _OPS = ("conv2d", "convolution")

    def __init__(self, chunked: bool):
        super().__init__()
        self.chunked = chunked  # under _RowChunkedConvolution (size_independent_kernels)
        self.bytes: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in self._OPS:
            self.bytes.append(self._workspace(args, out))
        return out

    def _workspace(self, args, out) -> int:
        x, weight = args[0], args[1]
        groups = int(args[-1]) if isinstance(args[-1], int) else 1
        if x.dim() != 4 or weight.dim() != 4:
            return 0
        if self.chunked and _conv_chunk_shape(args) is not None:  # in place: buffers in the runtime allowance
            return 0
        kh, kw = int(weight.shape[2]), int(weight.shape[3])
        stride = args[3] if len(args) > 3 else 1
        padding = args[4] if len(args) > 4 else 0
        trivial = (kh, kw) == (1, 1) and all(int(v) == 1 for v in _pair(stride)) and _no_padding(padding)
        item = x.element_size()
        n, _, oh, ow = (int(v) for v in out.shape)
        columns = 0 if trivial else n * int(weight.shape[1]) * kh * kw * oh * ow * item
        copies = (x.numel() + out.numel()) * item if groups > 1 else 0
        return columns + copies


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _no_padding(padding) -> bool:
    if isinstance(padding, str):
        return padding == "valid"
    return all(int(v) == 0 for v in _pair(padding))


def peak_with_conv_workspace(
    module: torch.nn.Module, shape: tuple[int, ...], stop_above_bytes: int | None = None
) -> int:
    """Predicted tensor peak of ``module`` on ``shape`` with each convolution's native CPU column buffer
    added to the live bytes at that convolution (conservatively to the peak if they cannot be matched); under
    :func:`size_independent_kernels` as its chunked convolutions allocate (none in place).

    ``stop_above_bytes``: the pass ends once its live tensors exceed it (it does not fit), and a number above
    it is returned, a lower bound of the peak."""
    from memsr_bench.measure.memory_model import predict_peak_memory

    workspace = _ConvWorkspace(_chunking())
    prediction = predict_peak_memory(module, shape, observers=[workspace], stop_above_bytes=stop_above_bytes)
    if prediction.stopped:
        return prediction.peak_bytes
    ops = ("aten.conv2d", "aten.convolution")
    at_convs = [live for name, live in prediction.timeline if name.split(" @")[0] in ops]
    if len(at_convs) == len(workspace.bytes):
        during = [live + ws for live, ws in zip(at_convs, workspace.bytes, strict=True)]
        return max([prediction.peak_bytes, *during])
    return prediction.peak_bytes + max(workspace.bytes, default=0)


class _Costs:
    """Predicted bytes of a padded tile ``(h, w)``: tensor peak with conv workspace, host temporaries (memoised),
    with the convolutions as they run under ``size_independent_kernels(native_kernels)``."""

    def __init__(self, loaded, channels: int, native_kernels: bool = True):
        self.module = loaded.module
        self.native_kernels = native_kernels
        self.scale = loaded.scale
        self.channels = channels
        self.lr_bytes, self.sr_bytes = (
            (_HOST_LR_BYTES_Y, _HOST_SR_BYTES_Y) if channels == 1 else (_HOST_LR_BYTES, _HOST_SR_BYTES)
        )
        self.cache: dict[tuple[int, int], int] = {}

    def peak(self, h: int, w: int) -> int:
        if (h, w) not in self.cache:
            with size_independent_kernels(self.native_kernels):
                self.cache[(h, w)] = peak_with_conv_workspace(self.module, (1, self.channels, h, w))
        return self.cache[(h, w)]

    def host(self, h: int, w: int) -> int:
        return h * w * self.lr_bytes + h * w * self.scale**2 * self.sr_bytes

    def total(self, h: int, w: int) -> int:
        return int(self.peak(h, w) * _PEAK_MARGIN) + self.host(h, w)


def _halo(rf: ReceptiveField, channels: int) -> tuple[int, int, bool, str | None]:
    """(grid, halo, exact, reason) for a model with receptive field ``rf``."""
    grid = max(1, rf.grid)
    exact = rf.local and not rf.size_dependent
    reason = None if exact else (rf.reason or "size-dependent resizing (tiles do not reproduce the whole image)")
    radius = rf.radius if rf.radius is not None else 0
    halo = radius if exact else max(radius, APPROX_HALO)
    if channels == 1:
        halo = max(halo, _BICUBIC_HALO)
    return grid, _round_up(halo, grid), exact, reason


def _spans(length: int, core: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, padded start, padded end) along one axis of ``length`` LR pixels."""
    return [
        (start, min(start + core, length), max(0, start - halo), min(length, start + core + halo))
        for start in range(0, length, core)
    ]


def _padded_length(length: int, core: int, halo: int) -> int:
    """LR pixels run through the model along one axis: the sum of the padded spans."""
    return sum(p1 - p0 for _, _, p0, p1 in _spans(length, core, halo))


def _largest_padded(length: int, core: int, halo: int) -> int:
    return max(p1 - p0 for _, _, p0, p1 in _spans(length, core, halo))


def _png_writer_bytes(width_hr: int) -> int:
    """The streaming PNG writer's temporaries: a filtered pass of rows, its compressed output, zlib's state."""
    return 2 * PngStreamWriter._ROWS_PER_PASS * (3 * width_hr + 1) + 4 * 2**20


def _host_buffers(height: int, width: int, scale: int, core_h: int, stream: bool) -> int:
    """uint8 input + output (whole, or one band of ``core_h`` LR rows and the PNG writer when streaming)."""
    if not stream:
        return 3 * height * width * (1 + scale**2)
    band_rows = min(core_h, height) * scale
    return 3 * height * width + 3 * band_rows * width * scale + _png_writer_bytes(width * scale)


def tile_budget(
    loaded,
    lr_size: tuple[int, int],
    core: int,
    rf: ReceptiveField | None = None,
    *,
    stream: bool = False,
) -> int:
    """The ``max_memory_bytes`` at which :func:`plan_tiling` can choose LR tile cores of ``core`` x ``core``
    pixels (rounded up to the model's grid) for an image of ``lr_size``: runtime allowance + host buffers +
    the padded tile's predicted peak and host temporaries. (The planner may then prefer another shape of the
    same cost that needs less compute.)"""
    channels = _channels(loaded)
    if rf is None:
        rf = receptive_field(loaded.module, loaded.scale, name=loaded.name, channels=channels)
    grid, halo, _, _ = _halo(rf, channels)
    height, width = (int(v) for v in lr_size)
    core = _round_up(core, grid)
    padded = (_largest_padded(height, core, halo), _largest_padded(width, core, halo))
    host = _host_buffers(height, width, loaded.scale, core, stream)
    return RUNTIME_ALLOWANCE_BYTES + host + _Costs(loaded, channels).total(*padded)


def largest_whole_input(
    loaded, max_memory_bytes: int, aspect: tuple[int, int] = (1, 1), *, stream: bool = True
) -> tuple[int, int] | None:
    """The largest LR input ``(H, W)`` with ``H : W = aspect`` whose whole-image inference on CPU fits
    ``max_memory_bytes`` for the whole process, by the accounting of the module docstring: runtime allowance,
    uint8 input and output (``stream``: one band of output and the PNG writer, as ``memsr-bench upscale``),
    the predicted tensor peak with the native convolutions' column buffers +5 %, and host temporaries. None
    if not even ``aspect`` itself fits. Sizes step by ``aspect`` (reduced); the cost grows with the size."""
    ah, aw = (v // math.gcd(*aspect) for v in aspect)
    if ah <= 0 or aw <= 0:
        raise ValueError(f"aspect must be positive, not {aspect}")
    costs = _Costs(loaded, _channels(loaded))

    def fits(k: int) -> bool:
        h, w = k * ah, k * aw
        need = RUNTIME_ALLOWANCE_BYTES + _host_buffers(h, w, loaded.scale, h, stream) + costs.total(h, w)
        return need <= max_memory_bytes

    if not fits(1):
        return None
    lo, hi = 1, 2
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo * ah, lo * aw


METHODS = ("auto", "rows", "tiles")


def plan_tiling(
    loaded,
    lr_size: tuple[int, int],
    max_memory_bytes: int,
    rf: ReceptiveField | None = None,
    *,
    stream: bool = False,
    method: str = "auto",
    native_kernels: bool = True,
) -> TilingPlan:
    """The tiling of an LR image of ``lr_size`` (H, W) for ``loaded`` (a :class:`~memsr_bench.model.LoadedModel`)
    within ``max_memory_bytes``; ``rf`` is its receptive field (analysed here if not given); ``stream``:
    the output is written band by band (:func:`upscale_to_png`) instead of held whole; ``native_kernels``: as
    the run will be (the prediction of a row pass follows its chunked convolutions).

    ``method``: ``"rows"`` streams full-width bands of rows through the network, each layer computing each
    row once (:mod:`memsr_bench.row_stream`; exact, no recomputed halo); ``"tiles"`` runs halo tiles;
    ``"auto"`` (default) takes rows where the model's graph allows it and some band fits, tiles otherwise.

    Raises :class:`MemsrInputError` if the budget does not hold even a 16x16 tile (or one row, for rows).
    """
    if method not in METHODS:
        raise MemsrInputError("--method", f"must be one of {', '.join(METHODS)}, not {method!r}")
    height, width = (int(v) for v in lr_size)
    channels = _channels(loaded)
    if rf is None:
        rf = receptive_field(loaded.module, loaded.scale, name=loaded.name, channels=channels)
    if method != "tiles":
        program = row_program(loaded, rf)
        if isinstance(program, RowProgram):
            with size_independent_kernels(native_kernels):
                plan = _plan_rows(loaded, program, (height, width), max_memory_bytes, rf, stream)
            if plan is not None or method == "rows":
                if plan is None:
                    raise MemsrInputError(
                        "--max-memory",
                        f"{format_bytes(max_memory_bytes)} does not hold a band of {_MIN_BAND} rows of {loaded.name} "
                        f"x{loaded.scale} on a {height}x{width} image streamed by rows (--method tiles may fit)",
                    )
                return plan
        elif method == "rows":
            raise MemsrInputError("--method", f"rows: {loaded.name} cannot be streamed by rows: {program}")
    grid, halo, exact, reason = _halo(rf, channels)
    costs = _Costs(loaded, channels, native_kernels)
    base = max_memory_bytes - RUNTIME_ALLOWANCE_BYTES

    def need(core_h: int, core_w: int) -> int:  # predicted bytes beyond the runtime allowance
        padded = (_largest_padded(height, core_h, halo), _largest_padded(width, core_w, halo))
        return _host_buffers(height, width, loaded.scale, core_h, stream) + costs.total(*padded)

    smallest = _round_up(MIN_TILE, grid)
    if need(smallest, smallest) > base:
        raise MemsrInputError(
            "--max-memory",
            f"{format_bytes(max_memory_bytes)} does not hold even a {smallest}x{smallest} tile of {loaded.name} "
            f"x{loaded.scale} on a {height}x{width} image (needs "
            f"{format_bytes(RUNTIME_ALLOWANCE_BYTES + need(smallest, smallest))}: "
            f"runtime allowance {format_bytes(RUNTIME_ALLOWANCE_BYTES)} + uint8 input/output "
            f"{format_bytes(_host_buffers(height, width, loaded.scale, smallest, stream))} + tile)",
        )
    core_h, core_w = _choose_cores(height, width, grid, halo, smallest, need, base, costs, loaded.scale, stream)
    tile = (min(core_h, height), min(core_w, width))
    n_tiles = math.ceil(height / tile[0]) * math.ceil(width / tile[1])
    ph, pw = _largest_padded(height, core_h, halo), _largest_padded(width, core_w, halo)
    compute = _padded_length(height, core_h, halo) * _padded_length(width, core_w, halo)
    return TilingPlan(
        model=loaded.name,
        scale=loaded.scale,
        lr_size=(height, width),
        tile=tile,
        halo=halo,
        grid=grid,
        n_tiles=n_tiles,
        exact=exact or n_tiles == 1,
        reason=None if (exact or n_tiles == 1) else reason,
        budget_bytes=int(max_memory_bytes),
        runtime_allowance_bytes=RUNTIME_ALLOWANCE_BYTES,
        host_buffers_bytes=_host_buffers(height, width, loaded.scale, core_h, stream),
        tile_peak_bytes=int(costs.peak(ph, pw) * _PEAK_MARGIN),
        tile_host_bytes=costs.host(ph, pw),
        stream=stream,
        compute_ratio=compute / (height * width),
    )


def _choose_cores(height, width, grid, halo, smallest, need, base, costs, scale, stream) -> tuple[int, int]:
    """The (core_h, core_w) of least compute that fits ``base`` bytes (see the module docstring)."""
    # Screen: the tile cost interpolated (piecewise linear in the padded area) between predictions on squares
    # of doubling sides; not affine, since the convolutions' column buffers stop growing once chunked.
    largest = max(height, width) + 2 * halo
    sides = sorted({min(side, largest) for side in (smallest + 2 * halo, 64, 128, 256, 512, 1024, 2048)})
    areas = np.array([side * side for side in sides], dtype=np.float64)
    totals = np.array([costs.total(side, side) for side in sides], dtype=np.float64)

    def estimate(area: float) -> float:
        if len(areas) == 1 or area <= areas[-1]:
            return float(np.interp(area, areas, totals))
        slope = (totals[-1] - totals[-2]) / (areas[-1] - areas[-2])
        return float(totals[-1] + slope * (area - areas[-1]))

    def screen(core_h: int, core_w: int) -> bool:  # optimistic by 5 %: the prediction decides
        padded = _largest_padded(height, core_h, halo) * _largest_padded(width, core_w, halo)
        return _host_buffers(height, width, scale, core_h, stream) + estimate(padded) <= 1.05 * base

    def cores(length: int) -> list[int]:  # equal tiles: each number of tiles, its smallest core on the grid
        found: dict[int, int] = {}
        for n in range(1, max(1, -(-length // smallest)) + 1):
            core = max(smallest, _round_up(-(-length // n), grid))
            found.setdefault(math.ceil(length / core), core)
        return sorted(set(found.values()), reverse=True)

    heights, widths = cores(height), cores(width)

    def candidate(core_h: int, index: int) -> tuple[int, int, int, int, int] | None:
        """The widest core width from ``widths[index:]`` that passes the screen for ``core_h``, with its cost."""
        for i in range(index, len(widths)):
            if screen(core_h, widths[i]):
                compute = _padded_length(height, core_h, halo) * _padded_length(width, widths[i], halo)
                tiles = math.ceil(height / core_h) * math.ceil(width / widths[i])
                return compute, tiles, core_h, widths[i], i
        return None

    # Least compute first; a candidate the prediction refuses gives way to the next narrower one of its height.
    queue = [c for c in (candidate(core_h, 0) for core_h in heights) if c is not None]
    heapq.heapify(queue)
    for _ in range(_MAX_CHECKS):
        if not queue:
            break
        _, _, core_h, core_w, index = heapq.heappop(queue)
        if need(core_h, core_w) <= base:
            return core_h, core_w
        narrower = candidate(core_h, index + 1)
        if narrower is not None:
            heapq.heappush(queue, narrower)
    return smallest, smallest


# module -> {device: RowProgram or reason}: a program holds constants made on the device it was traced on
_ROW_PROGRAMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_BAND_PIXELS = 2**20  # LR pixels in a band of rows beyond which a larger band gains nothing (per-step overhead)
_MIN_BAND = 8  # rows: below this, tiles (which cut the width too) are the better answer to a small budget


def row_program(loaded, rf: ReceptiveField | None = None) -> RowProgram | str:
    """The model's :class:`~memsr_bench.row_stream.RowProgram` (traced once per module), or why its rows cannot
    be streamed: its graph has an op that is not row-local, or it is Y-only, or not local."""
    if _channels(loaded) != 3:
        return "Y-only model (its chroma is upscaled by bicubic on the host)"
    if rf is not None and not (rf.local and not rf.size_dependent):
        return rf.reason or "size-dependent"
    programs = _ROW_PROGRAMS.setdefault(loaded.module, {})
    device = module_device(loaded.module)
    if device not in programs:
        programs[device] = trace_rows(loaded.module, 3, loaded.scale)
    return programs[device]


def _rows_to_uint8(out: torch.Tensor, input_range: float) -> torch.Tensor:
    """``ModelUpscaler``'s output conversion on a band of output rows (1 x 3 x rows x W), in place: 3 x rows x W."""
    out = out[0]
    if input_range != 255.0:
        out.mul_(255.0 / input_range)
    return out.clamp_(0, 255).round_().to(torch.uint8)


class _RowPass(torch.nn.Module):
    """Row streaming of an image of ``height`` LR rows as one module, for the memory prediction: bands of the
    input's height go through the program, each output band is converted to uint8 and dropped, as in
    :func:`_row_bands`."""

    def __init__(self, program: RowProgram, height: int, input_range: float, device: torch.device):
        super().__init__()
        self.program, self.height, self.input_range = program, height, input_range
        # the predicted pass puts its fake input on the device of the module's tensors: the program's device
        self.register_buffer("device_marker", torch.empty(0, device=device), persistent=False)

    def forward(self, band: torch.Tensor) -> torch.Tensor:
        rows = band.shape[2]

        def bands() -> Iterator[torch.Tensor]:
            for start in range(0, self.height, rows):
                yield band[:, :, : min(rows, self.height - start)].clone()  # a new band each step, as on the host

        for out in self.program.run(bands(), self.height, conv_into=_conv2d_into):
            _rows_to_uint8(out, self.input_range)
        return band.new_zeros(1)


def _plan_rows(loaded, program: RowProgram, lr_size, max_memory_bytes: int, rf: ReceptiveField, stream: bool):
    """The row-streaming plan with the tallest band that fits (``_BAND_PIXELS`` pixels or the image, else powers
    of two down to ``_MIN_BAND`` rows), or None if none does. Memory: the predicted peak of :class:`_RowPass`
    (tensors and conv workspace, +5 %) over enough bands to reach the steady state and the last, flushing step."""
    height, width = lr_size
    s = loaded.scale
    radius = rf.radius or 0
    input_range = loaded.entry.spec.input_range
    base = max_memory_bytes - RUNTIME_ALLOWANCE_BYTES

    def cost(rows: int) -> tuple[int, int] | None:
        """(tensor peak with its margin, host bytes) of bands of ``rows``, or None if they do not fit."""
        out_rows = min(height, rows + 2 * radius) * s  # the most output rows one step finishes (the last)
        if stream:
            host = 3 * height * width + 2 * 3 * out_rows * width * s + _png_writer_bytes(width * s)
        else:
            host = 3 * height * width * (1 + s**2) + 3 * out_rows * width * s
        limit = int((base - host) / _PEAK_MARGIN)  # the largest tensor peak that fits
        if limit < 0:
            return None
        last = height - rows * ((height - 1) // rows)  # the real last band
        full = -(-radius // rows) + 2  # bands until the first output rows: the steady state
        simulated = height if height <= (full + 1) * rows else full * rows + last
        # a pass that does not fit ends where it first exceeds the limit, often in its first ops
        peak = peak_with_conv_workspace(
            _RowPass(program, simulated, input_range, module_device(loaded.module)),
            (1, 3, rows, width),
            stop_above_bytes=limit,
        )
        return (int(peak * _PEAK_MARGIN), host) if peak <= limit else None

    top = min(height, max(_MIN_BAND, _BAND_PIXELS // max(width, 1)))
    chosen = None
    # tallest first: the image (or _BAND_PIXELS), then powers of two below it (one within 20 % of it adds a
    # predicted pass and little else)
    for rows in [top, *(r for r in (2**k for k in range(20, 2, -1)) if _MIN_BAND <= r < min(top, 0.8 * top + 1))]:
        fits = cost(rows)
        if fits is not None:
            chosen = rows, *fits
            break
    if chosen is None:
        return None
    rows, peak, host = chosen
    return TilingPlan(
        model=loaded.name,
        scale=s,
        lr_size=(height, width),
        tile=(rows, width),
        halo=0,
        grid=1,
        n_tiles=math.ceil(height / rows),
        exact=True,
        reason=None,
        budget_bytes=int(max_memory_bytes),
        runtime_allowance_bytes=RUNTIME_ALLOWANCE_BYTES,
        host_buffers_bytes=host,
        tile_peak_bytes=peak,
        tile_host_bytes=0,
        stream=stream,
        compute_ratio=1.0,
        method="rows",
    )


def _row_bands(plan: TilingPlan, loaded, lr_uint8: np.ndarray, device, progress: bool):
    """Yield ``(first SR row, band)``: the output rows as row streaming finishes them (uint8 H x W x 3)."""
    program = row_program(loaded)
    input_range = loaded.entry.spec.input_range
    rows, height = plan.tile[0], plan.lr_size[0]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=plan.n_tiles, desc=f"{plan.model} row bands", unit="band", leave=False)

    def bands() -> Iterator[torch.Tensor]:
        for start in range(0, height, rows):
            planes = lr_uint8[start : start + rows].transpose(2, 0, 1).astype(np.float32)
            x = torch.from_numpy(planes).unsqueeze(0).to(device)  # as ModelUpscaler feeds the model
            if input_range != 255.0:
                x.mul_(input_range / 255.0)
            yield x
            del x, planes
            if bar is not None:
                bar.update(1)

    first = 0
    try:
        with torch.inference_mode():
            for out in program.run(bands(), height, conv_into=_conv2d_into):
                out = out.cpu()
                if not bool(torch.isfinite(out).all()):
                    raise MemsrInputError(
                        plan.model, f"non-finite output (NaN or inf) in output rows from {first}: check its weights"
                    )
                band = np.ascontiguousarray(_rows_to_uint8(out, input_range).permute(1, 2, 0).numpy())
                del out
                release_free_heap()
                yield first, band
                first += band.shape[0]
                del band
    finally:
        if bar is not None:
            bar.close()


def _tiles(plan: TilingPlan) -> Iterator[list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]]:
    """Rows of tiles, top to bottom; each a list of (core box, padded box) in LR pixels, ``(y0, y1, x0, x1)``."""
    height, width = plan.lr_size
    for y0, y1, py0, py1 in _spans(height, plan.tile[0], plan.halo):
        yield [((y0, y1, x0, x1), (py0, py1, px0, px1)) for x0, x1, px0, px1 in _spans(width, plan.tile[1], plan.halo)]


def _bands(plan: TilingPlan, lr_uint8: np.ndarray, run, progress: bool, out: np.ndarray | None = None):
    """Yield ``(first SR row, band)`` for each row of tiles, the band holding its finished SR rows (full width).

    With ``out`` the bands are views of it (the whole output); otherwise each band is a new array."""
    s = plan.scale
    width = plan.lr_size[1]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=plan.n_tiles, desc=f"{plan.model} tiles", unit="tile", leave=False)
    try:
        for row in _tiles(plan):
            y0, y1 = row[0][0][:2]
            band = out[y0 * s : y1 * s] if out is not None else np.empty(((y1 - y0) * s, width * s, 3), np.uint8)
            for (_, _, x0, x1), (py0, py1, px0, px1) in row:
                tile = run(np.ascontiguousarray(lr_uint8[py0:py1, px0:px1]))
                band[:, x0 * s : x1 * s] = tile[(y0 - py0) * s : (y1 - py0) * s, (x0 - px0) * s : (x1 - px0) * s]
                del tile
                release_free_heap()
                if bar is not None:
                    bar.update(1)
            yield y0 * s, band
            del band
    finally:
        if bar is not None:
            bar.close()


class _Deviation:
    """Tiled vs whole-image output, accumulated band by band: max |diff|, mean |diff|, pixels differing, PSNR."""

    def __init__(self):
        self.max_abs, self.abs_sum, self.sq_sum, self.values, self.pixels, self.differing = 0, 0, 0, 0, 0, 0

    def update(self, sr: np.ndarray, ref: np.ndarray) -> None:
        diff = np.abs(sr.astype(np.int16) - ref.astype(np.int16))
        self.max_abs = max(self.max_abs, int(diff.max(initial=0)))
        self.abs_sum += int(diff.sum(dtype=np.int64))
        self.sq_sum += int(np.square(diff, dtype=np.int64).sum())
        self.values += diff.size
        self.pixels += diff.shape[0] * diff.shape[1]
        self.differing += int(np.count_nonzero(diff.max(axis=2)))

    def result(self) -> dict[str, float]:
        mse = self.sq_sum / max(self.values, 1)
        return {
            "max_abs": float(self.max_abs),
            "mean_abs": self.abs_sum / max(self.values, 1),
            "fraction_differing": self.differing / max(self.pixels, 1),
            "psnr_db": float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse),
        }


def _check_image(lr_uint8: Any) -> None:
    if (
        not isinstance(lr_uint8, np.ndarray)
        or lr_uint8.dtype != np.uint8
        or lr_uint8.ndim != 3
        or (lr_uint8.shape[2] != 3)
    ):
        shape = getattr(lr_uint8, "shape", None)
        raise MemsrInputError(
            "image", f"expected a uint8 RGB array H x W x 3, not {getattr(lr_uint8, 'dtype', type(lr_uint8))} {shape}"
        )


def _upscaler(loaded_model, device):
    from zoo.upscaler import ModelUpscaler

    return ModelUpscaler(
        loaded_model.module,
        loaded_model.entry.spec,
        loaded_model.scale,
        device,
        name=loaded_model.name,
        fingerprint=loaded_model.fingerprint or "-",
    )


def upscale_image(
    loaded_model,
    lr_uint8: np.ndarray,
    max_memory_bytes: int,
    device: str | torch.device = "cpu",
    *,
    rf: ReceptiveField | None = None,
    progress: bool = False,
    compare: bool = True,
    native_kernels: bool = True,
    method: str = "auto",
) -> tuple[np.ndarray, TilingPlan]:
    """Upscale ``lr_uint8`` (H x W x 3 uint8 RGB) with ``loaded_model`` tile by tile within ``max_memory_bytes``.

    Input and output stay uint8 numpy arrays on the host; only tiles go to ``device``. Returns
    ``(sr_uint8, plan)``. For models whose tiles are not exact (``plan.exact`` False), the whole image
    is also upscaled and compared (``plan.deviation``) when ``compare`` and it fits the budget;
    otherwise ``plan.deviation_note`` says it was not measured. ``progress`` shows a tqdm bar over tiles.
    ``native_kernels``: run under :func:`size_independent_kernels` (CPU: without oneDNN, whose arithmetic depends
    on the tile size; CUDA: cuDNN in FP32, not autotuned).
    ``method``: rows, tiles or auto (:func:`plan_tiling`).
    For outputs too large to hold, :func:`upscale_to_png` streams them to a file.
    """
    _check_image(lr_uint8)
    configure_allocator()
    with size_independent_kernels(native_kernels):
        start, cpu_start = time.perf_counter(), time.process_time()
        plan = plan_tiling(
            loaded_model, lr_uint8.shape[:2], max_memory_bytes, rf, method=method, native_kernels=native_kernels
        )
        run = _upscaler(loaded_model, device)
        s = plan.scale
        sr = np.empty((plan.lr_size[0] * s, plan.lr_size[1] * s, 3), dtype=np.uint8)
        if plan.method == "rows":
            for first, band in _row_bands(plan, loaded_model, lr_uint8, device, progress):
                sr[first : first + band.shape[0]] = band
        else:
            for _ in _bands(plan, lr_uint8, run, progress, out=sr):
                pass
        deviation, note = None, None
        if not plan.exact:
            if compare and _whole_fits(loaded_model, plan):
                measured = _Deviation()
                measured.update(sr, run(lr_uint8))
                deviation = measured.result()
            else:
                note = "not measured: the whole image does not fit the budget" if compare else "not measured"
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return sr, replace(plan, deviation=deviation, deviation_note=note, seconds=seconds, cpu_seconds=cpu_seconds)


def upscale_to_png(
    loaded_model,
    lr_uint8: np.ndarray,
    path: str | Path,
    max_memory_bytes: int,
    device: str | torch.device = "cpu",
    *,
    rf: ReceptiveField | None = None,
    progress: bool = False,
    compare: bool = True,
    native_kernels: bool = True,
    compress_level: int = PNG_LEVEL,
    method: str = "auto",
) -> TilingPlan:
    """Upscale ``lr_uint8`` like :func:`upscale_image` and write the 8-bit RGB PNG ``path`` row band by row
    band as tiles finish (:class:`~memsr_bench.data.image_io.PngStreamWriter`): the host holds the input and
    one band of output rows, never the whole output, so the budget covers outputs far larger than itself.

    The pixels are those :func:`upscale_image` returns. For models whose tiles are not exact, the
    deviation from whole-image inference is measured (band by band) only when the whole image and its
    output fit the budget. A failure leaves no partial file. Returns the plan (``seconds`` included).
    """
    _check_image(lr_uint8)
    configure_allocator()
    with size_independent_kernels(native_kernels):
        start, cpu_start = time.perf_counter(), time.process_time()
        plan = plan_tiling(
            loaded_model,
            lr_uint8.shape[:2],
            max_memory_bytes,
            rf,
            stream=True,
            method=method,
            native_kernels=native_kernels,
        )
        planning = time.perf_counter() - start
        writing = 0.0
        run = _upscaler(loaded_model, device)
        s = plan.scale
        reference, measured, note = None, None, None
        if not plan.exact:
            if compare and _whole_fits(loaded_model, plan):
                reference, measured = run(lr_uint8), _Deviation()
            else:
                note = "not measured: the whole image does not fit the budget" if compare else "not measured"
        height, width = plan.lr_size
        writer = PngStreamWriter(path, height * s, width * s, compress_level=compress_level)
        with writer:
            bands = (
                _row_bands(plan, loaded_model, lr_uint8, device, progress)
                if plan.method == "rows"
                else _bands(plan, lr_uint8, run, progress)
            )
            for first, band in bands:
                if measured is not None:
                    measured.update(band, reference[first : first + band.shape[0]])
                written = time.perf_counter()
                writer.write_rows(band)
                writing += time.perf_counter() - written
                del band  # else this loop holds the written band while the generator fills the next one
            closed = time.perf_counter()
        writing += time.perf_counter() - closed  # the last rows, compressed and written on closing
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    deviation = measured.result() if measured is not None else None
    return replace(
        plan,
        deviation=deviation,
        deviation_note=note,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        planning_seconds=planning,
        writing_seconds=writing,
    )


# glibc's mallopt parameter
_M_MMAP_THRESHOLD = -3
_LIBC: Any = None  # glibc, False elsewhere


def _glibc() -> Any:
    global _LIBC
    if _LIBC is None:
        import ctypes.util

        name = ctypes.util.find_library("c") if platform.system() == "Linux" else None
        try:
            _LIBC = ctypes.CDLL(name) if name else False
            _LIBC = _LIBC if _LIBC and hasattr(_LIBC, "mallopt") and hasattr(_LIBC, "malloc_trim") else False
        except OSError:
            _LIBC = False
    return _LIBC


def configure_allocator() -> bool:
    """Set up the process's CPU allocation for budgeted upscaling (process-wide, from now on). Returns whether
    glibc's threshold was set (glibc only).

    * glibc's malloc maps every block of ``_MMAP_THRESHOLD`` bytes or more on its own, so that freed tensors
      return to the OS at once. The budget of :func:`upscale_image` and :func:`upscale_to_png` assumes it
      (module docstring); both call this function.
    * PyTorch asks for transparent huge pages for its CPU tensors of 2 MiB or more (``THP_MEM_ALLOC_ENABLE=1``,
      unless the environment sets it): a fresh mapping is then mostly faulted in 2 MiB at a time instead of
      4 KiB. It changes time, not memory (tensors are written whole, and blocks of 2 MiB or more never come
      from glibc's heap, whose marked ranges khugepaged would fill): whole-image inference of FMEN-S x4 on a
      256x4000 LR image took 12.5 s instead of 17.8 s (glibc's default allocator). PyTorch reads the
      variable at its first CPU allocation, so this part only takes effect when called before any tensor is
      made (the ``upscale`` command does; in a script, call it first or set the variable in the environment).
    """
    import os

    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    libc = _glibc()
    # fixing the threshold stops glibc's dynamic one (which rises to 32 MiB and keeps freed tensors resident)
    return bool(libc) and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))


def release_free_heap() -> None:
    """Give the free memory of glibc's heaps back to the OS (``malloc_trim(0)``; nothing elsewhere).

    Blocks under ``_MMAP_THRESHOLD`` are served from the heaps, whose free space otherwise stays resident.
    Called after each band of rows and each tile."""
    libc = _glibc()
    if libc:
        libc.malloc_trim(0)


def _conv_chunk_shape(args) -> tuple[int, int] | None:
    """Output (rows, columns) per chunk for a ``conv2d`` call (its positional ``args``) that
    :class:`_RowChunkedConvolution` computes in place (:func:`_conv2d_chunks`), or None (the kernel as it is):
    one float image (:func:`_chunks_in_place`), stride 1, no dilation, a kernel larger than 1x1, integer
    padding. A chunk has at most as many output pixels as whole blocks of ``_GEMM_BLOCK`` fit in a column
    buffer of ``_CONV_CHUNK_BYTES`` (at least one block): whole rows when a row fits, else pieces of one row of
    whole blocks. A small convolution is one chunk."""
    x, weight = args[0], args[1]
    if not (isinstance(x, torch.Tensor) and isinstance(weight, torch.Tensor)) or x.dim() != 4 or weight.dim() != 4:
        return None
    stride, padding, dilation = (list(_pair(args[i])) if len(args) > i else [d, d] for i, d in ((3, 1), (4, 0), (5, 1)))
    kh, kw = int(weight.shape[2]), int(weight.shape[3])
    if stride != [1, 1] or dilation != [1, 1] or any(isinstance(p, str) for p in padding) or kh * kw < 2:
        return None
    if not _chunks_in_place(x):
        return None
    out_h = int(x.shape[2]) + 2 * int(padding[0]) - kh + 1
    out_w = int(x.shape[3]) + 2 * int(padding[1]) - kw + 1
    if out_h < 1 or out_w < 1:  # the kernel says what is wrong
        return None
    pixel_bytes = int(weight.shape[1]) * kh * kw * x.element_size()
    pixels = max(1, _CONV_CHUNK_BYTES // max(pixel_bytes, 1) // _GEMM_BLOCK) * _GEMM_BLOCK
    if pixels >= out_w:
        return min(out_h, pixels // out_w), out_w
    return 1, pixels


class _RowChunkedConvolution(TorchDispatchMode):
    """Runs the CPU ``conv2d`` calls of one float image (stride 1, kernels larger than 1x1) through
    :func:`_conv2d_chunks`: over chunks of output pixels (whole rows, or pieces of a row when a row is too
    wide) in two reused buffers, so that the column buffer (im2col: ``C_in/groups · kh · kw`` floats per
    output pixel, 1800 bytes a pixel for 50 channels 3x3, twice the tensors FMEN-S keeps alive) is bounded by
    ``_CONV_CHUNK_BYTES`` instead of growing with the tile, and every output pixel is computed alike in any
    tile, band or whole image. The tile cost (:func:`peak_with_conv_workspace`) counts no workspace for them.
    Other convolutions run as they are.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if (
            func is not torch.ops.aten.conv2d.default
            or kwargs
            or type(args[0]) is not torch.Tensor  # fake tensors of a predicted pass run as they are
            or args[0].device.type != "cpu"
            or not args[0].is_contiguous()
        ):
            return func(*args, **(kwargs or {}))
        shape = _conv_chunk_shape(args)
        if shape is None:
            return func(*args)
        return _conv2d_chunks(args, shape)


def _conv2d_chunks(args, shape: tuple[int, int], out: torch.Tensor | None = None) -> torch.Tensor:
    """``aten.conv2d(*args)`` (one float image, stride 1, no dilation) computed in chunks of ``shape`` (rows,
    columns) output pixels (:class:`_RowChunkedConvolution`), written into ``out`` (allocated if None).

    The native kernel's two steps, each chunk and group written in place: the chunk's input pixels are copied
    into a reused buffer (explicit zeros where the image border is: what the kernel writes into its columns
    for implicit padding), unfolded into a reused column buffer (``im2col``) and multiplied by the weights into
    the chunk's output pixels in products of ``_GEMM_BLOCK`` pixels (:func:`_products_in_blocks`). Every
    output pixel is the same sum of the same products in any chunk, so in any tile or band of rows; for up
    to ~1000 inputs per output the results equal the native kernel's (tested). A chunk allocates nothing: the
    buffers stay resident (in the runtime allowance) instead of being allocated and faulted in again for each
    of the many thousand chunks of a photo."""
    rows, cols = shape
    x, weight = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    pad_h, pad_w = (int(v) for v in _pair(args[4] if len(args) > 4 else 0))
    groups = int(args[6]) if len(args) > 6 else 1
    height, width = int(x.shape[2]), int(x.shape[3])
    kh, kw = int(weight.shape[2]), int(weight.shape[3])
    out_h, out_w = height + 2 * pad_h - kh + 1, width + 2 * pad_w - kw + 1
    if out is None:
        out = x.new_empty((1, weight.shape[0], out_h, out_w))
    in_group, out_group = int(weight.shape[1]), int(weight.shape[0]) // groups
    depth = in_group * kh * kw
    pieces, columns = _conv_buffers(x, max(depth * _round_up(rows * cols, _GEMM_BLOCK), out_group * _GEMM_BLOCK))
    weights = weight.reshape(groups, out_group, depth)
    # the chunks' ops need none of the active dispatch modes, which would add Python to each of their calls
    with _disable_current_modes():
        for r0 in range(0, out_h, rows):
            r1 = min(out_h, r0 + rows)
            top, bottom = r0 - pad_h, r1 - pad_h + kh - 1  # input rows [top, bottom) seen by rows [r0, r1)
            for c0 in range(0, out_w, cols):
                c1 = min(out_w, c0 + cols)
                left, right = c0 - pad_w, c1 - pad_w + kw - 1  # input columns seen
                inside = x[0, :, max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
                border = (max(0, -left), max(0, right - width), max(0, -top), max(0, bottom - height))
                n_rows, n_cols, pixels = bottom - top, right - left, (r1 - r0) * (c1 - c0)
                padded = _round_up(pixels, _GEMM_BLOCK)
                unfolded = columns[: depth * padded].view(depth, padded)
                if padded > pixels:  # the last block's spare columns (every group's unfold leaves them): dropped
                    unfolded[:, pixels:].zero_()
                for g in range(groups):
                    piece = pieces[: in_group * n_rows * n_cols].view(in_group, n_rows, n_cols)
                    _zero_border(piece, border)
                    piece[:, border[2] : n_rows - border[3], border[0] : n_cols - border[1]] = inside[
                        g * in_group : (g + 1) * in_group
                    ]
                    # im2col, stride 1: column (c, i, j) of output pixel (y, x) is piece[c, y + i, x + j]
                    shape5 = (in_group, kh, kw, r1 - r0, c1 - c0)
                    columns.as_strided(shape5, (kh * kw * padded, kw * padded, padded, c1 - c0, 1)).copy_(
                        piece.as_strided(shape5, (n_rows * n_cols, n_cols, 1, n_cols, 1))
                    )
                    target = out[0, g * out_group : (g + 1) * out_group, r0:r1, c0:c1].view(out_group, pixels)
                    scratch = pieces[: out_group * _GEMM_BLOCK].view(out_group, _GEMM_BLOCK)  # the piece is done
                    group_bias = None if bias is None else bias[g * out_group : (g + 1) * out_group, None]
                    _products_in_blocks(weights[g], unfolded, group_bias, target, scratch)
    return out


def _products_in_blocks(
    weight: torch.Tensor, columns: torch.Tensor, bias: torch.Tensor | None, target: torch.Tensor, scratch: torch.Tensor
) -> None:
    """``target = weight @ columns[:, :pixels] (+ bias)`` for ``target`` of ``pixels`` columns, as products of
    exactly ``_GEMM_BLOCK`` columns each (``columns`` has a multiple of them; the last block goes through
    ``scratch`` and only its first columns are kept). BLAS's sums depend on the shape of a product (MKL,
    2 threads: from ~1000 inputs per output with few outputs, e.g. EDSR's 256 channels) but not on where a
    column lies in it (tested), so every pixel gets the same sums in any chunk, tile or band."""
    pixels = int(target.shape[1])
    if bias is not None:
        target.copy_(bias.expand_as(target))
    for b0 in range(0, pixels, _GEMM_BLOCK):
        block = columns[:, b0 : b0 + _GEMM_BLOCK]
        whole = b0 + _GEMM_BLOCK <= pixels
        dest = target[:, b0 : b0 + _GEMM_BLOCK] if whole else scratch
        if bias is None:
            torch.mm(weight, block, out=dest)
        else:
            if not whole:
                dest.copy_(bias.expand_as(dest))
            torch.addmm(dest, weight, block, out=dest)
        if not whole:
            target[:, b0:].copy_(scratch[:, : pixels - b0])


def _chunks_in_place(x: torch.Tensor) -> bool:
    """Whether ``x`` is one float image, whose convolutions :func:`_conv2d_chunks` computes in place (else the
    kernel runs them as it is)."""
    return int(x.shape[0]) == 1 and x.dtype in (torch.float32, torch.float64)


def _zero_border(piece: torch.Tensor, border: tuple[int, int, int, int]) -> None:
    """Zero the ``(left, right, top, bottom)`` margins of ``piece`` (channels x rows x columns)."""
    left, right, top, bottom = border
    rows, cols = piece.shape[1], piece.shape[2]
    for margin in (
        piece[:, :top],
        piece[:, rows - bottom :],
        piece[:, top : rows - bottom, :left],
        piece[:, top : rows - bottom, cols - right :],
    ):
        if margin.numel():
            margin.zero_()


_CONV_BUFFERS = threading.local()  # per thread: {(device, dtype): (input pieces, columns)}


def _conv_buffers(x: torch.Tensor, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat buffers of :func:`_conv2d_chunks` for ``x``'s device and dtype, each of ``_CONV_CHUNK_BYTES`` or
    ``columns`` elements if more (a chunk's input pixels, ``(rows + kh - 1)·(cols + kw - 1)`` per channel, never
    outnumber its columns, ``kh·kw·rows·cols``): made once per thread, and again for another chunk size."""
    buffers = _CONV_BUFFERS.__dict__.setdefault("buffers", {})
    key, numel = (x.device, x.dtype), max(columns, _CONV_CHUNK_BYTES // x.element_size())
    if key not in buffers or buffers[key][0].numel() != numel:
        buffers[key] = (x.new_empty(numel), x.new_empty(numel))
    return buffers[key]


def _chunking() -> bool:
    """Whether convolutions run through :class:`_RowChunkedConvolution` now (:func:`size_independent_kernels`)."""
    return any(isinstance(mode, _RowChunkedConvolution) for mode in _get_current_dispatch_mode_stack())


def _conv2d_into(x: torch.Tensor, conv: Conv2dArgs, out: torch.Tensor) -> None:
    """The row streamer's convolution (:data:`~memsr_bench.row_stream.ConvInto`): under
    :func:`size_independent_kernels`, a large CPU one in chunks written straight into the layer's rows ``out`` (in
    a predicted pass on fake tensors: nothing, it allocates nothing); others through
    :func:`~memsr_bench.row_stream.conv2d_into`."""
    args = (x, conv.weight, conv.bias, [1, 1], list(conv.padding), list(conv.dilation), conv.groups)
    fake = isinstance(x, FakeTensor)
    real = type(x) is torch.Tensor and x.is_contiguous()
    shape = _conv_chunk_shape(args) if _chunking() and (real or fake) and x.device.type == "cpu" else None
    if shape is None:
        conv2d_into(x, conv, out)
    elif not fake:  # (a predicted pass: written into ``out`` through the reused buffers, nothing allocated)
        _conv2d_chunks(args, shape, out=out)


class _PositionIndependentActivations(TorchDispatchMode):
    """Evaluates sigmoid, SiLU, GELU, Mish and hard-swish on CPU so that an element's result does not depend on
    where it lies in its tensor.

    Why: ATen's CPU elementwise loop runs a vectorised implementation (SLEEF polynomials) over blocks of
    ``2 x`` the vector width and a scalar one (libm) over the remainder of each thread's chunk, and the two
    differ in the last bit for some 4 % of inputs (sigmoid, SiLU, GELU; measured on torch 2.13, AVX-512; exp,
    tanh and leaky ReLU agree). Which elements fall in a remainder depends on the tensor's size and on how
    ``at::parallel_for`` splits it among threads, so a tile and the whole image computed a few features one
    bit apart, which flipped the uint8 rounding of a few output pixels (SPAN: 6 pixels by 1 on 6 BSD100
    images with 48 px tiles). Here such an op runs, in place on its (contiguous) output, over pieces of
    exactly ``_PIECE`` elements, a multiple of any vector block and no larger than ATen's grain size, so each
    piece runs on one thread without remainder; the last piece is padded with zeros to a multiple of
    ``_BLOCK``. Every element then takes the vectorised path, in tiles and in the whole image alike.
    """

    _PIECE = 32768  # ATen's GRAIN_SIZE: a piece this long is not split among threads
    _BLOCK = 64  # a multiple of 2 x the widest vector (AVX-512: 16 floats)
    _OPS = ("sigmoid", "silu", "gelu", "mish", "hardswish")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        base = name.rstrip("_")
        x = args[0] if args else None
        if (
            base not in self._OPS
            or func._overloadname != "default"
            or len(args) != 1
            or type(x) is not torch.Tensor  # not a fake tensor of a predicted pass: those run as they are
            or x.device.type != "cpu"
            or not x.is_floating_point()
            or not x.is_contiguous()
        ):
            return func(*args, **kwargs)
        inplace = getattr(torch.ops.aten, base + "_").default
        out = x if name.endswith("_") else x.clone()
        flat = out.view(-1)
        full = flat.numel() - flat.numel() % self._PIECE
        for start in range(0, full, self._PIECE):
            inplace(flat[start : start + self._PIECE], **kwargs)
        if full < flat.numel():
            rest = flat[full:]
            padded = torch.zeros(_round_up(rest.numel(), self._BLOCK), dtype=flat.dtype)
            padded[: rest.numel()] = rest
            inplace(padded, **kwargs)
            rest.copy_(padded[: rest.numel()])
        return out


def size_independent_kernels(enabled: bool = True):
    """A context where inference is size-independent per pixel, if ``enabled``.

    * CPU: convolutions use PyTorch's native kernels (oneDNN off), over chunks of output rows when their column
      buffer is large, and those of one float image as the kernel's own im2col and matrix product in reused
      buffers (:class:`_RowChunkedConvolution`); sigmoid-like activations take the vectorised path for every
      element (:class:`_PositionIndependentActivations`).
    * CUDA: cuDNN convolutions in FP32 (no TF32) and not autotuned. Measured on an H200
      (``experiments/cuda_upscale.py``, reports/tiling/cuda_upscale.md): rows and tiles of FMEN-S and CARN-M are
      then bit-identical to whole-image inference under the same setting, while with TF32 (PyTorch's default for
      cuDNN) up to 7.6 % of their pixels differ by one level. Transposed convolutions (FSRCNN) still differ by
      one level in a few pixels per million."""
    import warnings

    if not enabled or _chunking():  # off, or already in force (a second set of modes would only cost time)
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    with warnings.catch_warnings():  # torch warns about TF32 on Intel GPUs when the flags are set
        warnings.simplefilter("ignore", UserWarning)
        stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
    stack.enter_context(_fp32_cudnn())
    stack.enter_context(_PositionIndependentActivations())
    stack.enter_context(_RowChunkedConvolution())
    return stack


@contextlib.contextmanager
def _fp32_cudnn() -> Iterator[None]:
    """cuDNN without TF32 and without autotuning (each algorithm choice then depends on the shape alone)."""
    cudnn = torch.backends.cudnn
    saved = cudnn.allow_tf32, cudnn.benchmark
    cudnn.allow_tf32, cudnn.benchmark = False, False
    try:
        yield
    finally:
        cudnn.allow_tf32, cudnn.benchmark = saved


def _whole_fits(loaded, plan: TilingPlan) -> bool:
    """Whether whole-image inference, its uint8 output and the input fit the plan's budget."""
    costs = _Costs(loaded, _channels(loaded))
    height, width = plan.lr_size
    whole_host = 3 * height * width * (1 + plan.scale**2)
    extra = plan.host_buffers_bytes if plan.stream else 0  # the tiled run's band beside the reference
    left = plan.budget_bytes - plan.runtime_allowance_bytes - whole_host - extra - 3 * height * width * plan.scale**2
    return costs.total(height, width) <= left
