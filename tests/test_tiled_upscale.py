"""Tiled upscaling (memsr_bench.tiling, memsr-bench upscale): bit-identical to whole-image inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memsr_bench.cli import main
from memsr_bench.data.image_io import read_image_rgb, write_image_rgb
from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.receptive_field import receptive_field
from memsr_bench.model import load_model
from memsr_bench.tiling import plan_tiling, size_independent_kernels, tile_budget, upscale_image
from zoo.upscaler import upscaler

SMALL_EDSR = {"n_resblocks": 2, "n_feats": 16}
# (model, scale, config, LR image size): odd sizes, large enough for several tiles around the halo
CASES = [
    ("fsrcnn", 2, {}, (37, 53)),
    ("fsrcnn", 3, {}, (61, 45)),
    ("fsrcnn", 4, {}, (37, 53)),
    ("edsr-baseline", 2, SMALL_EDSR, (37, 53)),
    ("edsr-baseline", 3, SMALL_EDSR, (61, 45)),
    ("edsr-baseline", 4, SMALL_EDSR, (37, 53)),
    ("plain", 2, {}, (61, 45)),
    ("plain", 3, {}, (37, 53)),
    ("plain", 4, {}, (61, 45)),
    ("fmen-s-deploy", 2, {}, (89, 23)),
    ("fmen-s-deploy", 3, {}, (21, 87)),
    ("fmen-s-deploy", 4, {}, (87, 19)),
    ("span", 4, {}, (67, 23)),
    ("carn-m", 2, {}, (67, 21)),
    ("carn-m", 3, {}, (19, 69)),
    ("carn-m", 4, {}, (69, 17)),
    ("imdn-rtc", 2, {}, (71, 25)),
]


def _model(name: str, scale: int, config: dict):
    torch.manual_seed(1234)
    return load_model(name, scale, config=config)


@pytest.mark.parametrize(("name", "scale", "config", "size"), CASES, ids=[f"{c[0]}-x{c[1]}" for c in CASES])
def test_tiles_bit_identical_to_whole_image(name, scale, config, size):
    loaded = _model(name, scale, config)
    channels = 1 if loaded.entry.spec.channels == "y" else 3
    rf = receptive_field(loaded.module, scale, channels=channels)
    assert rf.local and not rf.size_dependent, rf
    lr = np.random.default_rng(scale * 1000 + size[0]).integers(0, 256, (*size, 3), dtype=np.uint8)
    with size_independent_kernels():  # the reference: whole-image inference with the kernels the tiles use
        whole = upscaler(loaded.module)(lr)
        computes = []
        for core in (16, 24) if rf.radius < 16 else (16,):  # large halos: one budget (time)
            budget = tile_budget(loaded, size, core, rf)
            sr, plan = upscale_image(loaded, lr, budget, "cpu", rf=rf, method="tiles")
            assert plan.exact and plan.n_tiles >= 2, plan
            assert plan.halo >= rf.radius and plan.halo % rf.grid == 0 and plan.tile[0] % rf.grid == 0
            assert plan.total_bytes <= budget
            assert sr.dtype == np.uint8 and sr.shape == (size[0] * scale, size[1] * scale, 3)
            assert np.array_equal(sr, whole), (core, plan, int(np.abs(sr.astype(int) - whole).max()))
            computes.append(plan.compute_ratio)
    assert computes == sorted(computes, reverse=True)  # a larger budget never costs more compute


def test_whole_image_when_the_budget_allows():
    loaded = _model("edsr-baseline", 2, SMALL_EDSR)
    lr = np.random.default_rng(0).integers(0, 256, (21, 19, 3), dtype=np.uint8)
    sr, plan = upscale_image(loaded, lr, 2**30, "cpu", method="tiles")
    with size_independent_kernels():
        assert plan.n_tiles == 1 and plan.exact and np.array_equal(sr, upscaler(loaded.module)(lr))


def test_budget_too_small_is_one_line():
    loaded = _model("edsr-baseline", 2, SMALL_EDSR)
    with pytest.raises(MemsrInputError) as err:
        plan_tiling(loaded, (64, 64), 256 * 2**20 + 100_000)
    assert "does not hold even a 16x16 tile" in str(err.value) and "\n" not in str(err.value)


def test_cli_folder_matches_python(tmp_path, capsys):
    src, dst = tmp_path / "lr", tmp_path / "sr"
    rng = np.random.default_rng(7)
    images = {
        "a": rng.integers(0, 256, (37, 41, 3), dtype=np.uint8),
        "b": rng.integers(0, 256, (29, 45, 3), dtype=np.uint8),
    }
    for stem, image in images.items():
        write_image_rgb(src / f"{stem}.png", image)
    loaded = _model("edsr-baseline", 2, SMALL_EDSR)
    budget = tile_budget(loaded, (37, 45), 16, stream=True)  # the CLI streams its output to the PNG
    torch.save(loaded.module.state_dict(), tmp_path / "w.pt")
    argv = ["upscale", str(src), str(dst), "--model", "edsr-baseline", "--scale", "2", "--config", "n_resblocks=2",
            "n_feats=16", "--max-memory", str(budget), "--method", "tiles", "--quiet"]  # fmt: skip
    assert main([*argv, "--weights", str(tmp_path / "w.pt")]) == 0
    out = capsys.readouterr().out
    assert "a.png" in out and "b.png" in out and "exact" in out
    for stem, image in images.items():
        assert plan_tiling(loaded, image.shape[:2], budget, stream=True, method="tiles").n_tiles > 1
        with size_independent_kernels():
            expected = upscaler(loaded.module)(image)  # whole-image inference
        assert np.array_equal(read_image_rgb(dst / f"{stem}.png"), expected)


def test_cli_one_line_errors(tmp_path, capsys):
    good = tmp_path / "x.png"
    write_image_rgb(good, np.zeros((20, 20, 3), dtype=np.uint8))
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    base = ["--model", "edsr-baseline", "--scale", "2", "--config", "n_resblocks=2", "n_feats=16"]
    cases = [
        ([str(tmp_path / "missing.png"), str(tmp_path / "o.png")], "no such file"),
        ([str(good), str(tmp_path / "folder")], "is a folder"),
        ([str(tmp_path / "folder"), str(good)], "not a folder"),
        ([str(tmp_path / "notes.txt"), str(tmp_path / "o.png")], "not a PNG or BMP"),
        ([str(tmp_path / "notes.png"), str(tmp_path / "o.png")], "notes.png"),
        ([str(good), str(tmp_path / "o.png"), "--max-memory", "256.1MiB"], "16x16 tile"),
        ([str(good), str(tmp_path / "o.png"), "--max-memory", "lots"], "--max-memory"),
    ]
    for args, needle in cases:
        assert main(["upscale", *args, *base]) == 2, args
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "o.png").exists()


# --- streaming output (upscale_to_png, PngStreamWriter) and the tile cost -------------------------------------


@pytest.mark.parametrize("level", [0, 2, 6])  # stored, ISA-L, zlib
@pytest.mark.parametrize("size", [(1, 1), (7, 13), (131, 5)])
def test_png_stream_writer_round_trips(tmp_path, size, level):
    from PIL import Image

    from memsr_bench.data.image_io import PngStreamWriter

    image = np.random.default_rng(size[0]).integers(0, 256, (*size, 3), dtype=np.uint8)
    image[:, : size[1] // 2] = image[:1, : size[1] // 2]  # some repetition to compress
    path = tmp_path / "x.png"
    with PngStreamWriter(path, *size, compress_level=level, chunk_bytes=256) as writer:  # several IDATs
        for start, rows in ((0, 1), (1, 70), (71, 200)):  # bands of uneven heights, past the filter pass
            writer.write_rows(image[start : start + rows])
    with Image.open(path) as decoded:
        assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), image)
    assert np.array_equal(read_image_rgb(path), image)  # also passes the CRC and IDAT-length checks


def test_png_compressor_levels():
    import zlib

    from memsr_bench.data.image_io import png_compressor

    data = np.random.default_rng(0).integers(0, 8, 1 << 16, dtype=np.uint8).tobytes()
    sizes = {}
    for level in range(10):
        compressor = png_compressor(level)
        packed = compressor.compress(data) + compressor.flush()
        assert zlib.decompress(packed) == data  # a zlib stream, as PNG's IDAT needs
        sizes[level] = len(packed)
    assert sizes[0] > len(data) > sizes[1] and sizes[9] < sizes[2]  # 0 is stored
    with pytest.raises(ValueError, match="0-9"):
        png_compressor(10)


def test_png_stream_writer_refuses_and_leaves_no_partial_file(tmp_path):
    from memsr_bench.data.image_io import PngStreamWriter

    path = tmp_path / "x.png"
    with pytest.raises(ValueError, match="rows n x 4 x 3"):
        PngStreamWriter(path, 3, 4).write_rows(np.zeros((1, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="4 rows written to a PNG of height 3"):
        PngStreamWriter(path, 3, 4).write_rows(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="2 of 3 rows written"):
        with PngStreamWriter(path, 3, 4) as writer:
            writer.write_rows(np.zeros((2, 4, 3), np.uint8))
    assert not path.exists()
    with pytest.raises(KeyError):
        with PngStreamWriter(path, 3, 4):
            raise KeyError("interrupted")
    assert not path.exists()


@pytest.mark.parametrize(
    ("name", "scale", "config", "size"), [("fsrcnn", 3, {}, (29, 41)), ("edsr-baseline", 2, SMALL_EDSR, (43, 31))]
)
def test_streamed_png_bit_identical_to_whole_image(tmp_path, name, scale, config, size):
    from memsr_bench.tiling import upscale_to_png

    loaded = _model(name, scale, config)
    lr = np.random.default_rng(size[1]).integers(0, 256, (*size, 3), dtype=np.uint8)
    budget = tile_budget(loaded, size, 16, stream=True)
    plan = upscale_to_png(loaded, lr, tmp_path / "sr.png", budget, method="tiles")
    assert plan.stream and plan.exact and plan.n_tiles >= 2 and plan.total_bytes <= budget
    with size_independent_kernels():
        whole = upscaler(loaded.module)(lr)
    assert np.array_equal(read_image_rgb(tmp_path / "sr.png"), whole)


def test_streaming_budget_holds_one_band_not_the_output():
    loaded = _model("edsr-baseline", 2, SMALL_EDSR)
    size = (2000, 2400)  # 58 MB of x2 output, more than the 40 MiB the budget leaves beside the runtime
    plan = plan_tiling(loaded, size, 360 * 2**20, stream=True, method="tiles")
    band = 3 * plan.tile[0] * 2 * size[1] * 2
    assert band <= plan.host_buffers_bytes < 3 * size[0] * size[1] * (1 + 4) // 2
    with pytest.raises(MemsrInputError):
        plan_tiling(loaded, size, 360 * 2**20, stream=False, method="tiles")  # the whole output alone would not fit


def test_tile_cost_counts_the_native_conv_workspace():
    from memsr_bench.measure.memory_model import predict_peak_memory
    from memsr_bench.tiling import peak_with_conv_workspace

    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    shape = (1, 8, 20, 30)
    columns = 8 * 3 * 3 * 20 * 30 * 4  # im2col: C_in * kh * kw floats per output pixel
    assert peak_with_conv_workspace(conv, shape) == predict_peak_memory(conv, shape).peak_bytes + columns
    pointwise = torch.nn.Conv2d(8, 8, 1)  # 1x1, stride 1, no padding: no column buffer
    assert peak_with_conv_workspace(pointwise, shape) == predict_peak_memory(pointwise, shape).peak_bytes


@pytest.mark.parametrize("op", ["sigmoid", "silu", "gelu", "sigmoid_"])
def test_activations_do_not_depend_on_the_tensor_size(op):
    # ATen's scalar remainder loop differs from its vectorised loop in the last bit (the cause of SPAN's
    # off-by-one pixels in tiles); under size_independent_kernels every element takes the vectorised path
    functions = {"sigmoid": torch.sigmoid, "silu": torch.nn.functional.silu, "gelu": torch.nn.functional.gelu}
    f = functions.get(op) or (lambda t: torch.sigmoid_(t.clone()))
    x = torch.randn(1, 20, 301, 207, generator=torch.Generator().manual_seed(0)) * 4
    with size_independent_kernels(), torch.inference_mode():
        whole = f(x)
        for y0, y1, x0, x1 in ((13, 200, 5, 170), (0, 1, 0, 7), (150, 301, 100, 207)):
            assert torch.equal(f(x[:, :, y0:y1, x0:x1].contiguous()), whole[:, :, y0:y1, x0:x1])


@pytest.mark.parametrize(("size", "blocks"), [((37, 300), 2), ((5, 1300), 1)])  # chunks of 3 rows; 512 px of a row
@pytest.mark.parametrize(("cin", "cout", "kernel", "groups"), [(6, 5, 3, 1), (8, 8, 3, 4), (4, 3, 5, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_row_chunked_convolution_is_bit_identical(monkeypatch, cin, cout, kernel, groups, size, blocks, dtype):
    """In place (im2col and products of _GEMM_BLOCK pixels in reused buffers, written into the output), with and
    without bias: equal to the in-place computation in one chunk and, in float32, to the native kernel's call."""
    import memsr_bench.tiling as tiling
    from memsr_bench.measure.memory_model import predict_peak_memory

    convs = [
        torch.nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=bias, dtype=dtype)
        for bias in (True, False)
    ]
    x = torch.randn(1, cin, *size, generator=torch.Generator().manual_seed(cin), dtype=dtype)
    args = (x, convs[0].weight, None, [1, 1], [kernel // 2] * 2, [1, 1], groups)
    with torch.inference_mode():
        with torch.backends.mkldnn.flags(enabled=False):
            native = [conv(x) for conv in convs]  # the kernel itself, one call
        with size_independent_kernels():
            whole = [conv(x) for conv in convs]  # one chunk
        depth = cin // groups * kernel * kernel
        monkeypatch.setattr(tiling, "_CONV_CHUNK_BYTES", blocks * tiling._GEMM_BLOCK * depth * x.element_size())
        with size_independent_kernels():
            chunked = [conv(x) for conv in convs]
    rows, cols = tiling._conv_chunk_shape(args)
    assert (rows, cols) == ((3, 300) if blocks == 2 else (1, 512))
    for n, w, c in zip(native, whole, chunked, strict=True):
        assert torch.equal(c, w)
        assert torch.equal(c, n) or dtype == torch.float64  # MKL's dgemm sums differ with the product's size
    assert tiling._conv_chunk_shape((x.expand(2, -1, -1, -1).contiguous(), *args[1:])) is None  # a batch: the kernel
    if dtype == torch.float32:  # the predicted cost (float32 input): no workspace in place, the kernel's without
        shape = (1, cin, *size)
        with size_independent_kernels():
            assert tiling.peak_with_conv_workspace(convs[0], shape) == predict_peak_memory(convs[0], shape).peak_bytes
        assert tiling.peak_with_conv_workspace(convs[0], shape) > predict_peak_memory(convs[0], shape).peak_bytes


def test_chunked_products_do_not_depend_on_the_chunk_for_wide_convolutions():
    """Over ~1000 inputs per output and few outputs, MKL's sums depend on the product's size (2 threads): the
    products of _GEMM_BLOCK pixels keep rows computed alone equal to the whole image (zoo edsr: 256 channels)."""
    conv = torch.nn.Conv2d(128, 3, 3, padding=1)
    x = torch.randn(1, 128, 24, 23, generator=torch.Generator().manual_seed(0))
    with size_independent_kernels(), torch.inference_mode():
        whole = conv(x)
        rows = torch.nn.functional.conv2d(x[:, :, 4:18].contiguous(), conv.weight, conv.bias, 1, (0, 1))  # 5..16
    assert torch.equal(rows, whole[:, :, 5:17])


def test_tiles_with_chunked_convolutions_bit_identical(monkeypatch):
    import memsr_bench.tiling as tiling

    loaded = _model("edsr-baseline", 2, SMALL_EDSR)
    lr = np.random.default_rng(3).integers(0, 256, (45, 37, 3), dtype=np.uint8)
    monkeypatch.setattr(tiling, "_CONV_CHUNK_BYTES", 128 * 1024)  # chunked in the tiles and in the whole image
    with size_independent_kernels():
        whole = upscaler(loaded.module)(lr)
    sr, plan = upscale_image(loaded, lr, tile_budget(loaded, lr.shape[:2], 16), "cpu", method="tiles")
    assert plan.n_tiles >= 2 and np.array_equal(sr, whole)


def test_size_independent_kernels_set_fp32_cudnn_and_restore_it():
    cudnn = torch.backends.cudnn
    saved = cudnn.allow_tf32, cudnn.benchmark, cudnn.enabled
    try:
        cudnn.allow_tf32, cudnn.benchmark = True, True
        with size_independent_kernels():
            assert (cudnn.allow_tf32, cudnn.benchmark, cudnn.enabled) == (False, False, saved[2])
            assert not torch.backends.mkldnn.enabled
        assert (cudnn.allow_tf32, cudnn.benchmark) == (True, True)
        with size_independent_kernels(False):
            assert cudnn.allow_tf32
    finally:
        cudnn.allow_tf32, cudnn.benchmark, cudnn.enabled = saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (checked on an H200: reports/tiling)")
@pytest.mark.parametrize("method", ["rows", "tiles"])
def test_cuda_rows_and_tiles_bit_identical_to_whole_image(method):
    # twice with the same model: the second plan runs with the model already on the GPU
    loaded = _model("carn-m", 2, {})
    rf = receptive_field(loaded.module, 2, channels=3)
    for size in ((301, 45), (163, 91)):
        lr = np.random.default_rng(size[0]).integers(0, 256, (*size, 3), dtype=np.uint8)
        budget = tile_budget(loaded, size, 16, rf)
        sr, plan = upscale_image(loaded, lr, budget, "cuda", rf=rf, method=method)
        with size_independent_kernels():
            whole = upscaler(loaded.module, "cuda")(lr)
        assert plan.n_tiles >= 2 and np.array_equal(sr, whole), (plan, int(np.abs(sr.astype(int) - whole).max()))
