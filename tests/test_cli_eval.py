"""`memsr-bench eval`: JSON output, human output, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memsr_bench.cli import main
from memsr_bench.data.image_io import write_image_rgb
from tests.conftest import require_shared
from tests.test_image_io_datasets import make_benchmark_set


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_bicubic_json(tmp_path: Path, capsys):
    root = make_benchmark_set(tmp_path / "Tiny")
    code, out, _ = run_cli(capsys, "eval", "bicubic", "--scale", "2", "--data", str(root), "--json")
    assert code == 0
    result = json.loads(out)
    assert {"model", "scale", "dataset", "n_images", "psnr", "ssim", "conventions", "images"} <= set(result)
    assert result["model"] == "bicubic" and result["scale"] == 2 and result["dataset"] == "Tiny"
    assert result["n_images"] == 2 == len(result["images"])
    assert {"name", "psnr", "ssim"} == set(result["images"][0])
    conventions = result["conventions"]
    assert conventions["y"] == "BT.601 float" and conventions["crop_border"] == 2
    assert conventions["border"] == "symmetric" and "LR_bicubic/X2" in conventions["lr_source"]
    assert result["psnr"] == pytest.approx(sum(i["psnr"] for i in result["images"]) / 2)


def test_eval_options_change_conventions(tmp_path: Path, capsys):
    root = make_benchmark_set(tmp_path / "Tiny")
    base = ["eval", "bicubic", "--scale", "2", "--data", str(root), "--json"]
    _, out_float, _ = run_cli(capsys, *base)
    _, out_rounded, _ = run_cli(capsys, *base, "--y-variant", "rounded", "--lr-source", "generate")
    rounded = json.loads(out_rounded)
    assert rounded["conventions"]["y"] == "BT.601 rounded"
    assert rounded["conventions"]["lr_source"].startswith("generated")
    assert rounded["psnr"] != json.loads(out_float)["psnr"]


def test_eval_human_output(tmp_path: Path, capsys):
    root = make_benchmark_set(tmp_path / "Tiny")
    code, out, _ = run_cli(capsys, "eval", "bicubic", "--scale", "2", "--data", str(root))
    assert code == 0 and "mean PSNR" in out and "Y (float, BT.601)" in out


@pytest.mark.parametrize(
    ("setup", "argv_tail", "message"),
    [
        (lambda root: None, ["--data", "{missing}"], "test-set folder not found"),
        (lambda root: (root / "E").mkdir(), ["--data", "{root}/E"], "no PNG or BMP"),
        (
            lambda root: write_image_rgb(
                root / "T" / "LR_bicubic" / "X2" / "ax2.png", __import__("numpy").zeros((3, 3, 3), "uint8")
            ),
            ["--data", "{root}/T"],
            "does not match HR",
        ),
        (
            lambda root: (
                (root / "B" / "HR").mkdir(parents=True) or (root / "B" / "HR" / "z.png").write_bytes(b"junk")
            ),
            ["--data", "{root}/B"],
            "cannot read image",
        ),
    ],
)
def test_eval_errors_are_one_line_exit_2(tmp_path: Path, capsys, setup, argv_tail, message):
    make_benchmark_set(tmp_path / "T")
    setup(tmp_path)
    tail = [a.format(root=tmp_path, missing=tmp_path / "missing") for a in argv_tail]
    code, out, err = run_cli(capsys, "eval", "bicubic", "--scale", "2", *tail)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_model_is_exit_2(tmp_path: Path, capsys):
    root = make_benchmark_set(tmp_path / "Tiny")
    code, _, err = run_cli(capsys, "eval", "no-such-net", "--scale", "2", "--data", str(root))
    assert code == 2 and "unknown model" in err


def test_python_dash_m_is_the_same_command(tmp_path: Path):
    root = make_benchmark_set(tmp_path / "Tiny")
    args = ["eval", "bicubic", "--scale", "2", "--data", str(root), "--json"]
    via_module = subprocess.run([sys.executable, "-m", "memsr_bench", *args], capture_output=True, text=True)
    via_main = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from memsr_bench.cli import main; sys.exit(main(sys.argv[1:]))",
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert via_module.returncode == 0 == via_main.returncode
    assert json.loads(via_module.stdout) == json.loads(via_main.stdout)
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsr_bench",
            "eval",
            "bicubic",
            "--scale",
            "2",
            "--data",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0


def test_bicubic_set5_x2_matches_documented_value(capsys):
    """datasets README: bicubic Set5 x2 is 33.67 dB with float Y and 33.64 dB with rounded Y."""
    set5 = require_shared("datasets", "Set5")
    _, out, _ = run_cli(capsys, "eval", "bicubic", "--scale", "2", "--data", str(set5), "--json")
    _, out_r, _ = run_cli(
        capsys, "eval", "bicubic", "--scale", "2", "--data", str(set5), "--json", "--y-variant", "rounded"
    )
    assert round(json.loads(out)["psnr"], 2) == 33.67
    assert round(json.loads(out_r)["psnr"], 2) == 33.64


def test_sweep_quality_writes_and_rerenders(tmp_path: Path, capsys):
    root = make_benchmark_set(tmp_path / "sets" / "Tiny")
    out = tmp_path / "out" / "bicubic"
    argv = ["sweep-quality", "--models", "bicubic", "--scales", "2", "--data-root", str(root.parent)]
    assert main([*argv, "--sets", "Tiny", "--out", str(out), "--reference", str(tmp_path / "none")]) == 2
    assert main([*argv, "--sets", "Tiny", "--out", str(out)]) == 0
    first = out.with_suffix(".md").read_text()
    assert "| bicubic | 2 | Tiny |" in first and out.with_suffix(".csv").is_file()
    assert main(["sweep-quality", "--from-csv", str(out.with_suffix(".csv")), "--out", str(out)]) == 0
    assert out.with_suffix(".md").read_text() == first
    assert main(["sweep-quality", "--from-csv", str(tmp_path / "missing.csv")]) == 2
    capsys.readouterr()
