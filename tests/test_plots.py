"""Figures: store rows -> plotted points, labels that overlap nothing, report figures, `memsr-bench plot`."""

from __future__ import annotations

import argparse
from pathlib import Path

import memsr_bench.plots as plots
import pytest

from memsr_bench.errors import MemsrInputError
from memsr_bench.results import ResultKey, ResultsStore, input_size

# (model, params, predicted peak MiB, runtime ms, Set5 x4 PSNR): clustered on purpose.
MODELS = [
    ("fsrcnn", 12_809, 80.0, 300.0, 30.5),
    ("imdn", 715_176, 400.0, 2900.0, 32.2),
    ("imdn-ntire2022", 893_936, 410.0, 3000.0, 32.1),
    ("e-rfdn", 433_448, 380.0, 2500.0, 32.2),
    ("rlfn-ntire", 317_218, 260.0, 2000.0, 32.2),
    ("fmen-s-deploy", 341_066, 150.0, 2100.0, 32.1),
    ("latticenet", 776_968, 420.0, 3100.0, 32.2),
    ("carn-m", 414_811, 1400.0, 2600.0, 31.9),
]


def _fill(store: ResultsStore, runtime: bool = True) -> None:
    for model, params, mib, ms, psnr in MODELS:
        store.put(
            ResultKey("quality", model, "sha", 4, "Set5", "c"),
            {"float": {"psnr": psnr, "ssim": 0.9, "n_images": 5}, "rounded": {"psnr": psnr - 0.01, "ssim": 0.9}},
        )
        store.put(
            ResultKey("efficiency", model, "random-init", 4, "270x480", "memsr"),
            {"params": params, "macs": params * 270 * 480, "peak_bytes_predicted": int(mib * 2**20)},
        )
        if runtime:
            channels = 1 if model == "fsrcnn" else 3
            store.put(
                ResultKey("runtime", model, "random-init", 4, input_size((1, channels, 270, 480)), "p", "cpu (X)"),
                {"ms": ms},
            )
    store.put(ResultKey("quality", "bicubic", "none", 4, "Set5", "c"), {"float": {"psnr": 28.4, "ssim": 0.8}})
    # A newer quality row of one model replaces the older one in the plot.
    store.put(ResultKey("quality", "fsrcnn", "sha2", 4, "Set5", "c"), {"float": {"psnr": 30.7, "ssim": 0.86}})


def test_quality_points_from_store(tmp_path: Path):
    store = ResultsStore(tmp_path / "s.sqlite")
    points, reason = plots.quality_points(store, 4, "Set5")
    assert points.empty and "no quality rows" in reason
    _fill(store)
    points, reason = plots.quality_points(store, 4, "Set5")
    assert reason is None and len(points) == len(MODELS) and "bicubic" not in set(points["model"])
    row = points.set_index("model").loc["fsrcnn"]
    assert row["psnr"] == 30.7 and row["peak_mib"] == pytest.approx(80.0) and row["runtime_ms"] == 300.0
    assert row["runtime_device"] == "cpu (X)" and row["params"] == 12_809


def test_scatter_labels_overlap_nothing(tmp_path: Path):
    store = ResultsStore(tmp_path / "s.sqlite")
    _fill(store)
    points, _ = plots.quality_points(store, 4, "Set5")
    fig = plots.psnr_figure(points, "peak_mib", "predicted peak (MiB)", "Set5 x4")
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = {plots._display_name(m) for m in points["model"]}
    assert "fsrcnn (Y input)" in labels  # a Y-only model says so
    texts = [t for t in ax.texts if t.get_text() in labels]
    assert sorted(t.get_text() for t in texts) == sorted(labels)
    boxes = [t.get_window_extent(renderer) for t in texts]
    frame = ax.get_window_extent(renderer)
    for i, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1, texts[i].get_text()
        for b in boxes[i + 1 :]:
            assert plots._overlap(a, b) == 0
    assert ax.get_xlabel() and ax.get_ylabel().startswith("PSNR (dB)")


