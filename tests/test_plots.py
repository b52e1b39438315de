"""Figures: stored rows -> plotted points, labels that overlap nothing, report figures, `memsr-bench plot`.

Fast: tiny preset inputs, fsrcnn / fmen-s-deploy / a 2-conv user model, PSNR of random weights on a
two-image synthetic test set (stored the way `memsr-bench eval` stores it).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import memsr_bench.measure.presets as presets
import memsr_bench.reporting.figures as figures
import memsr_bench.reporting.report as report
from memsr_bench.cli import main
from memsr_bench.data.datasets import discover_test_set
from memsr_bench.measure.profile import RuntimeOptions, input_channels
from memsr_bench.metrics import QualityConvention
from memsr_bench.model import load_model
from memsr_bench.reporting.efficiency import ModelChoice, choose_models
from memsr_bench.reporting.tradeoffs import efficiency_points, psnr_points
from memsr_bench.results import ResultKey, ResultsStore
from memsr_bench.results.cells import stored_counts, stored_quality, stored_runtime
from memsr_bench.upscalers import make_upscaler

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
USER_MODEL = """\
from torch import nn


def build(scale=4, feats=4):
    return nn.Sequential(
        nn.Conv2d(3, feats, 3, padding=1), nn.ReLU(), nn.Conv2d(feats, 3 * scale * scale, 3, padding=1),
        nn.PixelShuffle(scale),
    )
"""
FAST = RuntimeOptions(warmup=0, repeats=3)


@pytest.fixture
def tiny(monkeypatch):
    """Presets with small inputs (LR 16x16 / HR 48x64), so every count and pass takes milliseconds."""
    for name, preset in list(presets.PRESETS.items()):
        small = {"lr_size": (16, 16)} if preset.lr_size is not None else {"hr_size": (48, 64)}
        monkeypatch.setitem(presets.PRESETS, name, dataclasses.replace(preset, **small))


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "Set5").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        smooth = np.kron(rng.integers(0, 256, (6, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        Image.fromarray(smooth).save(root / "Set5" / f"{name}.png")
    return root


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """MemSR's published figures of fsrcnn and bicubic at x4 on Set5 (the published panel of the memsr preset)."""
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "published_efficiency.csv").write_text(
        "source,model,scale,params_k,macs_g,macs_convention,runtime_ms,runtime_device,memory_mb,memory_convention,"
        "activations_m,convs\n"
        "MemSR slides,FSRCNN,4,12.0,5.0,thop,10.0,GTX 1080Ti,300.0,one pass,,\n"
        "MemSR slides,IMDN,4,715.0,40.0,thop,40.0,GTX 1080Ti,900.0,one pass,,\n"
    )
    (ref / "published_quality.csv").write_text(
        "source,model,scale,dataset,psnr,ssim\n"
        "MemSR slides,FSRCNN,4,Set5,30.7,0.86\n"
        "MemSR slides,IMDN,4,Set5,32.2,0.89\n"
    )
    return ref


@pytest.fixture
def user_model(tmp_path: Path) -> str:
    path = tmp_path / "models" / "tiny_net.py"
    path.parent.mkdir()
    path.write_text(USER_MODEL)
    return f"{path}:build"


def _store_psnr(store: ResultsStore, ref: str, data_root: Path, scale: int = 4):
    """PSNR/SSIM of ``ref`` (random weights, or bicubic) on Set5 stored as `memsr-bench eval` stores it."""
    upscaler = make_upscaler(ref, scale, random_weights=ref != "bicubic")
    test_set = discover_test_set(data_root / "Set5", scale)
    return stored_quality(store, upscaler, test_set, [QualityConvention("y", "float", scale)])[0]


