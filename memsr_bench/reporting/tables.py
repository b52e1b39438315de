"""The published comparison tables, measured here for any models, beside the papers' figures.

Presets (:data:`PRESETS`):

- ``fmen-table3``: FMEN Table 3: params and Mult-Adds (``conv_macs`` at HR 1280x720), PSNR/SSIM (Y) at
  x2/x3/x4 on Set5, Set14, B100, Urban100 and Manga109;
- ``fmen-table4``: FMEN Table 4 (NTIRE 2022 ESR, x4, LR 256x256): params, ``ntire2022_flops``, runtime,
  peak memory, ``ntire2022_activations``, ``ntire2022_convs``;
- ``memsr-table``: the MemSR comparison at HR 1920x1080: params, ``thop_0031_macs`` (printed as FLOPs),
  runtime, peak memory, PSNR/SSIM on Set5, Set14, B100 and Urban100;
- ``cdism``: the project figure of "Compressing Deep Image Super-resolution Models" (x2): params,
  ``macs`` at HR 1280x720 (the figure's FLOPs: attention matmuls included), the predicted peak, PSNR on
  Set5 and Set14 and their mean (the figure's axis); published values read off the plot (about ±10 % and
  ±0.02 dB).

Rows: the zoo's models by default, or the references given (``--models``: zoo names and the user's
own models mixed), ``--highlight`` marking some. Every measured number comes from the store's cells
(:mod:`memsr_bench.results.cells`); published numbers sit beside them with the difference where the
conventions agree. A model's PSNR/SSIM is measured when its public checkpoint is in ``weights``;
otherwise the table shows its stored quality rows (``memsr-bench eval`` writes them) for the same
architecture fingerprint. Anything not measured is missing, never filled in.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.presets import get_preset
from memsr_bench.measure.profile import RuntimeOptions
from memsr_bench.measure.quantities import QUANTITIES
from memsr_bench.reporting.efficiency import ModelChoice, choose_models, efficiency_frame, published_efficiency_columns
from memsr_bench.reporting.render import Column, Table
from memsr_bench.results.store import ResultsStore

__all__ = ["CPU_MAX_GMACS", "CPU_TIMING", "CUDA_TIMING", "PRESETS", "TableSpec", "build_table"]

# On CPU, runtime and measured memory are skipped above this many G MACs per pass (a few passes of
# 200 G MACs take about a minute on a 2-core machine); --max-gmacs changes it.
CPU_MAX_GMACS = 200.0
CPU_TIMING = RuntimeOptions(warmup=1, repeats=3)
CUDA_TIMING = RuntimeOptions(warmup=10, repeats=100)  # MemSR protocol


@dataclass(frozen=True)
class TableSpec:
    """What a preset shows: which efficiency preset, which published source, which scales and data sets."""

    name: str
    title: str
    efficiency_preset: str
    source: str  # source prefix of the published rows
    scales: tuple[int, ...]
    datasets: tuple[str, ...] = ()  # quality data sets (folder names; B100 is BSD100)
    runtime: bool = False  # measure runtime and peak memory
    memory_diff: bool = False  # the published memory follows a comparable protocol (one pass, same input)
    extra_counts: tuple[str, ...] = field(default=())  # more reported quantities (NTIRE activations, convs)
    predicted_memory: bool = False  # show the predicted peak (no runtime pass needed)
    mean_of: tuple[str, ...] = ()  # also the mean PSNR over these data sets ("Set5+Set14 mean"), as published


PRESETS: dict[str, TableSpec] = {
    s.name: s
    for s in (
        TableSpec(
            "fmen-table3",
            "FMEN Table 3: params, Mult-Adds (HR 1280x720) and PSNR/SSIM (Y)",
            "fmen",
            "FMEN Table 3",
            (2, 3, 4),
            datasets=("Set5", "Set14", "BSD100", "Urban100", "Manga109"),
        ),
        TableSpec(
            "fmen-table4",
            "FMEN Table 4 (NTIRE 2022 ESR, x4, LR 256x256): params, FLOPs, runtime, memory, activations, convs",
            "ntire2022",
            "FMEN Table 4",
            (4,),
            runtime=True,
        ),
        TableSpec(
            "memsr-table",
            "MemSR comparison at HR 1920x1080: params, MACs, runtime, memory, PSNR/SSIM (Y)",
            "memsr",
            "MemSR",
            (2, 3, 4),
            datasets=("Set5", "Set14", "BSD100", "Urban100"),
            runtime=True,
            memory_diff=True,
        ),
        TableSpec(
            "cdism",
            "Compressing Deep Image SR Models (project figure), x2: params, FLOPs (HR 1280x720), predicted peak "
            "memory, Set5/Set14 PSNR",
            "cdism",
            "CDISM project figure",
            (2,),
            datasets=("Set5", "Set14"),
            predicted_memory=True,
            mean_of=("Set5", "Set14"),
        ),
    )
}


def _diff_pct(measured: pd.Series, published: pd.Series) -> pd.Series:
    m, p = pd.to_numeric(measured, errors="coerce"), pd.to_numeric(published, errors="coerce")
    return 100 * (m - p) / p


def _efficiency_columns(frame: pd.DataFrame, spec: TableSpec) -> tuple[pd.DataFrame, list[Column]]:
    """Published figures converted to the measured units (counts, bytes), differences, and how each is shown.

    The data (the CSV) keep the units of the quantities; only the shown columns divide (K, G, M, MiB).
    """
    data = frame.copy()
    data["params_published"] = data["params_k_published"] * 1e3
    data["params_diff_pct"] = _diff_pct(data["params"], data["params_published"])
    columns = [
        Column("model"),
        Column("scale"),
        Column("input", "LR input"),
        Column("params", "params (K)", ",.1f", 1e3),
        Column("params_published", "params published (K)", ",.0f", 1e3),
        Column("params_diff_pct", "params diff %", "+.1f"),
    ]
    published_columns = ("macs_g_published", "activations_m_published", "convs_published")
    for (label, quantity), published, factor in zip(
        get_preset(spec.efficiency_preset).reported, published_columns, (1e9, 1e6, 1), strict=False
    ):
        data[f"{quantity}_published"] = data[published] * factor
        if factor == 1:  # a count of convolutions: the difference itself
            data[f"{quantity}_diff"] = data[quantity] - data[f"{quantity}_published"]
            columns += [
                Column(quantity, f"{label} [{quantity}]", ".0f"),
                Column(f"{quantity}_published", f"{label} published", ".0f"),
                Column(f"{quantity}_diff", f"{label} diff", "+.0f"),
            ]
            continue
        unit = "G" if factor == 1e9 else "M"
        data[f"{quantity}_diff_pct"] = _diff_pct(data[quantity], data[f"{quantity}_published"])
        columns += [
            Column(quantity, f"{label} [{quantity}] ({unit})", ",.2f", factor),
            Column(f"{quantity}_published", f"{label} published ({unit})", ",.2f", factor),
            Column(f"{quantity}_diff_pct", f"{label} diff %", "+.1f"),
        ]
    if spec.predicted_memory and not spec.runtime:
        columns.append(Column("peak_memory_bytes_predicted", "predicted peak (MiB)", ",.1f", 2**20))
    if spec.runtime:
        if "peak_memory_bytes_measured" not in data:
            data["peak_memory_bytes_measured"] = float("nan")
        columns += [
            Column("runtime_ms", "runtime (ms)", ",.1f"),
            Column("runtime_iqr_ms", "IQR (ms)", ",.1f"),
            Column("threads", "threads", ".0f"),
            Column("runtime_ms_published", "runtime published (ms)", ",.1f"),
            Column("peak_memory_bytes_measured", "peak memory (MiB)", ",.1f", 2**20),
            Column("peak_memory_bytes_predicted", "predicted peak (MiB)", ",.1f", 2**20),
            Column("memory_mb_published", "memory published (MB)", ",.1f"),
        ]
        if spec.memory_diff:
            data["memory_diff_pct"] = _diff_pct(data["peak_memory_bytes_measured"] / 2**20, data["memory_mb_published"])
            columns.append(Column("memory_diff_pct", "memory diff %", "+.1f"))
    return data, columns


def _efficiency_notes(
    spec: TableSpec, data: pd.DataFrame, reference_dir: Path | None, device: str, options: RuntimeOptions
) -> list[str]:
    preset = get_preset(spec.efficiency_preset)
    notes = [f"Preset {spec.efficiency_preset}: {preset.convention}."]
    notes += [f"{label} = `{q}`: {QUANTITIES[q].definition}." for label, q in preset.reported]
    notes.append(f"params = `params`: {QUANTITIES['params'].definition}.")
    if spec.runtime:
        devices = sorted({d for d in data.get("runtime_device_published", pd.Series(dtype=object)).dropna()})
        measured_on = sorted(set(data["device"].dropna())) if "device" in data else []
        notes.append(
            f"Runtime: {options.convention()}, float32, random weights, on {', '.join(measured_on) or device}; "
            "IQR = interquartile range of the timed passes; threads = torch threads. Published runtime: "
            + (", ".join(devices) if devices else "none for these models")
            + "; no difference is given, the devices differ."
        )
        notes.append(
            "Peak memory: measured live tensor storage (CPU) or torch.cuda.max_memory_allocated (CUDA); predicted = "
            "live tensor storage of the traced graph. "
            + (
                "Published memory: CUDA max_memory_allocated for one pass at the same HR output; diff % reads the "
                "published MB as MiB."
                if spec.memory_diff
                else "Published memory: CUDA max_memory_allocated over the whole DIV2K-valid x4 loop (never reset), a "
                "different protocol from one 256x256 pass: no difference is given."
            )
        )
    if reference_dir is None:
        notes.append("Published columns empty: no published tables found (../shared/reference or --reference).")
    else:
        notes.append(f"Published: {spec.source} ({os.path.relpath(reference_dir)}); diff = measured - published.")
    if data.get("highlight", pd.Series(dtype=bool)).any():
        notes.append("★ marks the highlighted models (--highlight).")
    return notes


def build_table(
    preset: str | TableSpec,
    store: ResultsStore | None,
    *,
    models: ModelChoice | None = None,
    data_root: Path | None = None,
    weights: Path | None = None,
    reference_dir: Path | None = None,
    device: str = "cpu",
    runtime: RuntimeOptions | None = None,
    max_gmacs: float | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
    max_memory: int | None = None,
    model_cache: dict | None = None,
    cluster: Any = None,
) -> Table:
    """Build one preset (see the module docstring); every measured cell goes through ``store``.

    ``max_gmacs``: skip runtime and measured memory above this many G MACs (default
    :data:`CPU_MAX_GMACS` on CPU, no limit on CUDA); ``runtime`` defaults to :data:`CPU_TIMING` on CPU
    and :data:`CUDA_TIMING` on CUDA. ``cluster``: a ``distributed.Client`` that computes the missing
    cells (:mod:`memsr_bench.results.jobs`); None computes them here.
    """
    if isinstance(preset, str) and preset not in PRESETS:
        raise MemsrInputError("PRESET", f"unknown table preset {preset!r}; choose one of {', '.join(PRESETS)}")
    spec = PRESETS[preset] if isinstance(preset, str) else preset
    cuda = device.startswith("cuda")
    options = runtime or (CUDA_TIMING if cuda else CPU_TIMING)
    max_gmacs = max_gmacs if max_gmacs is not None or cuda else CPU_MAX_GMACS
    loaded, highlighted = choose_models(models or ModelChoice(), spec.scales, log, model_cache)
    frame, notes = efficiency_frame(
        loaded,
        spec.efficiency_preset,
        store,
        highlight=highlighted,
        runtime=spec.runtime,
        device=device,
        options=options,
        max_gmacs=max_gmacs,
        force=force,
        max_memory=max_memory,
        cluster=cluster,
    )
    frame = published_efficiency_columns(frame, spec.source, reference_dir)
    data, columns = _efficiency_columns(frame, spec)
    notes = _efficiency_notes(spec, data, reference_dir, device, options) + notes
    notes += [
        f"{m.name} x{m.scale}: {m.entry.origin}; input {m.entry.describe_input()}; fingerprint {m.fingerprint}"
        + (f"; config {m.config}" if m.config else "")
        + (f"; deploy form ({len(m.deploy_calls)} calls)" if m.deploy_calls else "")
        + "."
        for m in loaded
        if m.entry.origin != "zoo"
    ]
    if spec.datasets:
        from memsr_bench.reporting.quality import quality_columns

        data, quality, quality_notes = quality_columns(
            data, loaded, spec, data_root, weights, reference_dir, store, device, force, cluster
        )
        columns += quality
        notes += quality_notes
    data = data.sort_values(["scale", "model"], key=_sort_key, kind="stable").reset_index(drop=True)
    return Table(name=spec.name, title=spec.title, data=data, columns=columns, notes=notes)


def _sort_key(column: pd.Series) -> pd.Series:
    if column.name == "model":  # bicubic first, as in the papers
        return column.map(lambda m: ("0" if m == "bicubic" else "1") + str(m))
    return column
