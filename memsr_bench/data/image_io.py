"""Reading and writing test images as uint8 RGB arrays (H x W x 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from memsr_bench.errors import MemsrInputError

IMAGE_SUFFIXES = (".png", ".bmp")


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read a PNG/BMP file as uint8 RGB, H x W x 3.

    Greyscale files (8-bit, or palette/RGB with R=G=B stored as such) become three equal channels,
    which is how the SR papers evaluate them. RGBA, 16-bit and unreadable files are rejected with
    an error naming the file: silently dropping alpha or rescaling 16-bit data would change PSNR.
    """
    path = Path(path)
    if not path.is_file():
        raise MemsrInputError(path, "image file not found")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                raise MemsrInputError(path, f"image has an alpha channel (mode {mode}); SR test images are RGB")
            if mode in ("I;16", "I;16B", "I;16L", "I", "F") or mode.startswith("I;"):
                raise MemsrInputError(path, f"image is not 8-bit (mode {mode}); convert it to 8-bit RGB first")
            if mode == "1":
                raise MemsrInputError(path, "image is 1-bit black and white; SR test images are 8-bit")
            if mode == "L":
                grey = np.asarray(image, dtype=np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            if mode not in ("RGB", "P"):
                raise MemsrInputError(path, f"unsupported image mode {mode}; expected 8-bit RGB or greyscale")
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MemsrInputError(path, f"cannot read image ({type(err).__name__}: {err})") from None
    return np.ascontiguousarray(rgb)


def write_image_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 RGB (or greyscale H x W) array as PNG/BMP, creating parent folders."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right so that height and width are multiples of ``scale`` (MATLAB modcrop)."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]
