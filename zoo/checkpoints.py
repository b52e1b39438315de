"""Checked, strict loading of checkpoints into zoo models.

``load_checkpoint(model, spec, scale, path)`` takes a checkpoint file or a weights directory:

- a directory: the spec's known file for ``scale`` (``spec.checkpoint_for(scale)``) is taken from it and
  its sha256 verified;
- a file is recognised by its sha256, whatever its name: a public checkpoint must belong to this model
  and scale (otherwise the error says what it is); any other file is the user's own, loaded strictly.

The file is read with ``torch.load(map_location="cpu", weights_only=True)``; common containers
(``params_ema``, ``params``, ``state_dict``, ``model``, ...) are unwrapped, ``module.`` (DataParallel) and
``_orig_mod.`` (torch.compile) prefixes dropped, the checkpoint's ``key_map`` applied, and the state dict
is loaded with ``strict=True``. Every problem is a one-line ``CheckpointError(path, problem)``.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from memsr_bench.errors import CheckpointError
from zoo.registry import Checkpoint, ModelSpec, get_spec, names

__all__ = ["LoadedWeights", "find_checkpoint", "known_checkpoints", "load_checkpoint", "read_state_dict", "sha256_of"]

# Keys under which training frameworks store the weights, in order of preference
# (BasicSR: params_ema / params; Lightning and many repos: state_dict; others: model / net).
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net", "network")
_PREFIXES = ("module.", "_orig_mod.")
_SHOW = 4  # how many keys an error message lists

_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks; cached by (resolved path, size, mtime)."""
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError as err:
        raise CheckpointError(path, f"cannot read file ({err.strerror or err})") from None
    with _sha_lock:
        cached = _sha_cache.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as err:
        raise CheckpointError(path, f"cannot read file ({err.strerror or err})") from None
    hexdigest = digest.hexdigest()
    with _sha_lock:
        _sha_cache[key] = hexdigest
    return hexdigest


@dataclass(frozen=True)
class LoadedWeights:
    """What was loaded: the file, its sha256, and the known public checkpoint it is (None: the user's own)."""

    path: Path
    sha256: str
    known: Checkpoint | None

    def describe(self) -> str:
        what = f"public {self.known.filename}" if self.known else "own file"
        return f"{self.path} ({what}, sha256 {self.sha256[:12]})"


def known_checkpoints() -> dict[str, tuple[ModelSpec, Checkpoint]]:
    """Every public checkpoint of the registry by its sha256: ``{sha256: (spec, checkpoint)}``."""
    return {ckpt.sha256: (get_spec(name), ckpt) for name in names() for ckpt in get_spec(name).checkpoints}


def _scales(scales: tuple[int, ...]) -> str:
    return "/".join(f"x{s}" for s in scales)


def _in_directory(spec: ModelSpec, scale: int, path: Path) -> tuple[Path, Checkpoint]:
    ckpt = spec.checkpoint_for(scale)
    if ckpt is None:
        if spec.checkpoints:
            known = ", ".join(f"{c.filename} ({_scales(c.scales)})" for c in spec.checkpoints)
            problem = f"model {spec.name} has no known checkpoint for x{scale} (known: {known})"
        else:
            problem = f"model {spec.name} has no known public checkpoint (none was released)"
        raise CheckpointError(path, problem + "; pass a checkpoint file instead of a directory")
    file = path / ckpt.filename
    if not file.is_file():
        raise CheckpointError(
            path,
            f"{ckpt.filename} (the {spec.name} x{scale} checkpoint, from {ckpt.source}) is missing "
            "from this weights directory",
        )
    return file, ckpt


