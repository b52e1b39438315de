"""Row streaming (memsr_bench.row_stream, method "rows" of memsr_bench.tiling): each layer computes each of its
rows once, and the output is bit-identical to whole-image inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from memsr_bench.cli import main
from memsr_bench.data.image_io import read_image_rgb, write_image_rgb
from memsr_bench.errors import MemsrInputError
from memsr_bench.model import load_model
from memsr_bench.row_stream import RowProgram, trace_rows
from memsr_bench.tiling import plan_tiling, size_independent_kernels, upscale_image, upscale_to_png
from zoo.upscaler import upscaler

SMALL_EDSR = {"n_resblocks": 2, "n_feats": 16}
# every zoo model whose graph is row-local, at each of its scales
STREAMED = [
    ("fmen-s-deploy", 2, {}),
    ("fmen-s-deploy", 3, {}),
    ("fmen-s-deploy", 4, {}),
    ("fmen-deploy", 4, {}),
    ("carn-m", 2, {}),
    ("carn-m", 3, {}),
    ("carn-m", 4, {}),
    ("carn", 4, {}),
    ("span", 4, {}),
    ("imdn-ntire2022", 4, {}),
    ("edsr-baseline", 2, SMALL_EDSR),
    ("edsr-baseline", 3, SMALL_EDSR),
    ("edsr-baseline", 4, SMALL_EDSR),
    ("edsr-mini", 4, {}),
    ("edsr", 2, {}),  # 256 channels: ~2300 inputs per output (products of fixed size, tiling._products_in_blocks)
    ("plain", 3, {}),
    ("plain-m", 4, {}),
]
# models whose graph is not row-local, with a word of the reason
NOT_STREAMED = [
    ("rlfn-ntire", 4, "trace"),  # ESA: strided convolution and max-pool
    ("latticenet", 2, "mean"),  # contrast channel attention: whole-image statistics
    ("imdn", 2, "sum"),
    ("swinir-mini", 2, "reflection_pad2d"),
]


def _model(name: str, scale: int, config: dict | None = None):
    torch.manual_seed(4321)
    return load_model(name, scale, config=config or {})


@pytest.mark.parametrize(("name", "scale", "config"), STREAMED, ids=[f"{n}-x{s}" for n, s, _ in STREAMED])
def test_rows_bit_identical_to_the_whole_image_for_any_band_height(name, scale, config):
    loaded = _model(name, scale, config)
    program = trace_rows(loaded.module, 3, scale)
    assert isinstance(program, RowProgram), program
    x = torch.rand(1, 3, 47, 13, generator=torch.Generator().manual_seed(scale))
    # edsr without 1-row bands: each would be one product of 512 pixels per convolution at 2304 inputs (three
    # quarters of its time); bands of one row are streamed by every other model here
    heights = (5, 13, 47) if name == "edsr" else (1, 5, 13, 47)
    with size_independent_kernels(), torch.inference_mode():
        whole = loaded.module(x)
        for rows in heights:
            bands = (x[:, :, i : i + rows] for i in range(0, 47, rows))
            out = list(program.run(bands, 47))
            streamed = torch.cat(out, dim=2)
            assert torch.equal(streamed, whole), (rows, float((streamed - whole).abs().max()))
            if rows == 1:
                assert len(out) > 1  # rows come out before the input has been read to the end


@pytest.mark.parametrize(("name", "scale", "word"), NOT_STREAMED, ids=[n for n, _, _ in NOT_STREAMED])
def test_graphs_that_are_not_row_local_are_refused_with_the_reason(name, scale, word):
    reason = trace_rows(_model(name, scale).module, 3, scale)
    assert isinstance(reason, str) and word in reason and "\n" not in reason


def test_ops_that_see_the_whole_image_or_resize_are_refused():
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(x) * x.mean(dim=(2, 3), keepdim=True)

    class Strided(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 12, 3, stride=2, padding=1)

        def forward(self, x):
            return torch.pixel_shuffle(self.conv(x), 2)

    class Valid(nn.Module):  # no padding: the output is smaller than the input
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3)

        def forward(self, x):
            return self.conv(x)

    assert "mean" in trace_rows(Pooled(), 3, 1)
    assert "changes the height" in trace_rows(Strided(), 3, 1)
    assert "changes the height" in trace_rows(Valid(), 3, 1)


@pytest.mark.parametrize(("name", "scale", "config"), [("fmen-s-deploy", 3, {}), ("edsr-baseline", 2, SMALL_EDSR)])
def test_upscale_by_rows_equals_whole_image_and_stays_in_the_predicted_budget(tmp_path, name, scale, config):
    loaded = _model(name, scale, config)
    lr = np.random.default_rng(5).integers(0, 256, (161, 23, 3), dtype=np.uint8)
    one_band = plan_tiling(loaded, lr.shape[:2], 2**30, method="rows")
    assert (one_band.method, one_band.n_tiles, one_band.compute_ratio) == ("rows", 1, 1.0)
    budget = one_band.total_bytes - 1  # the whole image as one band no longer fits: several bands
    sr, plan = upscale_image(loaded, lr, budget)
    assert plan.method == "rows" and plan.n_tiles >= 2 and plan.exact and plan.total_bytes <= budget, plan
    with size_independent_kernels():
        whole = upscaler(loaded.module)(lr)
    assert np.array_equal(sr, whole)
    budget = plan_tiling(loaded, lr.shape[:2], 2**30, stream=True, method="rows").total_bytes - 1
    streamed = upscale_to_png(loaded, lr, tmp_path / "sr.png", budget, method="rows")
    assert streamed.method == "rows" and streamed.n_tiles >= 2 and streamed.total_bytes <= budget, streamed
    assert np.array_equal(read_image_rgb(tmp_path / "sr.png"), whole)


@pytest.mark.parametrize("chunk_bytes", [8192, 400])  # chunks of whole rows (of at least one block of pixels)
def test_rows_with_chunked_convolutions_written_into_the_line_buffers(monkeypatch, chunk_bytes):
    """Large convolutions are computed in chunks straight into a layer's rows (``tiling._conv2d_into``)."""
    import memsr_bench.tiling as tiling

    loaded = _model("carn-m", 2)  # grouped convolutions too
    lr = np.random.default_rng(6).integers(0, 256, (41, 27, 3), dtype=np.uint8)
    with size_independent_kernels():
        whole = upscaler(loaded.module)(lr)
    calls = []
    chunks = tiling._conv2d_chunks
    monkeypatch.setattr(tiling, "_conv2d_chunks", lambda *a, **k: calls.append(k.get("out")) or chunks(*a, **k))
    monkeypatch.setattr(tiling, "_CONV_CHUNK_BYTES", chunk_bytes)
    budget = plan_tiling(loaded, lr.shape[:2], 2**30, method="rows").total_bytes - 1
    sr, plan = upscale_image(loaded, lr, budget, method="rows")
    assert plan.n_tiles >= 2 and any(out is not None for out in calls)
    assert np.array_equal(sr, whole)


