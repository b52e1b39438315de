"""Model references: what every command's MODEL argument accepts, resolved to a factory and its metadata.

A reference is one of

- a zoo name (``imdn``, ``fmen-s-deploy``; ``memsr-bench zoo`` lists them);
- ``path/to/file.py:factory``: a Python file anywhere (its folder is importable while it loads, so it
  may import its neighbours); the file is re-imported when it changes;
- ``package.module:factory``: an importable module;
- a name registered by an installed package under the entry-point group ``memsr_bench.models``
  (``mynet = mypackage.models:build_mynet`` in its ``pyproject.toml``); found without importing
  anything by hand, as pytest finds ``pytest11`` plugins.

A factory is ``factory(scale=..., **config) -> nn.Module``. Its metadata (scales, input range,
RGB or Y input) comes from ``zoo.register_model`` when the factory is registered (the file may call
it), otherwise from the caller (``--input-range``, ``--channels``), defaulting to
:data:`DEFAULT_INPUT_RANGE` and :data:`DEFAULT_CHANNELS`; an unregistered factory accepts any scale.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from memsr_bench.errors import MemsrInputError

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_INPUT_RANGE",
    "ENTRY_POINT_GROUP",
    "ModelEntry",
    "entry_point_models",
    "resolve_model",
]

ENTRY_POINT_GROUP = "memsr_bench.models"
DEFAULT_INPUT_RANGE = 1.0  # most PyTorch SR code (BasicSR, NTIRE) reads 0..1 RGB
DEFAULT_CHANNELS = "rgb"


@dataclass(frozen=True)
class ModelEntry:
    """A resolved reference: the registry-style spec (``zoo.ModelSpec``) and where it came from.

    ``spec.scales`` is empty for an unregistered factory (any scale). ``origin`` says where the
    factory lives (``zoo``, ``file /abs/mynet.py``, ``module pkg.mod``, ``entry point of dist 1.0``);
    ``metadata_from`` says where its input range and channels come from.
    """

    ref: str
    spec: object  # zoo.registry.ModelSpec (typed loosely: zoo imports torch)
    origin: str
    metadata_from: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_range(self) -> float:
        return self.spec.input_range

    @property
    def channels(self) -> str:
        return self.spec.channels

    def default_scale(self) -> int | None:
        return self.spec.scales[0] if self.spec.scales else None

    def describe_input(self) -> str:
        """``"RGB 0..1 (register_model)"``: shown with every output about this model."""
        return f"{self.channels.upper()} 0..{self.input_range:g} ({self.metadata_from})"


def entry_point_models() -> dict[str, metadata.EntryPoint]:
    """Installed entry points of the group ``memsr_bench.models``, by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _distribution(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an installed package"


_FILE_MODULES: dict[tuple[str, int, int], object] = {}


def _import_file(path: Path):
    """Import a model file under a private module name; re-imported when its size or mtime changes."""
    if not path.is_file():
        raise MemsrInputError(path, "model file not found")
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if cache_key in _FILE_MODULES:
        return _FILE_MODULES[cache_key]
    digest = hashlib.sha256(repr(cache_key).encode()).hexdigest()[:12]
    module_name = f"memsr_user_model_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise MemsrInputError(path, "not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except MemsrInputError:
        raise
    except Exception as err:
        sys.modules.pop(module_name, None)
        raise MemsrInputError(path, f"importing the model file failed: {type(err).__name__}: {err}") from None
    finally:
        sys.path.remove(folder)
    _FILE_MODULES[cache_key] = module
    return module


def _import_module(name: str, ref: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and name.startswith(err.name):
            raise MemsrInputError(ref, f"no module named {err.name!r} (is the package installed?)") from None
        raise MemsrInputError(ref, f"importing {name} failed: {err}") from None
    except Exception as err:
        raise MemsrInputError(ref, f"importing {name} failed: {type(err).__name__}: {err}") from None


def _factory(module, attr: str, ref: str) -> Callable:
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise MemsrInputError(ref, f"{getattr(module, '__file__', module.__name__)} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise MemsrInputError(ref, f"{attr} is not callable (expected factory(scale=..., **config) -> nn.Module)")
    return target


def _registered_spec(factory: Callable):
    """The zoo spec whose builder is ``factory`` (the file called ``register_model``), else None."""
    import zoo

    for name in zoo.names():
        spec = zoo.get_spec(name)
        if spec.build is factory:
            return spec
    return None


def _entry(
    ref: str,
    factory: Callable,
    name: str,
    origin: str,
    input_range: float | None,
    channels: str | None,
) -> ModelEntry:
    from zoo.registry import ModelSpec

    spec = _registered_spec(factory)
    if spec is not None:
        _no_override(ref, spec, input_range, channels)
        return ModelEntry(ref=ref, spec=spec, origin=origin, metadata_from="register_model")
    given = [opt for opt, value in (("--input-range", input_range), ("--channels", channels)) if value is not None]
    spec = ModelSpec(
        name=name,
        build=factory,
        scales=(),
        input_range=float(DEFAULT_INPUT_RANGE if input_range is None else input_range),
        channels=DEFAULT_CHANNELS if channels is None else channels,
        family=getattr(factory, "__module__", "") or "",
    )
    source = ("given: " + ", ".join(given)) if given else "default; set --input-range / --channels"
    return ModelEntry(ref=ref, spec=spec, origin=origin, metadata_from=source)


def _no_override(ref: str, spec, input_range: float | None, channels: str | None) -> None:
    if input_range is not None and float(input_range) != spec.input_range:
        raise MemsrInputError(
            "--input-range", f"{ref} is registered with input range 0..{spec.input_range:g}; drop --input-range"
        )
    if channels is not None and channels != spec.channels:
        raise MemsrInputError("--channels", f"{ref} is registered with {spec.channels} input; drop --channels")


def _check_metadata(input_range: float | None, channels: str | None) -> None:
    if input_range is not None and float(input_range) not in (1.0, 255.0):
        raise MemsrInputError("--input-range", f"must be 1 or 255, not {input_range!r}")
    if channels is not None and channels not in ("rgb", "y"):
        raise MemsrInputError("--channels", f"must be rgb or y, not {channels!r}")


def resolve_model(ref: str, *, input_range: float | None = None, channels: str | None = None) -> ModelEntry:
    """Resolve a model reference (see the module docstring); bad references are one-line errors."""
    import zoo

    _check_metadata(input_range, channels)
    ref = str(ref).strip()
    if not ref:
        raise MemsrInputError("MODEL", "empty model reference")
    if ref in zoo.names():
        spec = zoo.get_spec(ref)
        _no_override(ref, spec, input_range, channels)
        return ModelEntry(ref=ref, spec=spec, origin="zoo", metadata_from="register_model")
    if ":" in ref:
        where, _, attr = ref.rpartition(":")
        if not attr:
            raise MemsrInputError(ref, "expected FILE.py:factory or package.module:factory")
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where).expanduser()
            module = _import_file(path)
            origin = f"file {path.resolve()}"
            name = f"{path.stem}:{attr}"
        else:
            module = _import_module(where, ref)
            origin = f"module {where}"
            name = ref
        return _entry(ref, _factory(module, attr, ref), name, origin, input_range, channels)
    entry_points = entry_point_models()
    if ref in entry_points:
        ep = entry_points[ref]
        try:
            factory = ep.load()
        except Exception as err:
            raise MemsrInputError(ref, f"loading entry point {ep.value} failed: {type(err).__name__}: {err}") from None
        entry = _entry(ref, factory, ref, f"entry point of {_distribution(ep)} ({ep.value})", input_range, channels)
        if entry.spec.name != ref and entry.metadata_from != "register_model":
            entry = replace(entry, spec=replace(entry.spec, name=ref))
        return entry
    known = ", ".join([*zoo.names(), *entry_points])
    raise MemsrInputError(
        ref, f"unknown model; give a zoo name ({known}), FILE.py:factory, package.module:factory or an entry point"
    )
