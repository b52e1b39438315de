"""The published tables of the source papers (``../shared/reference/*.csv``), as reference columns.

Published numbers are only ever shown beside measured ones, under a "published" heading, with
the source named; they are never used as a measured value.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from memsr_bench.errors import MemsrInputError

# Dataset names differ between the papers' tables and the folders.
DATASET_ALIASES = {"B100": "BSD100", "BSDS100": "BSD100"}

# Zoo name -> the name its row carries in each published table (by the table's source prefix).
PUBLISHED_NAMES: dict[str, dict[str, str]] = {
    "bicubic": {"FMEN Table 3": "Bicubic", "MemSR": "Bicubic"},
    "srcnn": {"FMEN Table 3": "SRCNN", "MemSR": "SRCNN"},
    "fsrcnn": {"FMEN Table 3": "FSRCNN", "MemSR": "FSRCNN"},
    "edsr-baseline": {"FMEN Table 3": "EDSR-baseline", "MemSR": "EDSR", "CDISM": "EDSR-baseline"},
    "carn": {"FMEN Table 3": "CARN", "MemSR": "CARN", "CDISM": "CARN"},
    "imdn": {"FMEN Table 3": "IMDN", "MemSR": "IMDN", "CDISM": "IMDN"},
    "latticenet": {"FMEN Table 3": "LatticeNet", "MemSR": "LatticeNet", "CDISM": "LatticeNet"},
    "rfdn": {"FMEN Table 3": "RFDN", "MemSR": "RFDN"},
    # The published FMEN / FMEN-S figures are those of the deploy form (BN and RRRB merged).
    "fmen-deploy": {"FMEN Table 3": "FMEN"},
    "imdn-ntire2022": {"FMEN Table 4": "IMDN"},
    "e-rfdn": {"FMEN Table 4": "E-RFDN"},
    "rlfn-ntire": {"FMEN Table 4": "ByteESR", "NTIRE 2024 ESR": "RLFN"},
    "fmen-s-deploy": {"FMEN Table 4": "FMEN-S"},
    "plain-m": {"MemSR": "Plain-M"},
    "efdn": {"NTIRE 2025 ESR": "EFDN"},
    "span": {"NTIRE 2026 ESR": "SPAN"},
    # The CDISM figure's teachers and baselines. Its students (EDSRmini+KD, SwinIRmini+KD) carry distilled
    # weights, which the zoo's edsr-mini / swinir-mini architectures do not: only their efficiency is joined.
    "swinir-light": {"SwinIR": "SwinIR-light", "CDISM": "SwinIR-light"},
    "edsr-mini": {"CDISM": "EDSRmini"},
    "swinir-mini": {"CDISM": "SwinIRmini"},
}
for _zoo, _cdism in (
    ("edsr-baseline", "EDSR-baseline"),
    ("imdn", "IMDN"),
    ("latticenet", "LatticeNet"),
    ("carn", "CARN"),
):
    PUBLISHED_NAMES[_zoo]["CDISM"] = _cdism


def default_reference_dir() -> Path | None:
    """``$MEMSR_SHARED/reference`` or ``../shared/reference`` from the working directory, if present."""
    root = Path(os.environ.get("MEMSR_SHARED", Path.cwd().parent / "shared"))
    reference = root / "reference"
    return reference if reference.is_dir() else None


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MemsrInputError(path, "published table not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise MemsrInputError(path, f"cannot parse CSV ({err})") from None


def published_name(zoo_model: str, source_prefix: str) -> str | None:
    """The row name of a zoo model in a published table (None if the table does not list it).

    ``source`` may be a table's full source name ("MemSR slides") or its prefix ("MemSR").
    """
    for prefix, name in PUBLISHED_NAMES.get(zoo_model, {}).items():
        if source_prefix.startswith(prefix):
            return name
    return None


def published_quality(reference_dir: Path, source_prefix: str = "FMEN Table 3") -> pd.DataFrame:
    """Published PSNR/SSIM rows of one source: columns source, model (as printed), scale, dataset, psnr, ssim.

    Dataset names are normalised to the folder names (B100 -> BSD100).
    """
    table = _read_csv(reference_dir / "published_quality.csv")
    table = table[table["source"].str.startswith(source_prefix)].copy()
    table["dataset"] = table["dataset"].replace(DATASET_ALIASES)
    return table.reset_index(drop=True)


def published_efficiency(reference_dir: Path) -> pd.DataFrame:
    """Published efficiency rows, with a ``zoo_model`` column where the model is in the zoo."""
    table = _read_csv(reference_dir / "published_efficiency.csv")

    def zoo_name(row: pd.Series) -> str | None:
        for name, by_source in PUBLISHED_NAMES.items():
            for prefix, published in by_source.items():
                if row["source"].startswith(prefix) and row["model"] == published:
                    return name
        return None

    table["zoo_model"] = table.apply(zoo_name, axis=1)
    return table


def published_as(model: str, source_prefix: str) -> str | None:
    """The row name of a measured model in a published table (None if the source does not list it)."""
    return published_name(model, source_prefix)


def join_published(
    measured: pd.DataFrame,
    published: pd.DataFrame,
    source_prefix: str,
    on: tuple[str, ...],
    columns: dict[str, str],
) -> pd.DataFrame:
    """``measured`` with the published ``columns`` ({published column: new name}) beside each row.

    The one join of measured and published numbers: keyed by data — the model's row name in the
    source (:func:`published_as`) and the ``on`` columns (``scale``, ``dataset``) — never by display
    labels. Rows the source does not list get NaN; the measured rows keep their order.
    """
    rows = published[published["source"].str.startswith(source_prefix)]
    rows = rows.rename(columns={"model": "_published_as", **columns})[["_published_as", *on, *columns.values()]]
    rows = rows.drop_duplicates(["_published_as", *on])
    keyed = measured.assign(_published_as=[published_as(m, source_prefix) for m in measured["model"]])
    for col in on:
        keyed[col] = keyed[col].astype(rows[col].dtype) if len(rows) else keyed[col]
    joined = keyed.merge(rows, on=["_published_as", *on], how="left")
    return joined.drop(columns="_published_as").set_axis(measured.index)
