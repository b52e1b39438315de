"""The one parser of image sizes, the one of byte sizes and the one formatter of byte counts."""

from __future__ import annotations

import re

from memsr_bench.errors import MemsrInputError

__all__ = ["format_bytes", "parse_bytes", "parse_size"]


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


_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kib": 2**10,
    "kb": 10**3,
    "m": 2**20,
    "mib": 2**20,
    "mb": 10**6,
    "g": 2**30,
    "gib": 2**30,
    "gb": 10**9,
    "t": 2**40,
    "tib": 2**40,
    "tb": 10**12,
}


def parse_bytes(text: str, option: str) -> int:
    """``"700MiB"``, ``"1GiB"``, ``"1.5G"``, ``"2GB"``, ``"1048576"`` -> bytes. K/M/G/T and KiB/MiB/GiB/TiB
    are binary (2^10...), KB/MB/GB/TB decimal; anything else is a one-line error naming ``option``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = match[2].lower() if match else ""
    if not match or unit not in _UNITS or float(match[1]) <= 0:
        raise MemsrInputError(option, f"expected a size such as 700MiB, 1GiB or 1.5G, not {text!r}")
    return int(float(match[1]) * _UNITS[unit])
