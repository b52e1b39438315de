"""`memsr-bench table PRESET`: measured cells beside published ones, missing data left missing, cached cells,
any models (zoo names and the user's own files), highlighted rows.

Fast: tiny inputs (the presets' sizes are shrunk), fsrcnn / fmen-s-deploy / a 2-conv user model only, a temp
store, a synthetic published table and a two-image test set.
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import memsr_bench.evaluate
import memsr_bench.measure.presets as presets
import memsr_bench.results.cells
from memsr_bench.cli import main
from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.profile import RuntimeOptions
from memsr_bench.model import load_model
from memsr_bench.reporting.efficiency import ModelChoice
from memsr_bench.reporting.render import Column, Table
from memsr_bench.reporting.tables import PRESETS, build_table
from memsr_bench.results import ResultsStore

EFFICIENCY_HEADER = (
    "source,model,scale,params_k,macs_g,macs_convention,runtime_ms,runtime_device,memory_mb,memory_convention,"
    "activations_m,convs\n"
)
FAST = RuntimeOptions(warmup=0, repeats=3)
USER_MODEL = """\
from torch import nn


def build(scale=2, feats=4):
    return nn.Sequential(
        nn.Conv2d(3, feats, 3, padding=1), nn.ReLU(), nn.Conv2d(feats, 3 * scale * scale, 3, padding=1),
        nn.PixelShuffle(scale),
    )
"""


def quiet(message: str) -> None:
    pass


@pytest.fixture
def tiny(monkeypatch):
    """Presets with small inputs (LR 16x16 / HR 24x36), so every count and pass takes milliseconds."""
    for name, preset in list(presets.PRESETS.items()):
        small = {"lr_size": (16, 16)} if preset.lr_size is not None else {"hr_size": (24, 36)}
        monkeypatch.setitem(presets.PRESETS, name, dataclasses.replace(preset, **small))


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


@pytest.fixture
def user_model(tmp_path: Path) -> str:
    """``path/to/tiny_net.py:build``, a model file of the user's (its name in tables: ``tiny_net:build``)."""
    path = tmp_path / "models" / "tiny_net.py"
    path.parent.mkdir()
    path.write_text(USER_MODEL)
    return f"{path}:build"


def _no_measuring(monkeypatch) -> None:
    """Every later measurement fails the test: counts, runtime, memory and PSNR/SSIM must come from the store."""
    monkeypatch.setattr(memsr_bench.results.cells, "profile", lambda *a, **k: pytest.fail("measured again"))
    monkeypatch.setattr(memsr_bench.evaluate, "evaluate_conventions", lambda *a, **k: pytest.fail("evaluated again"))


def _row(table: Table, model: str, scale: int) -> pd.Series:
    return table.data.set_index(["model", "scale"]).loc[(model, scale)]


def _md_line(md: str, start: str) -> str:
    """The one Markdown row beginning with the cells ``start`` (e.g. ``"fsrcnn | 2"``)."""
    lines = [line for line in md.splitlines() if line.startswith(f"| {start} |")]
    assert len(lines) == 1, (start, md)
    return lines[0]


