"""Tidy points of the trade-off figures: PSNR (or MACs) against memory or runtime, one row per model.

Each point joins a model's stored quality row (same name and architecture fingerprint: an edited model
never gets its old PSNR) with its counts at a preset's input (measured if missing) and its stored
runtime. Models come from references (:func:`memsr_bench.reporting.efficiency.choose_models`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from memsr_bench.measure.presets import get_preset
from memsr_bench.measure.profile import input_channels
from memsr_bench.results.cells import stored_counts
from memsr_bench.results.store import ResultsStore, input_size

__all__ = ["efficiency_points", "psnr_points"]


def _latest_quality(store: ResultsStore, model, dataset: str, y_variant: str) -> dict | None:
    rows = store.rows(kind="quality", model=model.name, scale=model.scale, data=dataset, fingerprint=model.fingerprint)
    wanted = {"channel": "y", "y_variant": y_variant, "crop_border": model.scale}
    rows = [r for r in rows if wanted.items() <= json.loads(r.key.conventions).items()]
    if not rows:
        return None
    row = max(rows, key=lambda r: r.measured_at)
    return {"psnr": row.values["psnr"], "weights_sha256": row.key.checkpoint}


def _latest_runtime(store: ResultsStore, model, shape) -> dict | None:
    rows = store.rows(
        kind="runtime", model=model.name, scale=model.scale, data=input_size(shape), fingerprint=model.fingerprint
    )
    if not rows:
        return None
    row = max(rows, key=lambda r: r.measured_at)
    return {
        "runtime_ms": row.values["runtime_ms"],
        "runtime_iqr_ms": row.values.get("runtime_iqr_ms"),
        "threads": row.values.get("details", {}).get("threads"),
        "runtime_device": row.key.device,
    }


def efficiency_points(models: Sequence, highlighted: set[str], store: ResultsStore, preset: str) -> pd.DataFrame:
    """One row per model: params, MACs, predicted peak (MiB) at ``preset``'s input, highlight flag."""
    rows = []
    for model in models:
        shape = get_preset(preset).input_shape(model.scale, channels=input_channels(model.module))
        counts = stored_counts(store, model, shape)
        rows.append(
            {
                "model": model.name,
                "scale": model.scale,
                "channels": model.entry.channels,
                "highlight": model.name in highlighted,
                "params": counts["params"],
                "macs": counts["macs"],
                "gmacs": counts["macs"] / 1e9,
                "peak_mib": counts["peak_memory_bytes_predicted"] / 2**20,
                "shape": shape,
            }
        )
    return pd.DataFrame(rows)


def psnr_points(
    models: Sequence, highlighted: set[str], store: ResultsStore, dataset: str, preset: str, y_variant: str = "float"
) -> pd.DataFrame:
    """:func:`efficiency_points` of the models with a stored PSNR on ``dataset``, with that PSNR and,
    where stored, the runtime (median, IQR, threads, device) at the preset's input."""
    with_psnr = []
    for model in models:
        quality = _latest_quality(store, model, dataset, y_variant)
        if quality is not None:
            with_psnr.append((model, quality))
    points = efficiency_points([m for m, _ in with_psnr], highlighted, store, preset)
    if points.empty:
        return points
    extra = []
    for (model, quality), shape in zip(with_psnr, points["shape"], strict=True):
        runtime = _latest_runtime(store, model, shape) or {}
        extra.append({**quality, **runtime})
    return pd.concat([points, pd.DataFrame(extra, index=points.index)], axis=1)
