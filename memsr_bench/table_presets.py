"""``memsr-bench table PRESET``: the published comparison tables, measured here, beside the papers' figures.

Presets:

- ``fmen-table3``: FMEN Table 3. Params and Mult-Adds (conv MACs at HR 1280x720) of every zoo model
  and scale; PSNR/SSIM (BT.601 Y) at x2/x3/x4 on Set5, Set14, B100, Urban100 and Manga109 for bicubic
  and the zoo models with public weights.
- ``fmen-table4``: FMEN Table 4 (NTIRE 2022 ESR, x4, LR 256x256): params, FLOPs, runtime, peak memory,
  activations and convs.
- ``memsr-table``: the MemSR comparison at HR 1920x1080: params, MACs (thop 0.0.31 convention),
  runtime, peak memory, and PSNR/SSIM on Set5, Set14, B100 and Urban100.

Nothing is measured here that the rest of the package does not already measure: the counts and the
predicted peak come from :func:`memsr_bench.report.efficiency_table`, the published efficiency
columns from :func:`memsr_bench.report.with_published_efficiency`, PSNR/SSIM from
:func:`memsr_bench.quality_sweep.sweep_quality`, runtime and measured peak memory from
:mod:`memsr_bench.measure`; every cell is cached in the results store (runtime and memory keyed with
the device named), so a second run only reads it.

Every measured figure sits beside the published one with the difference (measured - published,
or in % of the published figure) where both follow the same convention; where they do not (runtime on
another device, the NTIRE memory protocol) the published figure is shown without a difference and a
note says why. Anything not measured (no weights, no data set, a cell too heavy for the CPU) is
missing, never filled in.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memsr_bench.errors import MemsrInputError
from memsr_bench.results import ResultKey, ResultsStore, cached, input_size

if TYPE_CHECKING:  # pandas is imported where it is used: registering the CLI stays cheap
    import pandas as pd

__all__ = [
    "FORMATS",
    "PRESETS",
    "PresetTable",
    "TableSpec",
    "add_table_parser",
    "build_table",
]

FORMATS = ("md", "csv", "latex")
# On CPU, runtime and measured memory are skipped above this many MACs per forward pass (a few
# passes of 200 G MACs take about a minute on a 2-core machine); --max-gmacs changes it.
CPU_MAX_GMACS = 200.0
CPU_TIMING = (1, 3)  # (warm-up, timed passes) on CPU: cheap, and said in the notes
CUDA_TIMING = (10, 100)  # MemSR protocol: 10 warm-up passes, 100 timed passes


@dataclass(frozen=True)
class TableSpec:
    """What a preset shows: which efficiency preset, which published source, which data sets."""

    name: str
    title: str
    efficiency_preset: str  # report preset: fmen, ntire2022 or memsr
    source: str  # source prefix of the published rows
    datasets: tuple[str, ...] = ()  # quality data sets (folder names; B100 is BSD100)
    runtime: bool = False  # measure runtime and peak memory
    memory_diff: bool = False  # the published memory follows a comparable protocol (one pass, same input)
    ntire_counts: bool = False  # activations and convs columns


PRESETS: dict[str, TableSpec] = {
    s.name: s
    for s in (
        TableSpec(
            name="fmen-table3",
            title="FMEN Table 3: params, Mult-Adds (HR 1280x720) and PSNR/SSIM (Y)",
            efficiency_preset="fmen",
            source="FMEN Table 3",
            datasets=("Set5", "Set14", "BSD100", "Urban100", "Manga109"),
        ),
        TableSpec(
            name="fmen-table4",
            title="FMEN Table 4 (NTIRE 2022 ESR, x4, LR 256x256): params, FLOPs, runtime, memory, activations, convs",
            efficiency_preset="ntire2022",
            source="FMEN Table 4",
            runtime=True,
            ntire_counts=True,
        ),
        TableSpec(
            name="memsr-table",
            title="MemSR comparison at HR 1920x1080: params, MACs, runtime, memory, PSNR/SSIM (Y)",
            efficiency_preset="memsr",
            source="MemSR",
            datasets=("Set5", "Set14", "BSD100", "Urban100"),
            runtime=True,
            memory_diff=True,
        ),
    )
}


@dataclass
class PresetTable:
    """A built preset: ``data`` (numeric, one row per model x scale; the CSV), ``shown`` (formatted
    strings, missing as None; Markdown and LaTeX) and the notes that go with it."""

    spec: TableSpec
    data: pd.DataFrame
    shown: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        from memsr_bench.tables import markdown_table

        lines = [f"# {self.spec.title}", "", *[f"- {n}" for n in self.notes], "", markdown_table(self.shown), ""]
        return "\n".join(lines)

    def to_csv(self) -> str:
        return self.data.to_csv(index=False)

    def to_latex(self) -> str:
        return _latex(self.shown, self.spec.title, f"tab:{self.spec.name}", self.notes)

    def render(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise MemsrInputError("--format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return {"md": self.to_markdown, "csv": self.to_csv, "latex": self.to_latex}[fmt]()

    def write(self, stem: Path) -> list[Path]:
        """``stem``.md, .csv and .tex; returns the files written."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = []
        for fmt, suffix in (("md", ".md"), ("csv", ".csv"), ("latex", ".tex")):
            path = stem.with_name(stem.name + suffix)
            path.write_text(self.render(fmt))
            paths.append(path)
        return paths


