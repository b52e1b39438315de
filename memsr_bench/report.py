"""``memsr-bench report``: regenerate the efficiency tables of the whole zoo (no data needed), the
quality tables when data and weights are given, and an index README under ``reports/``.

Every cell goes through the results store, so an interrupted report loses nothing and a second
run with everything cached only reads the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from memsr_bench.measure import count_efficiency, get_preset, predict_peak_memory
from memsr_bench.measure.counters import input_channels
from memsr_bench.published import published_efficiency, published_name
from memsr_bench.results import ResultKey, ResultsStore, cached, input_size
from memsr_bench.tables import markdown_table

# Source prefix of the published table each preset reproduces.
PRESET_SOURCES = {"ntire2022": "FMEN Table 4", "fmen": "FMEN Table 3", "memsr": "MemSR"}
# A forward pass above this many MACs takes minutes on a 2-core CPU; such cells are skipped (and
# listed as skipped) in the default report. `memsr-bench profile` measures them one at a time.
MAX_MACS_ESTIMATE = 2e12


@dataclass(frozen=True)
class Cell:
    model: str
    scale: int
    preset: str


def report_cells(presets: Sequence[str]) -> list[Cell]:
    """Every zoo model x scale for each preset (NTIRE 2022 is a x4 challenge: x4 only)."""
    import zoo

    cells = []
    for preset in presets:
        for name in zoo.names():
            for scale in zoo.get_spec(name).scales:
                if preset == "ntire2022" and scale != 4:
                    continue
                cells.append(Cell(name, scale, preset))
    return cells


def _efficiency_values(cell: Cell) -> dict[str, Any]:
    import zoo

    model = zoo.create(cell.model, scale=cell.scale)
    shape = (1, input_channels(model), *get_preset(cell.preset).lr_shape(cell.scale))
    counts = count_efficiency(model, input_shape=shape, preset=cell.preset, scale=cell.scale)
    predicted = predict_peak_memory(model, shape)
    return {
        **counts.as_dict(),
        "unsupported_ops": dict(counts.unsupported_ops()),
        "peak_bytes_predicted": predicted.peak_bytes,
        "peak_node": predicted.peak_node,
    }


def _macs_estimate(cell: Cell) -> float:
    import zoo

    params = sum(p.numel() for p in zoo.create(cell.model, scale=cell.scale).parameters())
    height, width = get_preset(cell.preset).lr_shape(cell.scale)
    return params * height * width


def efficiency_table(
    cells: Sequence[Cell],
    store: ResultsStore,
    force: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] = print,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per cell (counts + predicted peak), measured or read from the store; skipped cells listed."""
    rows, skipped = [], []
    for cell in tqdm(cells, desc="efficiency", unit="cell", disable=None if progress is None else not progress):
        macs_estimate = _macs_estimate(cell)
        if macs_estimate > MAX_MACS_ESTIMATE:
            skipped.append(
                f"{cell.model} x{cell.scale} ({cell.preset}): about {macs_estimate / 1e12:.0f} T MACs, "
                "too slow for the default CPU report"
            )
            continue
        shape = get_preset(cell.preset).lr_shape(cell.scale)
        key = ResultKey(
            kind="efficiency",
            model=cell.model,
            checkpoint="random-init",
            scale=cell.scale,
            data=input_size(shape),
            conventions=cell.preset,
        )
        started = time.perf_counter()
        values = cached(store, key, lambda cell=cell: _efficiency_values(cell), force=force)
        if time.perf_counter() - started > 30:
            log(f"  measured {cell.model} x{cell.scale} {cell.preset} in {time.perf_counter() - started:.0f} s")
        rows.append(
            {
                "model": cell.model,
                "scale": cell.scale,
                "preset": cell.preset,
                "input": "x".join(map(str, shape)),
                **values,
            }
        )
    return pd.DataFrame(rows), skipped