def find_checkpoint(spec: ModelSpec, scale: int, path: str | Path) -> tuple[Path, Checkpoint | None]:
    """The file to load for ``spec`` at ``scale`` and the public checkpoint it is (None: the user's own).

    The one checkpoint lookup of the suite. ``path`` is a weights directory (the spec's public file
    for ``scale`` is taken from it) or a file, recognised by its sha256 whatever its name: a public
    checkpoint of another model or scale is refused saying what it is; a file that carries the name
    of this model's public checkpoint but not its content is refused as corrupt; any other file is the
    user's own. Checksums of public files are verified here.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such file or directory")
    if path.is_dir():
        file, ckpt = _in_directory(spec, scale, path)
    else:
        file, ckpt = path, None
    digest = sha256_of(file)
    if ckpt is not None:
        if digest != ckpt.sha256:
            raise CheckpointError(
                file, f"checksum mismatch (expected {ckpt.sha256}, got {digest}): re-download / file corrupted"
            )
        return file, ckpt
    owner = known_checkpoints().get(digest)
    if owner is None:
        own = spec.checkpoint_for(scale)
        if own is not None and own.filename == file.name:
            raise CheckpointError(
                file,
                f"checksum mismatch: named as the public {spec.name} x{scale} checkpoint but its sha256 "
                f"{digest[:12]}... is not {own.sha256[:12]}...; re-download / file corrupted",
            )
        return file, None
    owner_spec, owner_ckpt = owner
    if owner_spec.name == spec.name and scale in owner_ckpt.scales:
        return file, owner_ckpt
    own = spec.checkpoint_for(scale)
    belongs = (
        f"this file is {owner_ckpt.filename}, the public checkpoint of {owner_spec.name} "
        f"{_scales(owner_ckpt.scales)} (sha256 {digest[:12]}...), not of {spec.name} x{scale}"
    )
    if owner_spec.name == spec.name:
        hint = f"use --scale {owner_ckpt.scales[0]}" + (f", or {own.filename} for x{scale}" if own else "")
    else:
        hint = f"use model {owner_spec.name!r} for it" + (
            f", or {own.filename} for {spec.name} x{scale}"
            if own
            else f" ({spec.name} x{scale} has no released checkpoint)"
        )
    raise CheckpointError(file, f"{belongs}; {hint}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """``torch.load`` (cpu, weights_only) + container unwrapping + prefix stripping; no key map."""
    from memsr_bench.torch_files import load_weights_only

    path = Path(path)
    obj = load_weights_only(path)
    return _strip_prefixes(_unwrap(obj, path))


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(4):  # containers nest at most a few levels deep
        if _is_state_dict(obj):
            return dict(obj)  # type: ignore[arg-type]
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _CONTAINER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, Mapping):
        top = ", ".join(repr(k) for k in list(obj)[:8]) or "none"
        problem = f"no state dict of tensors found in the checkpoint (top-level keys: {top})"
    else:
        problem = f"no state dict found in the checkpoint (it holds a {type(obj).__name__})"
    raise CheckpointError(path, problem)


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def _tail_keys(model: nn.Module) -> set[str]:
    """Parameter names of the conv that feeds each PixelShuffle (the upsampler tail)."""
    tails: set[str] = set()
    last_conv: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            last_conv = name
        elif isinstance(module, nn.PixelShuffle) and last_conv is not None:
            prefix = f"{last_conv}." if last_conv else ""
            tails.update(f"{prefix}{p}" for p, _ in model.get_submodule(last_conv).named_parameters())
    return tails


def _scale_hint(key: str, got: tuple[int, ...], want: tuple[int, ...], scale: int, tails: set[str]) -> str:
    """A wrong-scale hint when ``key`` is in the upsampler tail and only its output channels differ."""
    if key not in tails or not got or len(got) != len(want) or got[1:] != want[1:] or not want[0]:
        return ""
    ratio = got[0] * scale * scale / want[0]
    other = round(math.sqrt(ratio))
    if other >= 1 and other * other == ratio and other != scale:
        return f": this is the upsampler tail, so the checkpoint is probably for x{other}, not x{scale} (wrong scale)"
    return ": this is the upsampler tail, so the checkpoint is probably for another scale (wrong scale)"


def _check_fit(model: nn.Module, sd: dict[str, torch.Tensor], spec: ModelSpec, scale: int, path: Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    what = f"{spec.name} x{scale}"
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_listing(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_listing(unexpected)})")
        hint = ""
        if len(missing) == len(own):
            hint = "; no key in common: a checkpoint of another architecture, or one that needs a key map?"
        raise CheckpointError(path, f"keys do not match {what}: " + "; ".join(parts) + hint)
    tails = _tail_keys(model)
    bad = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        hinted = [(k, g, w, _scale_hint(k, g, w, scale, tails)) for k, g, w in bad]
        key, got, want, hint = next((b for b in hinted if b[3]), hinted[0])
        more = ""
        if len(bad) > 1:
            n = len(bad) - 1
            more = f" (and {n} more tensor{'s differ' if n > 1 else ' differs'})"
        raise CheckpointError(
            path,
            f"shape mismatch for {what}: tensor {key!r} is {list(got)} in the checkpoint but {list(want)} "
            f"in the model{hint}{more}",
        )


def _check_finite(sd: dict[str, torch.Tensor], path: Path) -> None:
    """NaN or inf weights (a diverged training run) would give a silently meaningless PSNR."""
    bad = {k: int((~torch.isfinite(v)).sum()) for k, v in sd.items() if v.is_floating_point()}
    bad = {k: n for k, n in bad.items() if n}
    if bad:
        key = next(iter(bad))
        raise CheckpointError(
            path,
            f"{sum(bad.values()):,} non-finite weights (NaN or inf) in {len(bad)} tensor(s), first {key!r}: "
            "a diverged training run? refusing to evaluate it",
        )


def load_checkpoint(model: nn.Module, spec: ModelSpec, scale: int, path: str | Path) -> LoadedWeights:
    """Load the checkpoint file (or the spec's public file in a weights directory) into ``model``,
    strictly, after :func:`find_checkpoint`; a one-line ``CheckpointError`` otherwise."""
    file, ckpt = find_checkpoint(spec, scale, path)
    sd = read_state_dict(file)
    if ckpt is not None and ckpt.key_map is not None:
        try:
            sd = ckpt.key_map(sd)
        except Exception as err:
            raise CheckpointError(file, f"key map of {ckpt.filename} failed: {type(err).__name__}: {err}") from None
    _check_fit(model, sd, spec, scale, file)
    _check_finite(sd, file)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:  # should not happen after _check_fit; keep the message on one line
        detail = " ".join(str(err).split())
        raise CheckpointError(file, f"cannot load into {spec.name} x{scale}: {detail[:300]}") from None
    return LoadedWeights(path=file, sha256=sha256_of(file), known=ckpt)
