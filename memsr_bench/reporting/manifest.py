"""Incremental reports: a rerun whose inputs and outputs are unchanged since the last run does nothing.

``memsr-bench report`` is a function of the suite's code (and the versions of the libraries it
uses), its options, the results store's rows, the published tables and the data and weights folders.
After a run, :func:`record` writes ``<out>/.report-inputs.json``: a digest of all of these (the store
as it is *after* the run, its new cells included) and the sha256 of every file under ``<out>``. A
later run with the same digest and the same files (:func:`up_to_date`) has nothing to recompute or
redraw, as ``make`` would conclude; anything changed -- a row put into the store by ``eval``, an
edited source file, a deleted or edited report file, another option -- and the report is rebuilt
(its cells still come from the store). ``--force`` always rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["MANIFEST_NAME", "inputs_digest", "record", "up_to_date"]

MANIFEST_NAME = ".report-inputs.json"
_LIBRARIES = ("torch", "numpy", "pandas", "matplotlib", "fvcore", "scikit-image", "Pillow")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _code_digest() -> str:
    """The suite's and the zoo's Python sources, and the library versions."""
    import memsr_bench
    import zoo

    digest = hashlib.sha256(sys.version.encode())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name} {metadata.version(name)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{name} absent\n".encode())
    for package in (memsr_bench, zoo):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{path.relative_to(root.parent)}\n".encode() + path.read_bytes())
    return digest.hexdigest()


def _folder_listing(folder: Path | None) -> list[tuple[str, int, int]] | None:
    """``(path, size, mtime_ns)`` of every file under ``folder`` (data sets, weights: stat, not read)."""
    if folder is None:
        return None
    return [
        (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def inputs_digest(
    store_digest: str,
    options: dict[str, Any],
    reference_dir: Path | None,
    data_root: Path | None,
    weights: Path | None,
) -> str:
    """One digest of everything a report depends on (see the module docstring)."""
    parts = {
        "code": _code_digest(),
        "store": store_digest,
        "options": options,
        "reference": None
        if reference_dir is None
        else {str(p.relative_to(reference_dir)): _sha256(p) for p in sorted(reference_dir.rglob("*")) if p.is_file()},
        "data_root": _folder_listing(data_root),
        "weights": _folder_listing(weights),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _outputs(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): _sha256(p) for p in sorted(out.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME
    }


def up_to_date(out: Path, digest: str) -> bool:
    """Whether the last report under ``out`` had these inputs and its files are all still as written."""
    try:
        manifest = json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("inputs") == digest and manifest.get("outputs") == _outputs(out)


def record(out: Path, digest: str) -> None:
    """Write the manifest of a finished report."""
    manifest = {"inputs": digest, "outputs": _outputs(out)}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
