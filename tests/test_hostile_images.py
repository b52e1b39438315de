"""Hostile and damaged test images: each is one MemsrInputError naming the file, never a wrong number.

Every case goes through the public readers (``read_image_rgb``, ``discover_test_set`` + ``load``)
and through ``memsr-bench eval`` (exit code 2, one line on stderr naming the file, no traceback).
The images are tmp_path copies of Set5 (../shared/datasets), rewritten byte by byte.
"""

from __future__ import annotations

import random
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from memsr_bench import imresize
from memsr_bench.cli import main
from memsr_bench.data.datasets import TestSet, discover_test_set
from memsr_bench.data.image_io import inspect_image, read_image_rgb, write_image_rgb
from memsr_bench.errors import MemsrInputError
from tests.conftest import require_shared

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PIL_LIMIT = 2 * Image.MAX_IMAGE_PIXELS  # PIL raises DecompressionBombError above this


# ---------------------------------------------------------------------------------------------
# PNG surgery


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk of a PNG, in order."""
    assert data.startswith(PNG_SIGNATURE)
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def make_png(width: int, height: int, depth: int, colour: int, raw: bytes, interlace: int = 0) -> bytes:
    """A PNG with one IDAT holding ``raw`` (filtered rows), every CRC right, ending with IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def truncate_png_rows(source: Path, target: Path, rows: int, height: int | None = None) -> None:
    """Rewrite ``source`` keeping only its first ``rows`` rows of pixel data, recompressed into one IDAT
    with valid CRCs and a valid IEND; the IHDR is kept (with ``height`` rows when given)."""
    chunks = png_chunks(source.read_bytes())
    ihdr = dict(chunks)[b"IHDR"]
    width, old_height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    assert interlace == 0 and depth == 8
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    raw = zlib.decompress(b"".join(body for ctype, body in chunks if ctype == b"IDAT"))
    stride = 1 + width * channels
    assert len(raw) == stride * old_height
    ihdr = struct.pack(">II", width, height or old_height) + ihdr[8:]
    out = PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw[: stride * rows]))
    target.write_bytes(out + png_chunk(b"IEND", b""))


def raw_rows(image: np.ndarray) -> bytes:
    """Filter type 0 before every row of an H x W x C (or H x W) array in PNG byte order."""
    rows = image.reshape(image.shape[0], -1)
    return b"".join(b"\x00" + row.tobytes() for row in rows)


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def set5(tmp_path: Path) -> Path:
    """A private copy of Set5 (HR and LR_bicubic/X2) that a test may damage."""
    source = require_shared("datasets", "Set5")
    root = tmp_path / "Set5"
    shutil.copytree(source / "HR", root / "HR")
    shutil.copytree(source / "LR_bicubic" / "X2", root / "LR_bicubic" / "X2")
    return root


def eval_cli(capsys, tmp_path: Path, data: Path, *extra: str, model: str = "bicubic", scale: int = 2):
    code = main(
        ["eval", model, "--scale", str(scale), "--data", str(data), "--store", str(tmp_path / "store.sqlite"), *extra]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(result: tuple[int, str, str], name: str, *phrases: str) -> str:
    code, out, err = result
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("memsr-bench: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert name in err, err
    for phrase in phrases:
        assert phrase in err, err
    return err.strip()


def assert_names_the_file(info: pytest.ExceptionInfo, path: Path, *phrases: str) -> None:
    message = str(info.value)
    assert str(path) in message and "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message


# ---------------------------------------------------------------------------------------------
# 1. PNG whose pixel data stops early but still ends with IEND (PIL reads black rows)


def test_truncated_pixel_data_is_an_error(set5: Path, tmp_path: Path, capsys, monkeypatch):
    bird = set5 / "HR" / "bird.png"
    original = read_image_rgb(bird)
    truncate_png_rows(bird, tmp_path / "short.png", rows=100)
    with Image.open(tmp_path / "short.png") as image:  # the reason for the check: PIL does not object
        image.load()
        assert not np.asarray(image.convert("RGB"))[200:].any()
    for loose in (False, True):  # whatever ImageFile.LOAD_TRUNCATED_IMAGES says
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", loose)
        with pytest.raises(MemsrInputError) as info:
            read_image_rgb(tmp_path / "short.png")
        assert_names_the_file(info, tmp_path / "short.png", "truncated pixel data", "about 100 of 288 rows")

    # a header claiming far more rows than the data holds: 288 x 10000 and 10000 x 10000 with 4 rows
    truncate_png_rows(bird, tmp_path / "tall.png", rows=4, height=10000)
    wide = np.random.default_rng(0).integers(0, 256, (4, 10000, 3), dtype=np.uint8)
    (tmp_path / "huge.png").write_bytes(make_png(10000, 10000, 8, 2, raw_rows(wide)))
    for name in ("tall.png", "huge.png"):
        with pytest.raises(MemsrInputError) as info:
            read_image_rgb(tmp_path / name)
        assert_names_the_file(info, tmp_path / name, "truncated pixel data", "about 4 of 10000 rows")

    # in a test set: refused when the set is discovered, HR or LR file
    shutil.copy(tmp_path / "short.png", bird)
    with pytest.raises(MemsrInputError, match="truncated pixel data") as info:
        discover_test_set(set5, 2)
    assert_names_the_file(info, bird)
    message = assert_one_line_error(eval_cli(capsys, tmp_path, set5), "bird.png", "truncated pixel data")
    assert message.startswith(f"memsr-bench: error: {bird}: truncated pixel data")

    shutil.copy(tmp_path / "huge.png", bird)
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "bird.png", "truncated pixel data")

    write_image_rgb(bird, original)
    lr = set5 / "LR_bicubic" / "X2" / "birdx2.png"
    truncate_png_rows(lr, lr, rows=70)
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "birdx2.png", "truncated pixel data")
    assert_one_line_error(
        eval_cli(capsys, tmp_path, set5, "--random-weights", model="fsrcnn"), "birdx2.png", "truncated pixel data"
    )