def _quality_row(store: ResultsStore, model: str, fingerprint: str, checkpoint: str, psnr: float, variant="float"):
    """A quality row in the layout of :func:`memsr_bench.results.cells.stored_quality`."""
    conventions = {"channel": "y", "y_variant": variant, "crop_border": 4, "lr": "generated"}
    key = ResultKey("quality", model, checkpoint, 4, "Set5", conventions, fingerprint=fingerprint)
    images = [{"name": "a", "psnr": psnr, "ssim": 0.9}, {"name": "b", "psnr": psnr, "ssim": 0.9}]
    values = {"psnr": psnr, "ssim": 0.9, "n_images": 2, "images": images, "model": model, "scale": 4}
    store.put(key, {**values, "dataset": "Set5", "conventions": conventions})


def test_psnr_points_from_store(tiny, data_root, tmp_path: Path):
    store = ResultsStore(tmp_path / "s.sqlite")
    models, _ = choose_models(ModelChoice(refs=("fsrcnn", "fmen-s-deploy")), [4])
    assert psnr_points(models, set(), store, "Set5", "memsr").empty
    fsrcnn = _store_psnr(store, "fsrcnn", data_root)
    _store_psnr(store, "bicubic", data_root)
    points = psnr_points(models, set(), store, "Set5", "memsr").set_index("model")
    assert list(points.index) == ["fsrcnn"]  # fmen-s-deploy has no PSNR: no point, no value made up
    row = points.loc["fsrcnn"]
    assert row["psnr"] == pytest.approx(fsrcnn.psnr) and row["weights_sha256"] == "random-init"
    shape = presets.get_preset("memsr").input_shape(4, channels=1)
    counts = stored_counts(store, models[0], shape)
    assert row["params"] == 12_809 and row["channels"] == "y" and row["shape"] == shape == (1, 1, 12, 16)
    assert row["peak_mib"] == pytest.approx(counts["peak_memory_bytes_predicted"] / 2**20) and row["macs"] > 0
    assert "runtime_ms" not in points  # nothing timed yet

    _store_psnr(store, "fmen-s-deploy", data_root)
    _quality_row(store, "fsrcnn", models[0].fingerprint, "sha-newer", 30.7)  # a newer row replaces the older one
    _quality_row(store, "fsrcnn", "edited-architecture", "sha-edited", 99.0)  # another architecture: never used
    _quality_row(store, "fsrcnn", models[0].fingerprint, "sha-rounded", 30.1, variant="rounded")
    timing = stored_runtime(store, models[0], shape, options=FAST)
    points = psnr_points(models, {"fmen-s-deploy"}, store, "Set5", "memsr").set_index("model")
    assert sorted(points.index) == ["fmen-s-deploy", "fsrcnn"] and points["highlight"].to_dict() == {
        "fsrcnn": False,
        "fmen-s-deploy": True,
    }
    assert points.loc["fsrcnn", "psnr"] == 30.7 and points.loc["fsrcnn", "weights_sha256"] == "sha-newer"
    assert points.loc["fsrcnn", "runtime_ms"] == timing["runtime_ms"]
    assert points.loc["fsrcnn", "runtime_iqr_ms"] == timing["runtime_iqr_ms"]
    assert points.loc["fsrcnn", "threads"] == torch.get_num_threads()
    assert points.loc["fsrcnn", "runtime_device"].startswith("cpu (")
    assert pd.isna(points.loc["fmen-s-deploy", "runtime_ms"])  # not timed: missing
    rounded = psnr_points(models, set(), store, "Set5", "memsr", y_variant="rounded").set_index("model")
    assert rounded["psnr"].to_dict() == {"fsrcnn": 30.1}


def _points() -> pd.DataFrame:
    rows = [
        {"model": m, "params": p, "peak_mib": mib, "runtime_ms": ms, "psnr": psnr, "channels": "rgb"}
        for m, p, mib, ms, psnr in MODELS
    ]
    points = pd.DataFrame(rows)
    points["channels"] = ["y" if m == "fsrcnn" else "rgb" for m in points["model"]]
    points["highlight"] = points["model"] == "rlfn-ntire"
    return points


