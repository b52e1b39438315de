"""Real forward passes that would not fit are refused in one line before anything is allocated."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from memsr_bench.cli import main
from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.profile import profile
from memsr_bench.model import load_model
from memsr_bench.results import ResultsStore
from memsr_bench.units import parse_bytes


def test_parse_bytes():
    assert parse_bytes("700MiB", "--max-memory") == 700 * 2**20
    assert parse_bytes("1GiB", "x") == parse_bytes("1G", "x") == 2**30
    assert parse_bytes("1.5G", "x") == int(1.5 * 2**30) and parse_bytes("2GB", "x") == 2 * 10**9
    assert parse_bytes("4096", "x") == 4096
    for bad in ("", "12XB", "-1G", "0", "G"):
        with pytest.raises(MemsrInputError, match="--max-memory|x"):
            parse_bytes(bad, "--max-memory")


def test_counts_and_predicted_peak_at_any_size_and_a_real_pass_refused_in_one_line(capsys):
    model = load_model("imdn", 4).module
    huge = (1, 3, 100_000, 100_000)
    predicted = profile(model, huge)  # every counter and the predicted peak: fake tensors only
    assert predicted["peak_memory_bytes_predicted"] > 30 * 2**40
    small = profile(model, (1, 3, 100, 100), quantities=["macs"])
    assert predicted["macs"] / small["macs"] == pytest.approx(10**6, rel=1e-6)  # MACs grow with the pixels
    assert main(["profile", "imdn", "--scale", "4", "--input", "100000x100000", "--counts-only", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ntire2022_flops"] == predicted["ntire2022_flops"] and out["fvcore_flops"] > 7 * 10**15
    assert main(["profile", "imdn", "--scale", "4", "--input", "100000x100000"]) == 2  # with runtime: a real pass
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-memory: a real forward pass at input 1x3x100000x100000 needs about" in err
    assert "TiB (predicted peak)" in err and "refused before allocating" in err


def test_a_real_pass_over_the_limit_is_refused_before_it_runs(tmp_path, capsys, monkeypatch):
    import memsr_bench.measure.runtime as runtime

    monkeypatch.setattr(runtime, "measure_runtime", lambda *a, **k: pytest.fail("the pass ran"))
    model = load_model("fsrcnn", 2).module
    with pytest.raises(MemsrInputError, match=r"a real forward pass at input 1x1x64x64 .* \(--max-memory\)"):
        profile(model, (1, 1, 64, 64), quantities=["runtime_ms"], max_memory=2**10)
    assert main(["profile", "fsrcnn", "--scale", "2", "--input", "64x64", "--max-memory", "1KiB"]) == 2
    assert "more than 1.00 KiB (--max-memory)" in capsys.readouterr().err


def test_eval_refuses_before_the_first_image(tmp_path, capsys):
    folder = tmp_path / "Set5"
    folder.mkdir()
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(folder / "a.png")
    store = tmp_path / "s.sqlite"
    argv = ["eval", "fsrcnn", "--scale", "2", "--data", str(folder), "--random-weights", "--store", str(store)]
    assert main([*argv, "--max-memory", "100KiB"]) == 2
    err = capsys.readouterr().err
    assert "upscaling Set5 at input 1x1x32x24 needs about" in err and err.count("\n") == 1
    assert len(ResultsStore(store)) == 0  # nothing measured, nothing stored
    assert main(argv) == 0  # the default limit (available memory) lets it run


def test_profile_max_memory_answers_the_largest_input(capsys):
    from memsr_bench.measure.memory_model import predict_peak_memory

    argv = ["profile", "fmen-s-deploy", "--scale", "4", "--input", "90x160", "--counts-only", "--max-memory", "256MiB"]
    assert main([*argv, "--json"]) == 0
    largest = json.loads(capsys.readouterr().out)["details"]["largest_input_within_max_memory"]
    h, w = largest["lr"]
    assert largest["aspect"] == [9, 16] and largest["hr"] == [4 * h, 4 * w] and h > 90
    model = load_model("fmen-s-deploy", 4).module
    assert predict_peak_memory(model, (1, 3, h, w)).peak_bytes <= 256 * 2**20
    bigger = (h + 1, round((h + 1) * 16 / 9))
    assert predict_peak_memory(model, (1, 3, *bigger)).peak_bytes > 256 * 2**20
    assert main(argv) == 0 and f"LR {h}x{w}" in capsys.readouterr().out


def test_profile_max_memory_answers_the_largest_input_for_the_whole_process(capsys):
    from memsr_bench.tiling import tile_budget

    argv = ["profile", "fmen-s-deploy", "--scale", "4", "--input", "90x160", "--counts-only", "--max-memory", "1GiB"]
    assert main([*argv, "--json"]) == 0
    largest = json.loads(capsys.readouterr().out)["details"]["largest_input_within_max_memory"]
    h, w = largest["lr_whole_process_cpu"]
    assert w * 9 == h * 16 and 90 < h < largest["lr"][0]  # below the tensor peak's answer
    loaded = load_model("fmen-s-deploy", 4)
    # the cost of one tile as large as the image: whole-image inference as `upscale` accounts it
    assert tile_budget(loaded, (h, w), max(h, w), stream=True) <= 2**30
    assert tile_budget(loaded, (h + 9, w + 16), max(h + 9, w + 16), stream=True) > 2**30