def test_interlaced_png_is_read_and_its_truncation_detected(tmp_path: Path):
    """Adam7 PNGs: the expected pixel-data length follows the seven passes."""
    image = np.random.default_rng(3).integers(0, 256, (29, 37, 3), dtype=np.uint8)
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b"".join(raw_rows(image[y0::dy, x0::dx]) for x0, y0, dx, dy in passes if image[y0::dy, x0::dx].size)
    (tmp_path / "adam7.png").write_bytes(make_png(37, 29, 8, 2, raw, interlace=1))
    assert np.array_equal(read_image_rgb(tmp_path / "adam7.png"), image)
    (tmp_path / "cut.png").write_bytes(make_png(37, 29, 8, 2, raw[:-40], interlace=1))
    with pytest.raises(MemsrInputError, match="truncated pixel data"):
        read_image_rgb(tmp_path / "cut.png")


# ---------------------------------------------------------------------------------------------
# 2. 16-bit RGB / RGBA PNGs (PIL opens 16-bit RGB as mode "RGB", keeping the high bytes)


@pytest.mark.parametrize(("colour", "channels", "words"), [(2, 3, "16-bit RGB PNG"), (6, 4, "16-bit RGBA PNG")])
def test_16_bit_rgb_png_is_refused(set5: Path, tmp_path: Path, capsys, colour, channels, words):
    bird = set5 / "HR" / "bird.png"
    eight = read_image_rgb(bird)
    if channels == 4:
        eight = np.concatenate([eight, np.full(eight.shape[:2] + (1,), 255, np.uint8)], axis=2)
    sixteen = (eight.astype(">u2") * 257).astype(">u2")
    bird.write_bytes(make_png(eight.shape[1], eight.shape[0], 16, colour, raw_rows(sixteen.view(np.uint8))))
    if channels == 3:
        with Image.open(bird) as image:
            assert image.mode == "RGB"  # what PIL alone would accept as 8-bit
    with pytest.raises(MemsrInputError) as info:
        read_image_rgb(bird)
    assert_names_the_file(info, bird, "not 8-bit", words, f"{16 * channels} bits per pixel")
    with pytest.raises(MemsrInputError, match="not 8-bit"):
        discover_test_set(set5, 2)
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "bird.png", "not 8-bit", "16-bit")


# ---------------------------------------------------------------------------------------------
# 3. Image files of other formats, and broken links, beside the PNGs


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".JPG"])
def test_other_image_formats_in_a_test_set_are_errors(set5: Path, tmp_path: Path, capsys, suffix):
    (set5 / "HR" / "README.txt").write_text("not an image: ignored")
    (set5 / "HR" / "notes").write_text("no suffix: ignored")
    assert len(discover_test_set(set5, 2)) == 5

    baby = set5 / "HR" / "baby.png"
    other = baby.with_suffix(suffix)
    with Image.open(baby) as image:
        if suffix.lower() in (".jpg", ".jpeg", ".gif", ".ppm"):
            image.save(other, format={".ppm": "PPM", ".gif": "GIF"}.get(suffix.lower(), "JPEG"))
        else:
            other.write_bytes(b"whatever it holds")
    baby.unlink()
    with pytest.raises(MemsrInputError, match="only PNG and BMP images are read") as info:
        discover_test_set(set5, 2)
    assert_names_the_file(info, other, ".png, .bmp")
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), other.name, "only PNG and BMP")


