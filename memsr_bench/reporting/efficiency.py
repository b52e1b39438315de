"""Tidy efficiency data for tables, figures and the report: one row per model x scale at a preset's input.

Models are chosen by reference (:func:`choose_models`): zoo names and the user's own references mixed,
each built at the scales the table covers. Every number comes from the stored cells of
:mod:`memsr_bench.results.cells`, so a rerun reads the store and an edited model is measured anew.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.presets import get_preset
from memsr_bench.measure.profile import RuntimeOptions, input_channels
from memsr_bench.measure.quantities import COUNT_QUANTITIES
from memsr_bench.results.cells import device_label, stored_counts, stored_memory, stored_runtime
from memsr_bench.results.store import CellFailedError, ResultsStore

__all__ = ["ModelChoice", "choose_models", "efficiency_frame", "published_efficiency_columns"]


@dataclass(frozen=True)
class ModelChoice:
    """How the user asked for models: references, their ``--config``/``--deploy``/metadata, highlights."""

    refs: tuple[str, ...] = ()  # empty: the default list (every zoo model)
    highlight: tuple[str, ...] = ()
    config: tuple[tuple[str, Any], ...] = ()
    deploy: bool = False
    input_range: float | None = None
    channels: str | None = None


def choose_models(
    choice: ModelChoice, scales: Sequence[int], log: Callable[[str], None] = print, cache: dict | None = None
) -> tuple[list, set[str]]:
    """``LoadedModel`` for each reference x scale of ``scales`` it supports (random weights: counts
    and timings do not depend on them), and the names of the highlighted ones (which must be shown).
    ``cache``: zoo models already built by an earlier call (``{(name, scale): LoadedModel}``), reused."""
    import zoo
    from memsr_bench.model import load_model, resolve_model

    refs = list(dict.fromkeys(choice.refs)) or zoo.names()
    missing = [h for h in choice.highlight if h not in refs]
    if missing:
        raise MemsrInputError("--highlight", f"{', '.join(missing)} not among the models shown; add it to --models")
    loaded, highlighted = [], set()
    for ref in refs:
        user = ref not in zoo.names()
        entry = resolve_model(
            ref, input_range=choice.input_range if user else None, channels=choice.channels if user else None
        )
        usable = [s for s in scales if not entry.spec.scales or s in entry.spec.scales]
        if not usable:
            log(f"{ref}: no scale of {', '.join(f'x{s}' for s in scales)} (its scales: {list(entry.spec.scales)})")
        if ref in choice.highlight:
            highlighted.add(entry.name)
        for scale in usable:
            if not user and cache is not None and (ref, scale) in cache:
                loaded.append(cache[ref, scale])
                continue
            model = load_model(
                entry, scale, config=dict(choice.config) if user else None, deploy=choice.deploy and user
            )
            if not user and cache is not None:
                cache[ref, scale] = model
            loaded.append(model)
    return loaded, highlighted


def efficiency_frame(
    models: Sequence,
    preset: str,
    store: ResultsStore | None,
    *,
    highlight: set[str] = frozenset(),
    runtime: bool = False,
    device: str = "cpu",
    options: RuntimeOptions | None = None,
    max_gmacs: float | None = None,
    force: bool = False,
    progress: bool | None = None,
    max_memory: int | None = None,
    cluster: Any = None,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per loaded model at ``preset``'s input: every count quantity, the predicted peak and,
    with ``runtime``, runtime (median, IQR, threads) and measured peak memory; and notes (skips).

    With a store, the cells missing from it are first computed as a sweep (:func:`run_cells`: here, or
    on ``cluster``, a ``distributed.Client``); a failed cell leaves its row or columns empty, with its
    reason in the notes."""
    preset_obj = get_preset(preset)
    shapes = [preset_obj.input_shape(m.scale, channels=input_channels(m.module)) for m in models]
    if store is not None:
        _sweep(models, shapes, preset, store, runtime, device, options, max_gmacs, force, progress, max_memory, cluster)
        force = False  # every cell is stored (or failed) now
    rows, heavy, failed = [], [], []
    for model, shape in zip(models, shapes, strict=True):
        try:
            counts = stored_counts(store, model, shape, force, max_memory)
        except CellFailedError as err:
            failed.append(f"{model.name} x{model.scale} counts ({err.reason})")
            continue
        row: dict[str, Any] = {
            "model": model.name,
            "scale": model.scale,
            "input": f"{shape[2]}x{shape[3]}",
            "highlight": model.name in highlight,
            "fingerprint": model.fingerprint,
            **{q: counts.get(q) for q in (*COUNT_QUANTITIES, "params_used")},
            "peak_node": counts.get("details", {}).get("peak_node"),
        }
        if runtime:
            if max_gmacs is not None and counts["macs"] / 1e9 > max_gmacs:
                heavy.append(f"{model.name} x{model.scale} ({counts['macs'] / 1e9:,.0f} G MACs)")
            else:
                try:
                    timing = stored_runtime(store, model, shape, device, options, force, max_memory)
                    memory = stored_memory(store, model, shape, device, force, max_memory)
                except CellFailedError as err:
                    failed.append(f"{model.name} x{model.scale} {err.key.kind} ({err.reason})")
                    rows.append(row)
                    continue
                row.update(
                    runtime_ms=timing["runtime_ms"],
                    runtime_iqr_ms=timing["runtime_iqr_ms"],
                    threads=timing["details"].get("threads"),
                    peak_memory_bytes_measured=memory["peak_memory_bytes_measured"],
                    device=device_label(device),
                )
        rows.append(row)
    notes = [f"Failed: {', '.join(failed)}; a rerun tries again."] if failed else []
    if heavy:
        notes.append(
            f"Runtime and measured memory skipped above {max_gmacs:g} G MACs per pass on {device} "
            f"(--max-gmacs, or a GPU): {', '.join(heavy)}."
        )
    return pd.DataFrame(rows), notes


