"""Image reading, modcrop and test-set discovery, with the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from memsr_bench import imresize
from memsr_bench.data.datasets import discover_test_set
from memsr_bench.data.image_io import modcrop, read_image_rgb, write_image_rgb
from memsr_bench.errors import MemsrInputError
from tests.conftest import require_shared


def test_greyscale_becomes_three_equal_channels(tmp_path: Path):
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10)
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    rgb = read_image_rgb(tmp_path / "g.png")
    assert rgb.shape == (6, 10, 3) and rgb.dtype == np.uint8
    assert all(np.array_equal(rgb[:, :, c], grey) for c in range(3))


def test_bmp_and_png_roundtrip(tmp_path: Path):
    img = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    for name in ("a.png", "a.bmp"):
        write_image_rgb(tmp_path / name, img)
        assert np.array_equal(read_image_rgb(tmp_path / name), img)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Image.new("RGBA", (4, 4)).save(p), "alpha"),
        (lambda p: Image.fromarray(np.zeros((4, 4), np.uint16)).save(p), "not 8-bit"),
        (lambda p: p.write_bytes(b"not an image at all"), "cannot read image"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20), "cannot read image"),
    ],
)
def test_bad_images_name_the_file(tmp_path: Path, make, message):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(MemsrInputError, match=message) as info:
        read_image_rgb(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_image(tmp_path: Path):
    with pytest.raises(MemsrInputError, match="not found"):
        read_image_rgb(tmp_path / "nope.png")


def test_modcrop():
    img = np.zeros((13, 17, 3), np.uint8)
    assert modcrop(img, 4).shape == (12, 16, 3)
    assert modcrop(img, 1).shape == (13, 17, 3)


def make_benchmark_set(root: Path, scale: int = 2, with_lr: bool = True) -> Path:
    rng = np.random.default_rng(1)
    for name, size in (("a", (24, 30)), ("b", (21, 17))):
        hr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        write_image_rgb(root / "HR" / f"{name}.png", hr)
        if with_lr:
            lr = imresize(modcrop(hr, scale), 1 / scale)
            write_image_rgb(root / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png", lr)
    return root


def test_benchmark_layout_uses_lr_files(tmp_path: Path):
    make_benchmark_set(tmp_path / "Tiny")
    test_set = discover_test_set(tmp_path / "Tiny", 2)
    assert test_set.name == "Tiny" and len(test_set) == 2
    assert test_set.lr_folder is not None and "LR_bicubic/X2" in test_set.lr_source_description
    lr, hr = test_set.load(test_set.pairs[1])
    assert hr.shape == (20, 16, 3) and lr.shape == (10, 8, 3)


def test_generate_and_auto_without_lr_folder(tmp_path: Path):
    make_benchmark_set(tmp_path / "Tiny", with_lr=False)
    auto = discover_test_set(tmp_path / "Tiny", 3)
    assert auto.lr_folder is None and "generated" in auto.lr_source_description
    lr, hr = auto.load(auto.pairs[0])
    assert np.array_equal(lr, imresize(hr, 1 / 3))
    with pytest.raises(MemsrInputError, match="LR folder not found"):
        discover_test_set(tmp_path / "Tiny", 3, lr_source="folder")


def test_hr_only_folder(tmp_path: Path):
    write_image_rgb(tmp_path / "imgs" / "x.bmp", np.zeros((16, 16, 3), np.uint8))
    test_set = discover_test_set(tmp_path / "imgs", 4)
    assert [p.name for p in test_set] == ["x"] and test_set.lr_folder is None


def test_size_mismatch_names_the_lr_file(tmp_path: Path):
    root = make_benchmark_set(tmp_path / "Tiny")
    bad = root / "LR_bicubic" / "X2" / "ax2.png"
    write_image_rgb(bad, np.zeros((5, 5, 3), np.uint8))
    test_set = discover_test_set(root, 2)
    with pytest.raises(MemsrInputError, match="does not match HR") as info:
        test_set.load(test_set.pairs[0])
    assert str(bad) in str(info.value)


def test_missing_lr_file_and_empty_and_missing_folders(tmp_path: Path):
    root = make_benchmark_set(tmp_path / "Tiny")
    (root / "LR_bicubic" / "X2" / "bx2.png").unlink()
    with pytest.raises(MemsrInputError, match="LR file not found") as info:
        discover_test_set(root, 2)
    assert "bx2.png" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MemsrInputError, match="no PNG or BMP"):
        discover_test_set(tmp_path / "empty", 2)
    with pytest.raises(MemsrInputError, match="folder not found"):
        discover_test_set(tmp_path / "missing", 2)


def test_real_sets_discovered():
    datasets = require_shared("datasets")
    set5 = discover_test_set(datasets / "Set5", 4)
    assert len(set5) == 5 and set5.lr_folder is not None
    set14_rcan = discover_test_set(datasets / "Set14", 4, border="replicate")
    assert len(set14_rcan) == 14 and set14_rcan.lr_folder is not None
    bsd = discover_test_set(datasets / "BSD100", 3)
    assert len(bsd) == 100 and bsd.lr_folder is None
