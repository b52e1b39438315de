"""Tidy points of the trade-off figures: PSNR (or MACs) against memory or runtime, one row per model.

Each point joins a model's stored quality row (same name and architecture fingerprint: an edited model
never gets its old PSNR) with its counts at a preset's input (measured if missing) and its stored
runtime. Models come from references (:func:`memsr_bench.reporting.efficiency.choose_models`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from memsr_bench.measure.presets import get_preset
from memsr_bench.measure.profile import input_channels
from memsr_bench.results.cells import latest_quality, latest_runtime, stored_counts
from memsr_bench.results.store import ResultsStore

__all__ = ["efficiency_points", "psnr_points"]


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
        quality = latest_quality(store, model, dataset, y_variant)
        if quality is not None:
            with_psnr.append((model, {"psnr": quality["psnr"], "weights_sha256": quality["weights_sha256"]}))
    points = efficiency_points([m for m, _ in with_psnr], highlighted, store, preset)
    if points.empty:
        return points
    # One device for the runtime axis: the one most of these models were timed on.
    timed = [latest_runtime(store, m, shape) for (m, _), shape in zip(with_psnr, points["shape"], strict=True)]
    devices = [t["runtime_device"] for t in timed if t is not None]
    device = max(set(devices), key=devices.count) if devices else None
    extra = []
    for (model, quality), shape in zip(with_psnr, points["shape"], strict=True):
        runtime = latest_runtime(store, model, shape, device) if device else None
        extra.append({**quality, **(runtime or {})})
    return pd.concat([points, pd.DataFrame(extra, index=points.index)], axis=1)
