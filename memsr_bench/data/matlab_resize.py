"""MATLAB-exact bicubic ``imresize`` for uint8 images (the function that made the SR test LR files).

Algorithm of MATLAB's ``imresize(img, scale, 'bicubic')``:
- cubic kernel with a = -0.5; when shrinking (scale < 1) the kernel is widened by 1/scale
  (antialiasing, 4/scale input pixels wide); when enlarging it is the plain 4-tap kernel;
- output pixel x (1-based) maps to input u = x/scale + 0.5*(1 - 1/scale); taps
  floor(u - width/2) + 0..ceil(width)+1, weights normalised to sum 1, all-zero taps dropped;
- out-of-range taps are mirrored (``border="symmetric"``, MATLAB, EDSR's ``LR_bicubic`` pack) or
  clamped (``border="replicate"``, SelfExSR / RCAN's ``LR_bicubic_rcan``);
- one dimension at a time, rows first for equal scales; uint8 input gives uint8 after each pass
  (rounded half away from zero, saturated), which is what MATLAB does for uint8 and what the
  X2/X3/X4 files show. The X8 files keep full precision between passes:
  ``intermediate="float64"``.

All arithmetic is float64 in MATLAB's tap order so that every rounding matches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

Border = Literal["symmetric", "replicate"]
Intermediate = Literal["uint8", "float64"]
BORDERS: tuple[str, ...] = ("symmetric", "replicate")
_FLOAT32_TIE_MARGIN = 1e-3  # > 2x the worst float32 error of a <= 18-tap sum of 0..255 values


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (absx > 1) & (absx <= 2)
    )


@lru_cache(maxsize=64)
def _unfolded_contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out x taps) and 0-based input positions before border handling (may be < 0 or >= n).

    Taps whose weight is zero for every output are dropped, as MATLAB does.
    """
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    positions = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    distance = u[:, None] - positions
    weights = scale * cubic_kernel(scale * distance) if antialias else cubic_kernel(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    keep = np.any(weights != 0, axis=0)
    return np.ascontiguousarray(weights[:, keep]), np.ascontiguousarray(positions[:, keep].astype(np.int64) - 1)


def _apply_border(positions: np.ndarray, in_length: int, border: Border) -> np.ndarray:
    """Map out-of-range positions into 0..n-1: mirrored (MATLAB) or clamped (replicate)."""
    if border == "symmetric":
        # MATLAB: aux = [1:n, n:-1:1]; idx = aux(mod(idx-1, 2n) + 1)
        mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
        return mirror[np.mod(positions, 2 * in_length)]
    return np.clip(positions, 0, in_length - 1)


@lru_cache(maxsize=64)
def resize_contributions(
    in_length: int, out_length: int, scale: float, border: Border
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out x taps, float64) and 0-based input indices (out x taps) of one 1-D resize.

    Cached: a data set reuses a handful of (length, scale) pairs over and over.
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, not {border!r}")
    weights, positions = _unfolded_contributions(in_length, out_length, scale)
    indices = _apply_border(positions, in_length, border)
    weights.flags.writeable = False
    indices.flags.writeable = False
    return weights, indices


def _round_to_uint8(values: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8: round half away from zero (values are >= 0 after clipping), saturate."""
    return np.floor(np.clip(values, 0, 255) + 0.5).astype(np.uint8)


def _resize_last_axis_exact(lines: np.ndarray, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """out[..., i] = sum_k w[i, k] * lines[..., idx[i, k]] in float64, taps summed in MATLAB's order."""
    out = lines[..., indices[:, 0]] * weights[:, 0]
    for tap in range(1, weights.shape[1]):
        out += lines[..., indices[:, tap]] * weights[:, tap]
    return out


@dataclass(frozen=True)
class _BandedPlan:
    """A 1-D resize as one small dense matrix applied to overlapping windows of a padded line.

    For a rational scale p/q the taps of output i + p are those of output i shifted by q input
    pixels (MATLAB's weights depend only on i mod p). A block of ``block`` outputs (a multiple of
    p) therefore reads a window of ``window`` consecutive padded pixels through the same
    ``window x block`` matrix, and consecutive blocks start ``block_step`` pixels apart: one
    batched float32 matmul does the whole pass.
    """

    kernel: torch.Tensor  # block x window, float32
    window: int
    # Per block: the first input row when its window is a contiguous run of rows (most blocks),
    # else the row indices (mirrored / clamped borders).
    block_sources: tuple[int | torch.Tensor, ...]


_OUTPUTS_PER_BLOCK = 16  # small blocks keep the banded matrix mostly non-zero


@lru_cache(maxsize=64)
def _banded_plan(in_length: int, out_length: int, scale: float, border: Border) -> _BandedPlan | None:
    """The plan above, or None when the scale has no small period (the exact path is used then)."""
    weights, positions = _unfolded_contributions(in_length, out_length, scale)
    period = next((p for p in range(1, 17) if abs(p / scale - round(p / scale)) < 1e-9), None)
    if period is None:
        return None
    stride = round(period / scale)
    left = positions[:, 0]
    offsets = positions - left[:, None]  # not always 0..taps-1: MATLAB drops all-zero taps, even inner ones
    if not (np.all(left[period:] - left[:-period] == stride) and np.all(offsets == offsets[0])):
        return None
    block = period * max(1, _OUTPUTS_PER_BLOCK // period)
    if out_length < block:
        return None
    block_step = (block // period) * stride
    window = int(left[block - 1] - left[0] + offsets[0, -1]) + 1
    matrix = np.zeros((window, block), dtype=np.float32)
    for i in range(block):
        matrix[left[i] - left[0] + offsets[0], i] = weights[i]
    n_blocks = -(-out_length // block)
    padded_positions = np.arange(left[0], left[0] + (n_blocks - 1) * block_step + window)
    gather = _apply_border(padded_positions, in_length, border)
    sources = []
    for b in range(n_blocks):
        rows = gather[b * block_step : b * block_step + window]
        contiguous = rows[0] + window <= in_length and np.array_equal(rows, np.arange(rows[0], rows[0] + window))
        sources.append(int(rows[0]) if contiguous else torch.from_numpy(np.ascontiguousarray(rows)))
    return _BandedPlan(torch.from_numpy(matrix.T.copy()), window, tuple(sources))


def _resize_axis0_uint8(lines: torch.Tensor, out_length: int, scale: float, border: Border) -> torch.Tensor:
    """Resize ``lines`` (L x M, uint8 or float32 holding integers 0..255) along axis 0 to ``out_length``,
    rounded to uint8 exactly as MATLAB's double arithmetic would (returned as float32 integers).

    Fast path: per block of outputs one float32 matmul (block x window) @ (window x M) on
    contiguous input rows; its error is < 4e-4 for sums of <= 18 taps of 0..255 values. Only
    outputs within ``_FLOAT32_TIE_MARGIN`` of a rounding boundary (x.5) could round differently
    from float64; those few are recomputed in float64 with MATLAB's tap order.
    """
    in_length = lines.shape[0]
    weights, indices = resize_contributions(in_length, out_length, scale, border)
    plan = _banded_plan(in_length, out_length, scale, border)
    if plan is None:
        exact = _resize_last_axis_exact(lines.numpy().T.astype(np.float64), weights, indices).T
        return torch.from_numpy(np.ascontiguousarray(_round_to_uint8(exact), dtype=np.float32))
    block = plan.kernel.shape[0]
    values = torch.empty((len(plan.block_sources) * block, lines.shape[1]), dtype=torch.float32)
    # uint8 input is converted one window at a time into a small reused buffer that stays in cache,
    # instead of a float copy of the whole image.
    window_buffer = torch.empty((plan.window, lines.shape[1]), dtype=torch.float32)
    for b, rows in enumerate(plan.block_sources):
        if isinstance(rows, int):
            source = lines[rows : rows + plan.window]  # interior block: a contiguous slice, no copy
        else:
            source = lines.index_select(0, rows)  # border block: mirrored / clamped rows
        if source.dtype != torch.float32:
            source = window_buffer.copy_(source)
        torch.matmul(plan.kernel, source, out=values[b * block : (b + 1) * block])
    values = values[:out_length]
    rounded = torch.round(values)  # half to even, but exact halves are near ties and recomputed below
    # |value - rounded| is 0.5 - e for a value e away from a tie (x.5): near ties it is ~0.5.
    distance = values.sub_(rounded).abs_()
    outs, cols = (t.numpy() for t in torch.nonzero(distance > 0.5 - _FLOAT32_TIE_MARGIN, as_tuple=True))
    rounded.clamp_(0, 255)
    if outs.size:
        taps = lines.numpy()[indices[outs], cols[:, None]].astype(np.float64) * weights[outs]  # exact ints
        total = taps[:, 0].copy()
        for tap in range(1, taps.shape[1]):  # left to right, as MATLAB sums them
            total += taps[:, tap]
        rounded[outs, cols] = torch.from_numpy(_round_to_uint8(total).astype(np.float32))
    return rounded


def output_size(in_length: int, scale: float) -> int:
    """MATLAB's output length ``ceil(scale * in)``, guarded against 1/3-style float error."""
    return math.ceil(round(in_length * scale, 9))


def imresize(
    img: np.ndarray,
    scale: float,
    border: Border = "symmetric",
    intermediate: Intermediate = "uint8",
) -> np.ndarray:
    """MATLAB-exact bicubic resize of a uint8 image (H x W or H x W x C) by ``scale``.

    ``scale`` < 1 shrinks with antialiasing (e.g. 1/4 for x4 LR), > 1 enlarges without it.
    ``border`` is "symmetric" (MATLAB) or "replicate" (SelfExSR / RCAN LR files).
    ``intermediate`` "uint8" rounds after the first pass as MATLAB does for uint8 input;
    "float64" keeps full precision between the passes (the Set5 X8 files).
    Returns uint8 of size ceil(scale * H) x ceil(scale * W) (x C).
    """
    if img.dtype != np.uint8:
        raise TypeError(f"imresize expects a uint8 image, got {img.dtype}")
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects H x W or H x W x C, got shape {img.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if intermediate not in ("uint8", "float64"):
        raise ValueError(f"intermediate must be 'uint8' or 'float64', not {intermediate!r}")
    height, width = img.shape[:2]
    out_height, out_width = output_size(height, scale), output_size(width, scale)
    channels = img.shape[2] if img.ndim == 3 else 1
    if intermediate == "float64":
        # Full precision between passes (X8 files): plain float64 taps throughout.
        planes = (img[:, :, None] if img.ndim == 2 else img).transpose(2, 1, 0).astype(np.float64)  # C x W x H
        w_h, i_h = resize_contributions(height, out_height, scale, border)
        w_w, i_w = resize_contributions(width, out_width, scale, border)
        rows = _resize_last_axis_exact(planes, w_h, i_h).transpose(0, 2, 1)  # C x outH x W
        out = _round_to_uint8(_resize_last_axis_exact(rows, w_w, i_w)).transpose(1, 2, 0)
    else:
        # Rows first (MATLAB's order for equal scales), rounded to uint8 after each pass as MATLAB
        # does for uint8 images. Each pass resizes axis 0 of a 2-D (length x everything-else) array.
        writable = img if img.flags.writeable else img.copy()  # torch wants writable buffers
        pixels = torch.from_numpy(writable).reshape(height, width * channels)
        rows = _resize_axis0_uint8(pixels, out_height, scale, border)  # outH x (W*C)
        by_column = rows.reshape(out_height, width, channels).transpose(0, 1).reshape(width, -1).contiguous()
        cols = _resize_axis0_uint8(by_column, out_width, scale, border)  # outW x (outH*C)
        out_u8 = cols.to(torch.uint8).reshape(out_width, out_height, channels)
        out = out_u8.transpose(0, 1).contiguous().numpy()
    return np.ascontiguousarray(out if img.ndim == 3 else out[:, :, 0])
