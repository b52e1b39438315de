"""``build_report``: regenerate ``reports/`` — the zoo's parameter counts, the efficiency table of every
preset (no data needed), PSNR/SSIM of every public checkpoint when data and weights are given, the
figures, and an index. Every cell goes through the results store, so an interrupted report loses
nothing and a rerun with everything cached only reads the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from memsr_bench.measure.presets import PRESETS
from memsr_bench.reporting.efficiency import ModelChoice, choose_models
from memsr_bench.reporting.render import markdown_table
from memsr_bench.reporting.tables import TableSpec, build_table
from memsr_bench.results.store import ResultsStore

__all__ = ["EFFICIENCY_TABLES", "build_report", "zoo_frame"]

# The efficiency table of each preset, beside its published source (the NTIRE challenges are x4 only).
EFFICIENCY_TABLES: dict[str, TableSpec] = {
    name: TableSpec(
        f"efficiency-{name}",
        f"Efficiency, preset {name} ({preset.source})",
        name,
        preset.published or "",
        (4,) if name.startswith("ntire") else (2, 3, 4),
    )
    for name, preset in PRESETS.items()
}
TIMELINE_MODELS = ("fmen-s-deploy", "imdn-ntire2022")
SIZE_MODELS = ("fsrcnn", "fmen-s-deploy", "rlfn-ntire", "e-rfdn", "imdn-ntire2022", "carn-m", "edsr-baseline")
TRAINING_FORMS = ("fmen", "fmen-s", "plain")  # left out of the trade-off figure: deploy() merges them


def zoo_frame() -> pd.DataFrame:
    """One row per zoo model x scale: params, published params, input, public checkpoint, paper."""
    import zoo
    from memsr_bench.model import load_model

    rows = []
    for name in zoo.names():
        spec = zoo.get_spec(name)
        for scale in spec.scales:
            loaded = load_model(name, scale)
            rows.append(
                {
                    "model": name,
                    "scale": scale,
                    "params": sum(p.numel() for p in loaded.module.parameters()),
                    "published_params": spec.published_params.get(scale),
                    "input": loaded.entry.describe_input(),
                    "checkpoint": (ckpt.filename if (ckpt := spec.checkpoint_for(scale)) else None),
                    "paper": spec.paper,
                }
            )
    return pd.DataFrame(rows)


def _zoo_section(out: Path) -> list[str]:
    table = zoo_frame()
    table["params"] = [f"{v:,}" for v in table["params"]]
    table["published_params"] = [f"{int(v):,}" if pd.notna(v) else None for v in table["published_params"]]
    (out / "zoo.md").write_text(
        "# Zoo: parameter counts\n\n`params`: sum(p.numel() for p in model.parameters()) of each zoo module "
        "(buffers such as BatchNorm statistics and EDSR's fixed mean shift excluded), beside the paper's figure.\n\n"
        + markdown_table(table)
        + "\n"
    )
    return ["- [zoo.md](zoo.md): models, scales, parameter counts, checkpoints"]


def _zoo_models(spec: TableSpec) -> list[str]:
    """Zoo models with at least one of the table's scales (counting is on shapes: every size is cheap)."""
    import zoo

    return [name for name in zoo.names() if any(s in zoo.get_spec(name).scales for s in spec.scales)]


def _quality_section(
    out: Path,
    store: ResultsStore,
    reference_dir: Path | None,
    data_root: Path,
    weights: Path,
    sets: Sequence[str],
    force: bool,
    log: Callable[[str], None],
    cluster: Any = None,
) -> str:
    import zoo
    from memsr_bench.reporting.quality import sweep_quality, sweep_upscalers, to_markdown, with_published

    models = [n for n in zoo.names() if any(zoo.get_spec(n).checkpoint_for(s) for s in zoo.get_spec(n).scales)]
    measured, skipped = sweep_quality(
        sweep_upscalers(weights),
        ["bicubic", *models],
        [2, 3, 4],
        [data_root / name for name in sets],
        store=store,
        force=force,
        cluster=cluster,
    )
    table = with_published(measured, reference_dir)
    notes = [f"Skipped {s.model} x{s.scale}: {s.reason}." for s in skipped]
    path = out / "quality" / "report_quality.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_markdown(table, "PSNR/SSIM of the zoo's public checkpoints vs FMEN Table 3", notes))
    measured.to_csv(path.with_suffix(".csv"), index=False)
    log(f"wrote {path}")
    return f"- [{path.relative_to(out)}]({path.relative_to(out)})"