def with_published_efficiency(table: pd.DataFrame, preset: str, reference_dir: Path | None) -> pd.DataFrame:
    """Measured columns with the published ones of the preset's table beside them (missing as NaN)."""
    shown = pd.DataFrame(
        {
            "model": table["model"],
            "scale": table["scale"],
            "LR input": table["input"],
            "params": table["params"],
            f"{table['macs_label'].iloc[0]} (G)": table["macs"] / 1e9,
            "FLOPs all ops (G)": table["flops"] / 1e9,
            "activations (M)": table["activations"] / 1e6,
            "convs": table["convs"],
            "predicted peak (MiB)": table["peak_bytes_predicted"] / 2**20,
            "peak node": table["peak_node"],
        }
    )
    if reference_dir is None:
        return shown
    source = PRESET_SOURCES[preset]
    published = published_efficiency(reference_dir)
    published = published[published["source"].str.startswith(source)]
    names = [published_name(m, source) for m in table["model"]]
    lookup = {(row.model, int(row.scale)): row for row in published.itertuples()}
    matches = [lookup.get((name, int(scale))) for name, scale in zip(names, table["scale"], strict=True)]
    macs_col = f"{table['macs_label'].iloc[0]} (G)"

    def column(attr: str) -> list[float | None]:
        return [getattr(m, attr) if m is not None else None for m in matches]

    shown.insert(4, "params published (K)", column("params_k"))
    shown.insert(6, f"{macs_col} published", column("macs_g"))
    published_macs = pd.to_numeric(shown[f"{macs_col} published"])
    shown.insert(7, f"{macs_col} diff %", 100 * (shown[macs_col] - published_macs) / published_macs)
    if preset == "ntire2022":
        shown.insert(10, "activations published (M)", column("activations_m"))
        shown.insert(12, "convs published", column("convs"))
    shown["published memory (MB, CUDA)"] = column("memory_mb")
    return shown


def _format(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f" or col.endswith(("(G)", "(M)", "(MiB)", "published", "%")):
            values = pd.to_numeric(shown[col], errors="coerce")
            decimals = 1 if "%" in col else 2
            shown[col] = [None if pd.isna(v) else f"{v:,.{decimals}f}" for v in values]
        elif col == "params":
            shown[col] = [f"{v:,}" for v in shown[col]]
    return shown


def write_efficiency_reports(
    out_dir: Path,
    presets: Sequence[str],
    store: ResultsStore,
    reference_dir: Path | None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """reports/efficiency/<preset>.md and .csv for every preset; returns the files written."""
    written = []
    (out_dir / "efficiency").mkdir(parents=True, exist_ok=True)
    for preset in presets:
        table, skipped = efficiency_table(report_cells([preset]), store, force=force, log=log)
        table.to_csv(out_dir / "efficiency" / f"{preset}.csv", index=False)
        shown = with_published_efficiency(table, preset, reference_dir)
        preset_obj = get_preset(preset)
        uncounted = sorted({op for ops in table["unsupported_ops"] for op in ops})
        notes = [
            f"Convention ({preset}): {preset_obj.convention}.",
            "Models with random weights (counts do not depend on them). Predicted peak: live tensor "
            "storage of one float32 forward pass (eager frees), weights and input included.",
            "Published columns: "
            + (
                f"{PRESET_SOURCES[preset]} (../shared/reference/published_efficiency.csv); "
                "published memory is CUDA max_memory_allocated under the paper's protocol, "
                "not comparable with the predicted CPU live storage."
                if reference_dir
                else "not available (no ../shared/reference)."
            ),
            f"Uncounted operators: {', '.join(uncounted) if uncounted else 'none'}.",
            *[f"Skipped {s}." for s in skipped],
        ]
        text = "\n".join(
            [
                f"# Efficiency, preset `{preset}` ({preset_obj.source})",
                "",
                *notes,
                "",
                markdown_table(_format(shown)),
                "",
            ]
        )
        path = out_dir / "efficiency" / f"{preset}.md"
        path.write_text(text)
        written += [path, path.with_suffix(".csv")]
        log(f"wrote {path}")
    return written


def write_index(out_dir: Path, sections: dict[str, list[str]]) -> Path:
    """reports/README.md listing every table and figure, grouped."""
    lines = [
        "# memsr-bench reports",
        "",
        "Regenerated by `memsr-bench report` (see the repository README).",
        "",
    ]
    for title, entries in sections.items():
        lines += [f"## {title}", "", *entries, ""]
    path = out_dir / "README.md"
    path.write_text("\n".join(lines))
    return path