def test_the_predicted_row_pass_peak_is_the_measured_one():
    """The planner's memory model of row streaming (a fake pass of the same code) against the CPU
    live-storage measurement of a real pass."""
    from memsr_bench.measure.memory import measure_peak_memory
    from memsr_bench.measure.memory_model import predict_peak_memory
    from memsr_bench.tiling import _RowPass, row_program

    loaded = _model("fmen-s-deploy", 2)
    program = row_program(loaded)
    row_pass = _RowPass(program, 53, loaded.entry.spec.input_range, torch.device("cpu"))
    band = torch.rand(1, 3, 8, 31)
    predicted = predict_peak_memory(row_pass, tuple(band.shape)).peak_bytes
    with size_independent_kernels(False):
        measured = measure_peak_memory(row_pass, band).peak_bytes
    assert measured == predicted


def test_planning_passes_ended_early_choose_the_same_bands(monkeypatch):
    """The planner ends a predicted band pass once it exceeds the budget; the plans are those of full passes."""
    import memsr_bench.tiling as tiling

    loaded = _model("fmen-s-deploy", 4)
    size, budgets = (300, 2000), [n * 2**20 for n in (500, 800)]  # bands of 32 and 128 rows
    early = [plan_tiling(loaded, size, b, stream=True, method="rows") for b in budgets]
    full_pass = tiling.peak_with_conv_workspace
    monkeypatch.setattr(tiling, "peak_with_conv_workspace", lambda module, shape, **_: full_pass(module, shape))
    assert [plan_tiling(loaded, size, b, stream=True, method="rows") for b in budgets] == early
    assert len({plan.tile for plan in early}) == len(budgets), [plan.tile for plan in early]


def test_auto_takes_rows_where_it_can_and_tiles_elsewhere():
    size = (300, 400)
    rows = plan_tiling(_model("fmen-s-deploy", 4), size, 400 * 2**20, stream=True)
    assert rows.method == "rows" and rows.compute_ratio == 1.0 and rows.n_tiles > 1
    tiles = plan_tiling(_model("latticenet", 4), size, 2**30, stream=True)  # not local: approximate tiles
    assert tiles.method == "tiles"
    with pytest.raises(MemsrInputError, match="--method"):
        plan_tiling(_model("latticenet", 4), size, 2**30, method="rows")
    with pytest.raises(MemsrInputError, match="--method"):
        plan_tiling(_model("fmen-s-deploy", 4), size, 400 * 2**20, method="bands")


def test_cli_method_rows(tmp_path, capsys):
    src = tmp_path / "lr.png"
    lr = np.random.default_rng(2).integers(0, 256, (41, 33, 3), dtype=np.uint8)
    write_image_rgb(src, lr)
    base = ["upscale", str(src), str(tmp_path / "sr.png"), "--model", "fmen-s-deploy", "--scale", "2", "--quiet"]
    assert main([*base, "--method", "rows"]) == 0
    assert "streamed by rows" in capsys.readouterr().out
    level6 = (tmp_path / "sr.png").stat().st_size
    assert main([*base, "--png-level", "0"]) == 0 and "streamed by rows" in capsys.readouterr().out
    assert (tmp_path / "sr.png").stat().st_size > level6  # stored, not compressed
    assert np.array_equal(read_image_rgb(tmp_path / "sr.png").shape, (82, 66, 3))
    for args, needle in (
        (["--method", "diagonal"], "--method"),
        (["--png-level", "10"], "--png-level"),
        (["--method", "rows", "--model", "rlfn-s"], "cannot be streamed by rows"),
    ):
        argv = [*base, *args]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err and "Traceback" not in err, err
