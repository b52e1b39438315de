"""Real-data proof of the pipeline: IMDN's official weights reproduce its published PSNR/SSIM.

Set5 runs in the default test run; Set14 and BSD100 (a few minutes on 2 cores) run with ``-m slow``.
Published: FMEN Table 3 (../shared/reference/published_quality.csv), LR_bicubic convention, float Y.
"""

from __future__ import annotations

import pytest

import zoo
from memsr_bench.data.datasets import discover_test_set
from memsr_bench.evaluate import evaluate
from memsr_bench.reporting.published import published_quality
from tests.conftest import require_shared

CASES = [(scale, "Set5") for scale in (2, 3, 4)] + [
    pytest.param(scale, dataset, marks=pytest.mark.slow) for dataset in ("Set14", "BSD100") for scale in (2, 3, 4)
]


@pytest.mark.parametrize(("scale", "dataset"), CASES)
def test_imdn_reproduces_published_quality(scale: int, dataset: str):
    datasets = require_shared("datasets")
    weights = require_shared("weights")
    reference = require_shared("reference")
    published = published_quality(reference, "FMEN Table 3")
    row = published[(published["model"] == "IMDN") & (published["scale"] == scale) & (published["dataset"] == dataset)]
    assert len(row) == 1
    model = zoo.create("imdn", scale=scale, checkpoint=weights)
    result = evaluate(zoo.upscaler(model), discover_test_set(datasets / dataset, scale), y_variant="float")
    assert abs(result.psnr - float(row["psnr"].iloc[0])) <= 0.02, (result.psnr, float(row["psnr"].iloc[0]))
    assert abs(result.ssim - float(row["ssim"].iloc[0])) <= 0.0005, (result.ssim, float(row["ssim"].iloc[0]))
