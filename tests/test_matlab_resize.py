"""imresize: bit-exact against the MATLAB-made LR files and against a line-by-line reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsr_bench import imresize
from memsr_bench.data.image_io import modcrop, read_image_rgb
from memsr_bench.data.matlab_resize import cubic_kernel, resize_contributions
from tests.conftest import require_shared
from tests.reference_impls import imresize_reference

LR_FILE_CASES = [
    ("Set5", "LR_bicubic", "symmetric", 2, "uint8"),
    ("Set5", "LR_bicubic", "symmetric", 3, "uint8"),
    ("Set5", "LR_bicubic", "symmetric", 4, "uint8"),
    ("Set5", "LR_bicubic", "symmetric", 8, "float64"),
    ("Set5", "LR_bicubic_rcan", "replicate", 2, "uint8"),
    ("Set5", "LR_bicubic_rcan", "replicate", 3, "uint8"),
    ("Set5", "LR_bicubic_rcan", "replicate", 4, "uint8"),
    ("Set14", "LR_bicubic_rcan", "replicate", 2, "uint8"),
    ("Set14", "LR_bicubic_rcan", "replicate", 3, "uint8"),
    ("Set14", "LR_bicubic_rcan", "replicate", 4, "uint8"),
]


@pytest.mark.parametrize(("dataset", "lr_folder", "border", "scale", "intermediate"), LR_FILE_CASES)
def test_reproduces_matlab_lr_files_bit_exactly(dataset, lr_folder, border, scale, intermediate):
    root = require_shared("datasets", dataset)
    hr_files = sorted((root / "HR").glob("*.png"))
    assert hr_files
    for hr_path in hr_files:
        hr = modcrop(read_image_rgb(hr_path), scale)
        expected = read_image_rgb(root / lr_folder / f"X{scale}" / f"{hr_path.stem}x{scale}.png")
        ours = imresize(hr, 1 / scale, border=border, intermediate=intermediate)
        assert ours.shape == expected.shape
        mismatches = int(np.count_nonzero(ours != expected))
        assert mismatches == 0, f"{hr_path.name} x{scale}: {mismatches} values differ"


def test_border_conventions_really_differ():
    """Guards the test above: the wrong border must not also match."""
    root = require_shared("datasets", "Set5")
    hr = modcrop(read_image_rgb(root / "HR" / "bird.png"), 4)
    expected = read_image_rgb(root / "LR_bicubic" / "X4" / "birdx4.png")
    assert np.count_nonzero(imresize(hr, 1 / 4, border="replicate") != expected) > 0


def test_x8_needs_full_precision_between_passes():
    root = require_shared("datasets", "Set5")
    hr = modcrop(read_image_rgb(root / "HR" / "baby.png"), 8)
    expected = read_image_rgb(root / "LR_bicubic" / "X8" / "babyx8.png")
    assert np.count_nonzero(imresize(hr, 1 / 8, intermediate="uint8") != expected) > 0
    assert np.array_equal(imresize(hr, 1 / 8, intermediate="float64"), expected)


def test_cubic_kernel_values():
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5])
    # Keys a = -0.5: k(0)=1, k(0.5)=0.5625, k(1)=0, k(1.5)=-0.0625, k(2)=0.
    np.testing.assert_allclose(cubic_kernel(x), [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625])


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.7])
@pytest.mark.parametrize("border", ["symmetric", "replicate"])
def test_contributions_normalised_and_in_range(scale, border):
    weights, indices = resize_contributions(37, int(np.ceil(37 * scale)), scale, border)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    assert indices.min() >= 0 and indices.max() < 37


def test_output_sizes_and_layouts():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    assert imresize(rgb, 1 / 3).shape == (10, 15, 3)
    assert imresize(rgb, 2).shape == (60, 90, 3)
    grey = rgb[:, :, 0]
    assert imresize(grey, 1 / 3).shape == (10, 15)
    np.testing.assert_array_equal(imresize(grey, 1 / 3), imresize(rgb, 1 / 3)[:, :, 0])


def test_constant_image_stays_constant():
    img = np.full((24, 18, 3), 173, dtype=np.uint8)
    for scale in (1 / 4, 1 / 3, 2, 3):
        assert np.all(imresize(img, scale) == 173)


def test_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        imresize(np.zeros((8, 8), dtype=np.float32), 0.5)
    with pytest.raises(ValueError, match="border"):
        imresize(np.zeros((8, 8), dtype=np.uint8), 0.5, border="zeros")
    with pytest.raises(ValueError, match="positive"):
        imresize(np.zeros((8, 8), dtype=np.uint8), 0)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(4, 40),
    width=st.integers(4, 40),
    scale=st.sampled_from([1 / 2, 1 / 3, 1 / 4, 2, 3, 4, 0.6]),
    border=st.sampled_from(["symmetric", "replicate"]),
    round_between=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_line_by_line_reference(height, width, scale, border, round_between, seed):
    img = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    intermediate = "uint8" if round_between else "float64"
    expected = imresize_reference(img, scale, border, round_between)
    np.testing.assert_array_equal(imresize(img, scale, border=border, intermediate=intermediate), expected)
