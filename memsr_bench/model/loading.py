"""Build a model from its reference: the one way every command gets a module.

``load_model(ref, scale, config=..., weights=..., deploy=...)`` resolves the reference
(:mod:`memsr_bench.model.refs`), checks ``config`` against the factory's signature, builds the module,
loads the weights by content (:func:`zoo.checkpoints.load_checkpoint`, ``weights_only=True``),
optionally converts it to its deploy form, and returns a :class:`LoadedModel` that carries what a
result depends on: the architecture fingerprint and the weights' sha256.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from memsr_bench.errors import MemsrInputError
from memsr_bench.model.deploy import deploy_form
from memsr_bench.model.fingerprint import architecture_fingerprint
from memsr_bench.model.refs import ModelEntry, resolve_model

__all__ = ["LoadedModel", "load_model", "parse_config"]

RANDOM_INIT = "random-init"  # the checkpoint field of a key measured without weights


def parse_config(items: list[str] | None) -> dict[str, Any]:
    """``["n_resblocks=5", "res_scale=0.1", "act=relu"]`` -> ``{"n_resblocks": 5, "res_scale": 0.1, "act": "relu"}``.

    Values are Python literals; anything that is not one is kept as a string (checked against the
    factory's defaults by :func:`load_model`).
    """
    config: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise MemsrInputError("--config", f"expected KEY=VALUE (e.g. n_resblocks=5), got {item!r}")
        try:
            config[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            config[key] = value.strip()
    return config


@dataclass
class LoadedModel:
    """A built model and what its results depend on."""

    module: nn.Module
    entry: ModelEntry
    scale: int
    config: dict[str, Any] = field(default_factory=dict)
    weights: Any = None  # zoo.checkpoints.LoadedWeights, or None (random initialisation)
    deploy_calls: list[str] | None = None  # the re-parameterisation calls made (None: as built)
    fingerprint: str = ""

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def checkpoint_id(self) -> str:
        """The weights' sha256, or ``"random-init"``: the ``checkpoint`` field of result keys."""
        return RANDOM_INIT if self.weights is None else self.weights.sha256

    def describe(self) -> dict[str, Any]:
        """What every JSON output records about the model."""
        return {
            "model": self.name,
            "ref": self.entry.ref,
            "origin": self.entry.origin,
            "scale": self.scale,
            "config": self.config,
            "input": self.entry.describe_input(),
            "fingerprint": self.fingerprint,
            "weights": None if self.weights is None else str(self.weights.path),
            "weights_sha256": None if self.weights is None else self.weights.sha256,
            "weights_known_as": None
            if self.weights is None or self.weights.known is None
            else self.weights.known.filename,
            "deploy": self.deploy_calls,
        }


def _default_scale(entry: ModelEntry) -> int | None:
    scale = entry.default_scale()
    if scale is None:
        param = _signature(entry).parameters.get("scale") if _signature(entry) else None
        if param is not None and isinstance(param.default, int):
            scale = param.default
    return scale


def _signature(entry: ModelEntry) -> inspect.Signature | None:
    try:
        return inspect.signature(entry.spec.build)
    except (TypeError, ValueError):
        return None


def _forwarded_parameters(entry: ModelEntry) -> dict[str, inspect.Parameter]:
    """Parameters a ``**config`` factory forwards: those of the class its return annotation names."""
    try:
        cls = inspect.signature(entry.spec.build, eval_str=True).return_annotation
    except (NameError, TypeError, ValueError, SyntaxError):
        return {}
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return {}
    try:
        return dict(inspect.signature(cls.__init__).parameters)
    except (TypeError, ValueError):
        return {}


def _check_config(entry: ModelEntry, config: dict[str, Any]) -> None:
    """Unknown keys, values of the wrong type and negative counts (against the factory's defaults, or
    those of the class a ``**config`` factory builds) name the key before anything is built."""
    signature = _signature(entry)
    if signature is None:
        return
    params = dict(signature.parameters)
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if open_kwargs:
        forwarded = {n: p for n, p in _forwarded_parameters(entry).items() if n not in ("self", "scale")}
        params = {**forwarded, **{n: p for n, p in params.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}}
        open_kwargs = not forwarded or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in forwarded.values())
    own = set(signature.parameters)  # the factory's own defaults are shown; a class's may differ from the factory's
    accepted = [n for n, p in params.items() if n != "scale" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    for key, value in config.items():
        if key == "scale":
            raise MemsrInputError("--config", "scale is set with --scale, not --config")
        if key not in params:
            if open_kwargs:
                continue
            raise MemsrInputError(
                f"--config {key}", f"{entry.name} has no parameter {key!r} (accepted: {', '.join(accepted) or 'none'})"
            )
        default = params[key].default
        if default is inspect.Parameter.empty or default is None:
            continue
        like = f" like the default {default}" if key in own else ""
        if isinstance(default, bool) and not isinstance(value, bool):
            raise MemsrInputError(f"--config {key}", f"expected True or False{like}, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(value, int) or isinstance(value, bool):
                raise MemsrInputError(f"--config {key}", f"expected an integer{like}, got {value!r}")
            if value < 0 <= default:
                raise MemsrInputError(f"--config {key}", f"must be 0 or more, got {value}")
        if isinstance(default, float) and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            raise MemsrInputError(f"--config {key}", f"expected a number{like}, got {value!r}")
        if isinstance(default, float) and not math.isfinite(value):
            raise MemsrInputError(f"--config {key}", f"expected a finite number, got {value!r}")


def _build(entry: ModelEntry, scale: int, config: dict[str, Any]) -> nn.Module:
    spec = entry.spec
    if spec.scales and scale not in spec.scales:
        raise MemsrInputError(entry.ref, f"scale x{scale} is not available (scales: {list(spec.scales)})")
    _check_config(entry, config)
    try:
        module = spec.build(scale=scale, **config)
    except MemsrInputError:
        raise
    except (TypeError, ValueError, AssertionError) as err:
        where = f"--config {' '.join(config)}" if config else entry.ref
        raise MemsrInputError(where, f"building {entry.name} x{scale} failed: {type(err).__name__}: {err}") from None
    if not isinstance(module, nn.Module):
        raise MemsrInputError(entry.ref, f"the factory returned a {type(module).__name__}, not an nn.Module")
    return module


def load_model(
    ref: str | ModelEntry,
    scale: int | None = None,
    *,
    config: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    deploy: bool = False,
    input_range: float | None = None,
    channels: str | None = None,
) -> LoadedModel:
    """Resolve ``ref``, build it at ``scale`` (default: its first registered scale, or the factory's
    default), load ``weights`` (a file or a weights directory) and, with ``deploy``, convert it.

    The module is in eval mode and carries ``zoo_spec`` and ``scale`` (what ``zoo.upscaler`` reads).
    """
    entry = ref if isinstance(ref, ModelEntry) else resolve_model(ref, input_range=input_range, channels=channels)
    config = dict(config or {})
    if scale is None:
        scale = _default_scale(entry)
        if scale is None:
            raise MemsrInputError("--scale", f"required for {entry.ref} (it registers no scales)")
    scale = int(scale)
    if scale < 1:
        raise MemsrInputError("--scale", f"must be a positive integer, not {scale}")
    module = _build(entry, scale, config)
    loaded = None
    if weights is not None:
        from zoo.checkpoints import load_checkpoint

        loaded = load_checkpoint(module, entry.spec, scale, Path(weights))
    module.zoo_spec = entry.spec
    module.scale = scale
    module.weights_sha256 = None if loaded is None else loaded.sha256
    calls = None
    if deploy:
        module, calls = deploy_form(module)
    module.eval()
    return LoadedModel(
        module=module,
        entry=entry,
        scale=scale,
        config=config,
        weights=loaded,
        deploy_calls=calls,
        fingerprint=architecture_fingerprint(module),
    )
