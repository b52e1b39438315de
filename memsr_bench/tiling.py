"""Tiled upscaling within a memory budget: uint8 image in, uint8 image out, only tiles on the device.

How the budget (``max_memory_bytes``) is split, all of it counted in bytes:

* ``RUNTIME_ALLOWANCE_BYTES`` (256 MiB): a fixed allowance for what the runtime itself holds. Measured
  once: the process RSS right after ``import torch, numpy, PIL, memsr_bench.model, zoo`` on Linux x86-64
  with torch 2.13 CPU was 220 MiB (``VmRSS`` 225,884 kB); 256 MiB rounds it up. It is not re-measured.
* the host buffers: the uint8 LR input (``3·H·W``) and the uint8 SR output (``3·sH·sW``), held whole;
* one tile at a time: its predicted tensor peak (:func:`~memsr_bench.measure.memory_model.predict_peak_memory`,
  weights and input included) plus its host-side conversion temporaries (``ModelUpscaler``: float64 and
  float32 copies of the LR tile, float32 copies of the SR tile before rounding, and for Y-only models the
  float64 YCbCr planes of the bicubic chroma), estimated as ``_HOST_LR_BYTES`` per LR tile pixel and
  channel plus ``_HOST_SR_BYTES`` (``_HOST_SR_BYTES_Y`` for Y-only models) per SR tile pixel.

The tile size is the largest square core (a multiple of the model's grid) whose padded tile
(core + 2·halo, clipped at the image) fits what is left after the first two items; the peak-vs-size
model (:func:`~memsr_bench.measure.memory_model.peak_vs_input_size`) gives the first guess and each
candidate is checked by prediction. A budget where even a 16x16 core does not fit is refused.

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
CUDA kernels (cuDNN) are not covered by that check.
For Y-only models the bicubic chroma (4-tap kernel) is computed per tile with a halo of at least
``_BICUBIC_HALO`` LR pixels. Other models (not local, or size-dependent) are tiled with overlapping
tiles and a halo of at least ``APPROX_HALO`` LR pixels (best approximation); the plan says so, and when
the whole image fits the budget the deviation from whole-image inference is measured.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.receptive_field import ReceptiveField, receptive_field
from memsr_bench.units import format_bytes

__all__ = [
    "APPROX_HALO",
    "MIN_TILE",
    "RUNTIME_ALLOWANCE_BYTES",
    "TilingPlan",
    "native_cpu_kernels",
    "plan_tiling",
    "tile_budget",
    "upscale_image",
]

RUNTIME_ALLOWANCE_BYTES = 256 * 2**20  # measured RSS after importing torch & co: 220 MiB, rounded up
MIN_TILE = 16  # LR pixels: the smallest tile core accepted
APPROX_HALO = 32  # LR pixels: the least halo for models whose tiles are not exact
_BICUBIC_HALO = 4  # LR pixels: the chroma of Y-only models (MATLAB bicubic, 4 taps, mirrored borders)
_HOST_LR_BYTES = 16  # per LR tile pixel and input channel: float64 planes, float32 copy, scaled copy
_HOST_SR_BYTES = 3 * 20  # per SR tile pixel (RGB): float32 output, rescaled, clamped, rounded, uint8
_HOST_SR_BYTES_Y = 3 * 56  # per SR tile pixel (Y-only): plus the bicubic chroma and float64 YCbCr planes


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
    host_buffers_bytes: int
    tile_peak_bytes: int  # predicted tensor peak of the largest padded tile, weights included
    tile_host_bytes: int  # host temporaries of the largest padded tile
    deviation: dict[str, float] | None = None  # approximate mode: vs whole-image inference, if measured
    deviation_note: str | None = None
    seconds: float | None = None

    @property
    def total_bytes(self) -> int:
        return self.runtime_allowance_bytes + self.host_buffers_bytes + self.tile_peak_bytes + self.tile_host_bytes

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"total_bytes": self.total_bytes}

    def describe(self) -> str:
        mode = "exact" if self.exact else "approximate"
        return (
            f"{self.model} x{self.scale}: LR {self.lr_size[0]}x{self.lr_size[1]} in {self.n_tiles} tile(s) of "
            f"{self.tile[0]}x{self.tile[1]} + halo {self.halo} (grid {self.grid}, {mode}); "
            f"{format_bytes(self.total_bytes)} of {format_bytes(self.budget_bytes)}"
        )


def _channels(loaded) -> int:
    return 1 if loaded.entry.spec.channels == "y" else 3


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class _Costs:
    """Predicted bytes of a padded tile ``(h, w)``: tensor peak and host temporaries (memoised)."""

    def __init__(self, loaded, channels: int):
        self.module = loaded.module
        self.scale = loaded.scale
        self.channels = channels
        self.sr_bytes = _HOST_SR_BYTES_Y if channels == 1 else _HOST_SR_BYTES
        self.cache: dict[tuple[int, int], int] = {}

    def peak(self, h: int, w: int) -> int:
        from memsr_bench.measure.memory_model import predict_peak_memory

        if (h, w) not in self.cache:
            self.cache[(h, w)] = predict_peak_memory(self.module, (1, self.channels, h, w)).peak_bytes
        return self.cache[(h, w)]

    def host(self, h: int, w: int) -> int:
        return h * w * self.channels * _HOST_LR_BYTES + h * w * self.scale**2 * self.sr_bytes

    def total(self, h: int, w: int) -> int:
        return self.peak(h, w) + self.host(h, w)


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


def _padded(core: int, halo: int, height: int, width: int) -> tuple[int, int]:
    return min(height, min(core, height) + 2 * halo), min(width, min(core, width) + 2 * halo)


def tile_budget(loaded, lr_size: tuple[int, int], core: int, rf: ReceptiveField | None = None) -> int:
    """The ``max_memory_bytes`` at which :func:`plan_tiling` can choose an LR tile core of ``core`` pixels
    (rounded up to the model's grid) for an image of ``lr_size``: runtime allowance + uint8 host buffers +
    the padded tile's predicted peak and host temporaries."""
    channels = _channels(loaded)
    if rf is None:
        rf = receptive_field(loaded.module, loaded.scale, name=loaded.name, channels=channels)
    grid, halo, _, _ = _halo(rf, channels)
    height, width = (int(v) for v in lr_size)
    padded = _padded(_round_up(core, grid), halo, height, width)
    return (
        RUNTIME_ALLOWANCE_BYTES + 3 * height * width * (1 + loaded.scale**2) + _Costs(loaded, channels).total(*padded)
    )


def plan_tiling(
    loaded,
    lr_size: tuple[int, int],
    max_memory_bytes: int,
    rf: ReceptiveField | None = None,
) -> TilingPlan:
    """The tiling of an LR image of ``lr_size`` (H, W) for ``loaded`` (a :class:`~memsr_bench.model.LoadedModel`)
    within ``max_memory_bytes``; ``rf`` is its receptive field (analysed here if not given).

    Raises :class:`MemsrInputError` if the budget does not hold even a 16x16 tile.
    """
    height, width = (int(v) for v in lr_size)
    channels = _channels(loaded)
    if rf is None:
        rf = receptive_field(loaded.module, loaded.scale, name=loaded.name, channels=channels)
    grid, halo, exact, reason = _halo(rf, channels)
    host_buffers = 3 * height * width * (1 + loaded.scale**2)
    left = max_memory_bytes - RUNTIME_ALLOWANCE_BYTES - host_buffers
    costs = _Costs(loaded, channels)

    def padded(core: int) -> tuple[int, int]:
        return _padded(core, halo, height, width)

    def fits(core: int) -> bool:
        return left > 0 and costs.total(*padded(core)) <= left

    smallest = _round_up(MIN_TILE, grid)
    if not fits(smallest):
        need = RUNTIME_ALLOWANCE_BYTES + host_buffers + costs.total(*padded(smallest))
        raise MemsrInputError(
            "--max-memory",
            f"{format_bytes(max_memory_bytes)} does not hold even a {smallest}x{smallest} tile of {loaded.name} "
            f"x{loaded.scale} on a {height}x{width} image (needs {format_bytes(need)}: runtime allowance "
            f"{format_bytes(RUNTIME_ALLOWANCE_BYTES)} + uint8 input/output {format_bytes(host_buffers)} + tile)",
        )
    whole = _round_up(max(height, width), grid)
    if fits(whole):
        core = whole
    else:  # first guess from the affine fit of the padded tile's cost, then step to the largest that fits
        a, b = costs.total(*padded(smallest)), costs.total(*padded(2 * smallest))
        pa, pb = padded(smallest), padded(2 * smallest)
        xa, xb = pa[0] * pa[1], pb[0] * pb[1]
        slope = (b - a) / max(xb - xa, 1)
        side = math.sqrt(max(left - (a - slope * xa), 0) / slope) if slope > 0 else whole
        core = max(smallest, min(whole, (int(side) - 2 * halo) // grid * grid))
        while core > smallest and not fits(core):
            core -= grid
        while core + grid < whole and fits(core + grid):
            core += grid
    tile = (min(core, height), min(core, width))
    n_tiles = math.ceil(height / tile[0]) * math.ceil(width / tile[1])
    ph, pw = padded(core)
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
        host_buffers_bytes=host_buffers,
        tile_peak_bytes=costs.peak(ph, pw),
        tile_host_bytes=costs.host(ph, pw),
    )


def _tiles(plan: TilingPlan):
    """(core box, padded box) in LR pixels, ``(y0, y1, x0, x1)``, row-major."""
    height, width = plan.lr_size
    th, tw = plan.tile
    for y0 in range(0, height, th):
        for x0 in range(0, width, tw):
            y1, x1 = min(y0 + th, height), min(x0 + tw, width)
            yield (
                (y0, y1, x0, x1),
                (
                    max(0, y0 - plan.halo),
                    min(height, y1 + plan.halo),
                    max(0, x0 - plan.halo),
                    min(width, x1 + plan.halo),
                ),
            )


def _deviation(sr: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    diff = np.abs(sr.astype(np.int16) - ref.astype(np.int16))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "fraction_differing": float(np.mean(diff.max(axis=2) > 0)),
        "psnr_db": float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse),
    }


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
) -> tuple[np.ndarray, TilingPlan]:
    """Upscale ``lr_uint8`` (H x W x 3 uint8 RGB) with ``loaded_model`` tile by tile within ``max_memory_bytes``.

    Input and output stay uint8 numpy arrays on the host; only tiles go to ``device``. Returns
    ``(sr_uint8, plan)``. For models whose tiles are not exact (``plan.exact`` False), the whole image
    is also upscaled and compared (``plan.deviation``) when ``compare`` and it fits the budget;
    otherwise ``plan.deviation_note`` says it was not measured. ``progress`` shows a tqdm bar over tiles.
    ``native_kernels`` (CPU): run without oneDNN, whose arithmetic depends on the tile size (module docstring).
    """

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
    with native_cpu_kernels(native_kernels):
        return _upscale(loaded_model, lr_uint8, max_memory_bytes, device, rf, progress, compare)


