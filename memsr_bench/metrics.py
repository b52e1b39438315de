"""PSNR and SSIM with the conventions of the SR papers, named in every signature.

Conventions (see ``../shared/datasets/README.md``):
- inputs are uint8 RGB images H x W x 3 (SR already rounded to uint8, HR modcropped), or 2-D
  arrays that are already the channel to compare;
- ``channel="y"``: BT.601 luma, ``y_variant="float"`` (unrounded, the default: reproduces the
  published numbers of modern methods) or ``"rounded"`` (MATLAB ``rgb2ycbcr`` on uint8);
  ``channel="rgb"``: all three channels (NTIRE style; SSIM is the mean over channels);
- ``crop_border`` pixels are removed from every side before comparing (the scale, in the papers;
  4 in NTIRE 2022);
- PSNR in float64 with peak 255; SSIM exactly as Wang et al.'s ``ssim_index.m``: 11x11 Gaussian
  window with sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering, mean of the map.

SSIM runs in float64 with the Gaussian applied separably over bands of rows in parallel threads,
several times faster than scikit-image while agreeing with it to ~1e-15.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from memsr_bench.color import YVariant, rgb_to_y

Channel = Literal["y", "rgb"]
CHANNELS: tuple[str, ...] = ("y", "rgb")

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2, SSIM_PEAK = 0.01, 0.03, 255.0
_SSIM_BAND_ROWS = 64  # rows per thread job: the moment maps of a band stay in cache


@dataclass(frozen=True)
class QualityConvention:
    """How a PSNR/SSIM number was computed; ``str()`` is the short name printed beside results."""

    channel: Channel = "y"
    y_variant: YVariant = "float"
    crop_border: int = 0

    def __str__(self) -> str:
        what = f"Y ({self.y_variant}, BT.601)" if self.channel == "y" else "RGB"
        return f"{what}, crop {self.crop_border}, PSNR peak 255, SSIM ssim_index.m (gaussian 11/1.5)"


def _channels_to_compare(img: np.ndarray, channel: Channel, y_variant: YVariant) -> np.ndarray:
    """The float64 planes (C x H x W) that PSNR/SSIM compare."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {CHANNELS}, not {channel!r}")
    if img.ndim == 2:
        return np.asarray(img, dtype=np.float64)[None]  # no copy when already float64
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 RGB or an H x W plane, got shape {img.shape}")
    if channel == "y":
        return rgb_to_y(img, y_variant)[None]
    return img.astype(np.float64).transpose(2, 0, 1)


def _prepare_pair(
    sr: np.ndarray, hr: np.ndarray, crop_border: int, channel: Channel, y_variant: YVariant
) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR shapes differ: {sr.shape} vs {hr.shape}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    a = _channels_to_compare(sr, channel, y_variant)
    b = _channels_to_compare(hr, channel, y_variant)
    if crop_border:
        a = a[:, crop_border:-crop_border, crop_border:-crop_border]
        b = b[:, crop_border:-crop_border, crop_border:-crop_border]
    if a.shape[1] == 0 or a.shape[2] == 0:
        raise ValueError(f"nothing left to compare after cropping {crop_border} px from {sr.shape[:2]}")
    return a, b


def _psnr_planes(a: np.ndarray, b: np.ndarray) -> float:
    diff = (a - b).ravel()
    # einsum's own loop, not BLAS: idle BLAS threads would spin against the SSIM threads.
    mse = float(np.einsum("i,i->", diff, diff)) / diff.size
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(SSIM_PEAK**2 / mse)


@lru_cache(maxsize=1)
def _gaussian_1d() -> np.ndarray:
    """The 1-D factor of MATLAB's ``fspecial('gaussian', 11, 1.5)`` (normalised), float64."""
    offsets = np.arange(SSIM_WINDOW, dtype=np.float64) - (SSIM_WINDOW - 1) / 2
    g = np.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


@lru_cache(maxsize=1)
def _thread_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="memsr-ssim")


