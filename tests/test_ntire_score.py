"""`memsr-bench table ntire-score --year Y`: the challenge score against the year's baseline, timed in one run."""

from __future__ import annotations

import dataclasses
import math

import pytest

from memsr_bench.cli import main
from memsr_bench.measure import presets
from memsr_bench.reporting.efficiency import ModelChoice
from memsr_bench.reporting.score import RULES, build_score_table
from memsr_bench.results import ResultsStore


@pytest.fixture
def small_input(monkeypatch):
    for year in (2024, 2025, 2026):
        name = f"ntire{year}"
        monkeypatch.setitem(presets.PRESETS, name, dataclasses.replace(presets.PRESETS[name], lr_size=(24, 24)))


def test_score_against_the_baseline(small_input, tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    table = build_score_table(2026, store, models=ModelChoice(refs=("fsrcnn",), highlight=("fsrcnn",)), repeats=1)
    rows = table.data.set_index("model")
    span, fsrcnn = rows.loc["span"], rows.loc["fsrcnn"]
    for column in ("score_runtime", "score_flops", "score_params", "score_final"):
        assert span[column] == pytest.approx(math.exp(2))  # the baseline scores e^2 on each
    assert fsrcnn["score_params"] == pytest.approx(math.exp(2 * 12_809 / 150_688))
    assert fsrcnn["score_final"] == pytest.approx(
        0.8 * fsrcnn["score_runtime"] + 0.1 * fsrcnn["score_flops"] + 0.1 * fsrcnn["score_params"]
    )
    assert list(table.data["rank"]) == [1, 2] and list(table.data["score_final"]) == sorted(table.data["score_final"])
    md = table.to_markdown()
    assert "★ fsrcnn" in md and "not checked: DIV2K_LSDIR_valid, DIV2K_LSDIR_test" in md
    assert RULES[2024].weights == RULES[2025].weights == (0.7, 0.15, 0.15) and RULES[2026].weights == (0.8, 0.1, 0.1)


def test_cli_score_needs_a_year(tmp_path, capsys):
    assert main(["table", "ntire-score", "--store", str(tmp_path / "s.sqlite")]) == 2
    assert "--year: required for ntire-score" in capsys.readouterr().err