def _sweep(models, shapes, preset, store, runtime, device, options, max_gmacs, force, progress, max_memory, cluster):
    """Compute the missing cells of :func:`efficiency_frame` as one sweep: counts, then the timings of
    the models under ``max_gmacs`` (which the counts decide)."""
    from memsr_bench.results.jobs import counts_cell, memory_cell, run_cells, runtime_cell

    cells = [counts_cell(m, shape, max_memory) for m, shape in zip(models, shapes, strict=True)]
    run_cells(cells, store, cluster=cluster, force=force, progress=progress, desc=f"counts {preset}")
    if not runtime:
        return
    timed = []
    for cell, model, shape in zip(cells, models, shapes, strict=True):
        row = store.get(cell.keys[0])
        if row is not None and (max_gmacs is None or row.values["macs"] / 1e9 <= max_gmacs):
            timed += [
                runtime_cell(model, shape, device, options, max_memory),
                memory_cell(model, shape, device, max_memory),
            ]
    run_cells(timed, store, cluster=cluster, force=force, progress=progress, desc=f"runtime {preset}")


def published_efficiency_columns(frame: pd.DataFrame, source_prefix: str, reference_dir: Path | None) -> pd.DataFrame:
    """``frame`` with the source's published efficiency columns beside it (``*_published``)."""
    from memsr_bench.reporting.published import join_published, published_efficiency

    columns = {
        "params_k": "params_k_published",
        "macs_g": "macs_g_published",
        "runtime_ms": "runtime_ms_published",
        "runtime_device": "runtime_device_published",
        "memory_mb": "memory_mb_published",
        "activations_m": "activations_m_published",
        "convs": "convs_published",
    }
    if reference_dir is None or frame.empty or not source_prefix:
        return frame.assign(**{c: float("nan") for c in columns.values()})
    return join_published(frame, published_efficiency(reference_dir), source_prefix, ("scale",), columns)