def test_fmen_table3_measured_beside_published(tiny, reference, data_root, tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "store.sqlite")
    models = ModelChoice(refs=("fsrcnn",))
    table = build_table("fmen-table3", store, models=models, data_root=data_root, reference_dir=reference, log=quiet)
    assert list(zip(table.data["model"], table.data["scale"], strict=True)) == [
        ("bicubic", 2),
        ("fsrcnn", 2),
        ("bicubic", 3),
        ("fsrcnn", 3),
        ("bicubic", 4),
        ("fsrcnn", 4),
    ]
    bicubic, fsrcnn = _row(table, "bicubic", 2), _row(table, "fsrcnn", 2)
    assert 15 < bicubic["Set5_psnr"] < 60 and bicubic["Set5_psnr_published"] == 30.0
    assert bicubic["Set5_psnr_diff"] == pytest.approx(bicubic["Set5_psnr"] - 30.0)
    assert bicubic["Set5_ssim_diff"] == pytest.approx(bicubic["Set5_ssim"] - 0.9)
    assert not bicubic["highlight"]
    # Absent data sets: published figures kept, measured ones missing (never filled in).
    assert math.isnan(bicubic["Urban100_psnr"]) and bicubic["Urban100_psnr_published"] == 26.0
    assert math.isnan(bicubic["Urban100_psnr_diff"]) and math.isnan(bicubic["Manga109_psnr_published"])
    # No weights and no stored eval row: the zoo model's quality is missing, its published figure is not.
    assert math.isnan(fsrcnn["Set5_psnr"]) and fsrcnn["Set5_psnr_published"] == 37.0
    assert math.isnan(fsrcnn["Set5_psnr_diff"])
    assert fsrcnn["BSD100_psnr_published"] == 31.5  # published B100 is the BSD100 folder
    # Counts keep their units in the data (the CSV); the published figures are converted to them.
    assert fsrcnn["params"] == 12_809 and fsrcnn["params_published"] == 13_000
    assert fsrcnn["params_diff_pct"] == pytest.approx(100 * (12_809 - 13_000) / 13_000)
    assert fsrcnn["conv_macs"] == fsrcnn["macs"] > 0 and fsrcnn["conv_macs_published"] == 6e9
    assert fsrcnn["conv_macs_diff_pct"] == pytest.approx(100 * (fsrcnn["conv_macs"] - 6e9) / 6e9)
    assert fsrcnn["input"] == "12x18"  # LR of the (shrunk) HR 24x36 at x2
    assert math.isnan(bicubic["params"]) and math.isnan(_row(table, "fsrcnn", 3)["params_published"])
    notes = " ".join(table.notes)
    assert "Urban100, Manga109" in notes and "no weights" in notes and "FMEN Table 3" in notes

    md = table.to_markdown()
    line = _md_line(md, "bicubic | 2")
    assert "30.00/0.9000" in line and f"{bicubic['Set5_psnr']:.2f}" in line
    assert "| fsrcnn | 2 | 12x18 | 12.8 | 13 | -1.5 |" in md  # params shown in K
    assert "37.00/0.9500" in md and "—" in md
    assert "nan" not in md and "★" not in md  # missing cells read "—"; nothing highlighted
    csv = pd.read_csv(io.StringIO(table.to_csv()))
    assert csv["Set5_psnr"].dtype.kind == "f" and len(csv) == 6
    assert csv.loc[csv["model"] == "fsrcnn", "params"].tolist() == [12_809] * 3
    latex = table.to_latex()
    assert r"\toprule" in latex and r"diff \%" in latex and r"\label{tab:fmen-table3}" in latex
    assert "30.00/0.9000" in latex and "nan" not in latex

    # A second build reads every cell from the store.
    _no_measuring(monkeypatch)
    again = build_table("fmen-table3", store, models=models, data_root=data_root, reference_dir=reference, log=quiet)
    pd.testing.assert_frame_equal(again.data, table.data)


