"""`memsr-bench profile` JSON and errors; `memsr-bench report` on an embedded default (no data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from memsr_bench.profile import lr_size_for, parse_size

from memsr_bench.cli import main
from memsr_bench.errors import MemsrInputError

REQUIRED_KEYS = {
    "model",
    "scale",
    "input",
    "preset",
    "params",
    "macs",
    "flops",
    "activations",
    "convs",
    "runtime_ms",
    "peak_bytes_measured",
    "peak_bytes_predicted",
    "peak_node",
}


def test_profile_json(capsys):
    code = main(["profile", "fsrcnn", "--scale", "2", "--input", "16x20", "--repeats", "2", "--warmup", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and REQUIRED_KEYS <= set(result)
    assert result["input"] == [16, 20] and result["scale"] == 2 and result["params"] == 12_809
    for key in ("params", "macs", "flops", "activations", "convs", "peak_bytes_measured", "peak_bytes_predicted"):
        assert isinstance(result[key], int) and result[key] > 0, key
    # Predicted and measured peaks use one definition (live tensor storage) and agree closely.
    assert abs(result["peak_bytes_predicted"] - result["peak_bytes_measured"]) <= 0.02 * result["peak_bytes_measured"]
    assert result["unsupported_ops"] == {}


def test_profile_ntire_runtime_protocol(capsys):
    argv = [
        "profile",
        "fsrcnn",
        "--scale",
        "2",
        "--input",
        "12x12",
        "--protocol",
        "ntire2022",
        "--repeats",
        "2",
        "--threads",
        "1",
        "--channels-last",
        "--json",
    ]
    assert main(argv) == 0
    runtime = json.loads(capsys.readouterr().out)["conventions"]["runtime"]
    assert runtime.startswith("ntire2022: mean of 2 passes after 0 warm-up") and "1 threads, channels_last" in runtime


def test_profile_preset_sets_input(capsys):
    code = main(
        ["profile", "fmen-s-deploy", "--scale", "4", "--preset", "fmen", "--repeats", "1", "--warmup", "0", "--json"]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["input"] == [180, 320] and result["preset"] == "fmen"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["profile", "nope", "--input", "8x8"], "unknown model"),
        (["profile", "fsrcnn", "--input", "8by8"], "expected HxW"),
        (["profile", "fsrcnn", "--scale", "3", "--output", "100x100"], "not divisible"),
        (["profile", "fsrcnn", "--input", "8x8", "--output", "16x16"], "not both"),
    ],
)
def test_profile_errors(capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_size_rules():
    assert parse_size("64x48", "--input") == (64, 48)
    assert lr_size_for(2, None, (720, 1280), None) == (360, 640)
    assert lr_size_for(4, None, None, "ntire2022") == (256, 256)
    assert lr_size_for(4, None, None, None) == (256, 256)
    with pytest.raises(MemsrInputError):
        parse_size("0x5", "--input")


def test_report_writes_tables_without_data(tmp_path: Path, capsys, monkeypatch):
    """The embedded default: efficiency tables for every zoo model, from a store; a rerun reads it."""
    import memsr_bench.report as report

    monkeypatch.setattr(
        report,
        "report_cells",
        lambda presets: (
            [report.Cell("fsrcnn", 4, p) for p in presets] + [report.Cell("fmen-s-deploy", 4, p) for p in presets]
        ),
    )
    monkeypatch.setenv("MEMSR_SHARED", str(tmp_path / "no-shared"))
    store = tmp_path / "store.sqlite"
    argv = ["report", "--out", str(tmp_path / "reports"), "--store", str(store), "--presets", "ntire2022"]
    assert main(argv) == 0
    table = (tmp_path / "reports" / "efficiency" / "ntire2022.md").read_text()
    assert "fmen-s-deploy" in table and "22.28" in table and "not available" in table
    assert (tmp_path / "reports" / "README.md").is_file() and (tmp_path / "reports" / "zoo.md").is_file()
    # without data: the memory timelines, peak vs size and the compute-memory trade-off still exist
    figures = {p.name for p in (tmp_path / "reports" / "figures").glob("*.png")}
    assert {"macs_vs_memory_x4.png", "peak_vs_input_size_x4.png"} <= figures
    assert any(name.startswith("timeline_") for name in figures)
    capsys.readouterr()
    monkeypatch.setattr(report, "_efficiency_values", lambda cell: pytest.fail("cached cell recomputed"))
    assert main(argv) == 0
