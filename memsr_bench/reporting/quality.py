"""PSNR/SSIM of models x scales x test sets (through the store), beside the published figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from memsr_bench.data.datasets import Border, LRSource, discover_test_set
from memsr_bench.errors import CheckpointError, MemsrInputError
from memsr_bench.metrics import QualityConvention
from memsr_bench.reporting.published import join_published, published_quality
from memsr_bench.reporting.render import markdown_table
from memsr_bench.results.cells import latest_quality, stored_quality
from memsr_bench.results.store import CellFailedError, ResultsStore
from memsr_bench.upscalers import Upscaler

__all__ = ["Skipped", "sweep_quality", "sweep_upscalers", "to_markdown", "with_published"]

UpscalerFactory = Callable[[str, int], Upscaler]  # raises LookupError (with the reason) to skip


@dataclass(frozen=True)
class Skipped:
    model: str
    scale: int
    reason: str


def sweep_upscalers(
    weights: str | Path | None, device: str = "cpu", random_weights: bool = False, **model_options
) -> UpscalerFactory:
    """(reference, scale) -> Upscaler for sweeps. A model without usable weights is a skip (LookupError
    with the reason), not an error, so that one missing file does not stop a sweep. ``model_options``
    (config, metadata, deploy) apply to the user's models, not to the zoo's."""
    import zoo
    from memsr_bench.upscalers import UPSCALERS, make_upscaler

    def factory(ref: str, scale: int) -> Upscaler:
        if ref in UPSCALERS:  # methods without weights
            return UPSCALERS[ref](scale)
        try:
            options = {} if isinstance(ref, str) and ref in zoo.names() else model_options
            return make_upscaler(ref, scale, weights=weights, device=device, random_weights=random_weights, **options)
        except CheckpointError as err:  # no usable file for this model and scale
            raise LookupError(err.problem) from None
        except MemsrInputError as err:
            if err.where == "--weights" or "is not available" in err.problem:  # no weights / no such scale
                raise LookupError(err.problem) from None
            raise  # a wrong reference or option stops the sweep

    return factory


def sweep_quality(
    make_upscaler: UpscalerFactory,
    models: Sequence[str],
    scales: Sequence[int],
    test_set_paths: Sequence[Path],
    y_variants: Sequence[str] = ("float", "rounded"),
    lr_source: LRSource = "auto",
    border: Border = "symmetric",
    progress: bool | None = None,
    store: ResultsStore | None = None,
    force: bool = False,
    cluster: Any = None,
) -> tuple[pd.DataFrame, list[Skipped]]:
    """One row per (model, scale, dataset, Y variant): mean PSNR/SSIM, the LR source and the weights.

    Every (model, scale, dataset) is a stored cell (one key per convention) keyed by the upscaler's
    name, fingerprint and weights: with a store, the missing ones are computed first as one sweep
    (:func:`~memsr_bench.results.jobs.run_cells`, here or on ``cluster``), so an interrupted sweep resumes
    where it stopped and a failed cell is a skip with its reason.
    """
    from memsr_bench.results.jobs import quality_cell, run_cells

    test_set_paths = [Path(p).resolve() for p in test_set_paths]  # cluster workers run in other folders
    test_sets = {
        (p, s): discover_test_set(p, s, lr_source=lr_source, border=border) for p in test_set_paths for s in scales
    }
    rows, skipped, upscalers = [], [], {}
    for model in models:
        for scale in scales:
            try:
                upscalers[model, scale] = make_upscaler(model, scale)
            except LookupError as err:
                skipped.append(Skipped(model, scale, str(err)))
    conventions = {s: [QualityConvention("y", variant, s) for variant in y_variants] for s in scales}
    if store is not None:
        cells = [
            quality_cell(upscaler, test_sets[path, scale], conventions[scale])
            for (_, scale), upscaler in upscalers.items()
            for path in test_set_paths
        ]
        run_cells(cells, store, cluster=cluster, force=force, progress=progress, desc="quality")
        force = False  # every cell is stored (or failed) now
    for (model, scale), upscaler in upscalers.items():
        for path in test_set_paths:
            test_set = test_sets[(path, scale)]
            try:
                results = stored_quality(store, upscaler, test_set, conventions[scale], force, progress)
            except CellFailedError as err:
                skipped.append(Skipped(model, scale, f"{test_set.name}: {err.reason}"))
                continue
            for variant, result in zip(y_variants, results, strict=True):
                rows.append(
                    {
                        "model": upscaler.name,
                        "scale": scale,
                        "dataset": test_set.name,
                        "y_variant": variant,
                        "n_images": len(result.images),
                        "psnr": result.psnr,
                        "ssim": result.ssim,
                        "lr_source": test_set.lr_source_description,
                        "weights_sha256": upscaler.checkpoint,
                        "fingerprint": upscaler.fingerprint,
                    }
                )
    return pd.DataFrame(rows), skipped


def with_published(
    measured: pd.DataFrame,
    reference_dir: Path | None,
    source: str = "FMEN Table 3",
    extra_sources: Sequence[str] = (),
) -> pd.DataFrame:
    """Wide table: one row per (model, scale, dataset), measured PSNR/SSIM per Y variant, the
    published figures of ``source`` and the differences (float-Y minus published). Each of
    ``extra_sources`` adds its own published and difference columns, suffixed with its name."""
    wide = measured.pivot_table(
        index=["model", "scale", "dataset"], columns="y_variant", values=["psnr", "ssim"], aggfunc="first"
    )
    wide.columns = [f"{metric}_y_{variant}" for metric, variant in wide.columns]
    wide = wide.reset_index()
    if reference_dir is None:
        return wide
    published = published_quality(reference_dir, "")
    for name, suffix in ((source, ""), *((extra, f" ({extra})") for extra in extra_sources)):
        columns = {"psnr": f"psnr_published{suffix}", "ssim": f"ssim_published{suffix}"}
        wide = join_published(wide, published, name, ("scale", "dataset"), columns)
        if "psnr_y_float" in wide:
            wide[f"psnr_diff_float{suffix}"] = wide["psnr_y_float"] - wide[f"psnr_published{suffix}"]
            wide[f"ssim_diff_float{suffix}"] = wide["ssim_y_float"] - wide[f"ssim_published{suffix}"]
        if "psnr_y_rounded" in wide and not suffix:
            wide["psnr_diff_rounded"] = wide["psnr_y_rounded"] - wide["psnr_published"]
    return wide


def to_markdown(table: pd.DataFrame, title: str, notes: Sequence[str] = ()) -> str:
    """A Markdown report: PSNR to 2 decimals, SSIM to 4, differences signed, missing as '—'."""
    shown = table.copy()
    for col in shown.columns:
        if not col.startswith(("psnr", "ssim")):
            continue
        decimals = 4 if col.startswith("ssim") else 2
        sign = "+" if "diff" in col else ""
        shown[col] = [f"{v:{sign}.{decimals}f}" if pd.notna(v) else None for v in shown[col]]
    return "\n".join([f"# {title}", "", *notes, "", markdown_table(shown), ""])


def _quality_cell(
    model, weights: Path | None, dataset: Path, store, device: str, force: bool
) -> tuple[dict | None, str]:
    """Float-Y PSNR/SSIM of one model on one set: measured with its public checkpoint in ``weights``,
    else read from the rows ``memsr-bench eval`` stored for the same architecture; and how."""
    from zoo.checkpoints import find_checkpoint

    if weights is not None and model.entry.spec.checkpoint_for(model.scale) is not None:
        try:
            find_checkpoint(model.entry.spec, model.scale, weights)
        except MemsrInputError as err:
            return None, err.problem
        from memsr_bench.upscalers import make_upscaler

        upscaler = make_upscaler(model.entry, model.scale, weights=weights, config=model.config, device=device)
        test_set = discover_test_set(dataset, model.scale)
        try:
            result = stored_quality(store, upscaler, test_set, [QualityConvention("y", "float", model.scale)], force)
        except CellFailedError as err:
            return None, f"failed ({err.reason}; a rerun tries again)"
        return {"psnr": result[0].psnr, "ssim": result[0].ssim}, "public checkpoint"
    stored = latest_quality(store, model, dataset.name)
    if stored is None:
        return None, "no weights (give --weights, or run memsr-bench eval with its weights first)"
    return stored, f"stored eval row, weights sha256 {stored['weights_sha256'][:12]}"


def _sweep_quality_columns(models, scales, present, data_root, weights, store, device, force, cluster) -> None:
    """The cells of :func:`quality_columns` as one sweep: bicubic, and each model with its public checkpoint."""
    from memsr_bench.results.jobs import quality_cell, run_cells
    from memsr_bench.upscalers import BicubicUpscaler, make_upscaler
    from zoo.checkpoints import find_checkpoint

    upscalers = [BicubicUpscaler(scale) for scale in scales]
    for model in models:
        if weights is not None and model.entry.spec.checkpoint_for(model.scale) is not None:
            try:
                find_checkpoint(model.entry.spec, model.scale, weights)
            except MemsrInputError:
                continue  # said in the notes by _quality_cell
            upscalers.append(
                make_upscaler(model.entry, model.scale, weights=weights, config=model.config, device=device)
            )
    cells = [
        quality_cell(
            u, discover_test_set((data_root / ds).resolve(), u.scale), [QualityConvention("y", "float", u.scale)]
        )
        for ds in present
        for u in upscalers
    ]
    run_cells(cells, store, cluster=cluster, force=force, desc="quality")


def _which(models: dict[str, list[str]], n_sets: int) -> str:
    """``"imdn x2, fsrcnn x4 (Set5)"``: data sets named only where a model is not on all of them."""
    return ", ".join(
        name if len(sets) == n_sets else f"{name} ({'/'.join(sets)})" for name, sets in sorted(models.items())
    )


def _mean_psnr(data: pd.DataFrame, spec, published: pd.DataFrame | None):
    """The mean PSNR over ``spec.mean_of`` (measured where every set is), beside the published mean."""
    from memsr_bench.reporting.render import Column

    label = "+".join(spec.mean_of) + " mean"
    data = data.copy()
    data["mean_psnr"] = data[[f"{ds}_psnr" for ds in spec.mean_of]].mean(axis=1, skipna=False)
    if published is not None:
        rows = published[published["dataset"] == label]
        data = join_published(data, rows, spec.source, ("scale",), {"psnr": "mean_psnr_published"})
    else:
        data["mean_psnr_published"] = float("nan")
    data["mean_psnr_diff"] = data["mean_psnr"] - data["mean_psnr_published"]
    column = Column("mean_psnr", f"{label} PSNR measured/published", ".2f", pair="mean_psnr_published", pair_spec=".2f")
    return data, column


def quality_columns(
    data: pd.DataFrame,
    models: Sequence,
    spec,
    data_root: Path | None,
    weights: Path | None,
    reference_dir: Path | None,
    store: ResultsStore | None,
    device: str,
    force: bool,
    cluster: Any = None,
):
    """``data`` with bicubic rows and ``<set>_psnr``/``_ssim`` (measured, published, diff) per data set
    of ``spec``, the columns to show ("PSNR/SSIM" pairs) and the notes."""
    from memsr_bench.reporting.published import published_quality
    from memsr_bench.reporting.render import Column
    from memsr_bench.upscalers import BicubicUpscaler

    notes: list[str] = []
    present = [d for d in spec.datasets if data_root is not None and (data_root / d).is_dir()]
    if data_root is None:
        notes.append("PSNR/SSIM not measured: no --data-root given (published figures only).")
    elif len(present) < len(spec.datasets):
        absent = [d for d in spec.datasets if d not in present]
        notes.append(f"Not found under {data_root}: {', '.join(absent)}; their measured columns are missing.")
    scales = sorted({int(s) for s in data["scale"]}) or list(spec.scales)
    bicubic = pd.DataFrame({"model": "bicubic", "scale": scales, "highlight": False})  # never highlighted (no NaN)
    data = pd.concat([bicubic, data], ignore_index=True)
    how: dict[str, dict[str, list[str]]] = {}
    if store is not None and present:
        _sweep_quality_columns(models, scales, present, data_root, weights, store, device, force, cluster)
        force = False  # every cell is stored (or failed) now
    for ds in present:
        psnr, ssim = [float("nan")] * len(data), [float("nan")] * len(data)
        for scale in scales:
            test_set = discover_test_set(data_root / ds, scale)
            result = stored_quality(
                store, BicubicUpscaler(scale), test_set, [QualityConvention("y", "float", scale)], force
            )[0]
            i = data.index[(data["model"] == "bicubic") & (data["scale"] == scale)][0]
            psnr[i], ssim[i] = result.psnr, result.ssim
        for model in models:
            values, source = _quality_cell(model, weights, data_root / ds, store, device, force)
            # the same source on every data set is said once; a mix names the data set
            how.setdefault(source, {}).setdefault(f"{model.name} x{model.scale}", []).append(ds)
            if values is not None:
                i = data.index[(data["model"] == model.name) & (data["scale"] == model.scale)][0]
                psnr[i], ssim[i] = values["psnr"], values["ssim"]
        data[f"{ds}_psnr"], data[f"{ds}_ssim"] = psnr, ssim
    published = published_quality(reference_dir, "") if reference_dir is not None else None
    columns = []
    for ds in spec.datasets:
        for col in (f"{ds}_psnr", f"{ds}_ssim"):
            data[col] = data.get(col, float("nan"))
        if published is not None:
            rows = published[published["dataset"] == ds]
            data = join_published(
                data, rows, spec.source, ("scale",), {"psnr": f"{ds}_psnr_published", "ssim": f"{ds}_ssim_published"}
            )
        else:
            data[f"{ds}_psnr_published"] = data[f"{ds}_ssim_published"] = float("nan")
        for metric in ("psnr", "ssim"):
            data[f"{ds}_{metric}_diff"] = data[f"{ds}_{metric}"] - data[f"{ds}_{metric}_published"]
        for suffix, header, sign in (("", " measured", ""), ("_published", " published", ""), ("_diff", " diff", "+")):
            columns.append(
                Column(
                    f"{ds}_psnr{suffix}",
                    f"{ds}{header}",
                    f"{sign}.2f",
                    pair=f"{ds}_ssim{suffix}",
                    pair_spec=f"{sign}.4f",
                )
            )
    if spec.mean_of:
        data, mean_column = _mean_psnr(data, spec, published)
        columns.append(mean_column)
        notes.append(f"{' + '.join(spec.mean_of)} mean: the mean of the data sets' mean PSNRs, as the source plots it.")
    notes += [f"PSNR/SSIM of {_which(models, len(present))}: {source}." for source, models in sorted(how.items())]
    notes.append(
        "PSNR/SSIM: Y of BT.601 (float, unrounded), HR modcropped, SR rounded to uint8, crop = scale, "
        "SSIM as ssim_index.m; B100 is the BSD100 folder. Cells read 'PSNR/SSIM'."
    )
    return data, columns, notes
