"""`memsr-bench table PRESET`: measured cells beside published ones, missing data left missing, cached cells.

Fast: tiny inputs (the presets' sizes are shrunk), fsrcnn / fmen-s-deploy only, a temp store, a synthetic
published table and a two-image test set.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
from pathlib import Path

import memsr_bench.report as report
import numpy as np
import pandas as pd
import pytest
from memsr_bench.table_presets import PRESETS, add_table_parser, build_table
from PIL import Image

import memsr_bench.measure as measure
from memsr_bench.errors import MemsrInputError
from memsr_bench.results import ResultsStore

EFFICIENCY_HEADER = (
    "source,model,scale,params_k,macs_g,macs_convention,runtime_ms,runtime_device,memory_mb,memory_convention,"
    "activations_m,convs\n"
)


@pytest.fixture
def tiny(monkeypatch):
    """Presets with small inputs (LR 16x16 / HR 24x36), so every count and pass takes milliseconds."""
    real = measure.get_preset

    def small(name):
        preset = real(name)
        if preset.lr_size is not None:
            return dataclasses.replace(preset, lr_size=(16, 16))
        return dataclasses.replace(preset, hr_size=(24, 36))

    monkeypatch.setattr(report, "get_preset", small)
    monkeypatch.setattr(measure, "get_preset", small)

    def cells(models):
        def report_cells(presets):
            return [report.Cell(m, s, p) for p in presets for m, s in models]

        monkeypatch.setattr(report, "report_cells", report_cells)

    return cells


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "published_efficiency.csv").write_text(
        EFFICIENCY_HEADER
        + "FMEN Table 3,FSRCNN,2,13.0,6.0,Mult-Adds,,,,,,\n"
        + "FMEN Table 4 (NTIRE 2022 ESR),FMEN-S,4,341.0,22.28,NTIRE,28.07,GPU A,204.6,DIV2K loop,72.09,34\n"
        + "MemSR slides,FSRCNN,2,24.0,34.0,thop,13.0,GPU B,368.0,one pass,,\n"
    )
    (ref / "published_quality.csv").write_text(
        "source,model,scale,dataset,psnr,ssim\n"
        "FMEN Table 3,Bicubic,2,Set5,30.0,0.9\n"
        "FMEN Table 3,Bicubic,2,Urban100,26.0,0.8\n"
        "FMEN Table 3,FSRCNN,2,Set5,37.0,0.95\n"
        "FMEN Table 3,FSRCNN,2,B100,31.5,0.89\n"
        "MemSR slides,Bicubic,2,Set5,33.0,0.92\n"
    )
    return ref


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "Set5").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        smooth = np.kron(rng.integers(0, 256, (6, 6, 3)), np.ones((4, 4, 1))).astype(np.uint8)
        Image.fromarray(smooth).save(root / "Set5" / f"{name}.png")
    return root


def test_fmen_table3_measured_beside_published(tiny, reference, data_root, tmp_path, monkeypatch):
    tiny([("fsrcnn", 2)])
    store = ResultsStore(tmp_path / "store.sqlite")
    table = build_table("fmen-table3", store, data_root=data_root, reference_dir=reference, log=lambda m: None)
    data = table.data.set_index("model")
    assert list(table.data["model"]) == ["bicubic", "fsrcnn"]

    bicubic, fsrcnn = data.loc["bicubic"], data.loc["fsrcnn"]
    assert 15 < bicubic["Set5 PSNR"] < 60 and bicubic["Set5 PSNR published"] == 30.0
    assert bicubic["Set5 PSNR diff"] == pytest.approx(bicubic["Set5 PSNR"] - 30.0)
    # Absent data sets: published figures kept, measured ones missing (never filled in).
    assert math.isnan(bicubic["Urban100 PSNR"]) and bicubic["Urban100 PSNR published"] == 26.0
    assert math.isnan(bicubic["Urban100 PSNR diff"]) and math.isnan(bicubic["Manga109 PSNR published"])
    # No weights: the zoo model's quality is missing, its published figure is not.
    assert math.isnan(fsrcnn["Set5 PSNR"]) and fsrcnn["Set5 PSNR published"] == 37.0
    assert fsrcnn["BSD100 PSNR published"] == 31.5  # published B100 is the BSD100 folder
    assert fsrcnn["params"] == 12_809 and fsrcnn["params published (K)"] == 13.0
    assert fsrcnn["params diff %"] == pytest.approx(100 * (12.809 - 13.0) / 13.0)
    assert fsrcnn["Mult-Adds diff %"] == pytest.approx(100 * (fsrcnn["Mult-Adds (G)"] - 6.0) / 6.0)
    assert math.isnan(bicubic["params"])
    notes = " ".join(table.notes)
    assert "Urban100, Manga109" in notes and "no --weights" in notes

    md = table.to_markdown()
    assert "| bicubic | 2 |" in md and "30.00/0.9000" in md and "—" in md
    csv = pd.read_csv(io.StringIO(table.to_csv()))
    assert csv["Set5 PSNR"].dtype.kind == "f" and len(csv) == 2
    latex = table.to_latex()
    assert r"\toprule" in latex and r"diff \%" in latex and r"\label{tab:fmen-table3}" in latex

    # A second build reads every cell from the store.
    import memsr_bench.quality_sweep as quality_sweep

    monkeypatch.setattr(quality_sweep, "evaluate_conventions", lambda *a, **k: pytest.fail("quality recomputed"))
    monkeypatch.setattr(report, "_efficiency_values", lambda cell: pytest.fail("counts recomputed"))
    again = build_table("fmen-table3", store, data_root=data_root, reference_dir=reference, log=lambda m: None)
    pd.testing.assert_frame_equal(again.data, table.data)


def test_memsr_table_runtime_memory_cached_with_device(tiny, reference, tmp_path, monkeypatch):
    tiny([("fsrcnn", 2)])
    store = ResultsStore(tmp_path / "store.sqlite")
    table = build_table("memsr-table", store, reference_dir=reference, warmup=0, repeats=1, log=lambda m: None)
    row = table.data.set_index("model").loc["fsrcnn"]
    assert row["LR input"] == "12x18" and row["runtime (ms)"] > 0
    # Measured and predicted peaks share one definition (live tensor storage).
    assert row["peak memory (MiB)"] == pytest.approx(row["predicted peak (MiB)"], rel=0.02)
    assert row["runtime published (ms)"] == 13.0 and row["memory published (MB)"] == 368.0
    assert row["memory diff %"] == pytest.approx(100 * (row["peak memory (MiB)"] - 368.0) / 368.0)
    assert "runtime diff %" not in table.data  # another device: no difference
    bicubic = table.data.set_index("model").loc["bicubic"]
    assert math.isnan(bicubic["Set5 PSNR"]) and bicubic["Set5 PSNR published"] == 33.0
    notes = " ".join(table.notes)
    assert "the devices differ" in notes and "no --data-root" in notes and "GPU B" in notes
    devices = set(store.query(kind="runtime")["device"]) | set(store.query(kind="memory")["device"])
    assert len(devices) == 1 and devices.pop().startswith("cpu (")

    monkeypatch.setattr(measure, "measure_runtime", lambda *a, **k: pytest.fail("runtime recomputed"))
    monkeypatch.setattr(measure, "measure_peak_memory", lambda *a, **k: pytest.fail("memory recomputed"))
    again = build_table("memsr-table", store, reference_dir=reference, warmup=0, repeats=1, log=lambda m: None)
    assert again.data.set_index("model").loc["fsrcnn", "runtime (ms)"] == row["runtime (ms)"]

    heavy = build_table("memsr-table", store, reference_dir=reference, max_gmacs=1e-6, log=lambda m: None)
    assert math.isnan(heavy.data.set_index("model").loc["fsrcnn", "runtime (ms)"])
    assert any("not measured (above" in n and "fsrcnn x2" in n for n in heavy.notes)


def test_fmen_table4_ntire_columns(tiny, reference, tmp_path):
    tiny([("fmen-s-deploy", 4)])
    store = ResultsStore(tmp_path / "store.sqlite")
    table = build_table("fmen-table4", store, reference_dir=reference, warmup=0, repeats=1, log=lambda m: None)
    row = table.data.iloc[0]
    assert row["model"] == "fmen-s-deploy" and row["convs"] == 34 and row["convs diff"] == 0
    assert row["activations published (M)"] == 72.09 and row["FLOPs published (G)"] == 22.28
    assert row["runtime published (ms)"] == 28.07 and "memory diff %" not in table.data
    assert "PSNR" not in " ".join(table.data.columns)
    assert any("different protocol" in n for n in table.notes)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsr-bench")
    add_table_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_table_csv_and_files(tiny, tmp_path, capsys, monkeypatch):
    tiny([("fmen-s-deploy", 4)])
    monkeypatch.setenv("MEMSR_SHARED", str(tmp_path / "no-shared"))
    argv = ["table", "fmen-table4", "--format", "csv", "--store", str(tmp_path / "s.sqlite")]
    args = _parser().parse_args([*argv, "--warmup", "0", "--repeats", "1", "--out", str(tmp_path / "t" / "table4")])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    csv = pd.read_csv(io.StringIO(out))
    assert list(csv["model"]) == ["fmen-s-deploy"] and csv["params published (K)"].isna().all()
    for suffix in (".md", ".csv", ".tex"):
        assert (tmp_path / "t" / f"table4{suffix}").is_file()
    assert "no published tables" in (tmp_path / "t" / "table4.md").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["nope"], "unknown table preset"),
        (["fmen-table3", "--data-root", "/no/such/dir"], "--data-root"),
        (["fmen-table3", "--weights", "/no/such/dir"], "--weights"),
        (["fmen-table3", "--format", "html"], "--format"),
        (["fmen-table4", "--repeats", "0"], "--repeats"),
        (["fmen-table4", "--device", "tpu"], "--device"),
    ],
)
def test_cli_table_bad_input(tmp_path, extra, message):
    args = _parser().parse_args(["table", *extra, "--store", str(tmp_path / "s.sqlite")])
    with pytest.raises(MemsrInputError, match=message):
        args.run(args)


def test_presets_named_in_issue():
    assert set(PRESETS) == {"fmen-table3", "fmen-table4", "memsr-table"}
    assert PRESETS["fmen-table3"].datasets == ("Set5", "Set14", "BSD100", "Urban100", "Manga109")


def test_latex_without_jinja2_matches_styler(monkeypatch):
    """pandas' Styler needs jinja2; without it the table is written by hand with the same cells."""
    from memsr_bench.table_presets import _latex
    from pandas.io.formats.style import Styler

    shown = pd.DataFrame({"model": ["a_b", "c"], "diff %": ["+1.0", None], "Set5 measured": ["30.00/0.9000", None]})
    with_styler = _latex(shown, "T & x", "tab:t", ["note"])

    def no_jinja(*args, **kwargs):
        raise ImportError("jinja2")

    monkeypatch.setattr(Styler, "to_latex", no_jinja)
    by_hand = _latex(shown, "T & x", "tab:t", ["note"])
    for latex in (with_styler, by_hand):
        assert r"a\_b & +1.0 & 30.00/0.9000 \\" in latex and r"c & -- & -- \\" in latex
        assert r"diff \%" in latex and r"\caption{T \& x}" in latex and "% note" in latex
