"""The memsr-bench model zoo: ``zoo.create(name, scale=..., checkpoint=...)``, ``zoo.names()``.

Every architecture lives in its own file with its registration (configs, published parameter
counts, public checkpoints) beside it; importing this package registers them all.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from zoo import carn, edsr, efdn, fmen, fsrcnn, imdn, latticenet, plain, rfdn, rlfn, span, srcnn, swinir  # noqa: F401
from zoo.registry import Checkpoint, ModelSpec, get_spec, names, register_model
from zoo.upscaler import ModelUpscaler, upscaler

__all__ = [
    "Checkpoint",
    "ModelSpec",
    "ModelUpscaler",
    "create",
    "get_spec",
    "names",
    "register_model",
    "upscaler",
]


def create(
    name: str,
    scale: int | None = None,
    checkpoint: str | Path | None = None,
    **config,
) -> nn.Module:
    """Build the registered model ``name`` at ``scale`` (default: its first scale), in eval mode.

    ``checkpoint`` is a checkpoint file or a weights directory holding the model's known public
    file; it is checked (sha256 for known files) and loaded strictly. ``config`` overrides the
    architecture's hyperparameters. The returned module carries ``zoo_spec`` and ``scale``
    attributes that ``zoo.upscaler`` reads (and ``weights_sha256``). Model references other than zoo
    names (files, modules, entry points) go through :func:`memsr_bench.model.load_model`.
    """
    from memsr_bench.model import load_model

    return load_model(name if name in names() else _unknown(name), scale, config=config, weights=checkpoint).module


def _unknown(name: str) -> str:
    from memsr_bench.errors import MemsrInputError

    raise MemsrInputError(name, f"unknown zoo model; known: {', '.join(names())}")