def test_timeline_annotates_peak(tmp_path: Path):
    import zoo
    from memsr_bench.measure.memory_model import predict_peak_memory

    prediction = predict_peak_memory(zoo.create("fmen-s-deploy", scale=4), (1, 3, 16, 16))
    fig = plots.timeline_figure(prediction, "fmen-s-deploy x4")
    ax = fig.axes[0]
    assert any(prediction.peak_node in t.get_text() for t in ax.texts)
    assert "MiB" in ax.get_ylabel() and ax.get_xlabel()
    paths = plots.save_figure(fig, tmp_path / "t")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)


def test_report_figures_skip_without_quality_then_draw(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(plots, "REPORT_TIMELINE_MODELS", ("fsrcnn",))
    monkeypatch.setattr(plots, "REPORT_SIZE_MODELS", ("fsrcnn", "fmen-s-deploy"))
    monkeypatch.setattr(plots, "hd_sizes", lambda scale: [(8, 8), (12, 16)])
    store = ResultsStore(tmp_path / "s.sqlite")
    messages: list[str] = []
    written = plots.write_report_figures(tmp_path / "reports", store, None, log=messages.append)
    names = sorted(p.name for p in written)
    assert names == [
        "peak_vs_input_size_x4.png",
        "peak_vs_input_size_x4.svg",
        "timeline_fsrcnn_x4.png",
        "timeline_fsrcnn_x4.svg",
    ]
    assert all(p.parent == tmp_path / "reports" / "figures" for p in written)
    skipped = [m for m in messages if m.startswith("skipped")]
    assert len(skipped) == 3 and "no efficiency rows" in skipped[0]
    assert all("no quality rows" in m for m in skipped[1:])

    _fill(store, runtime=False)
    messages.clear()
    written = plots.write_report_figures(tmp_path / "reports", store, None, log=messages.append)
    assert "psnr_vs_memory_Set5_x4.png" in {p.name for p in written}
    assert "macs_vs_memory_x4.png" in {p.name for p in written}  # the efficiency rows are there now
    assert any("psnr_vs_runtime" in m and "no runtime rows" in m for m in messages)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsr-bench")
    plots.add_plot_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_plot_kinds(tmp_path: Path, capsys):
    parser = _parser()
    args = parser.parse_args(
        ["plot", "timeline", "fsrcnn", "--scale", "2", "--input", "16x16", "--out", str(tmp_path / "t")]
    )
    assert args.run(args) == 0 and (tmp_path / "t.png").is_file() and (tmp_path / "t.svg").is_file()
    argv = ["plot", "peak-vs-size", "fsrcnn", "fmen-s-deploy", "--scale", "2", "--sizes", "8x8", "16x12"]
    args = parser.parse_args([*argv, "--out", str(tmp_path / "p")])
    assert args.run(args) == 0 and (tmp_path / "p.png").is_file()
    store = tmp_path / "s.sqlite"
    _fill(ResultsStore(store))
    args = parser.parse_args(["plot", "psnr-runtime", "--store", str(store), "--out", str(tmp_path / "r")])
    assert args.run(args) == 0 and (tmp_path / "r.svg").is_file()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["timeline", "nope"], "unknown model"),
        (["timeline", "fsrcnn", "--scale", "5"], "not available"),
        (["timeline", "fsrcnn", "--input", "8by8"], "expected HxW"),
        (["peak-vs-size", "fsrcnn", "--sizes", "8x8"], "at least two sizes"),
        (["psnr-memory", "--preset", "nope"], "unknown preset"),
        (["psnr-memory", "--dataset", "Urban100"], "no quality rows"),
    ],
)
def test_cli_plot_bad_input(tmp_path: Path, argv, message):
    args = _parser().parse_args(["plot", *argv, "--out", str(tmp_path / "x")])
    if hasattr(args, "store"):
        args.store = str(tmp_path / "s.sqlite")
    with pytest.raises(MemsrInputError, match=message):
        args.run(args)