def test_scatter_labels_overlap_nothing():
    points = _points()
    fig = figures.psnr_figure(points, "peak_mib", "predicted peak (MiB)", "Set5 x4")
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    labels = {figures.model_label(m, c) for m, c in zip(points["model"], points["channels"], strict=True)}
    labels = {"★ rlfn-ntire" if label == "rlfn-ntire" else label for label in labels}
    assert "fsrcnn (Y input)" in labels  # a Y-only model says so
    texts = [t for t in ax.texts if t.get_text() in labels]
    assert sorted(t.get_text() for t in texts) == sorted(labels)
    boxes = [t.get_window_extent(renderer) for t in texts]
    frame = ax.get_window_extent(renderer)
    for i, a in enumerate(boxes):
        assert frame.x0 <= a.x0 and a.x1 <= frame.x1 and frame.y0 <= a.y0 and a.y1 <= frame.y1, texts[i].get_text()
        for b in boxes[i + 1 :]:
            assert figures._overlap(a, b) == 0, (texts[i].get_text(), b)
    assert ax.get_xlabel() == "predicted peak (MiB)" and ax.get_ylabel().startswith("PSNR (dB)")
    # The highlighted model is drawn in red with a thicker edge; the others are not.
    scatter = ax.collections[0]  # the points (the legend's size markers follow)
    red = [tuple(c) for c, m in zip(scatter.get_facecolors(), points["model"], strict=True) if m == "rlfn-ntire"]
    assert red[0][:3] == pytest.approx((0.839, 0.153, 0.157), abs=0.01)
    assert sorted(scatter.get_linewidths())[-1] > sorted(scatter.get_linewidths())[0]


def test_timeline_annotates_peak(tmp_path: Path):
    from memsr_bench.measure.memory_model import predict_peak_memory

    loaded = load_model("fmen-s-deploy", 4)
    prediction = predict_peak_memory(loaded.module, (1, 3, 16, 16))
    fig = figures.timeline_figure(prediction, "fmen-s-deploy x4")
    ax = fig.axes[0]
    peak = [t.get_text() for t in ax.texts if prediction.peak_node in t.get_text()]
    where = f"peak {prediction.peak_bytes / 2**20:,.1f} MiB after op {prediction.peak_index + 1}"
    assert len(peak) == 1 and where in peak[0]
    assert "MiB" in ax.get_ylabel() and ax.get_xlabel()
    paths = figures.save_figure(fig, tmp_path / "t")
    assert [p.suffix for p in paths] == [".png", ".svg"] and all(p.stat().st_size > 1000 for p in paths)


