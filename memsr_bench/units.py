"""The one parser of image sizes and the one formatter of byte counts (every command uses these)."""

from __future__ import annotations

import re

from memsr_bench.errors import MemsrInputError

__all__ = ["format_bytes", "parse_size"]


def parse_size(text: str, option: str) -> tuple[int, int]:
    """``"1080x1920"`` (H x W) -> ``(1080, 1920)``; anything else is a one-line error naming ``option``."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise MemsrInputError(option, f"expected HxW with positive integers, e.g. 256x256, not {text!r}")
    return int(match[1]), int(match[2])


def format_bytes(n: float, exact: bool = False) -> str:
    """Binary units (KiB, MiB, GiB) with two decimals; ``exact`` appends the byte count."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    text = f"{int(n):,} B" if unit == "B" else f"{value:,.2f} {unit}"
    return f"{text} ({int(n):,} B)" if exact and unit != "B" else text
