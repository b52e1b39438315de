"""Rendering result tables (pandas DataFrames) as Markdown without extra dependencies."""

from __future__ import annotations

import pandas as pd


def markdown_table(table: pd.DataFrame) -> str:
    """GitHub Markdown table of ``table`` as it is (format the values before calling); NaN as '—'."""
    header = [str(c) for c in table.columns]
    body = [
        ["—" if (isinstance(v, float) and pd.isna(v)) or v is None else str(v) for v in row]
        for row in table.itertuples(index=False)
    ]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    align = ["---:" if is_num else ":---" for is_num in numeric]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)