def test_report_figures_skip_without_quality_then_draw(tiny, data_root, reference, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(report, "TIMELINE_MODELS", ("fsrcnn",))
    monkeypatch.setattr(report, "SIZE_MODELS", ("fsrcnn", "fmen-s-deploy"))
    monkeypatch.setattr(report, "_zoo_models", lambda spec: ["fsrcnn", "fmen-s-deploy"])
    monkeypatch.setattr(figures, "hd_sizes", lambda scale: [(8, 8), (12, 16)])
    store = ResultsStore(tmp_path / "s.sqlite")
    messages: list[str] = []
    written = report.write_report_figures(tmp_path / "reports", store, reference, log=messages.append)
    assert sorted(p.name for p in written) == [
        "macs_vs_memory_x4.png",  # counts only: no data needed
        "macs_vs_memory_x4.svg",
        "peak_vs_input_size_x4.png",
        "peak_vs_input_size_x4.svg",
        "timeline_fsrcnn_x4.png",
        "timeline_fsrcnn_x4.svg",
    ]
    assert all(p.parent == tmp_path / "reports" / "figures" and p.stat().st_size > 1000 for p in written)
    skipped = [m for m in messages if m.startswith("skipped")]
    assert len(skipped) == 1 and "no quality rows" in skipped[0]

    for ref in ("bicubic", "fsrcnn", "fmen-s-deploy"):
        _store_psnr(store, ref, data_root)
    messages.clear()
    drawn: list = []
    real = figures.psnr_kind_figure
    monkeypatch.setattr(figures, "psnr_kind_figure", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    written = report.write_report_figures(tmp_path / "reports", store, reference, log=messages.append)
    names = {p.name for p in written}
    assert {"psnr_vs_memory_Set5_x4.png", "psnr_vs_memory_Set5_x4.svg", "macs_vs_memory_x4.png"} <= names
    assert "psnr_vs_runtime_Set5_x4.png" not in names
    assert any("psnr-runtime" in m and "runtime rows" in m for m in messages if m.startswith("skipped"))
    measured, published = drawn[0].axes[:2]  # the published MemSR figures in their own panel, never mixed in
    assert {t.get_text() for t in measured.texts} == {"fsrcnn (Y input)", "fmen-s-deploy"}
    assert {t.get_text() for t in published.texts} == {"FSRCNN", "IMDN"}
    assert published.get_title() == "Published (MemSR): Set5 x4"

    for model in choose_models(ModelChoice(refs=("fsrcnn", "fmen-s-deploy")), [4])[0]:
        shape = presets.get_preset("memsr").input_shape(4, channels=input_channels(model.module))
        stored_runtime(store, model, shape, options=FAST)
    written = report.write_report_figures(tmp_path / "reports", store, None, log=messages.append)
    assert "psnr_vs_runtime_Set5_x4.svg" in {p.name for p in written}
    assert "cpu (" in drawn[-1].axes[0].get_xlabel() and len(drawn[-1].axes) == 1  # device named; no reference


def _recording(monkeypatch) -> list:
    """(points, figure) of every PSNR figure the CLI draws."""
    drawn = []
    real = figures.psnr_kind_figure

    def record(kind, points, *args, **kwargs):
        fig = real(kind, points, *args, **kwargs)
        drawn.append((points, fig))
        return fig

    monkeypatch.setattr(figures, "psnr_kind_figure", record)
    return drawn


def test_cli_plot_kinds(tiny, data_root, reference, user_model, tmp_path: Path, capsys, monkeypatch):
    argv = ["plot", "timeline", "fsrcnn", "--scale", "2", "--input", "16x16", "--out", str(tmp_path / "t")]
    assert main(argv) == 0 and (tmp_path / "t.png").is_file() and (tmp_path / "t.svg").is_file()
    argv = ["plot", "peak-vs-size", "fsrcnn", "fmen-s-deploy", user_model, "--scale", "2", "--sizes", "8x8", "16x12"]
    assert main([*argv, "--out", str(tmp_path / "p")]) == 0 and (tmp_path / "p.png").is_file()
    assert "wrote" in capsys.readouterr().out

    store = ResultsStore(tmp_path / "s.sqlite")
    models, _ = choose_models(ModelChoice(refs=("fsrcnn", "fmen-s-deploy")), [4])
    for model in models:
        _store_psnr(store, model.name, data_root)
    stored_runtime(store, models[0], presets.get_preset("memsr").input_shape(4, channels=1), options=FAST)
    drawn = _recording(monkeypatch)
    common = ["--store", str(store.path), "--reference", str(reference)]
    assert main(["plot", "psnr-runtime", *common, "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r.svg").is_file() and (tmp_path / "r.png").is_file()
    points, fig = drawn[-1]
    assert list(points["model"]) == ["fsrcnn"]  # the only model with a runtime row
    assert "cpu (" in fig.axes[0].get_xlabel() and "threads" in fig.axes[0].get_xlabel()
    argv = ["plot", "psnr-memory", "--models", "fsrcnn", "fmen-s-deploy", "--highlight", "fsrcnn", *common]
    assert main([*argv, "--out", str(tmp_path / "m")]) == 0 and (tmp_path / "m.png").is_file()
    points, fig = drawn[-1]
    assert points.set_index("model")["highlight"].to_dict() == {"fsrcnn": True, "fmen-s-deploy": False}
    assert {t.get_text() for t in fig.axes[0].texts} == {"★ fsrcnn (Y input)", "fmen-s-deploy"}
    assert len(fig.axes) >= 2 and fig.axes[1].get_title().startswith("Published (MemSR)")
    assert f"wrote {tmp_path / 'm.png'}" in capsys.readouterr().out


def test_cli_plot_psnr_memory_with_a_user_model_from_eval(tiny, data_root, user_model, tmp_path, capsys, monkeypatch):
    """`memsr-bench eval FILE.py:factory --weights W` stores the PSNR; `plot psnr-memory --models` shows it."""
    store = str(tmp_path / "s.sqlite")
    torch.manual_seed(0)
    weights = tmp_path / "mine.pth"
    torch.save(load_model(user_model, 4).module.state_dict(), weights)
    argv = ["eval", user_model, "--scale", "4", "--data", str(data_root / "Set5"), "--weights", str(weights)]
    assert main([*argv, "--store", store, "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    _store_psnr(ResultsStore(store), "fsrcnn", data_root)

    drawn = _recording(monkeypatch)
    argv = ["plot", "psnr-memory", "--models", "fsrcnn", user_model, "--highlight", user_model, "--store", store]
    assert main([*argv, "--out", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine.png").is_file() and (tmp_path / "mine.svg").is_file()
    points, fig = drawn[-1]
    mine = points.set_index("model").loc["tiny_net:build"]
    assert mine["psnr"] == pytest.approx(evaluated["psnr"]) and mine["weights_sha256"] == evaluated["weights_sha256"]
    assert bool(mine["highlight"]) and not points.set_index("model").loc["fsrcnn", "highlight"]
    assert mine["params"] == 3 * 4 * 9 + 4 + 4 * 48 * 9 + 48
    expected = efficiency_points([load_model(user_model, 4)], set(), ResultsStore(store), "memsr")
    assert mine["peak_mib"] == pytest.approx(expected["peak_mib"].iloc[0])
    assert "★ tiny_net:build" in {t.get_text() for t in fig.axes[0].texts}

    # An edited architecture (--config feats=5) never gets the stored PSNR of the old one.
    assert main([*argv, "--config", "feats=5", "--out", str(tmp_path / "edited")]) == 0
    assert len(drawn) == 2 and list(drawn[-1][0]["model"]) == ["fsrcnn"]


def _exit(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of the CLI (argparse's own errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["timeline", "nope"], "unknown model"),
        (["timeline", "fsrcnn", "--scale", "5"], "not available"),
        (["timeline", "fsrcnn", "--input", "8by8"], "expected HxW"),
        (["peak-vs-size", "fsrcnn", "--sizes", "8x8"], "at least two sizes"),
        (["psnr-memory", "--preset", "nope"], "invalid choice: 'nope'"),
        (["psnr-memory", "--dataset", "Urban100"], "no model has a stored PSNR on Urban100 x4"),
        (["psnr-memory", "--models", "fsrcnn", "--highlight", "imdn"], "--highlight: imdn not among the models"),
        (["psnr-memory", "--reference", "/no/such/dir"], "--reference: folder not found"),
        (["psnr-runtime", "--models", "nope"], "unknown model"),
        (
            ["psnr-runtime", "--models", "fsrcnn"],
            "no model has a stored PSNR on Set5 x4 for its current architecture (",
        ),
    ],
)
def test_cli_plot_bad_input(tmp_path: Path, capsys, argv, message):
    tail = ["--store", str(tmp_path / "s.sqlite")] if argv[0].startswith("psnr") else []
    code, err = _exit(["plot", *argv, *tail, "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("x.*"))


def test_cli_plot_psnr_runtime_without_runtime_rows(tiny, data_root, tmp_path: Path, capsys):
    store = ResultsStore(tmp_path / "s.sqlite")
    _store_psnr(store, "fsrcnn", data_root)
    argv = ["plot", "psnr-runtime", "--models", "fsrcnn", "--store", str(store.path), "--out", str(tmp_path / "x")]
    code, err = _exit(argv, capsys)
    assert code == 2 and "no model has a stored PSNR" not in err  # it has one: its runtime is missing
    assert "no model with a stored PSNR on Set5 x4 has a stored runtime at the input of preset memsr" in err
    assert "(memsr-bench table memsr-table measures them)" in err
    assert not list(tmp_path.glob("x.*"))
