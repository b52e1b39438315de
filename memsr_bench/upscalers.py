"""What the evaluation harness runs: anything that maps a uint8 RGB LR image to a uint8 RGB SR image."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from memsr_bench.data.matlab_resize import imresize
from memsr_bench.errors import MemsrInputError


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


def make_upscaler(model_name: str, scale: int, weights: str | None, device: str) -> Upscaler:
    """``bicubic`` or a zoo model (with its checkpoint, if given) wrapped to map uint8 RGB to uint8 RGB."""
    if model_name == "bicubic":
        if weights:
            raise MemsrInputError("--weights", "bicubic has no weights")
        return BicubicUpscaler(scale)
    import zoo

    if model_name not in zoo.names():
        raise MemsrInputError(model_name, f"unknown model; choose bicubic or one of: {', '.join(zoo.names())}")
    model = zoo.create(model_name, scale=scale, checkpoint=weights)
    return zoo.upscaler(model, device=device)


def sweep_upscaler_factory(weights: str | None, device: str):
    """(model, scale) -> Upscaler for sweeps; LookupError (a skip, with its reason) when no weights."""

    def factory(model_name: str, scale: int) -> Upscaler:
        if model_name == "bicubic":
            return BicubicUpscaler(scale)
        import zoo

        spec = zoo.get_spec(model_name)
        if scale not in spec.scales:
            raise LookupError(f"{model_name} has no x{scale} variant")
        checkpoint = spec.checkpoint_for(scale)
        if checkpoint is None:
            raise LookupError(f"no public checkpoint of {model_name} x{scale}")
        if weights is None or not (Path(weights) / checkpoint.filename).is_file():
            raise LookupError(f"{checkpoint.filename} not found in --weights {weights}")
        return make_upscaler(model_name, scale, weights, device)

    return factory