def _ssim_map_sum(x: np.ndarray, y: np.ndarray) -> float:
    """Sum of the SSIM map of two float64 planes, 'valid' region (ssim_index.m formula)."""
    g = _gaussian_1d()
    # Only sums are needed: sigma_x^2 + sigma_y^2 and sigma_xy, so four moment maps suffice.
    moments = np.empty((4, *x.shape))
    moments[0], moments[1] = x, y
    np.multiply(x, x, out=moments[2])
    moments[2] += y * y
    np.multiply(x, y, out=moments[3])
    # Separable 'valid' Gaussian: einsum over sliding windows runs in C without temporaries.
    rows = np.einsum("bijk,k->bij", sliding_window_view(moments, SSIM_WINDOW, axis=1), g)
    mu_x, mu_y, sq, xy = np.einsum("bijk,k->bij", sliding_window_view(rows, SSIM_WINDOW, axis=2), g)
    c1 = (SSIM_K1 * SSIM_PEAK) ** 2
    c2 = (SSIM_K2 * SSIM_PEAK) ** 2
    # ((2 mu_xy + c1)(2 (xy - mu_xy) + c2)) / ((mu_sq + c1)(sq - mu_sq + c2)), in place.
    mu_xy = mu_x * mu_y
    mu_sq = mu_x * mu_x
    mu_sq += mu_y * mu_y
    xy -= mu_xy
    xy *= 2
    xy += c2
    mu_xy *= 2
    mu_xy += c1
    mu_xy *= xy
    sq -= mu_sq
    sq += c2
    mu_sq += c1
    mu_sq *= sq
    mu_xy /= mu_sq
    return float(mu_xy.sum())


def _ssim_planes(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over planes (C x H x W float64), ``ssim_index.m`` with 'valid' filtering."""
    height, width = a.shape[1:]
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape[1:]}")
    out_height = height - SSIM_WINDOW + 1
    # Bands of output rows (with their 10-row halo) run in parallel threads: numpy releases the GIL.
    band = _SSIM_BAND_ROWS
    jobs = [
        (
            a[c, r : min(r + band, out_height) + SSIM_WINDOW - 1],
            b[c, r : min(r + band, out_height) + SSIM_WINDOW - 1],
        )
        for c in range(a.shape[0])
        for r in range(0, out_height, band)
    ]
    if len(jobs) == 1:
        total = _ssim_map_sum(*jobs[0])
    else:
        total = sum(_thread_pool().map(lambda job: _ssim_map_sum(*job), jobs))
    # Plane means averaged = total / (planes * valid pixels), every plane having the same size.
    return total / (a.shape[0] * out_height * (width - SSIM_WINDOW + 1))


def psnr(
    sr: np.ndarray,
    hr: np.ndarray,
    crop_border: int = 0,
    channel: Channel = "y",
    y_variant: YVariant = "float",
) -> float:
    """PSNR in dB (float64, peak 255) between two uint8 RGB images (or two planes).

    ``channel="y"`` compares BT.601 luma (``y_variant`` "float" or "rounded"); ``"rgb"`` all
    channels. ``crop_border`` pixels are removed from each side first. Identical images give inf.
    """
    return _psnr_planes(*_prepare_pair(sr, hr, crop_border, channel, y_variant))


def ssim(
    sr: np.ndarray,
    hr: np.ndarray,
    crop_border: int = 0,
    channel: Channel = "y",
    y_variant: YVariant = "float",
) -> float:
    """SSIM as ``ssim_index.m`` (Gaussian 11x11, sigma 1.5, K 0.01/0.03, L 255, 'valid', mean).

    Same conventions as :func:`psnr`; for ``channel="rgb"`` the mean over the three channels.
    """
    return _ssim_planes(*_prepare_pair(sr, hr, crop_border, channel, y_variant))


def psnr_ssim(
    sr: np.ndarray,
    hr: np.ndarray,
    crop_border: int = 0,
    channel: Channel = "y",
    y_variant: YVariant = "float",
) -> tuple[float, float]:
    """(PSNR, SSIM) with one colour conversion; same conventions as :func:`psnr` and :func:`ssim`."""
    a, b = _prepare_pair(sr, hr, crop_border, channel, y_variant)
    return _psnr_planes(a, b), _ssim_planes(a, b)
