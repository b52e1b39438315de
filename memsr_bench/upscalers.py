"""What the evaluation harness runs: anything that maps a uint8 RGB LR image to a uint8 RGB SR image."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from memsr_bench.data.matlab_resize import imresize


@runtime_checkable
class Upscaler(Protocol):
    """``upscaler(lr)`` takes uint8 RGB H x W x 3 and returns uint8 RGB (scale*H) x (scale*W) x 3."""

    name: str
    scale: int

    def __call__(self, lr: np.ndarray) -> np.ndarray: ...


class BicubicUpscaler:
    """MATLAB ``imresize(lr, s, 'bicubic')``: a = -0.5, no antialiasing when enlarging, uint8 output."""

    def __init__(self, scale: int):
        self.name = "bicubic"
        self.scale = int(scale)
        self.description = "MATLAB imresize bicubic (a=-0.5), symmetric border, rounded to uint8"

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return imresize(lr, self.scale, border="symmetric")