def test_misnamed_jpeg_broken_links_and_lr_in_another_format(set5: Path, tmp_path: Path, capsys):
    hr = set5 / "HR"
    with Image.open(hr / "baby.png") as image:
        image.save(tmp_path / "baby.jpg", format="JPEG")

    # a JPEG named .png
    shutil.copy(tmp_path / "baby.jpg", hr / "baby.png")
    with pytest.raises(MemsrInputError, match="is a JPEG image, not PNG or BMP") as info:
        read_image_rgb(hr / "baby.png")
    assert_names_the_file(info, hr / "baby.png")
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "baby.png", "JPEG")
    shutil.copy(require_shared("datasets", "Set5", "HR", "baby.png"), hr / "baby.png")

    # a dangling symlink named like an image (one without an image suffix is ignored)
    (hr / "notes.txt").symlink_to(tmp_path / "gone.txt")
    assert len(discover_test_set(set5, 2)) == 5
    (hr / "extra.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(MemsrInputError, match="broken symbolic link") as info:
        discover_test_set(set5, 2)
    assert_names_the_file(info, hr / "extra.png", "gone.png")
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "extra.png", "broken symbolic link")
    (hr / "extra.png").unlink()

    # the LR file of an HR image only as JPEG
    lr = set5 / "LR_bicubic" / "X2" / "babyx2.png"
    with Image.open(lr) as image:
        image.save(lr.with_suffix(".jpg"), format="JPEG")
    lr.unlink()
    with pytest.raises(MemsrInputError, match="JPEG file in a LR folder") as info:
        discover_test_set(set5, 2)
    assert_names_the_file(info, lr.with_suffix(".jpg"))
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "babyx2.jpg", "only PNG and BMP")
    # beside a PNG of the same name it is not needed, and not read
    shutil.copy(require_shared("datasets", "Set5", "LR_bicubic", "X2", "babyx2.png"), lr)
    assert len(discover_test_set(set5, 2)) == 5


# ---------------------------------------------------------------------------------------------
# 4. Images too small to score, and --crop larger than the image


def test_images_too_small_to_score(set5: Path, tmp_path: Path, capsys):
    tiny = set5 / "HR" / "tiny.png"
    write_image_rgb(tiny, np.zeros((12, 10, 3), np.uint8))
    write_image_rgb(set5 / "LR_bicubic" / "X2" / "tinyx2.png", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(MemsrInputError, match="image is too small") as info:
        discover_test_set(set5, 2)
    assert_names_the_file(info, tiny, "12x10 px", "11x11")
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "tiny.png", "too small", "12x10")
    # 13 x 13 at x4: 12 x 12 after modcrop, under the SSIM window only after the crop of 4
    write_image_rgb(tiny, np.zeros((13, 13, 3), np.uint8))
    test_set = discover_test_set(set5, 4, lr_source="generate")
    test_set.check_crop(0)
    with pytest.raises(MemsrInputError, match="cropping 4 px") as info:
        test_set.check_crop(4)
    assert_names_the_file(info, tiny, "12x12 after modcrop to x4", "leaves 4x4")


def test_crop_larger_than_the_image_is_refused_before_any_image_runs(set5: Path, tmp_path: Path, capsys, monkeypatch):
    def no_loading(self, pair):
        raise AssertionError(f"{pair.name} was loaded before the crop was checked")

    monkeypatch.setattr(TestSet, "load", no_loading)
    hr = set5 / "HR"  # woman.png is 344 x 228, the narrowest of Set5; baby.png 512 x 512
    for model, extra in (("bicubic", ()), ("fsrcnn", ("--random-weights",))):
        cases = (
            ("500", hr / "baby.png", ("512x512 px", "leaves nothing", "and 4 more images")),
            ("110", hr / "woman.png", ("344x228 px", "leaves 124x8")),
        )
        for crop, named, phrases in cases:
            err = assert_one_line_error(
                eval_cli(capsys, tmp_path, set5, "--crop", crop, *extra, model=model),
                str(named),
                f"cropping {crop} px",
                "11x11",
                *phrases,
            )
            assert "nothing left to compare" not in err
    test_set = discover_test_set(set5, 2)
    with pytest.raises(MemsrInputError, match="woman.png"):
        test_set.check_crop(110)
    test_set.check_crop(100)  # 228 - 200 = 28 left: fine


# ---------------------------------------------------------------------------------------------
# 5. Decompression bombs


