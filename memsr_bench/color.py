"""ITU-R BT.601 YCbCr conversions as used by SR evaluation (MATLAB ``rgb2ycbcr`` coefficients).

Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for R, G, B in 0..255 (Y in 16..235).
Two variants of Y are in use and they differ by up to ~0.1 dB PSNR:
- ``"float"``: Y left unrounded (EDSR, IMDN, RFDN, BasicSR Python code; reproduces modern tables);
- ``"rounded"``: Y rounded half away from zero to an integer, as MATLAB's ``rgb2ycbcr`` on uint8.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

YVariant = Literal["float", "rounded"]
Y_VARIANTS: tuple[str, ...] = ("float", "rounded")

_RGB_TO_YCBCR = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
)
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_y(img: np.ndarray, variant: YVariant = "float") -> np.ndarray:
    """BT.601 luma (16..235 scale) of a uint8 RGB image H x W x 3, as float64 H x W.

    ``variant="float"`` keeps Y unrounded; ``"rounded"`` rounds it like MATLAB's uint8 ``rgb2ycbcr``.
    """
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects H x W x 3, got shape {img.shape}")
    if variant not in Y_VARIANTS:
        raise ValueError(f"variant must be one of {Y_VARIANTS}, not {variant!r}")
    rgb = img.astype(np.float64)
    # MATLAB's uint8 path: T = (1/255) * origT, then imlincomb sums T1*R + T2*G + T3*B + 16 in
    # this order in double; the same arithmetic makes the rounded variant agree even at ties.
    coeffs = (1 / 255) * _RGB_TO_YCBCR[0]
    y = coeffs[0] * rgb[..., 0] + coeffs[1] * rgb[..., 1] + coeffs[2] * rgb[..., 2] + 16.0
    if variant == "rounded":
        y = np.floor(y + 0.5)  # y >= 16 > 0, so this is MATLAB's round-half-away-from-zero
    return y


def rgb_to_ycbcr(img: np.ndarray) -> np.ndarray:
    """Unrounded BT.601 YCbCr (float64, 0..255 scale) of a uint8 RGB image, H x W x 3."""
    return img.astype(np.float64) @ (_RGB_TO_YCBCR.T / 255.0) + _YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, float64 RGB 0..255 (not clipped, not rounded)."""
    return (ycbcr - _YCBCR_OFFSET) @ (np.linalg.inv(_RGB_TO_YCBCR).T * 255.0)