def native_cpu_kernels(enabled: bool = True):
    """A context where CPU convolutions use PyTorch's native kernels (oneDNN off), if ``enabled``."""
    import contextlib
    import warnings

    if not enabled:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    with warnings.catch_warnings():  # torch warns about TF32 on Intel GPUs when the flags are set
        warnings.simplefilter("ignore", UserWarning)
        stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
    return stack


def _upscale(loaded_model, lr_uint8, max_memory_bytes, device, rf, progress, compare):
    from zoo.upscaler import ModelUpscaler

    start = time.perf_counter()
    plan = plan_tiling(loaded_model, lr_uint8.shape[:2], max_memory_bytes, rf)
    spec = loaded_model.entry.spec
    run = ModelUpscaler(
        loaded_model.module,
        spec,
        loaded_model.scale,
        device,
        name=loaded_model.name,
        fingerprint=loaded_model.fingerprint or "-",
    )
    s = plan.scale
    height, width = plan.lr_size
    sr = np.empty((height * s, width * s, 3), dtype=np.uint8)
    boxes = list(_tiles(plan))
    if progress:
        from tqdm import tqdm

        boxes = tqdm(boxes, desc=f"{plan.model} tiles", unit="tile", leave=False)
    for (y0, y1, x0, x1), (py0, py1, px0, px1) in boxes:
        out = run(np.ascontiguousarray(lr_uint8[py0:py1, px0:px1]))
        sr[y0 * s : y1 * s, x0 * s : x1 * s] = out[(y0 - py0) * s : (y1 - py0) * s, (x0 - px0) * s : (x1 - px0) * s]
        del out
    deviation, note = None, None
    if not plan.exact:
        whole = _whole_fits(loaded_model, plan)
        if compare and whole:
            deviation = _deviation(sr, run(lr_uint8))
        else:
            note = "not measured: the whole image does not fit the budget" if compare else "not measured"
    seconds = time.perf_counter() - start
    return sr, _replace(plan, deviation=deviation, deviation_note=note, seconds=seconds)


def _whole_fits(loaded, plan: TilingPlan) -> bool:
    costs = _Costs(loaded, _channels(loaded))
    height, width = plan.lr_size
    left = (
        plan.budget_bytes - plan.runtime_allowance_bytes - plan.host_buffers_bytes - 3 * height * width * plan.scale**2
    )
    return costs.total(height, width) <= left


def _replace(plan: TilingPlan, **changes: Any) -> TilingPlan:
    from dataclasses import replace

    return replace(plan, **changes)
