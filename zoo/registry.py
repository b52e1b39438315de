"""One registry for every architecture of the zoo (timm style).

Each family file defines its modules and registers one builder per model name with
``@register_model(...)``, carrying the metadata the harnesses need (scales, input range, RGB or
Y input, paper, published parameter counts, known public checkpoints). ``zoo.create`` is the
single entry point that builds a model and, optionally, loads a checkpoint into it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

StateDict = dict
KeyMap = Callable[[StateDict], StateDict]


@dataclass(frozen=True)
class Checkpoint:
    """A known public checkpoint file for a registered model.

    ``filename`` is looked up in a weights directory (e.g. ``../shared/weights``); ``sha256`` is
    verified before loading; ``key_map`` turns the file's state dict into the zoo module's keys
    (``module.`` prefixes, NTIRE key names, ...) and must be a pure function.
    """

    filename: str
    sha256: str
    scales: tuple[int, ...]
    source: str
    key_map: KeyMap | None = None
    notes: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """Metadata of one registered model name."""

    name: str
    build: Callable[..., nn.Module]
    scales: tuple[int, ...]
    input_range: float  # 1.0: the model reads and writes 0..1; 255.0: 0..255
    channels: str = "rgb"  # "rgb" or "y" (Y of BT.601 YCbCr; chroma is upscaled bicubically)
    paper: str = ""
    published_params: Mapping[int, int] = field(default_factory=dict)
    checkpoints: tuple[Checkpoint, ...] = ()
    family: str = ""
    notes: str = ""

    def checkpoint_for(self, scale: int) -> Checkpoint | None:
        for ckpt in self.checkpoints:
            if scale in ckpt.scales:
                return ckpt
        return None


_REGISTRY: dict[str, ModelSpec] = {}


def _same_builder(old: Callable, new: Callable) -> bool:
    """A model file imported again after an edit registers the same builder anew: replace it."""
    old_code, new_code = getattr(old, "__code__", None), getattr(new, "__code__", None)
    return (
        old_code is not None
        and new_code is not None
        and old_code.co_filename == new_code.co_filename
        and old.__qualname__ == new.__qualname__
    )


def register_model(
    name: str,
    *,
    scales: tuple[int, ...],
    input_range: float,
    channels: str = "rgb",
    paper: str = "",
    published_params: Mapping[int, int] | None = None,
    checkpoints: tuple[Checkpoint, ...] = (),
    notes: str = "",
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``build(scale=..., **config) -> nn.Module`` under ``name``."""
    if channels not in ("rgb", "y"):
        raise ValueError(f"channels must be 'rgb' or 'y', not {channels!r}")
    if input_range not in (1.0, 255.0):
        raise ValueError(f"input_range must be 1.0 or 255.0, not {input_range!r}")

    def decorator(build: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY and not _same_builder(_REGISTRY[name].build, build):
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            build=build,
            scales=tuple(scales),
            input_range=float(input_range),
            channels=channels,
            paper=paper,
            published_params=dict(published_params or {}),
            checkpoints=tuple(checkpoints),
            family=build.__module__.rsplit(".", 1)[-1],
            notes=notes,
        )
        return build

    return decorator


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(names())}") from None