def _psnr_figures(
    figures: Path, store: ResultsStore, reference_dir: Path | None, preset: str, log: Callable[[str], None]
) -> list[Path]:
    """PSNR vs memory and vs runtime on the (scale, data set) with the most models (x4 first on ties)."""
    from memsr_bench.reporting.figures import psnr_kind_figure, save_figure
    from memsr_bench.reporting.tradeoffs import psnr_points

    quality = store.query(kind="quality")
    if quality.empty:
        log("skipped PSNR figures: no quality rows in the results store (memsr-bench report --data-root --weights)")
        return []
    written = []
    for kind in ("psnr-memory", "psnr-runtime"):
        best = None
        slices = set(zip(quality["scale"], quality["data"], strict=True))
        for scale, dataset in sorted(slices, key=lambda c: (c[0] != 4, c)):
            models, _ = choose_models(ModelChoice(), [int(scale)], log=lambda m: None)
            points = psnr_points(models, set(), store, dataset, preset)
            if kind == "psnr-runtime":
                points = points[points["runtime_ms"].notna()] if "runtime_ms" in points else points.iloc[0:0]
            if len(points) >= 2 and (best is None or len(points) > len(best[0])):
                best = (points, int(scale), dataset)
        if best is None:
            log(f"skipped {kind}: fewer than two models with PSNR{' and runtime' if 'runtime' in kind else ''} rows")
            continue
        points, scale, dataset = best
        fig = psnr_kind_figure(kind, points, scale, dataset, preset, reference_dir)
        written += save_figure(fig, figures / f"{kind.replace('-', '_vs_')}_{dataset}_x{scale}")
    return written


def write_report_figures(
    out: Path,
    store: ResultsStore,
    reference_dir: Path | None,
    preset: str = "memsr",
    log: Callable[[str], None] = print,
    extra: ModelChoice | None = None,
    model_cache: dict | None = None,
) -> list[Path]:
    """``out``/figures/*.png and *.svg: memory timelines, peak vs size and compute vs memory (no data needed;
    ``extra`` models added, starred), and the PSNR trade-offs when the store holds quality rows."""
    from memsr_bench.measure.memory_model import peak_vs_input_size, predict_peak_memory
    from memsr_bench.measure.presets import get_preset
    from memsr_bench.measure.profile import input_channels
    from memsr_bench.model import load_model
    from memsr_bench.reporting.figures import (
        hd_sizes,
        model_label,
        peak_vs_size_figure,
        psnr_figure,
        save_figure,
        timeline_figure,
    )
    from memsr_bench.reporting.tradeoffs import efficiency_points

    figures = out / "figures"
    written: list[Path] = []
    for name in TIMELINE_MODELS:
        loaded = load_model(name, 4)
        prediction = predict_peak_memory(loaded.module, (1, input_channels(loaded.module), 256, 256))
        written += save_figure(timeline_figure(prediction, f"{name} x4"), figures / f"timeline_{name}_x4")
    fits = {}
    for name in SIZE_MODELS:
        loaded = load_model(name, 4)
        fits[model_label(name, loaded.entry.channels)] = peak_vs_input_size(
            loaded.module, hd_sizes(4), channels=input_channels(loaded.module)
        )
    written += save_figure(peak_vs_size_figure(fits, 4), figures / "peak_vs_input_size_x4")
    zoo_refs = _zoo_models(EFFICIENCY_TABLES[preset])
    models, highlighted = choose_models(_with_extra(zoo_refs, extra), [4], cache=model_cache)
    points = efficiency_points([m for m in models if m.name not in TRAINING_FORMS], highlighted, store, preset)
    lr_h, lr_w = get_preset(preset).lr_shape(4)
    fig = psnr_figure(
        points,
        "peak_mib",
        f"predicted peak memory (MiB), HR {4 * lr_w}x{4 * lr_h} output\n(live tensor storage, float32, batch 1)",
        "Compute vs memory of the zoo at x4 (deploy forms; no accuracy data needed)",
        y="gmacs",
        y_label=f"MACs [macs] (G), preset {preset}",
        log_x=True,
    )
    written += save_figure(fig, figures / "macs_vs_memory_x4")
    written += _psnr_figures(figures, store, reference_dir, preset, log)
    for path in written:
        if path.suffix == ".png":
            log(f"wrote {path}")
    return written