def test_decompression_bomb_is_one_line(set5: Path, tmp_path: Path, capsys):
    bomb = set5 / "HR" / "bird.png"
    bomb.write_bytes(make_png(30000, 30000, 8, 2, b"\x00" * 5000))  # a few hundred bytes
    assert bomb.stat().st_size < 1000
    with pytest.raises(Image.DecompressionBombError):  # what PIL alone raises
        Image.open(bomb)
    for reader in (read_image_rgb, inspect_image):
        with pytest.raises(MemsrInputError) as info:
            reader(bomb)
        assert_names_the_file(info, bomb, f"exceeds PIL's limit of {PIL_LIMIT} pixels", "30000x30000")
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "bird.png", f"exceeds PIL's limit of {PIL_LIMIT} pixels")

    bmp = set5 / "HR" / "bird.bmp"  # a BMP header saying 30000 x 30000
    bomb.unlink()
    header = (
        b"BM"
        + struct.pack("<IHHI", 70, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 30000, 30000, 1, 24, 0, 0, 0, 0, 0, 0)
    )
    bmp.write_bytes(header + b"\x00" * 16)
    with pytest.raises(MemsrInputError, match=f"exceeds PIL's limit of {PIL_LIMIT} pixels"):
        read_image_rgb(bmp)
    assert_one_line_error(eval_cli(capsys, tmp_path, set5), "bird.bmp", "exceeds PIL's limit")


# ---------------------------------------------------------------------------------------------
# 6. Fuzzing: random bytes, byte flips and truncations raise MemsrInputError or read the true image


def _mutations(rng: random.Random, original: bytes, n: int):
    for _ in range(n):
        data = bytearray(original)
        kind = rng.choice(("flip", "flips", "truncate", "zeros", "random", "random-after-signature"))
        if kind == "flip":
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == "flips":
            for _ in range(rng.randint(2, 16)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == "truncate":
            data = data[: rng.randrange(len(data))]
        elif kind == "zeros":
            start, length = rng.randrange(len(data)), rng.randint(1, 64)
            data[start : start + length] = bytes(len(data[start : start + length]))
        else:
            data = bytearray(rng.randbytes(rng.randrange(3000)))
            if kind == "random-after-signature":
                data[:8] = PNG_SIGNATURE
        yield kind, bytes(data)


def test_fuzzed_pngs_raise_only_input_errors(tmp_path: Path):
    rng = random.Random(20240611)
    sources = [
        require_shared("datasets", "Set5", "LR_bicubic", "X2", "birdx2.png"),  # as written by the set's tool
        require_shared("datasets", "Set5", "LR_bicubic", "X2", "headx2.png"),
    ]
    small = np.random.default_rng(5).integers(0, 256, (19, 23, 3), dtype=np.uint8)
    Image.fromarray(small).convert("P").save(tmp_path / "palette.png")  # PLTE chunk
    Image.fromarray(small[:, :, 0]).save(tmp_path / "grey.png")
    Image.fromarray(small).save(tmp_path / "stored.png", compress_level=0)  # zlib stored blocks
    sources += [tmp_path / "palette.png", tmp_path / "grey.png", tmp_path / "stored.png"]
    truth = {source: read_image_rgb(source) for source in sources}

    outcomes = {"read": 0, "refused": 0}
    target = tmp_path / "mutant.png"
    for i in range(240):
        source = sources[i % len(sources)]
        _, data = next(_mutations(rng, source.read_bytes(), 1))
        target.write_bytes(data)
        try:
            image = read_image_rgb(target)
        except MemsrInputError as err:
            assert str(target) in str(err) and "\n" not in str(err)
            outcomes["refused"] += 1
        else:  # only a mutation that changes nothing the pixels depend on may pass
            assert np.array_equal(image, truth[source]), f"mutation {i} of {source.name} read as a different image"
            outcomes["read"] += 1
    assert outcomes["refused"] > 200

    # through discovery and load, HR and LR files damaged
    hr = truth[sources[0]]
    lr = imresize(hr, 0.5)
    root = tmp_path / "Set"
    for i in range(40):
        write_image_rgb(root / "HR" / "a.png", hr)
        write_image_rgb(root / "LR_bicubic" / "X2" / "ax2.png", lr)
        victim = root / "HR" / "a.png" if i % 2 else root / "LR_bicubic" / "X2" / "ax2.png"
        _, data = next(_mutations(rng, victim.read_bytes(), 1))
        victim.write_bytes(data)
        try:
            test_set = discover_test_set(root, 2)
            lr_loaded, hr_loaded = test_set.load(test_set.pairs[0])
        except MemsrInputError as err:
            assert "\n" not in str(err) and victim.name in str(err)
        else:
            assert np.array_equal(hr_loaded, hr) and np.array_equal(lr_loaded, lr)