def test_memsr_table_runtime_memory_cached_with_device(tiny, reference, tmp_path, monkeypatch):
    store = ResultsStore(tmp_path / "store.sqlite")
    models = ModelChoice(refs=("fsrcnn",))
    table = build_table("memsr-table", store, models=models, reference_dir=reference, runtime=FAST, log=quiet)
    row = _row(table, "fsrcnn", 2)
    assert row["input"] == "12x18" and row["runtime_ms"] > 0
    assert 0 <= row["runtime_iqr_ms"] < row["runtime_ms"] * 10 and row["threads"] == torch.get_num_threads()
    # Measured and predicted peaks share one definition (live tensor storage).
    assert row["peak_memory_bytes_measured"] == pytest.approx(row["peak_memory_bytes_predicted"], rel=0.02)
    assert row["runtime_ms_published"] == 13.0 and row["memory_mb_published"] == 368.0
    measured_mib = row["peak_memory_bytes_measured"] / 2**20
    assert row["memory_diff_pct"] == pytest.approx(100 * (measured_mib - 368.0) / 368.0)
    assert not any("runtime" in c and "diff" in c for c in table.data)  # another device: no difference
    assert not any("runtime diff" in c.title for c in table.columns)
    bicubic = _row(table, "bicubic", 2)
    assert math.isnan(bicubic["Set5_psnr"]) and bicubic["Set5_psnr_published"] == 33.0
    assert math.isnan(bicubic["runtime_ms"])
    notes = " ".join(table.notes)
    assert "the devices differ" in notes and "no --data-root" in notes and "GPU B" in notes
    devices = set(store.query(kind="runtime")["device"]) | set(store.query(kind="memory")["device"])
    assert len(devices) == 1
    device = devices.pop()
    assert device.startswith("cpu (") and row["device"] == device and f"on {device}" in notes

    md = table.to_markdown()
    assert "| runtime (ms) | IQR (ms) | threads |" in md
    assert f"| {row['runtime_ms']:,.1f} | {row['runtime_iqr_ms']:,.1f} | {torch.get_num_threads()} |" in md
    assert f"| {measured_mib:,.1f} |" in md  # peak memory shown in MiB

    _no_measuring(monkeypatch)
    again = build_table("memsr-table", store, models=models, reference_dir=reference, runtime=FAST, log=quiet)
    assert _row(again, "fsrcnn", 2)["runtime_ms"] == row["runtime_ms"]
    pd.testing.assert_frame_equal(again.data, table.data)

    # fsrcnn: 2.7 M MACs at x2, 1.2 M at x3, 0.7 M at x4; above 1 M (0.001 G) runtime and memory are skipped.
    heavy = build_table(
        "memsr-table", store, models=models, reference_dir=reference, runtime=FAST, max_gmacs=1e-3, log=quiet
    )
    for scale in (2, 3):
        skipped = _row(heavy, "fsrcnn", scale)
        assert math.isnan(skipped["runtime_ms"]) and math.isnan(skipped["peak_memory_bytes_measured"])
        assert skipped["peak_memory_bytes_predicted"] > 0  # counts are no measurement on the device
    assert _row(heavy, "fsrcnn", 4)["runtime_ms"] == _row(table, "fsrcnn", 4)["runtime_ms"]
    assert any(
        "skipped above 0.001 G MACs" in n and "fsrcnn x2" in n and "fsrcnn x3" in n and "fsrcnn x4" not in n
        for n in heavy.notes
    )


def test_fmen_table4_ntire_columns(tiny, reference, tmp_path):
    store = ResultsStore(tmp_path / "store.sqlite")
    models = ModelChoice(refs=("fmen-s-deploy",))
    table = build_table("fmen-table4", store, models=models, reference_dir=reference, runtime=FAST, log=quiet)
    assert len(table.data) == 1
    row = table.data.iloc[0]
    assert row["model"] == "fmen-s-deploy" and row["scale"] == 4 and row["input"] == "16x16"
    assert row["ntire2022_convs"] == 34 and row["ntire2022_convs_published"] == 34 and row["ntire2022_convs_diff"] == 0
    assert row["ntire2022_activations_published"] == pytest.approx(72.09e6)
    assert row["ntire2022_flops_published"] == pytest.approx(22.28e9)
    assert row["ntire2022_flops_diff_pct"] == pytest.approx(100 * (row["ntire2022_flops"] - 22.28e9) / 22.28e9)
    assert row["runtime_ms_published"] == 28.07 and "memory_diff_pct" not in table.data
    assert "psnr" not in " ".join(table.data.columns).lower()
    assert any("different protocol" in n for n in table.notes)
    md = table.to_markdown()
    assert "| #Conv [ntire2022_convs] | #Conv published | #Conv diff |" in md and "| 34 | 34 | +0 |" in md


def test_models_mix_zoo_and_user_file_with_highlight(tiny, reference, user_model, tmp_path, capsys):
    store = str(tmp_path / "s.sqlite")
    argv = ["table", "fmen-table4", "--models", "fsrcnn", user_model, "--highlight", user_model]
    code = main([*argv, "--reference", str(reference), "--warmup", "0", "--repeats", "2", "--store", store])
    md = capsys.readouterr().out
    assert code == 0
    user, zoo_row = _md_line(md, "★ tiny_net:build | 4"), _md_line(md, "fsrcnn | 4")
    assert "| 4 | 16x16 | 1.9 |" in user and "| 4 | 16x16 | 12.8 |" in zoo_row  # params (K) of each
    assert "★" not in zoo_row and md.count("★") == 2  # the row and the note saying what ★ means
    assert "★ marks the highlighted models (--highlight)" in md

    code = main([*argv, "--format", "csv", "--warmup", "0", "--repeats", "2", "--store", store])
    data = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("model")
    assert code == 0 and list(data.index) == ["fsrcnn", "tiny_net:build"]
    assert data["highlight"].tolist() == [False, True]
    assert data.loc["tiny_net:build", "params"] == 3 * 4 * 9 + 4 + 4 * 48 * 9 + 48
    assert data.loc["tiny_net:build", "fingerprint"] == load_model(user_model, 4).fingerprint
    assert data["runtime_ms"].gt(0).all() and data["runtime_iqr_ms"].ge(0).all() and data["threads"].ge(1).all()
    assert math.isnan(data.loc["tiny_net:build", "params_published"])  # no published row for the user's model