def _existing_sections(out: Path, sections: dict[str, list[str]]) -> None:
    """Index entries for what other commands wrote under ``out`` (tables, quality sweeps, MemSR, notes)."""
    # sorted, so that the index is the same whether this run rebuilt the quality tables or found them
    found = {f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in out.glob("quality/*.md")}
    sections["Quality"] = sorted(found | set(sections.get("Quality", [])))
    groups = {
        "Paper tables": sorted(out.glob("tables/*.md")),  # memsr-bench table PRESET --out reports/tables/PRESET
        "MemSR reproduction": [
            p for p in (out / "memsr" / "reproduction.md", out / "memsr" / "findings.md") if p.is_file()
        ],
        "Notes": [out / n for n in ("zoo_verification.md", "benchmarks.md") if (out / n).is_file()],
    }
    for title, paths in groups.items():
        if paths:
            sections[title] = [f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in paths]


def write_index(out: Path, sections: dict[str, list[str]]) -> Path:
    """``out``/README.md listing every table and figure, grouped."""
    lines = ["# memsr-bench reports", "", "Regenerated by `memsr-bench report` (see the repository README).", ""]
    for title, entries in sections.items():
        if entries:
            lines += [f"## {title}", "", *entries, ""]
    path = out / "README.md"
    path.write_text("\n".join(lines))
    return path


def _with_extra(zoo_refs: Sequence[str], extra: ModelChoice | None) -> ModelChoice:
    """The zoo's models plus the user's (``--models``), the user's options applying to theirs only."""
    if extra is None:
        return ModelChoice(refs=tuple(zoo_refs))
    return replace(extra, refs=(*zoo_refs, *extra.refs), highlight=extra.highlight or extra.refs)


def build_report(
    out: Path,
    store: ResultsStore,
    presets: Sequence[str],
    reference_dir: Path | None,
    data_root: Path | None = None,
    weights: Path | None = None,
    sets: Sequence[str] = ("Set5", "Set14", "BSD100"),
    force: bool = False,
    log: Callable[[str], None] = print,
    extra: ModelChoice | None = None,
    max_memory: int | None = None,
    cluster: Any = None,
) -> Path:
    """Write everything under ``out`` and its index ``out/README.md``; returns the index. ``extra``: the
    user's models, added (highlighted) to the efficiency tables and the compute-vs-memory figure.

    A rerun whose inputs (code, options, store rows, published tables, data and weights folders) and
    outputs are unchanged since the last run returns at once (:mod:`memsr_bench.reporting.manifest`);
    ``force`` recomputes every cell. Runs with ``extra`` models (their files are outside the digest)
    are always rebuilt. ``cluster``: a ``distributed.Client`` that computes the missing cells.
    """
    from memsr_bench.reporting import manifest

    options = {
        "presets": list(presets),
        "sets": list(sets),
        "max_memory": max_memory,
        "data_root": None if data_root is None else str(data_root.resolve()),
        "weights": None if weights is None else str(weights.resolve()),
    }

    def digest() -> str:
        return manifest.inputs_digest(store.content_digest(), options, reference_dir, data_root, weights)

    incremental = extra is None and not force
    if incremental and manifest.up_to_date(out, digest()):
        log(f"{out} is up to date: nothing changed since the last report (its inputs and files); --force rebuilds")
        return out / "README.md"
    out.mkdir(parents=True, exist_ok=True)
    models: dict = {}  # zoo models built once for every table and figure
    sections: dict[str, list[str]] = {"Zoo": _zoo_section(out), "Efficiency (no data needed)": []}
    for preset in presets:
        spec = EFFICIENCY_TABLES[preset]
        table = build_table(
            spec,
            store,
            models=_with_extra(_zoo_models(spec), extra),
            reference_dir=reference_dir,
            force=force,
            log=log,
            max_memory=max_memory,
            model_cache=models,
            cluster=cluster,
        )
        for path in table.write(out / "efficiency" / preset, ("md", "csv")):
            log(f"wrote {path}")
        sections["Efficiency (no data needed)"].append(f"- [efficiency/{preset}.md](efficiency/{preset}.md)")
    if data_root is not None and weights is not None:
        sections["Quality"] = [
            _quality_section(out, store, reference_dir, data_root, weights, sets, force, log, cluster)
        ]
    else:
        sections["Quality"] = []  # its place in the index: the tables earlier runs wrote (_existing_sections)
        log("skipped quality tables: give --data-root and --weights (e.g. ../shared/datasets, ../shared/weights)")
    figure_preset = "memsr" if "memsr" in presets else presets[0]
    figures = write_report_figures(out, store, reference_dir, figure_preset, log, extra, models)
    sections["Figures"] = [f"![{p.stem}]({p.relative_to(out)})" for p in figures if p.suffix == ".png"]
    _existing_sections(out, sections)
    index = write_index(out, sections)
    if incremental:
        manifest.record(out, digest())
    return index
