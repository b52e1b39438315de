"""Sweep models x scales x test sets, score every SR output under several conventions, and set the
published figures beside the measured ones (a reproduction table)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from memsr_bench.data.datasets import Border, LRSource, discover_test_set
from memsr_bench.evaluate import evaluate_conventions
from memsr_bench.metrics import QualityConvention
from memsr_bench.published import published_name, published_quality
from memsr_bench.results import ResultKey, ResultsStore, cached
from memsr_bench.tables import markdown_table
from memsr_bench.upscalers import Upscaler

UpscalerFactory = Callable[[str, int], Upscaler]  # raises LookupError (with the reason) to skip


@dataclass(frozen=True)
class Skipped:
    model: str
    scale: int
    reason: str


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
    checkpoint_of: Callable[[str, int], str] = lambda model, scale: "none",
    force: bool = False,
) -> tuple[pd.DataFrame, list[Skipped]]:
    """One row per (model, scale, dataset, Y variant): mean PSNR/SSIM and the LR source used.

    With a ``store`` every (model, scale, dataset) is looked up first and stored when measured, so
    an interrupted sweep resumes where it stopped; ``checkpoint_of`` names the weights in the key.
    """
    rows, skipped = [], []
    for model in models:
        for scale in scales:
            try:
                upscaler = make_upscaler(model, scale)
            except LookupError as err:
                skipped.append(Skipped(model, scale, str(err)))
                continue
            conventions = [QualityConvention("y", variant, scale) for variant in y_variants]
            for path in test_set_paths:
                test_set = discover_test_set(path, scale, lr_source=lr_source, border=border)
                key = ResultKey(
                    kind="quality",
                    model=model,
                    checkpoint=checkpoint_of(model, scale),
                    scale=scale,
                    data=test_set.name,
                    conventions={"y_variants": list(y_variants), "lr": test_set.lr_source_description},
                )

                def measure(upscaler=upscaler, test_set=test_set, conventions=conventions) -> dict:
                    results = evaluate_conventions(upscaler, test_set, conventions, progress)
                    return {
                        r.conventions["y"].split()[-1]: {
                            "psnr": r.psnr,
                            "ssim": r.ssim,
                            "n_images": len(r.images),
                        }
                        for r in results
                    }

                for variant, values in cached(store, key, measure, force=force).items():
                    rows.append(
                        {
                            "model": model,
                            "scale": scale,
                            "dataset": test_set.name,
                            "y_variant": variant,
                            "n_images": values["n_images"],
                            "psnr": values["psnr"],
                            "ssim": values["ssim"],
                            "lr_source": test_set.lr_source_description,
                        }
                    )
    return pd.DataFrame(rows), skipped


def _join_published(wide: pd.DataFrame, reference_dir: Path, source: str, suffix: str) -> pd.DataFrame:
    published = published_quality(reference_dir, source)
    wide = wide.assign(published_as=[published_name(m, source) for m in wide["model"]])
    merged = wide.merge(
        published[["model", "scale", "dataset", "psnr", "ssim"]].rename(
            columns={"model": "published_as", "psnr": f"psnr_published{suffix}", "ssim": f"ssim_published{suffix}"}
        ),
        on=["published_as", "scale", "dataset"],
        how="left",
    )
    if "psnr_y_float" in merged:
        merged[f"psnr_diff_float{suffix}"] = merged["psnr_y_float"] - merged[f"psnr_published{suffix}"]
        merged[f"ssim_diff_float{suffix}"] = merged["ssim_y_float"] - merged[f"ssim_published{suffix}"]
    if "psnr_y_rounded" in merged and not suffix:
        merged["psnr_diff_rounded"] = merged["psnr_y_rounded"] - merged["psnr_published"]
    return merged.drop(columns="published_as")


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
    wide = _join_published(wide, reference_dir, source, "")
    for extra in extra_sources:
        wide = _join_published(wide, reference_dir, extra, f" ({extra})")
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
