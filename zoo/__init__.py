"""The memsr-bench model zoo: ``zoo.create(name, scale=..., checkpoint=...)``, ``zoo.names()``.

Every architecture lives in its own file with its registration (configs, published parameter
counts, public checkpoints) beside it; importing this package registers them all.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from zoo import carn, edsr, fmen, fsrcnn, imdn, latticenet, plain, rfdn, rlfn, srcnn  # noqa: F401  (registers)
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
    attributes that ``zoo.upscaler`` reads.
    """
    from memsr_bench.errors import MemsrInputError
    from zoo.checkpoints import load_checkpoint

    spec = get_spec(name)
    scale = spec.scales[0] if scale is None else int(scale)
    if scale not in spec.scales:
        raise MemsrInputError(name, f"scale x{scale} is not available (scales: {list(spec.scales)})")
    model = spec.build(scale=scale, **config)
    if checkpoint is not None:
        load_checkpoint(model, spec, scale, Path(checkpoint))
    model.zoo_spec = spec
    model.scale = scale
    return model.eval()
