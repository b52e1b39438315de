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
from functools import lru_cache
from typing import Literal

import numpy as np

Border = Literal["symmetric", "replicate"]
Intermediate = Literal["uint8", "float64"]
BORDERS: tuple[str, ...] = ("symmetric", "replicate")


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (absx > 1) & (absx <= 2)
    )


@lru_cache(maxsize=64)
def resize_contributions(
    in_length: int, out_length: int, scale: float, border: Border
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out x taps, float64) and 0-based input indices (out x taps) of one 1-D resize.

    Cached: a data set reuses a handful of (length, scale) pairs over and over.
    """
    if border not in BORDERS:
        raise ValueError(f"border must be one of {BORDERS}, not {border!r}")
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width = kernel_width / scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    distance = u[:, None] - indices
    weights = scale * cubic_kernel(scale * distance) if antialias else cubic_kernel(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    indices = indices.astype(np.int64) - 1  # 0-based
    if border == "symmetric":
        # MATLAB: aux = [1:n, n:-1:1]; idx = aux(mod(idx-1, 2n) + 1)
        period = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
        indices = period[np.mod(indices, 2 * in_length)]
    else:
        indices = np.clip(indices, 0, in_length - 1)
    keep = np.any(weights != 0, axis=0)
    weights = np.ascontiguousarray(weights[:, keep])
    indices = np.ascontiguousarray(indices[:, keep])
    weights.flags.writeable = False
    indices.flags.writeable = False
    return weights, indices


def _round_to_uint8(values: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8: round half away from zero (values are >= 0 after clipping), saturate."""
    return np.floor(np.clip(values, 0, 255) + 0.5).astype(np.uint8)


def _resize_axis0(image: np.ndarray, out_length: int, scale: float, border: Border) -> np.ndarray:
    """Resize along axis 0 of a float64 array of shape (N, M): out[i] = sum_k w[i,k] * image[idx[i,k]]."""
    weights, indices = resize_contributions(image.shape[0], out_length, scale, border)
    out = np.empty((out_length, image.shape[1]), dtype=np.float64)
    gathered = np.empty_like(out)
    # Loop over the few taps, vectorised over every output line: same summation order as MATLAB.
    np.take(image, indices[:, 0], axis=0, out=out)
    out *= weights[:, :1]
    for tap in range(1, weights.shape[1]):
        np.take(image, indices[:, tap], axis=0, out=gathered)
        gathered *= weights[:, tap : tap + 1]
        out += gathered
    return out


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

    # Pass 1 (rows, i.e. along H): the image as (H, W*C) so each tap is one contiguous row gather.
    rows = _resize_axis0(img.reshape(height, width * channels).astype(np.float64), out_height, scale, border)
    if intermediate == "uint8":
        rows = _round_to_uint8(rows).astype(np.float64)
    # Pass 2 (columns): transpose to (W, out_H*C) so the taps are again contiguous row gathers.
    by_column = rows.reshape(out_height, width, channels).transpose(1, 0, 2).reshape(width, -1)
    cols = _resize_axis0(np.ascontiguousarray(by_column), out_width, scale, border)
    out = cols.reshape(out_width, out_height, channels).transpose(1, 0, 2)
    out = _round_to_uint8(out)
    return np.ascontiguousarray(out if img.ndim == 3 else out[:, :, 0])