# ----------------------------------------------------------------------------- measurement


def _device_label(device: str) -> str:
    """``"cpu (AMD EPYC ...)"``, ``"cuda:0 (NVIDIA H100 ...)"``: the device field of runtime/memory keys."""
    import torch

    from memsr_bench.measure.runtime import device_name

    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return f"{dev} ({device_name(dev)})"


def _timing_for(device: str, warmup: int | None, repeats: int | None) -> tuple[int, int]:
    default = CUDA_TIMING if device.startswith("cuda") else CPU_TIMING
    return (default[0] if warmup is None else warmup, default[1] if repeats is None else repeats)


def _model_input(name: str, scale: int, lr_shape: tuple[int, int]):
    import torch

    import zoo

    spec = zoo.get_spec(name)
    model = zoo.create(name, scale=scale)
    channels = 1 if spec.channels == "y" else 3
    generator = torch.Generator().manual_seed(0)
    x = torch.rand((1, channels, *lr_shape), generator=generator) * spec.input_range
    return model, x


def measure_runtime_memory(
    model_name: str,
    scale: int,
    lr_shape: tuple[int, int],
    store: ResultsStore | None,
    device: str = "cpu",
    warmup: int = 1,
    repeats: int = 3,
    force: bool = False,
) -> dict[str, Any]:
    """Runtime (median ms) and measured peak memory of one random-init forward pass, via the store.

    Keys: ``kind="runtime"`` / ``"memory"``, ``checkpoint="random-init"`` (neither depends on the
    weights), ``data`` = the input shape, ``device`` = the device with its name, the timing
    protocol and thread count in ``conventions``.
    """
    import torch

    from memsr_bench.measure import measure_peak_memory, measure_runtime

    label = _device_label(device)
    shape = (1, 1 if _channels(model_name) == 1 else 3, *lr_shape)
    runtime_key = ResultKey(
        kind="runtime",
        model=model_name,
        checkpoint="random-init",
        scale=scale,
        data=input_size(shape),
        conventions={
            "protocol": "default (median)",
            "warmup": warmup,
            "repeats": repeats,
            "threads": torch.get_num_threads() if label.startswith("cpu") else None,
            "batch": 1,
            "dtype": "float32",
        },
        device=label,
    )
    memory_key = ResultKey(
        kind="memory",
        model=model_name,
        checkpoint="random-init",
        scale=scale,
        data=input_size(shape),
        conventions={"batch": 1, "dtype": "float32"},
        device=label,
    )

    def time_it() -> dict[str, Any]:
        model, x = _model_input(model_name, scale, lr_shape)
        result = measure_runtime(model, x, device=device, warmup=warmup, repeats=repeats)
        return {
            "ms": result.ms,
            "median_ms": result.median_ms,
            "iqr_ms": result.iqr_ms,
            "mean_ms": result.mean_ms,
            "samples_ms": result.samples_ms,
            "threads": result.threads,
            "device_name": result.device_name,
        }

    def peak() -> dict[str, Any]:
        model, x = _model_input(model_name, scale, lr_shape)
        result = measure_peak_memory(model, x, device=device)
        return {
            "peak_bytes": result.peak_bytes,
            "weights_bytes": result.weights_bytes,
            "input_bytes": result.input_bytes,
            "activations_bytes": result.activations_bytes,
            "method": result.method,
        }

    timing = cached(store, runtime_key, time_it, force=force)
    memory = cached(store, memory_key, peak, force=force)
    return {"runtime_ms": timing["ms"], "peak_bytes_measured": memory["peak_bytes"], "memory_method": memory["method"]}


