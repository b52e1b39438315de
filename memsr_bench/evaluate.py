"""Evaluate an upscaler on a test set with the published PSNR/SSIM conventions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from memsr_bench.color import YVariant
from memsr_bench.data.datasets import TestSet
from memsr_bench.metrics import Channel, QualityConvention, psnr_ssim
from memsr_bench.upscalers import Upscaler


@dataclass(frozen=True)
class ImageScore:
    name: str
    psnr: float
    ssim: float


@dataclass(frozen=True)
class EvalResult:
    """Mean and per-image PSNR/SSIM of one model on one test set, with every convention named."""

    model: str
    scale: int
    dataset: str
    images: tuple[ImageScore, ...]
    conventions: dict[str, Any] = field(default_factory=dict)

    @property
    def psnr(self) -> float:
        return math.fsum(image.psnr for image in self.images) / len(self.images)

    @property
    def ssim(self) -> float:
        return math.fsum(image.ssim for image in self.images) / len(self.images)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scale": self.scale,
            "dataset": self.dataset,
            "n_images": len(self.images),
            "psnr": self.psnr,
            "ssim": self.ssim,
            "conventions": self.conventions,
            "images": [{"name": i.name, "psnr": i.psnr, "ssim": i.ssim} for i in self.images],
        }


def evaluate_conventions(
    upscaler: Upscaler,
    test_set: TestSet,
    conventions: Sequence[QualityConvention],
    progress: bool | None = None,
) -> list[EvalResult]:
    """PSNR/SSIM of ``upscaler`` on every image of ``test_set`` under several conventions at once.

    The upscaler runs once per image; every convention scores the same SR output. ``progress``:
    a tqdm bar on stderr; None shows it only on a terminal.
    """
    if upscaler.scale != test_set.scale:
        raise ValueError(f"upscaler is x{upscaler.scale} but the test set is x{test_set.scale}")
    for convention in conventions:  # a crop that leaves an image too small: refused before any image runs
        test_set.check_crop(convention.crop_border)
    scores: list[list[ImageScore]] = [[] for _ in conventions]
    bar = tqdm(
        test_set.pairs,
        desc=f"{upscaler.name} x{test_set.scale} {test_set.name}",
        unit="img",
        disable=None if progress is None else not progress,
        leave=False,
    )
    for pair in bar:
        lr, hr = test_set.load(pair)
        sr = upscaler(lr)
        if sr.shape != hr.shape:
            raise ValueError(f"{upscaler.name} gave {sr.shape} for {pair.name}, expected {hr.shape}")
        for convention, convention_scores in zip(conventions, scores, strict=True):
            value_psnr, value_ssim = psnr_ssim(
                sr,
                hr,
                crop_border=convention.crop_border,
                channel=convention.channel,
                y_variant=convention.y_variant,
            )
            convention_scores.append(ImageScore(pair.name, value_psnr, value_ssim))
    return [
        EvalResult(
            upscaler.name,
            test_set.scale,
            test_set.name,
            tuple(convention_scores),
            _describe(convention, test_set),
        )
        for convention, convention_scores in zip(conventions, scores, strict=True)
    ]


def _describe(convention: QualityConvention, test_set: TestSet) -> dict[str, Any]:
    return {
        "channel": convention.channel,
        "y": f"BT.601 {convention.y_variant}" if convention.channel == "y" else None,
        "crop_border": convention.crop_border,
        "lr_source": test_set.lr_source_description,
        "border": test_set.border,
        "hr": f"modcrop to a multiple of {test_set.scale}",
        "sr": "rounded to uint8 RGB",
        "psnr": "float64, peak 255, mean over images",
        "ssim": "ssim_index.m: gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, L 255, valid; mean over images",
        "summary": str(convention),
    }


def evaluate(
    upscaler: Upscaler,
    test_set: TestSet,
    channel: Channel = "y",
    y_variant: YVariant = "float",
    crop_border: int | None = None,
    progress: bool | None = None,
) -> EvalResult:
    """PSNR/SSIM of ``upscaler`` on ``test_set``; ``crop_border`` defaults to the scale (the papers')."""
    crop = test_set.scale if crop_border is None else crop_border
    convention = QualityConvention(channel=channel, y_variant=y_variant, crop_border=crop)
    return evaluate_conventions(upscaler, test_set, [convention], progress)[0]