def _save_weights(ref: str, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    torch.save(load_model(ref, 2).module.state_dict(), path)
    return path


def test_user_model_quality_from_stored_eval_rows(tiny, data_root, user_model, tmp_path, capsys, monkeypatch):
    """A model without a public checkpoint shows the PSNR `memsr-bench eval` stored for its architecture:
    the latest row, with that row's own weights named."""
    store = tmp_path / "s.sqlite"
    first, second = (_save_weights(user_model, tmp_path / f"w{i}.pth", seed=i) for i in (1, 2))

    def evaluate(weights: Path, *extra: str) -> dict:
        argv = ["eval", user_model, "--scale", "2", "--data", str(data_root / "Set5"), "--weights", str(weights)]
        assert main([*argv, "--store", str(store), "--json", *extra]) == 0
        return pd.read_json(io.StringIO(capsys.readouterr().out), typ="series").to_dict()

    psnr = {w: evaluate(w) for w in (first, second)}
    assert psnr[first]["psnr"] != psnr[second]["psnr"]
    latest = evaluate(first, "--force")  # replaces the first row: the oldest row, measured last

    spec = dataclasses.replace(PRESETS["fmen-table3"], scales=(2,))
    table = build_table(
        spec, ResultsStore(store), models=ModelChoice(refs=(user_model,)), data_root=data_root, log=quiet
    )
    row = _row(table, "tiny_net:build", 2)
    assert row["Set5_psnr"] == pytest.approx(latest["psnr"]) and row["Set5_ssim"] == pytest.approx(latest["ssim"])
    assert math.isnan(row["Set14_psnr"])  # not evaluated there: missing
    notes = " ".join(table.notes)
    assert f"stored eval row, weights sha256 {latest['weights_sha256'][:12]}" in notes

    # Another architecture (feats=5) never gets these rows.
    edited = build_table(
        spec,
        ResultsStore(store),
        models=ModelChoice(refs=(user_model,), config=(("feats", 5),)),
        data_root=data_root,
        log=quiet,
    )
    assert math.isnan(_row(edited, "tiny_net:build", 2)["Set5_psnr"])


def test_cli_table_csv_and_files(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEMSR_SHARED", str(tmp_path / "no-shared"))
    argv = ["table", "fmen-table4", "--models", "fmen-s-deploy", "--format", "csv", "--store", str(tmp_path / "s.db")]
    assert main([*argv, "--warmup", "0", "--repeats", "1", "--out", str(tmp_path / "t" / "table4")]) == 0
    out = capsys.readouterr()
    csv = pd.read_csv(io.StringIO(out.out))
    assert list(csv["model"]) == ["fmen-s-deploy"] and csv["params_published"].isna().all()
    assert csv["ntire2022_convs"].tolist() == [34] and csv["runtime_ms"].gt(0).all()
    for suffix in (".md", ".csv", ".tex"):
        assert (tmp_path / "t" / f"table4{suffix}").is_file()
        assert f"wrote {tmp_path / 't' / f'table4{suffix}'}" in out.err
    assert "no published tables" in (tmp_path / "t" / "table4.md").read_text()
    assert (tmp_path / "t" / "table4.csv").read_text() == out.out.rstrip("\n") + "\n"
    assert r"\label{tab:fmen-table4}" in (tmp_path / "t" / "table4.tex").read_text()


def _exit(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and stderr of the CLI (argparse's own errors exit through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as done:
        code = done.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["nope"], "invalid choice: 'nope'"),
        (["fmen-table3", "--data-root", "/no/such/dir"], "--data-root: folder not found"),
        (["fmen-table3", "--weights", "/no/such/dir"], "--weights: folder not found"),
        (["fmen-table3", "--reference", "/no/such/dir"], "--reference: folder not found"),
        (["fmen-table3", "--format", "html"], "--format"),
        (["fmen-table4", "--repeats", "0"], "--repeats"),
        (["fmen-table4", "--device", "tpu"], "--device"),
        (["fmen-table4", "--max-gmacs", "0"], "--max-gmacs"),
        (["fmen-table4", "--models", "nope"], "unknown model"),
        (["fmen-table4", "--models", "fsrcnn", "--highlight", "imdn"], "--highlight: imdn not among the models"),
    ],
)
def test_cli_table_bad_input(tmp_path, capsys, extra, message):
    code, err = _exit(["table", *extra, "--store", str(tmp_path / "s.sqlite")], capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "s.sqlite").exists() or not len(ResultsStore(tmp_path / "s.sqlite"))


def test_unknown_preset_in_the_library():
    with pytest.raises(MemsrInputError, match="unknown table preset 'nope'"):
        build_table("nope", None, log=quiet)


def test_presets_named_in_issue():
    assert set(PRESETS) == {"fmen-table3", "fmen-table4", "memsr-table", "cdism"}
    assert PRESETS["fmen-table3"].datasets == ("Set5", "Set14", "BSD100", "Urban100", "Manga109")
    assert {p.efficiency_preset for p in PRESETS.values()} == {"fmen", "ntire2022", "memsr", "cdism"}


def test_latex_and_markdown_of_one_schema():
    """Markdown and LaTeX show the same formatted cells: pairs "a/b", missing as "—" / "--", ★ for highlights."""
    data = pd.DataFrame(
        {
            "model": ["a_b", "c"],
            "params": [12_809, float("nan")],
            "diff": [1.0, float("nan")],
            "Set5_psnr": [30.0, float("nan")],
            "Set5_ssim": [0.9, float("nan")],
            "highlight": [False, True],
        }
    )
    columns = [
        Column("model"),
        Column("params", "params (K)", ",.1f", 1e3),
        Column("diff", "diff %", "+.1f"),
        Column("Set5_psnr", "Set5 measured", ".2f", pair="Set5_ssim", pair_spec=".4f"),
    ]
    table = Table("t", "T & x", data, columns, ["note"])
    latex = table.to_latex()
    assert r"a\_b & 12.8 & +1.0 & 30.00/0.9000 \\" in latex and r"$\star$ c & -- & -- & -- \\" in latex
    assert r"model & params (K) & diff \% & Set5 measured \\" in latex
    assert r"\caption{T \& x}" in latex and "% note" in latex and r"\label{tab:t}" in latex
    md = table.to_markdown()
    assert "| a_b | 12.8 | +1.0 | 30.00/0.9000 |" in md and "| ★ c | — | — | — |" in md and "- note" in md
    assert table.to_csv().splitlines()[1] == "a_b,12809.0,1.0,30.0,0.9,False"  # the data as they are
    with pytest.raises(MemsrInputError, match="--format"):
        table.render("html")


def test_cdism_table_beside_the_project_figure(tmp_path):
    """Params and MACs (attention matmuls included) of the compact models beside the CDISM figure; without data
    the PSNR columns stay empty and the published Set5+Set14 means of the teachers sit beside them."""
    from conftest import require_shared

    from memsr_bench.results import ResultsStore

    reference = require_shared("reference")
    table = build_table(
        "cdism",
        ResultsStore(tmp_path / "s.sqlite"),
        models=ModelChoice(refs=("edsr-mini", "swinir-mini", "imdn")),
        reference_dir=reference,
    )
    rows = table.data.set_index("model")
    assert rows.loc["edsr-mini", "params"] == 49_603 and rows.loc["edsr-mini", "params_published"] == 50_000
    assert rows.loc["swinir-mini", "params"] == 98_868 and rows.loc["swinir-mini", "macs_published"] == 22e9
    # SwinIR's MACs are mostly linear layers and attention matmuls: more than its convolutions alone
    assert rows.loc["swinir-mini", "macs"] > 4 * rows.loc["swinir-mini", "conv_macs"]
    assert rows.loc["imdn", "mean_psnr_published"] == 35.82 and math.isnan(rows.loc["imdn", "mean_psnr"])
    assert rows.loc["edsr-mini", "peak_memory_bytes_predicted"] > 0
    assert "Set5+Set14 mean PSNR measured/published" in table.to_markdown()
