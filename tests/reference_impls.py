"""Straightforward float64 NumPy reference implementations: test oracles and benchmark baselines.

They follow MATLAB's imresize and ssim_index.m line by line (one output line at a time), with no
attempt at speed, so that the fast implementations in memsr_bench can be checked against them.
"""

from __future__ import annotations

import math

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    return np.where(
        absx <= 1,
        1.5 * absx**3 - 2.5 * absx**2 + 1,
        np.where(absx <= 2, -0.5 * absx**3 + 2.5 * absx**2 - 4 * absx + 2, 0.0),
    )


def contributions(in_len: int, out_len: int, scale: float, border: str) -> tuple[np.ndarray, np.ndarray]:
    width = 4.0 / scale if scale < 1 else 4.0
    weights, indices = [], []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        idx = np.arange(left, left + math.ceil(width) + 2)
        w = scale * cubic(scale * (u - idx)) if scale < 1 else cubic(u - idx)
        weights.append(w / w.sum())
        idx0 = idx - 1
        if border == "symmetric":
            mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
            idx0 = mirror[np.mod(idx0, 2 * in_len)]
        else:
            idx0 = np.clip(idx0, 0, in_len - 1)
        indices.append(idx0)
    weights_arr, indices_arr = np.array(weights), np.array(indices)
    keep = np.any(weights_arr != 0, axis=0)
    return weights_arr[:, keep], indices_arr[:, keep]


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(values, 0, 255) + 0.5).astype(np.uint8)


def imresize_reference(
    img: np.ndarray,
    scale: float,
    border: str = "symmetric",
    round_between: bool = True,
    contributions_fn=contributions,
):
    """MATLAB bicubic imresize, one output row / column and channel at a time (BasicSR style).

    ``contributions_fn`` computes the weights; the speed benchmark passes memsr-bench's cached one
    so that only the resampling itself is compared.
    """
    squeeze = img.ndim == 2
    x = img[:, :, None] if squeeze else img
    h, w, c = x.shape
    oh, ow = math.ceil(round(h * scale, 9)), math.ceil(round(w * scale, 9))
    wh, ih = contributions_fn(h, oh, scale, border)
    ww, iw = contributions_fn(w, ow, scale, border)
    src = x.astype(np.float64)
    rows = np.empty((oh, w, c))
    for i in range(oh):
        for ch in range(c):
            rows[i, :, ch] = wh[i] @ src[ih[i], :, ch]
    if round_between:
        rows = to_uint8(rows).astype(np.float64)
    out = np.empty((oh, ow, c))
    for j in range(ow):
        for ch in range(c):
            out[:, j, ch] = rows[:, iw[j], ch] @ ww[j]
    out = to_uint8(out)
    return out[:, :, 0] if squeeze else out


def psnr_reference(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


def y_reference(img: np.ndarray, rounded: bool) -> np.ndarray:
    """BT.601 Y written out as MATLAB's rgb2ycbcr (uint8 path) computes it, pixel by pixel."""
    t_r, t_g, t_b = (1 / 255) * 65.481, (1 / 255) * 128.553, (1 / 255) * 24.966
    out = np.empty(img.shape[:2])
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            r, g, b = (float(v) for v in img[i, j])
            y = t_r * r + t_g * g + t_b * b + 16.0
            out[i, j] = math.floor(y + 0.5) if rounded else y
    return out