def _channels(model_name: str) -> int:
    import zoo

    return 1 if zoo.get_spec(model_name).channels == "y" else 3


# ----------------------------------------------------------------------------- published


def _published_runtime(table: pd.DataFrame, source: str, reference_dir: Path | None) -> tuple[list, list]:
    """Published runtime (ms) and its device for each row of an efficiency table (None where absent)."""
    import pandas as pd

    if reference_dir is None:
        return [None] * len(table), [None] * len(table)
    from memsr_bench.published import published_efficiency, published_name

    published = published_efficiency(reference_dir)
    published = published[published["source"].str.startswith(source)]
    lookup = {(row.model, int(row.scale)): row for row in published.itertuples()}
    matches = [
        lookup.get((published_name(m, source), int(s))) for m, s in zip(table["model"], table["scale"], strict=True)
    ]
    ms = [m.runtime_ms if m is not None and pd.notna(m.runtime_ms) else None for m in matches]
    devices = [m.runtime_device if m is not None and pd.notna(m.runtime_device) else None for m in matches]
    return ms, devices


def _diff_pct(measured: pd.Series, published: pd.Series) -> pd.Series:
    import pandas as pd

    m, p = pd.to_numeric(measured, errors="coerce"), pd.to_numeric(published, errors="coerce")
    return 100 * (m - p) / p


# ----------------------------------------------------------------------------- building


