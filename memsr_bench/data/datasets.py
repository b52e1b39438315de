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

import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from memsr_bench.data.image_io import (
    IMAGE_SUFFIXES,
    inspect_image,
    looks_like_image,
    modcrop,
    other_image_kind,
    read_image_rgb,
)
from memsr_bench.data.matlab_resize import Border, imresize
from memsr_bench.errors import MemsrInputError
from memsr_bench.metrics import SSIM_WINDOW

LRSource = Literal["auto", "folder", "generate"]
LR_SOURCES: tuple[str, ...] = ("auto", "folder", "generate")
LR_FOLDER_FOR_BORDER: dict[str, str] = {"symmetric": "LR_bicubic", "replicate": "LR_bicubic_rcan"}


@dataclass(frozen=True)
class ImagePair:
    """One test image: its HR file and, when read from disk, its LR file."""

    name: str
    hr_path: Path
    lr_path: Path | None  # None: the LR input is generated from the HR image
    hr_size: tuple[int, int] | None = None  # (H, W) of the HR file as discovered, before modcrop


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

    def hr_size(self, pair: ImagePair) -> tuple[int, int]:
        """``(H, W)`` of the HR file of ``pair`` (before modcrop), from discovery or its header."""
        if pair.hr_size is not None:
            return pair.hr_size
        header = inspect_image(pair.hr_path)
        return header.height, header.width

    def largest_lr_size(self) -> tuple[int, int]:
        """The largest LR input ``(H, W)`` of the set (by pixels), from the HR files' headers alone."""
        sizes = [(h // self.scale, w // self.scale) for h, w in map(self.hr_size, self.pairs)]
        return max(sizes, key=lambda hw: hw[0] * hw[1])

    def check_crop(self, crop_border: int) -> None:
        """Refuse, before any image is upscaled, a border crop that leaves an image too small to score.

        PSNR/SSIM compare the modcropped HR image less ``crop_border`` pixels on every side, and
        SSIM's 11x11 window needs at least 11x11 of it.
        """
        too_small = []
        for pair in self.pairs:
            height, width = self.hr_size(pair)
            cropped = (height - height % self.scale, width - width % self.scale)
            left = (cropped[0] - 2 * crop_border, cropped[1] - 2 * crop_border)
            if min(left) < SSIM_WINDOW:
                too_small.append((pair, height, width, left))
        if too_small:
            pair, height, width, left = too_small[0]
            rest = f"{left[0]}x{left[1]}" if min(left) > 0 else "nothing"
            others = len(too_small) - 1
            more = f" (and {others} more image{'s' if others > 1 else ''} of {self.name})" if others else ""
            raise MemsrInputError(
                pair.hr_path,
                f"image is {_size_text(height, width, self.scale)}; cropping {crop_border} px from each border "
                f"(--crop) leaves {rest}, but PSNR/SSIM need at least {SSIM_WINDOW}x{SSIM_WINDOW} px "
                f"(use a smaller --crop){more}",
            )


def _size_text(height: int, width: int, scale: int) -> str:
    text = f"{height}x{width} px (height x width)"
    if height % scale or width % scale:
        text += f", {height - height % scale}x{width - width % scale} after modcrop to x{scale}"
    return text


def _refuse_other_images(folder: Path, files: list[Path], what: str) -> None:
    """Image-looking files that cannot be used (other formats, broken links) are errors, not skipped."""
    accepted = ", ".join(IMAGE_SUFFIXES)
    bad = []
    for p in files:
        if p.is_symlink() and not p.exists():
            if looks_like_image(p):
                bad.append((p, f"broken symbolic link (its target {os.readlink(p)} does not exist)"))
        elif p.is_file() and (kind := other_image_kind(p)) is not None:
            problem = f"{kind} file in a {what} folder; only PNG and BMP images are read ({accepted})"
            bad.append((p, f"{problem}: convert it losslessly to PNG or move it out of the folder"))
    if bad:
        path, problem = bad[0]
        if len(bad) > 1:
            problem += f" (and {len(bad) - 1} more such file{'s' if len(bad) > 2 else ''} in {folder})"
        raise MemsrInputError(path, problem)


def image_files(folder: Path, what: str = "test-set") -> list[Path]:
    """The PNG and BMP files of ``folder``, sorted; other image formats and broken links are errors,
    other files (README.txt) are ignored. ``what`` names the folder's role in the message."""
    entries = sorted(folder.iterdir())
    _refuse_other_images(folder, entries, what)
    return [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]


def _lr_file(lr_folder: Path, stem: str, scale: int) -> Path | None:
    for name in (f"{stem}x{scale}", stem):
        for suffix in IMAGE_SUFFIXES:
            candidate = lr_folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        # an LR file of this name in another format, or a broken link, is an error (not "missing")
        others = sorted(p for p in lr_folder.glob(f"{glob.escape(name)}.*") if p.stem == name)
        _refuse_other_images(lr_folder, others, "LR")
    return None


def _hr_size(path: Path, scale: int) -> tuple[int, int]:
    """``(H, W)`` of a checked HR file, refused when too small to score at ``scale`` with any crop."""
    header = inspect_image(path)
    height, width = header.height, header.width
    if height < scale or width < scale:
        raise MemsrInputError(path, f"image is smaller than the scale x{scale} ({height}x{width} px, height x width)")
    if min(height - height % scale, width - width % scale) < SSIM_WINDOW:
        raise MemsrInputError(
            path,
            f"image is too small: {_size_text(height, width, scale)}, but PSNR/SSIM need at least "
            f"{SSIM_WINDOW}x{SSIM_WINDOW} px after modcrop and border crop",
        )
    return height, width


def discover_test_set(
    path: str | Path,
    scale: int,
    lr_source: LRSource = "auto",
    border: Border = "symmetric",
) -> TestSet:
    """Find the HR images (and LR files) of the test set at ``path`` for ``scale``.

    Raises :class:`MemsrInputError` naming the folder or file for a missing folder, an empty set,
    LR files that are required (``lr_source="folder"``) but missing, and, before any model runs,
    for every file that could not be scored: image-looking files of other formats (JPEG, TIFF...)
    or broken links beside the PNG/BMP files, files that :func:`inspect_image` refuses (damaged,
    truncated pixel data, 16-bit, alpha, over PIL's pixel limit), and HR images too small to
    score (under 11x11 after modcrop). Other files (README.txt...) are ignored.
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
    hr_files = image_files(hr_folder)
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
        pairs.append(ImagePair(name=hr_path.stem, hr_path=hr_path, lr_path=lr_path, hr_size=_hr_size(hr_path, scale)))
        if lr_path is not None:
            inspect_image(lr_path)  # format, truncation, bit depth: before any model runs
    return TestSet(
        name=path.name,
        scale=scale,
        pairs=tuple(pairs),
        border=border,
        lr_folder=lr_folder if use_files else None,
    )
