"""Speed of the evaluation pipeline, as pytest-benchmark groups (ratios read from one run).

Run: ``python -m pytest tests/test_bench_eval_speed.py --benchmark-enable --benchmark-group-by=group``.
In the default test run (benchmarks disabled) each body runs once, so the equality checks still hold.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from memsr_bench import imresize, psnr_ssim, rgb_to_y
from memsr_bench.data.matlab_resize import resize_contributions
from tests.reference_impls import imresize_reference


@pytest.fixture(scope="module")
def pair_1024x768() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(np.int16) + rng.integers(-12, 13, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


@pytest.mark.benchmark(group="psnr+ssim on Y, 1024x768")
def test_bench_psnr_ssim_ours(benchmark, pair_1024x768):
    y_sr, y_hr = (rgb_to_y(img) for img in pair_1024x768)
    _, value = benchmark(psnr_ssim, y_sr, y_hr)
    reference = structural_similarity(
        y_sr, y_hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert abs(value - reference) < 1e-6


@pytest.mark.benchmark(group="psnr+ssim on Y, 1024x768")
def test_bench_ssim_skimage(benchmark, pair_1024x768):
    y_sr, y_hr = (rgb_to_y(img) for img in pair_1024x768)
    benchmark(
        structural_similarity,
        y_sr,
        y_hr,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )


@pytest.mark.benchmark(group="imresize x4 down, 1024x768 RGB")
def test_bench_imresize_ours(benchmark, pair_1024x768):
    hr = pair_1024x768[1]
    out = benchmark(imresize, hr, 1 / 4)
    assert np.array_equal(out, imresize_reference(hr, 1 / 4))


@pytest.mark.benchmark(group="imresize x4 down, 1024x768 RGB")
def test_bench_imresize_straightforward_numpy(benchmark, pair_1024x768):
    # Same cached weights as ours: the comparison is about the resampling loops only.
    benchmark(imresize_reference, pair_1024x768[1], 1 / 4, contributions_fn=resize_contributions)
