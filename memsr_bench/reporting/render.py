"""Rendering: one table object (numeric data + a column schema + notes) to Markdown, CSV and LaTeX.

Builders produce tidy numeric :class:`pandas.DataFrame` columns and say how each is shown with a
:class:`Column` (header, format, alignment); :class:`Table` renders the same schema three ways. The
CSV keeps full precision; Markdown and LaTeX show the formatted strings, missing values as "—".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from memsr_bench.errors import MemsrInputError

__all__ = ["FORMATS", "Column", "Table", "format_value", "markdown_table"]

FORMATS = ("md", "csv", "latex")
MISSING = "—"
HIGHLIGHT = "★ "  # prefix of the user's highlighted rows in Markdown and LaTeX


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _scaled(value: Any, factor: float) -> Any:
    return value if factor == 1 or _missing(value) else value / factor


def format_value(value: Any, spec: str = "") -> str | None:
    """``format(value, spec)``; None for a missing value."""
    return None if _missing(value) else format(value, spec)


@dataclass(frozen=True)
class Column:
    """How one data column is shown: header, ``format`` spec (``",.2f"``, ``"+.1f"``, ``""``)."""

    name: str  # the data column
    header: str | None = None  # shown header (default: name)
    spec: str = ""
    factor: float = 1.0  # shown value = data value / factor (the data keep the quantity's unit)
    pair: str | None = None  # a second data column shown in the same cell, "a/b" (PSNR/SSIM)
    pair_spec: str = ""

    @property
    def title(self) -> str:
        return self.header or self.name


def markdown_table(table: pd.DataFrame, right: Sequence[bool] | None = None) -> str:
    """GitHub Markdown table of ``table`` as it is (format the values before calling); NaN as '—'.

    ``right``: which columns are right-aligned (default: the numeric ones)."""
    header = [str(c) for c in table.columns]
    body = [[MISSING if _missing(v) else str(v) for v in row] for row in table.itertuples(index=False)]
    numeric = right if right is not None else [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    align = ["---:" if is_num else ":---" for is_num in numeric]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    replace = {
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "\\": r"\textbackslash{}",
        "—": "--",
        "★": r"$\star$",
    }
    return "".join(replace.get(ch, ch) for ch in str(text))


def latex_table(shown: pd.DataFrame, title: str, label: str, notes: Sequence[str]) -> str:
    """A booktabs ``table`` environment; the notes as comments above it."""
    align = "".join(
        "l" if not pd.api.types.is_numeric_dtype(shown[c]) and c == shown.columns[0] else "r" for c in shown.columns
    )
    rows = [" & ".join(_latex_escape(c) for c in shown.columns) + r" \\"]
    for row in shown.itertuples(index=False):
        rows.append(" & ".join("--" if _missing(v) else _latex_escape(v) for v in row) + r" \\")
    return "\n".join(
        [
            f"% {title}",
            "% needs \\usepackage{booktabs}",
            *[f"% {n}" for n in notes],
            r"\begin{table}",
            r"\centering",
            rf"\caption{{{_latex_escape(title)}}}",
            rf"\label{{{label}}}",
            rf"\begin{{tabular}}{{{align}}}",
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


@dataclass
class Table:
    """Numeric ``data`` (the CSV), the ``columns`` shown (Markdown, LaTeX), a title and notes.

    A boolean ``highlight`` column in ``data`` marks the user's rows (★ before the first shown cell).
    """

    name: str
    title: str
    data: pd.DataFrame
    columns: list[Column]
    notes: list[str] = field(default_factory=list)

    def _values(self, name: str) -> pd.Series:
        return self.data[name] if name in self.data else pd.Series([None] * len(self.data), index=self.data.index)

    def shown(self) -> pd.DataFrame:
        titles = [c.title for c in self.columns]
        duplicated = sorted({t for t in titles if titles.count(t) > 1})
        if duplicated:
            raise ValueError(f"table {self.name}: duplicate column headers {duplicated}")
        # The cells are Python lists until the end, kept as object columns: pandas 3 stores a list of str and
        # None as its str dtype, where None becomes NaN (then shown as "nan" instead of the missing mark).
        cells: dict[str, list[str | None]] = {}
        for col in self.columns:
            cells[col.title] = [format_value(_scaled(v, col.factor), col.spec) for v in self._values(col.name)]
            if col.pair is not None:
                cells[col.title] = [
                    None if a is None and b is None else f"{a or MISSING}/{b or MISSING}"
                    for a, b in zip(
                        cells[col.title], [format_value(v, col.pair_spec) for v in self._values(col.pair)], strict=True
                    )
                ]
        if "highlight" in self.data and len(self.columns):
            titles = [c.title for c in self.columns]
            first = "model" if "model" in titles else titles[0]  # the star marks the model's name
            cells[first] = [
                f"{HIGHLIGHT}{v}" if not _missing(flag) and flag else v
                for v, flag in zip(cells[first], self.data["highlight"], strict=True)
            ]
        return pd.DataFrame({title: pd.Series(v, dtype=object) for title, v in cells.items()}, columns=list(cells))

    def to_markdown(self) -> str:
        right = [bool(c.spec) or c.name == "scale" for c in self.columns]  # formatted numbers align right
        lines = [f"# {self.title}", "", *[f"- {n}" for n in self.notes], "", markdown_table(self.shown(), right), ""]
        return "\n".join(lines)

    def to_csv(self) -> str:
        return self.data.to_csv(index=False)

    def to_latex(self) -> str:
        return latex_table(self.shown(), self.title, f"tab:{self.name}", self.notes)

    def render(self, fmt: str) -> str:
        if fmt not in FORMATS:
            raise MemsrInputError("--format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
        return {"md": self.to_markdown, "csv": self.to_csv, "latex": self.to_latex}[fmt]()

    def write(self, stem: Path, formats: Sequence[str] = FORMATS) -> list[Path]:
        """``stem``.md, .csv and .tex (those of ``formats``); returns the files written."""
        suffixes = {"md": ".md", "csv": ".csv", "latex": ".tex"}
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = []
        for fmt in formats:
            path = stem.with_name(stem.name + suffixes[fmt])
            path.write_text(self.render(fmt))
            paths.append(path)
        return paths