def _efficiency_part(
    spec: TableSpec,
    store: ResultsStore | None,
    reference_dir: Path | None,
    device: str,
    warmup: int,
    repeats: int,
    max_gmacs: float | None,
    force: bool,
    log: Callable[[str], None],
) -> tuple[pd.DataFrame, list[str]]:
    import pandas as pd

    from memsr_bench import report
    from memsr_bench.measure import get_preset

    notes: list[str] = []
    cells = report.report_cells([spec.efficiency_preset])
    table, skipped = report.efficiency_table(cells, store, force=force, log=log)
    notes += [f"Counts skipped for {s}." for s in skipped]
    if table.empty:
        return pd.DataFrame(columns=["model", "scale"]), notes
    preset = get_preset(spec.efficiency_preset)
    label = table["macs_label"].iloc[0]
    published = report.with_published_efficiency(table, spec.efficiency_preset, reference_dir)

    def pub(column: str) -> pd.Series:
        if column in published:
            return pd.to_numeric(published[column], errors="coerce")
        return pd.Series([float("nan")] * len(table), index=table.index)

    data = pd.DataFrame({"model": table["model"], "scale": table["scale"], "LR input": table["input"]})
    data["params"] = table["params"]
    data["params (K)"] = table["params"] / 1e3
    data["params published (K)"] = pub("params published (K)")
    data["params diff %"] = _diff_pct(data["params (K)"], data["params published (K)"])
    macs = f"{label} (G)"
    data[macs] = table["macs"] / 1e9
    data[f"{label} published (G)"] = pub(f"{macs} published")
    data[f"{label} diff %"] = _diff_pct(data[macs], data[f"{label} published (G)"])
    if spec.ntire_counts:
        data["activations (M)"] = table["activations"] / 1e6
        data["activations published (M)"] = pub("activations published (M)")
        data["activations diff %"] = _diff_pct(data["activations (M)"], data["activations published (M)"])
        data["convs"] = table["convs"]
        data["convs published"] = pub("convs published")
        data["convs diff"] = data["convs"] - data["convs published"]
    if spec.runtime:
        runtime, peak, method = [], [], set()
        heavy = []
        for row in table.itertuples():
            if max_gmacs is not None and row.macs / 1e9 > max_gmacs:
                runtime.append(None)
                peak.append(None)
                heavy.append(f"{row.model} x{row.scale} ({row.macs / 1e9:,.0f} G {label})")
                continue
            lr_shape = preset.lr_shape(row.scale)
            values = measure_runtime_memory(row.model, row.scale, lr_shape, store, device, warmup, repeats, force)
            runtime.append(values["runtime_ms"])
            peak.append(values["peak_bytes_measured"] / 2**20)
            method.add(values["memory_method"])
        published_ms, published_device = _published_runtime(table, spec.source, reference_dir)
        data["runtime (ms)"] = pd.to_numeric(pd.Series(runtime, index=table.index, dtype=object))
        data["runtime published (ms)"] = pd.to_numeric(pd.Series(published_ms, index=table.index, dtype=object))
        data["peak memory (MiB)"] = pd.to_numeric(pd.Series(peak, index=table.index, dtype=object))
        data["predicted peak (MiB)"] = table["peak_bytes_predicted"] / 2**20
        data["memory published (MB)"] = pub("published memory (MB, CUDA)")
        if spec.memory_diff:
            data["memory diff %"] = _diff_pct(data["peak memory (MiB)"], data["memory published (MB)"])
        devices = sorted({d for d in published_device if d})
        is_cpu = not device.startswith("cuda")
        notes.append(
            f"Runtime: median of {repeats} forward passes after {warmup} warm-up, batch 1, float32, random "
            f"weights, on {_device_label(device)}"
            + (f" with {_threads()} threads" if is_cpu else "")
            + ". Published runtime: "
            + (", ".join(devices) if devices else "none for these models")
            + "; no difference is given, the devices differ."
        )
        notes.append(
            "Peak memory: "
            + (", ".join(sorted(method)) if method else "not measured")
            + "; predicted peak = live tensor storage of the traced graph (eager frees). "
            + (
                "Published memory: CUDA max_memory_allocated for one pass at the same HR output, batch 1; "
                "diff % = measured vs published, the published MB read as MiB (if they are 10^6 bytes the diff "
                "shifts by +4.9 points)"
                + ("; CPU live storage has no cuDNN workspaces nor allocator rounding." if is_cpu else ".")
                if spec.memory_diff
                else "Published memory: CUDA max_memory_allocated over the whole DIV2K-valid x4 loop (never "
                "reset), a different protocol from one 256x256 pass: no difference is given."
            )
        )
        if heavy:
            notes.append(
                f"Runtime and memory not measured (above {max_gmacs:g} G {label} per pass on {device}; "
                f"use --max-gmacs or a GPU): {', '.join(heavy)}."
            )
    notes.insert(0, f"Counting convention ({spec.efficiency_preset}): {preset.convention}.")
    return data, notes


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _quality_models(cells_models: Sequence[str]) -> list[str]:
    import zoo

    return [
        m for m in dict.fromkeys(cells_models) if any(zoo.get_spec(m).checkpoint_for(s) for s in zoo.get_spec(m).scales)
    ]


def _quality_part(
    spec: TableSpec,
    models: Sequence[str],
    scales: Sequence[int],
    data_root: Path | None,
    weights: Path | None,
    store: ResultsStore | None,
    device: str,
    force: bool,
) -> tuple[pd.DataFrame, list[str]]:
    """Measured PSNR/SSIM (float Y) in long form: model, scale, dataset, psnr, ssim; and notes."""
    import pandas as pd

    from memsr_bench.quality_sweep import sweep_quality
    from memsr_bench.results import checkpoint_id

    empty = pd.DataFrame(columns=["model", "scale", "dataset", "psnr", "ssim"])
    if data_root is None:
        return empty, ["PSNR/SSIM not measured: no --data-root given (published figures only)."]
    notes = []
    present = [data_root / ds for ds in spec.datasets if (data_root / ds).is_dir()]
    absent = [ds for ds in spec.datasets if not (data_root / ds).is_dir()]
    if absent:
        notes.append(f"Not found under {data_root}: {', '.join(absent)}; their measured columns are missing.")
    if not present:
        return empty, notes
    quality_models = ["bicubic", *(_quality_models(models) if weights is not None else [])]
    if weights is None:
        notes.append("Zoo models' PSNR/SSIM not measured: no --weights given (bicubic only).")
    from memsr_bench.upscalers import sweep_upscaler_factory

    measured, skipped = sweep_quality(
        sweep_upscaler_factory(str(weights) if weights else None, device),
        quality_models,
        list(scales),
        present,
        store=store,
        checkpoint_of=lambda m, s: "none" if m == "bicubic" else checkpoint_id(weights, m, s),
        force=force,
    )
    reasons = [f"{s.model} x{s.scale} ({s.reason})" for s in skipped if "variant" not in s.reason]
    if reasons:
        notes.append(f"PSNR/SSIM not measured for {', '.join(reasons)}.")
    if measured.empty:
        return empty, notes
    measured = measured[measured["y_variant"] == "float"]
    return measured[["model", "scale", "dataset", "psnr", "ssim"]].reset_index(drop=True), notes


