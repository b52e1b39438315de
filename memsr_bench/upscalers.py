"""What the evaluation harness runs: anything that maps a uint8 RGB LR image to a uint8 RGB SR image.

Methods without a network (bicubic) are registered here as upscalers, by name, like the zoo's models
are registered in ``zoo``; :func:`make_upscaler` turns any model reference into an upscaler, refusing a
network without weights unless random weights are asked for explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from memsr_bench.data.matlab_resize import imresize
from memsr_bench.errors import MemsrInputError

__all__ = ["UPSCALERS", "BicubicUpscaler", "Upscaler", "make_upscaler", "register_upscaler"]


@runtime_checkable
class Upscaler(Protocol):
    """``upscaler(lr)`` takes uint8 RGB H x W x 3 and returns uint8 RGB (scale*H) x (scale*W) x 3.

    ``fingerprint`` identifies what computes (the architecture fingerprint of a network) and
    ``checkpoint`` its weights (sha256, ``"random-init"``, or ``"none"`` for a method without
    weights): together with ``name`` they key the upscaler's results in the store.
    """

    name: str
    scale: int
    fingerprint: str
    checkpoint: str

    def __call__(self, lr: np.ndarray) -> np.ndarray: ...


UPSCALERS: dict[str, Callable[[int], Upscaler]] = {}


def register_upscaler(name: str) -> Callable[[Callable[[int], Upscaler]], Callable[[int], Upscaler]]:
    """Register ``make(scale) -> Upscaler`` under ``name`` (a method without weights)."""

    def decorator(make: Callable[[int], Upscaler]) -> Callable[[int], Upscaler]:
        UPSCALERS[name] = make
        return make

    return decorator


@register_upscaler("bicubic")
class BicubicUpscaler:
    """MATLAB ``imresize(lr, s, 'bicubic')``: a = -0.5, no antialiasing when enlarging, uint8 output."""

    fingerprint = "matlab-imresize-bicubic-symmetric"
    checkpoint = "none"

    def __init__(self, scale: int):
        self.name = "bicubic"
        self.scale = int(scale)
        self.description = "MATLAB imresize bicubic (a=-0.5), symmetric border, rounded to uint8"

    @property
    def recipe(self):
        """How another process builds it (see :mod:`memsr_bench.model.recipe`)."""
        from memsr_bench.model.recipe import ModelRecipe

        return ModelRecipe(self.name, self.scale, upscaler=True, fingerprint=self.fingerprint)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        return imresize(lr, self.scale, border="symmetric")


def _no_weights_hint(loaded) -> str:
    known = loaded.entry.spec.checkpoint_for(loaded.scale) if loaded.entry.spec.checkpoints else None
    public = f"; its public checkpoint is {known.filename} (e.g. --weights ../shared/weights)" if known else ""
    return (
        f"{loaded.name} x{loaded.scale} has no weights: PSNR/SSIM of random weights means nothing; give --weights "
        f"FILE|DIR{public}, or --random-weights to measure them anyway"
    )


def make_upscaler(
    ref,  # a reference string or a memsr_bench.model.ModelEntry
    scale: int,
    *,
    weights: str | Path | None = None,
    config: dict | None = None,
    device: str = "cpu",
    deploy: bool = False,
    random_weights: bool = False,
    input_range: float | None = None,
    channels: str | None = None,
) -> Upscaler:
    """A registered upscaler (``bicubic``) or any model reference wrapped to map uint8 RGB to uint8 RGB."""
    if isinstance(ref, str) and ref in UPSCALERS:
        if weights is not None or config or deploy:
            raise MemsrInputError("--weights/--config/--deploy", f"{ref} has no weights, configuration or deploy form")
        return UPSCALERS[ref](scale)
    from dataclasses import replace

    from memsr_bench.model import load_model
    from memsr_bench.model.recipe import ModelRecipe
    from zoo.upscaler import ModelUpscaler

    loaded = load_model(
        ref, scale, config=config, weights=weights, deploy=deploy, input_range=input_range, channels=channels
    )
    if loaded.weights is None and not random_weights:
        raise MemsrInputError("--weights", _no_weights_hint(loaded))
    upscaler = ModelUpscaler(
        loaded.module,
        loaded.entry.spec,
        loaded.scale,
        device,
        name=loaded.name,
        fingerprint=loaded.fingerprint,
        checkpoint=loaded.checkpoint_id,
    )
    upscaler.description = f"{loaded.entry.origin}; input {loaded.entry.describe_input()}"
    upscaler.recipe = replace(  # how a cluster worker builds the same upscaler
        ModelRecipe.of(loaded), random_weights=random_weights, device=device, upscaler=True
    )
    return upscaler
