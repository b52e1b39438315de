"""Training and calibration data: LR/HR patches from a folder of HR images.

Each HR image is modcropped to the scale and its LR image is made once, when the folder is loaded,
with the MATLAB-exact ``memsr_bench.imresize`` (bicubic, antialiased, symmetric border, uint8), i.e.
exactly the LR the test sets use; patches are then cut at aligned positions (LR ``p x p``, HR
``sp x sp``) and optionally flipped/rotated (the 8 symmetries of the square). Tensors are float32
RGB in 0..255, N x 3 x H x W. All randomness comes from one ``numpy.random.Generator`` whose state
can be saved and restored (checkpoint/resume).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from memsr_bench.data.datasets import image_files
from memsr_bench.data.image_io import modcrop, read_image_rgb
from memsr_bench.data.matlab_resize import imresize
from memsr_bench.errors import MemsrInputError

__all__ = ["PatchSampler", "TrainingImage", "calibration_batch", "load_training_images"]


@dataclass(frozen=True)
class TrainingImage:
    name: str
    lr: np.ndarray  # uint8 h x w x 3
    hr: np.ndarray  # uint8 sh x sw x 3


def load_training_images(hr_dir: str | Path, scale: int, min_lr_size: int = 1) -> tuple[list[TrainingImage], list[str]]:
    """All images of ``hr_dir`` (PNG/BMP) with their MATLAB-bicubic LR; returns (images, skipped names).

    Images whose LR is smaller than ``min_lr_size`` in either dimension are skipped (named in the
    second list). Raises :class:`MemsrInputError` for a missing folder or when nothing is usable.
    """
    folder = Path(hr_dir)
    if not folder.is_dir():
        raise MemsrInputError(folder, "training image folder not found")
    if scale < 1:
        raise MemsrInputError("--scale", f"must be a positive integer, not {scale}")
    files = image_files(folder, "training")
    if not files:
        raise MemsrInputError(folder, "no PNG or BMP images found")
    images, skipped = [], []
    for path in files:
        hr = modcrop(read_image_rgb(path), scale)
        if hr.shape[0] // scale < min_lr_size or hr.shape[1] // scale < min_lr_size:
            skipped.append(path.stem)
            continue
        images.append(TrainingImage(path.stem, imresize(hr, 1 / scale, border="symmetric"), hr))
    if not images:
        raise MemsrInputError(
            folder,
            f"no image is large enough for LR patches of {min_lr_size} px at x{scale} (use a smaller patch)",
        )
    return images, skipped


def _augment(img: np.ndarray, code: int) -> np.ndarray:
    if code & 1:
        img = img[:, ::-1]
    if code & 2:
        img = img[::-1, :]
    if code & 4:
        img = img.transpose(1, 0, 2)
    return img


def _to_tensor(batch: list[np.ndarray]) -> torch.Tensor:
    arr = np.stack([np.ascontiguousarray(b) for b in batch]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)


class PatchSampler:
    """Random aligned LR/HR patch batches from a folder of HR images (images picked uniformly)."""

    def __init__(
        self,
        hr_dir: str | Path,
        scale: int,
        patch_size: int,
        seed: int = 0,
        augment: bool = True,
        images: list[TrainingImage] | None = None,
    ):
        if patch_size < 1:
            raise MemsrInputError("--patch-size", f"must be positive, not {patch_size}")
        self.scale = int(scale)
        self.patch_size = int(patch_size)
        self.augment = augment
        if images is None:
            images, skipped = load_training_images(hr_dir, scale, min_lr_size=patch_size)
        else:
            skipped = [im.name for im in images if min(im.lr.shape[:2]) < patch_size]
            images = [im for im in images if min(im.lr.shape[:2]) >= patch_size]
        self.images = images
        self.skipped = skipped
        self.rng = np.random.default_rng(seed)
        self.targets: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def set_targets(self, targets: list[np.ndarray]) -> None:
        """Attach one float32 ``sh x sw x 3`` array per image (e.g. a teacher's output on the whole LR
        image): :meth:`sample` with ``with_targets=True`` then cuts them at the HR patch positions."""
        if len(targets) != len(self.images):
            raise ValueError(f"{len(targets)} targets for {len(self.images)} images")
        for im, target in zip(self.images, targets, strict=True):
            if target.shape != im.hr.shape:
                raise ValueError(f"{im.name}: target of shape {target.shape}, HR image of shape {im.hr.shape}")
        self.targets = targets

    def sample(self, batch_size: int, with_targets: bool = False) -> tuple[torch.Tensor, ...]:
        """``(lr, hr)``: float32 ``(B, 3, p, p)`` and ``(B, 3, sp, sp)`` in 0..255; with ``with_targets``
        also the attached targets' patches ``(B, 3, sp, sp)``, cut and flipped like ``hr``. The random
        draws do not depend on ``with_targets``: both give the same patches for the same state."""
        if with_targets and self.targets is None:
            raise ValueError("no targets attached: call set_targets first")
        p, s = self.patch_size, self.scale
        lrs, hrs, targets = [], [], []
        for _ in range(batch_size):
            index = int(self.rng.integers(len(self.images)))
            im = self.images[index]
            h, w = im.lr.shape[:2]
            y, x = int(self.rng.integers(h - p + 1)), int(self.rng.integers(w - p + 1))
            window = slice(y * s, (y + p) * s), slice(x * s, (x + p) * s)
            lr, hr = im.lr[y : y + p, x : x + p], im.hr[window]
            target = self.targets[index][window] if with_targets else None
            if self.augment:
                code = int(self.rng.integers(8))
                lr, hr = _augment(lr, code), _augment(hr, code)
                target = _augment(target, code) if with_targets else None
            lrs.append(lr)
            hrs.append(hr)
            targets.append(target)
        if with_targets:
            return _to_tensor(lrs), _to_tensor(hrs), _to_tensor(targets)
        return _to_tensor(lrs), _to_tensor(hrs)

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def calibration_batch(
    hr_dir: str | Path,
    scale: int,
    n: int = 16,
    patch_size: int = 48,
    seed: int = 0,
    images: list[TrainingImage] | None = None,
) -> torch.Tensor:
    """``n`` LR calibration patches (float32 ``(n, 3, p, p)``, 0..255) from real images, no augmentation;
    MemSR runs 16 training samples through the teacher to choose the student's widths."""
    if n < 1:
        raise MemsrInputError("--n-calib", f"must be positive, not {n}")
    sampler = PatchSampler(hr_dir, scale, patch_size, seed=seed, augment=False, images=images)
    if not sampler.images:
        raise MemsrInputError(hr_dir, f"no image is large enough for {patch_size}-px LR patches at x{scale}")
    return sampler.sample(n)[0]