def _published_quality(spec: TableSpec, reference_dir: Path | None) -> pd.DataFrame:
    import pandas as pd

    columns = ["published_as", "scale", "dataset", "psnr", "ssim"]
    if reference_dir is None or not spec.datasets:
        return pd.DataFrame(columns=columns)
    from memsr_bench.published import published_quality

    table = published_quality(reference_dir, spec.source)
    return table.rename(columns={"model": "published_as"})[columns]


def build_table(
    preset: str,
    store: ResultsStore | None,
    data_root: Path | None = None,
    weights: Path | None = None,
    reference_dir: Path | None = None,
    device: str = "cpu",
    warmup: int | None = None,
    repeats: int | None = None,
    max_gmacs: float | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> PresetTable:
    """Build one preset (see the module docstring); every measured cell goes through ``store``.

    ``max_gmacs``: skip runtime and measured memory above this many G MACs (default
    :data:`CPU_MAX_GMACS` on CPU, no limit on CUDA). ``warmup``/``repeats`` default to
    :data:`CPU_TIMING` on CPU and :data:`CUDA_TIMING` on CUDA.
    """
    import pandas as pd

    if preset not in PRESETS:
        raise MemsrInputError("PRESET", f"unknown table preset {preset!r}; choose one of {', '.join(PRESETS)}")
    spec = PRESETS[preset]
    warmup, repeats = _timing_for(device, warmup, repeats)
    if max_gmacs is None and not device.startswith("cuda"):
        max_gmacs = CPU_MAX_GMACS
    eff, notes = _efficiency_part(spec, store, reference_dir, device, warmup, repeats, max_gmacs, force, log)
    if reference_dir is None:
        notes.append("Published columns empty: no published tables found (../shared/reference or --reference).")
    else:
        notes.append(f"Published: {spec.source} ({os.path.relpath(reference_dir)}); diff = measured - published.")

    if spec.datasets:
        scales = sorted({int(s) for s in eff["scale"]}) or [2, 3, 4]
        measured, quality_notes = _quality_part(
            spec, list(eff["model"]), scales, data_root, weights, store, device, force
        )
        notes += quality_notes
        bicubic = pd.DataFrame({"model": "bicubic", "scale": scales})
        data = pd.concat([bicubic, eff], ignore_index=True)
        published = _published_quality(spec, reference_dir)
        data["published_as"] = [_published_as(m, spec.source) for m in data["model"]]
        for ds in spec.datasets:
            m = measured[measured["dataset"] == ds][["model", "scale", "psnr", "ssim"]]
            m = m.drop_duplicates(["model", "scale"]).rename(columns={"psnr": f"{ds} PSNR", "ssim": f"{ds} SSIM"})
            p = published[published["dataset"] == ds][["published_as", "scale", "psnr", "ssim"]]
            p = p.drop_duplicates(["published_as", "scale"]).rename(
                columns={"psnr": f"{ds} PSNR published", "ssim": f"{ds} SSIM published"}
            )
            data = data.merge(m, on=["model", "scale"], how="left").merge(p, on=["published_as", "scale"], how="left")
            for metric in ("PSNR", "SSIM"):
                data[f"{ds} {metric} diff"] = pd.to_numeric(data[f"{ds} {metric}"]) - pd.to_numeric(
                    data[f"{ds} {metric} published"]
                )
        data = data.drop(columns="published_as")
        notes.append(
            "PSNR/SSIM: Y of BT.601 (float, unrounded), HR modcropped, SR rounded to uint8, crop = scale, "
            "SSIM as ssim_index.m; B100 is the BSD100 folder. Cells read 'PSNR/SSIM'."
        )
    else:
        data = eff
    data = data.sort_values(["scale", "model"], key=_sort_key, kind="stable").reset_index(drop=True)
    return PresetTable(spec=spec, data=data, shown=_shown(data, spec), notes=notes)


def _published_as(model: str, source: str) -> str | None:
    """The model's row name in the published table; bicubic is "Bicubic" in every source."""
    from memsr_bench.published import published_name

    return published_name(model, source) or ("Bicubic" if model == "bicubic" else None)


def _sort_key(column: pd.Series) -> pd.Series:
    if column.name == "model":  # bicubic first, as in the papers
        return column.map(lambda m: ("0" if m == "bicubic" else "1") + str(m))
    return column


# ----------------------------------------------------------------------------- formatting


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value: Any, spec: str) -> str | None:
    return None if _missing(value) else format(value, spec)


