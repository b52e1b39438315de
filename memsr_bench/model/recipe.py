"""How any process rebuilds a model: a picklable recipe (reference, scale, config, weights, device).

Sweeps on a cluster (:mod:`memsr_bench.results.jobs`) ship recipes, not modules: a worker rebuilds
the model with :func:`~memsr_bench.model.load_model` (or :func:`~memsr_bench.upscalers.make_upscaler`)
and checks that it has the architecture fingerprint the result will be stored under.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memsr_bench.errors import MemsrInputError

__all__ = ["ModelRecipe"]


@dataclass(frozen=True)
class ModelRecipe:
    """How any process rebuilds a model (picklable): its reference and how it was built.

    ``upscaler``: build a uint8 upscaler (:func:`memsr_bench.upscalers.make_upscaler`) instead of a
    :class:`~memsr_bench.model.LoadedModel`. ``fingerprint``: what the build must give (checked).
    """

    ref: str
    scale: int
    config: tuple[tuple[str, Any], ...] = ()
    deploy: bool = False
    input_range: float | None = None
    channels: str | None = None
    weights: str | None = None
    random_weights: bool = False
    device: str = "cpu"
    upscaler: bool = False
    fingerprint: str = ""

    @classmethod
    def of(cls, loaded) -> ModelRecipe:
        """The recipe of a :class:`~memsr_bench.model.LoadedModel` (its weights file, if any)."""
        entry = loaded.entry
        user = entry.origin != "zoo"
        return cls(
            ref=_portable_ref(entry.ref),
            scale=loaded.scale,
            config=tuple(sorted(loaded.config.items())),
            deploy=loaded.deploy_calls is not None,
            input_range=entry.input_range if user else None,
            channels=entry.channels if user else None,
            weights=None if loaded.weights is None else str(Path(loaded.weights.path).resolve()),
            fingerprint=loaded.fingerprint,
        )

    def build(self):
        """The model (or upscaler), checked against the fingerprint of the key it is measured for."""
        if self.upscaler:
            from memsr_bench.upscalers import make_upscaler

            built = make_upscaler(
                self.ref,
                self.scale,
                weights=self.weights,
                config=dict(self.config),
                device=self.device,
                deploy=self.deploy,
                random_weights=self.random_weights,
                input_range=self.input_range,
                channels=self.channels,
            )
        else:
            from memsr_bench.model import load_model

            built = load_model(
                self.ref,
                self.scale,
                config=dict(self.config),
                weights=self.weights,
                deploy=self.deploy,
                input_range=self.input_range,
                channels=self.channels,
            )
        if self.fingerprint and built.fingerprint != self.fingerprint:
            raise MemsrInputError(
                self.ref,
                f"built here with fingerprint {built.fingerprint}, not the client's {self.fingerprint}: "
                "the same memsr-bench, torch and model files must be installed on every worker",
            )
        return built


def _portable_ref(ref: str) -> str:
    """``path/to/file.py:factory`` with an absolute path (workers run in other folders)."""
    path, sep, factory = ref.rpartition(":")
    if sep and path.endswith(".py") and Path(path).is_file():
        return f"{Path(path).resolve()}:{factory}"
    return ref
