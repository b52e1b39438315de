"""`memsr-bench profile` JSON and errors; `memsr-bench report` on an embedded default (no data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memsr_bench.cli import main
from memsr_bench.errors import MemsrInputError
from memsr_bench.units import parse_size

REQUIRED_KEYS = {
    "model",
    "scale",
    "input_shape",
    "input",
    "preset",
    "fingerprint",
    "weights_sha256",
    "params",
    "params_used",
    "macs",
    "conv_macs",
    "flops_all_ops",
    "activations",
    "convs",
    "ntire2022_flops",
    "thop_0031_macs",
    "runtime_ms",
    "runtime_iqr_ms",
    "peak_memory_bytes_measured",
    "peak_memory_bytes_predicted",
    "conventions",
}


def test_profile_json(capsys):
    code = main(["profile", "fsrcnn", "--scale", "2", "--input", "16x20", "--repeats", "2", "--warmup", "1", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and REQUIRED_KEYS <= set(result)
    assert result["input_shape"] == [1, 1, 16, 20] and result["scale"] == 2 and result["params"] == 12_809
    assert result["input"] == "Y 0..1 (register_model)" and result["weights_sha256"] is None
    counted = ("params", "macs", "flops_all_ops", "activations", "convs", "peak_memory_bytes_measured")
    for key in (*counted, "peak_memory_bytes_predicted"):
        assert isinstance(result[key], int) and result[key] > 0, key
    # every quantity names its convention; the NTIRE "FLOPs" is never stored under macs
    assert set(result["conventions"]) >= set(counted) | {"ntire2022_flops", "runtime_ms"}
    assert result["flops_all_ops"] > 2 * result["macs"]
    # Predicted and measured peaks use one definition (live tensor storage) and agree closely.
    predicted, measured = result["peak_memory_bytes_predicted"], result["peak_memory_bytes_measured"]
    assert abs(predicted - measured) <= 0.02 * measured
    assert result["details"]["unsupported_ops"] == {}


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
    result = json.loads(capsys.readouterr().out)
    runtime = result["conventions"]["runtime_ms"]
    assert "here ntire2022 protocol: mean of 2 passes after 0 warm-up" in runtime and "channels_last" in runtime
    assert result["details"]["threads"] == 1


def test_profile_preset_sets_input(capsys):
    code = main(
        ["profile", "fmen-s-deploy", "--scale", "4", "--preset", "fmen", "--repeats", "1", "--warmup", "0", "--json"]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["input_shape"] == [1, 3, 180, 320] and result["preset"] == "fmen"
    assert result["reported"] == {"Mult-Adds": "conv_macs"}


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


def test_size_parser():
    assert parse_size("64x48", "--input") == (64, 48)
    with pytest.raises(MemsrInputError):
        parse_size("0x5", "--input")


def test_deploy_form_and_unused_parameters(capsys, tmp_path):
    """--deploy measures the re-parameterised form; parameters the forward never reads are reported."""
    code = main(["profile", "fmen", "--scale", "4", "--input", "16x16", "--no-runtime", "--deploy", "--json"])
    deployed = json.loads(capsys.readouterr().out)
    assert code == 0 and deployed["params"] == 769_428 and len(deployed["deploy"]) == 13
    model = tmp_path / "twobranch.py"
    model.write_text(
        "from torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self, scale=2):\n        super().__init__()\n"
        "        self.body = nn.Conv2d(3, 3 * scale * scale, 3, padding=1)\n"
        "        self.train_branch = nn.Conv2d(3, 3 * scale * scale, 1)  # used only while training\n"
        "        self.up = nn.PixelShuffle(scale)\n\n"
        "    def forward(self, x):\n        return self.up(self.body(x))\n\n\n"
        "    def switch_to_deploy(self):\n        del self.train_branch\n"
    )
    assert main(["profile", f"{model}:Net", "--input", "8x8", "--no-runtime"]) == 0
    captured = capsys.readouterr()
    assert "48 of 384 parameters of twobranch:Net are not used by the forward pass" in captured.err
    assert "params_used = 336" in captured.err
    assert main(["profile", f"{model}:Net", "--input", "8x8", "--no-runtime", "--deploy", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["params"] == result["params_used"] == 336 and result["deploy"] == ["<model>.switch_to_deploy()"]
    assert "not used" not in captured.err


def test_report_writes_tables_without_data(tmp_path: Path, capsys, monkeypatch):
    """The embedded default: efficiency tables for every zoo model, from a store; a rerun reads it."""
    import memsr_bench.reporting.report as report
    import memsr_bench.results.cells as cells

    monkeypatch.setattr(report, "_zoo_models", lambda spec: ["fsrcnn", "fmen-s-deploy"])
    monkeypatch.setenv("MEMSR_SHARED", str(tmp_path / "no-shared"))
    store = tmp_path / "store.sqlite"
    argv = ["report", "--out", str(tmp_path / "reports"), "--store", str(store), "--presets", "ntire2022"]
    assert main(argv) == 0
    table = (tmp_path / "reports" / "efficiency" / "ntire2022.md").read_text()
    assert "| fmen-s-deploy | 4 | 256x256 | 341.1 |" in table and "22.28" in table
    assert "no published tables found" in table
    assert "FLOPs [ntire2022_flops] (G)" in table
    assert (tmp_path / "reports" / "README.md").is_file() and (tmp_path / "reports" / "zoo.md").is_file()
    # without data: the memory timelines, peak vs size and the compute-memory trade-off still exist
    figures = {p.name for p in (tmp_path / "reports" / "figures").glob("*.png")}
    assert {"macs_vs_memory_x4.png", "peak_vs_input_size_x4.png"} <= figures
    assert any(name.startswith("timeline_") for name in figures)
    capsys.readouterr()
    monkeypatch.setattr(cells, "profile", lambda *a, **k: pytest.fail("cached cell recomputed"))
    figure = tmp_path / "reports" / "figures" / "macs_vs_memory_x4.png"
    drawn = figure.stat().st_mtime_ns
    assert main(argv) == 0  # nothing changed: up to date, nothing redrawn
    assert "is up to date" in capsys.readouterr().out and figure.stat().st_mtime_ns == drawn
    (tmp_path / "reports" / "efficiency" / "ntire2022.md").write_text("edited by hand")
    assert main(argv) == 0  # an output changed: rebuilt, every cell read from the store
    assert "is up to date" not in capsys.readouterr().out
    assert (tmp_path / "reports" / "efficiency" / "ntire2022.md").read_text() == table
    assert main([*argv, "--presets", "ntire2022", "ntire2024"]) == 0  # other options: rebuilt (new cells allowed)


def test_report_adds_the_users_models(tmp_path: Path, capsys, monkeypatch):
    import memsr_bench.reporting.report as report

    monkeypatch.setattr(report, "_zoo_models", lambda spec: ["fsrcnn"])
    monkeypatch.setattr(report, "TIMELINE_MODELS", ())
    monkeypatch.setattr(report, "SIZE_MODELS", ("fsrcnn",))
    monkeypatch.setenv("MEMSR_SHARED", str(tmp_path / "no-shared"))
    model = tmp_path / "net.py"
    model.write_text(
        "from torch import nn\n\n\ndef build(scale=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))\n"
    )
    argv = ["report", "--out", str(tmp_path / "r"), "--presets", "ntire2022", "--models", f"{model}:build"]
    assert main(argv) == 0
    table = (tmp_path / "r" / "efficiency" / "ntire2022.md").read_text()
    assert "| ★ net:build | 4 | 256x256 | 1.3 |" in table and "| fsrcnn | 4 |" in table
    assert f"net:build x4: file {model}; input RGB 0..1 (default" in table


def test_report_index_is_the_same_whether_quality_was_rebuilt_or_found(tmp_path):
    """The main job without data keeps the quality tables an earlier run wrote, listed where and as that run
    listed them: running it leaves a committed index unchanged."""
    from memsr_bench.reporting.report import _existing_sections, write_index

    for name in ("report_quality", "bicubic", "zoo_checkpoints"):
        (tmp_path / "quality").mkdir(exist_ok=True)
        (tmp_path / "quality" / f"{name}.md").write_text("table\n")
    indexes = []
    for quality in (["- [quality/report_quality.md](quality/report_quality.md)"], []):  # rebuilt, or not
        sections = {"Efficiency (no data needed)": ["- [efficiency/x.md](efficiency/x.md)"], "Quality": quality}
        sections["Figures"] = ["![f](figures/f.png)"]
        _existing_sections(tmp_path, sections)
        indexes.append(write_index(tmp_path, sections).read_text())
    assert indexes[0] == indexes[1]
    assert indexes[0].index("## Quality") < indexes[0].index("## Figures")
    assert indexes[0].count("quality/") == 2 * 3