def _shown(data: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Formatted strings: PSNR/SSIM pairs per data set, signed differences, missing as None."""
    import pandas as pd

    shown = pd.DataFrame({"model": data["model"], "scale": data["scale"].astype(int)})
    for col in data.columns:
        if col in ("model", "scale", "params") or col.split(" ")[0] in spec.datasets:
            continue
        values = data[col]
        if col == "LR input":
            shown[col] = values.where(values.notna(), None)
        elif col.endswith("diff %"):
            shown[col] = [_fmt(v, "+.1f") for v in values]
        elif col == "convs diff":
            shown[col] = [_fmt(v, "+.0f") for v in values]
        elif col.startswith("convs"):
            shown[col] = [_fmt(v, ".0f") for v in values]
        elif col.startswith("params"):
            shown[col] = [_fmt(v, ",.1f") if "published" not in col else _fmt(v, ",.0f") for v in values]
        elif "(ms)" in col or "(MiB)" in col or "(MB)" in col:
            shown[col] = [_fmt(v, ",.1f") for v in values]
        else:
            shown[col] = [_fmt(v, ",.2f") for v in values]
    for ds in spec.datasets:
        if f"{ds} PSNR" not in data:
            continue
        for suffix, sign in (("", ""), (" published", ""), (" diff", "+")):
            pairs = []
            for psnr, ssim in zip(data[f"{ds} PSNR{suffix}"], data[f"{ds} SSIM{suffix}"], strict=True):
                a, b = _fmt(psnr, f"{sign}.2f"), _fmt(ssim, f"{sign}.4f")
                pairs.append(None if a is None and b is None else f"{a or '—'}/{b or '—'}")
            shown[f"{ds}{suffix or ' measured'}"] = pairs
    return shown


def _latex_escape(text: str) -> str:
    out = []
    for ch in str(text):
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        elif ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch == "—":
            out.append("--")
        else:
            out.append(ch)
    return "".join(out)


def _latex(shown: pd.DataFrame, title: str, label: str, notes: Sequence[str]) -> str:
    """A booktabs ``table`` (pandas Styler when jinja2 is there, else written here); notes as comments."""
    numeric = ["l" if c in ("model", "LR input") else "r" for c in shown.columns]
    header = "\n".join(f"% {n}" for n in notes)
    try:
        styler = shown.style.hide(axis="index").format(na_rep="--", escape="latex").format_index(escape="latex", axis=1)
        body = styler.to_latex(
            column_format="".join(numeric),
            hrules=True,
            caption=_latex_escape(title),
            label=label,
            position_float="centering",
        )
    except ImportError:  # pandas' Styler needs jinja2
        rows = [" & ".join(_latex_escape(c) for c in shown.columns) + r" \\"]
        for row in shown.itertuples(index=False):
            rows.append(" & ".join("--" if _missing(v) else _latex_escape(v) for v in row) + r" \\")
        body = "\n".join(
            [
                r"\begin{table}",
                r"\centering",
                rf"\caption{{{_latex_escape(title)}}}",
                rf"\label{{{label}}}",
                rf"\begin{{tabular}}{{{''.join(numeric)}}}",
                r"\toprule",
                rows[0],
                r"\midrule",
                *rows[1:],
                r"\bottomrule",
                r"\end{tabular}",
                r"\end{table}",
                "",
            ]
        )
    return f"% {title}\n% needs \\usepackage{{booktabs}}\n{header}\n{body}"


# ----------------------------------------------------------------------------- CLI


def _existing_dir(value: str | None, option: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_dir():
        raise MemsrInputError(option, f"folder not found: {path}")
    return path


def _cmd_table(args: argparse.Namespace) -> int:
    from memsr_bench.published import default_reference_dir

    if args.preset not in PRESETS:
        raise MemsrInputError(args.preset, f"unknown table preset; choose one of: {', '.join(PRESETS)}")
    if args.format not in FORMATS:
        raise MemsrInputError("--format", f"must be one of {', '.join(FORMATS)}, not {args.format!r}")
    data_root = _existing_dir(args.data_root, "--data-root")
    weights = _existing_dir(args.weights, "--weights")
    reference_dir = _existing_dir(args.reference, "--reference") if args.reference else default_reference_dir()
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise MemsrInputError("--device", "CUDA is not available on this machine")
    elif args.device != "cpu":
        raise MemsrInputError("--device", f"expected cpu or cuda[:N], not {args.device!r}")
    if args.repeats is not None and args.repeats < 1:
        raise MemsrInputError("--repeats", f"must be at least 1, not {args.repeats}")
    if args.warmup is not None and args.warmup < 0:
        raise MemsrInputError("--warmup", f"must be 0 or more, not {args.warmup}")
    if args.max_gmacs is not None and args.max_gmacs <= 0:
        raise MemsrInputError("--max-gmacs", f"must be positive, not {args.max_gmacs}")
    store = ResultsStore(args.store)
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731  (stdout carries the table)
    table = build_table(
        args.preset,
        store,
        data_root=data_root,
        weights=weights,
        reference_dir=reference_dir,
        device=args.device,
        warmup=args.warmup,
        repeats=args.repeats,
        max_gmacs=args.max_gmacs,
        force=args.force,
        log=log,
    )
    if args.out:
        for path in table.write(Path(args.out)):
            print(f"wrote {path}", file=sys.stderr)
    print(table.render(args.format))
    return 0


def add_table_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``table PRESET`` on the CLI's sub-parsers (``set_defaults(run=...)``)."""
    tp = subparsers.add_parser(
        "table",
        help="a published comparison table (fmen-table3, fmen-table4, memsr-table) measured here",
        description="Build a published comparison table from measurements (cached in the results store), with "
        "the published figure and the difference beside every measured one. fmen-table3: params, Mult-Adds and "
        "PSNR/SSIM x2/x3/x4; fmen-table4: NTIRE 2022 params, FLOPs, runtime, memory, activations, convs; "
        "memsr-table: params, MACs, runtime, memory at HR 1920x1080 and PSNR/SSIM. Missing data (no weights, no "
        "data set, a cell too heavy for the CPU) stays missing.",
    )
    tp.add_argument("preset", metavar="PRESET", help=f"one of: {', '.join(PRESETS)}")
    tp.add_argument("--data-root", help="folder holding the test sets (e.g. ../shared/datasets); PSNR/SSIM need it")
    tp.add_argument("--weights", help="weights directory (e.g. ../shared/weights); zoo models' PSNR/SSIM need it")
    tp.add_argument("--format", default="md", help="printed format: md, csv or latex (default md)")
    tp.add_argument("--out", help="also write OUT.md, OUT.csv and OUT.tex (e.g. reports/tables/fmen-table3)")
    tp.add_argument("--reference", help="folder with the published CSVs (default ../shared/reference)")
    tp.add_argument("--store", help="results store file (default $MEMSR_RESULTS or ~/.cache/memsr-bench/...)")
    tp.add_argument("--device", default="cpu", help="device for runtime, memory and PSNR/SSIM: cpu or cuda")
    tp.add_argument("--warmup", type=int, help="untimed passes before timing (default 1 on CPU, 10 on CUDA)")
    tp.add_argument("--repeats", type=int, help="timed passes, median reported (default 3 on CPU, 100 on CUDA)")
    tp.add_argument(
        "--max-gmacs",
        type=float,
        help=f"skip runtime/memory above this many G MACs per pass (default {CPU_MAX_GMACS:.0f} on CPU, none on CUDA)",
    )
    tp.add_argument("--force", action="store_true", help="recompute cells already in the store")
    tp.set_defaults(run=_cmd_table)
    return tp
