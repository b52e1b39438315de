"""PSNR/SSIM/Y conventions: scikit-image and a float64 reference are the oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import structural_similarity

from memsr_bench import psnr, psnr_ssim, rgb_to_y, ssim
from tests.reference_impls import psnr_reference, y_reference


def skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )


def noisy_pair(rng: np.random.Generator, height: int, width: int, noise: int):
    hr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(np.int64) + rng.integers(-noise, noise + 1, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(11, 90),
    width=st.integers(11, 90),
    noise=st.integers(0, 60),
    smooth=st.booleans(),
    variant=st.sampled_from(["float", "rounded"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_ssim_equals_skimage(height, width, noise, smooth, variant, seed):
    rng = np.random.default_rng(seed)
    sr, hr = noisy_pair(rng, height, width, noise)
    if smooth:  # bright, low-variance content is where cancellation errors would show
        hr = np.clip(200 + hr // 16, 0, 255).astype(np.uint8)
        sr = np.clip(200 + sr // 16, 0, 255).astype(np.uint8)
    expected = skimage_ssim(y_reference(sr, variant == "rounded"), y_reference(hr, variant == "rounded"))
    assert abs(ssim(sr, hr, y_variant=variant) - expected) <= 1e-6


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(12, 60),
    width=st.integers(12, 60),
    noise=st.integers(1, 60),
    crop=st.integers(0, 4),
    variant=st.sampled_from(["float", "rounded"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_psnr_equals_float64_reference(height, width, noise, crop, variant, seed):
    sr, hr = noisy_pair(np.random.default_rng(seed), height, width, noise)
    ys = y_reference(sr, variant == "rounded")
    yh = y_reference(hr, variant == "rounded")
    if crop:
        ys, yh = ys[crop:-crop, crop:-crop], yh[crop:-crop, crop:-crop]
    if np.array_equal(ys, yh):
        assert psnr(sr, hr, crop_border=crop, y_variant=variant) == math.inf
    else:
        assert abs(psnr(sr, hr, crop_border=crop, y_variant=variant) - psnr_reference(ys, yh)) <= 1e-9


def test_rgb_mode_is_ntire_style():
    sr, hr = noisy_pair(np.random.default_rng(1), 40, 50, 10)
    c = 4
    expected_psnr = psnr_reference(sr[c:-c, c:-c], hr[c:-c, c:-c])
    assert abs(psnr(sr, hr, crop_border=c, channel="rgb") - expected_psnr) <= 1e-9
    per_channel = [
        skimage_ssim(sr[c:-c, c:-c, i].astype(float), hr[c:-c, c:-c, i].astype(float)) for i in range(3)
    ]
    assert abs(ssim(sr, hr, crop_border=c, channel="rgb") - np.mean(per_channel)) <= 1e-6


def test_psnr_ssim_agrees_with_separate_calls_and_2d_planes():
    sr, hr = noisy_pair(np.random.default_rng(2), 64, 48, 20)
    p, s = psnr_ssim(sr, hr, crop_border=3)
    assert p == psnr(sr, hr, crop_border=3) and s == ssim(sr, hr, crop_border=3)
    ys, yh = rgb_to_y(sr), rgb_to_y(hr)
    assert psnr(ys, yh) == psnr(sr, hr) and ssim(ys, yh) == ssim(sr, hr)


def test_identical_images():
    img = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)


def test_y_variants():
    img = np.random.default_rng(4).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    y_float = rgb_to_y(img, "float")
    y_rounded = rgb_to_y(img, "rounded")
    np.testing.assert_allclose(y_float, y_reference(img, rounded=False), atol=1e-10)
    assert np.all(y_rounded == np.round(y_rounded)) and np.all(np.abs(y_rounded - y_float) <= 0.5)
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == 16.0
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)


def test_rounded_and_float_y_really_differ_in_psnr():
    sr, hr = noisy_pair(np.random.default_rng(5), 64, 64, 3)
    assert psnr(sr, hr, y_variant="float") != psnr(sr, hr, y_variant="rounded")


def test_errors():
    a = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(a, np.zeros((20, 21, 3), np.uint8))
    with pytest.raises(ValueError, match="channel"):
        psnr(a, a, channel="yiq")
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a[:10], a[:10])
    with pytest.raises(ValueError, match="nothing left"):
        psnr(a, a, crop_border=10)
