"""Test-set discovery: which HR images a folder holds and where their LR inputs come from.

Two layouts are understood:
- the EDSR benchmark layout: ``<Set>/HR/<name>.png`` with ``<Set>/LR_bicubic/X<s>/<name>x<s>.png``
  (MATLAB ``imresize``, symmetric border) and/or ``<Set>/LR_bicubic_rcan/X<s>/<name>x<s>.png``
  (SelfExSR / RCAN files, replicated border);
- a folder of HR images only: LR inputs are generated with the MATLAB-exact ``imresize``.

The LR folder read for a border convention is ``LR_bicubic`` (symmetric) or ``LR_bicubic_rcan``
(replicate). ``lr_source`` chooses between those files ("folder"), regenerating them
("generate"), or files when present and generation otherwise ("auto").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from memsr_bench.data.image_io import IMAGE_SUFFIXES, modcrop, read_image_rgb
from memsr_bench.data.matlab_resize import Border, imresize
from memsr_bench.errors import MemsrInputError

LRSource = Literal["auto", "folder", "generate"]
LR_SOURCES: tuple[str, ...] = ("auto", "folder", "generate")
LR_FOLDER_FOR_BORDER: dict[str, str] = {"symmetric": "LR_bicubic", "replicate": "LR_bicubic_rcan"}


@dataclass(frozen=True)
class ImagePair:
    """One test image: its HR file and, when read from disk, its LR file."""

    name: str
    hr_path: Path
    lr_path: Path | None  # None: the LR input is generated from the HR image


@dataclass(frozen=True)
class TestSet:
    """A discovered test set at one scale, with how its LR inputs are obtained."""

    __test__ = False  # not a pytest test class

    name: str
    scale: int
    pairs: tuple[ImagePair, ...]
    border: Border
    lr_folder: Path | None  # the folder the LR files come from, or None when generated

    @property
    def lr_source_description(self) -> str:
        if self.lr_folder is None:
            return f"generated: MATLAB imresize bicubic 1/{self.scale}, {self.border} border, uint8"
        return f"files: {self.lr_folder.parent.name}/{self.lr_folder.name}"

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[ImagePair]:
        return iter(self.pairs)

    def load(self, pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
        """(LR, HR) uint8 RGB of one pair; HR modcropped to the scale; sizes checked."""
        hr = modcrop(read_image_rgb(pair.hr_path), self.scale)
        if hr.shape[0] < self.scale or hr.shape[1] < self.scale:
            raise MemsrInputError(pair.hr_path, f"image is smaller than the scale x{self.scale}")
        if pair.lr_path is None:
            return imresize(hr, 1 / self.scale, border=self.border), hr
        lr = read_image_rgb(pair.lr_path)
        expected = (hr.shape[0] // self.scale, hr.shape[1] // self.scale)
        if lr.shape[:2] != expected:
            raise MemsrInputError(
                pair.lr_path,
                f"LR size {lr.shape[0]}x{lr.shape[1]} does not match HR {pair.hr_path.name} "
                f"(modcropped {hr.shape[0]}x{hr.shape[1]} / x{self.scale} = {expected[0]}x{expected[1]})",
            )
        return lr, hr

    def largest_lr_size(self) -> tuple[int, int]:
        """The largest LR input ``(H, W)`` of the set (by pixels), from the HR files' headers alone."""
        from PIL import Image

        sizes = []
        for pair in self.pairs:
            try:
                with Image.open(pair.hr_path) as image:
                    width, height = image.size
            except OSError as err:
                raise MemsrInputError(pair.hr_path, f"unreadable image ({err})") from None
            sizes.append((height // self.scale, width // self.scale))
        return max(sizes, key=lambda hw: hw[0] * hw[1])


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _lr_file(lr_folder: Path, stem: str, scale: int) -> Path | None:
    for name in (f"{stem}x{scale}", stem):
        for suffix in IMAGE_SUFFIXES:
            candidate = lr_folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def discover_test_set(
    path: str | Path,
    scale: int,
    lr_source: LRSource = "auto",
    border: Border = "symmetric",
) -> TestSet:
    """Find the HR images (and LR files) of the test set at ``path`` for ``scale``.

    Raises :class:`MemsrInputError` naming the folder or file for a missing folder, an empty set,
    or LR files that are required (``lr_source="folder"``) but missing.
    """
    path = Path(path)
    if lr_source not in LR_SOURCES:
        raise MemsrInputError("--lr-source", f"must be one of {LR_SOURCES}, not {lr_source!r}")
    if border not in LR_FOLDER_FOR_BORDER:
        raise MemsrInputError("--border", f"must be one of {tuple(LR_FOLDER_FOR_BORDER)}, not {border!r}")
    if scale < 1:
        raise MemsrInputError("--scale", f"must be a positive integer, not {scale}")
    if not path.is_dir():
        raise MemsrInputError(path, "test-set folder not found")
    hr_folder = path / "HR" if (path / "HR").is_dir() else path
    hr_files = _image_files(hr_folder)
    if not hr_files:
        raise MemsrInputError(hr_folder, "no PNG or BMP images found (empty test set)")

    lr_folder = path / LR_FOLDER_FOR_BORDER[border] / f"X{scale}"
    use_files = lr_source == "folder" or (lr_source == "auto" and lr_folder.is_dir())
    if lr_source == "folder" and not lr_folder.is_dir():
        raise MemsrInputError(lr_folder, f"LR folder not found (use --lr-source generate to make x{scale} LR)")
    pairs = []
    for hr_path in hr_files:
        lr_path = None
        if use_files:
            lr_path = _lr_file(lr_folder, hr_path.stem, scale)
            if lr_path is None:
                raise MemsrInputError(lr_folder / f"{hr_path.stem}x{scale}.png", "LR file not found for this HR image")
        pairs.append(ImagePair(name=hr_path.stem, hr_path=hr_path, lr_path=lr_path))
    return TestSet(
        name=path.name,
        scale=scale,
        pairs=tuple(pairs),
        border=border,
        lr_folder=lr_folder if use_files else None,
    )
