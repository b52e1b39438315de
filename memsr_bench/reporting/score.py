"""The NTIRE Efficient SR challenge score of any models, against the year's baseline measured in the same run.

Each year's rule (:data:`RULES`): ``Score_X = exp(2 * X / X_baseline)`` for X in runtime, FLOPs
(``fvcore_flops`` at LR 256x256) and params, and ``Score_Final`` a weighted sum of the three (lower is
better; the baseline scores e^2 = 7.389 on each). Runtime is the challenge's protocol (no warm-up, the
mean of the passes) on this machine's device, the baseline timed in the same run, so only the ratio
matters. A model qualifies only with PSNR (RGB, 4-pixel crop) >= 26.90 dB on DIV2K_LSDIR_valid and
>= 26.99 dB on DIV2K_LSDIR_test: checked where those sets are under ``--data-root``, else marked
"not checked".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.presets import get_preset
from memsr_bench.measure.profile import RuntimeOptions, input_channels
from memsr_bench.reporting.efficiency import ModelChoice, choose_models
from memsr_bench.reporting.render import Column, Table
from memsr_bench.results.cells import device_label, stored_counts, stored_runtime
from memsr_bench.results.store import ResultsStore

__all__ = ["RULES", "ScoreRule", "build_score_table"]


@dataclass(frozen=True)
class ScoreRule:
    year: int
    baseline: str  # zoo name
    weights: tuple[float, float, float]  # runtime, FLOPs, params
    source: str  # where the weights are written
    thresholds: tuple[tuple[str, float], ...] = (("DIV2K_LSDIR_valid", 26.90), ("DIV2K_LSDIR_test", 26.99))


RULES: dict[int, ScoreRule] = {
    2024: ScoreRule(2024, "rlfn-ntire", (0.7, 0.15, 0.15), "Amazingren/NTIRE2024_ESR @6404fa4 README, Step 4"),
    2025: ScoreRule(2025, "efdn", (0.7, 0.15, 0.15), "Amazingren/NTIRE2025_ESR @b69fb66 README, Step 4"),
    2026: ScoreRule(
        2026, "span", (0.8, 0.1, 0.1), "Amazingren/NTIRE2026_ESR README (../shared/reference/methods.md §4)"
    ),
}


def _missing_sets(data_root: Path | None, rule: ScoreRule) -> list[str]:
    return [name for name, _ in rule.thresholds if data_root is None or not (data_root / name).is_dir()]


def build_score_table(
    year: int,
    store: ResultsStore | None,
    *,
    models: ModelChoice | None = None,
    data_root: Path | None = None,
    device: str = "cpu",
    repeats: int = 5,
    max_memory: int | None = None,
    log: Callable[[str], None] = print,
) -> Table:
    """Rank ``models`` (the zoo's by default) and the year's baseline by the year's score."""
    if year not in RULES:
        raise MemsrInputError("--year", f"no score rule for {year}; known: {', '.join(map(str, RULES))}")
    rule = RULES[year]
    preset = get_preset(f"ntire{year}")
    choice = models or ModelChoice()
    refs = tuple(dict.fromkeys((rule.baseline, *(choice.refs or ()))))
    loaded, highlighted = choose_models(replace(choice, refs=refs), [4], log)
    timing = RuntimeOptions(warmup=0, repeats=repeats, protocol="ntire2022")
    rows = []
    for model in loaded:  # every runtime re-measured now: the ratios compare timings of one run
        shape = preset.input_shape(4, channels=input_channels(model.module))
        counts = stored_counts(store, model, shape, max_memory=max_memory)
        runtime = stored_runtime(store, model, shape, device, timing, force=True, max_memory=max_memory)
        rows.append(
            {
                "model": model.name,
                "highlight": model.name in highlighted,
                "params": counts["params"],
                "fvcore_flops": counts["fvcore_flops"],
                "runtime_ms": runtime["runtime_ms"],
                "runtime_iqr_ms": runtime["runtime_iqr_ms"],
            }
        )
    data = pd.DataFrame(rows)
    base = data[data["model"] == rule.baseline].iloc[0]
    for quantity, column in (
        ("runtime_ms", "score_runtime"),
        ("fvcore_flops", "score_flops"),
        ("params", "score_params"),
    ):
        data[column] = [math.exp(2 * v / base[quantity]) for v in data[quantity]]
    w_runtime, w_flops, w_params = rule.weights
    data["score_final"] = (
        w_runtime * data["score_runtime"] + w_flops * data["score_flops"] + w_params * data["score_params"]
    )
    missing = _missing_sets(data_root, rule)
    if not missing:  # the challenge's validation sets: their PSNR check is not implemented yet
        raise MemsrInputError("--data-root", "the DIV2K_LSDIR PSNR qualification is not implemented yet")
    data["qualification"] = "not checked"
    data = data.sort_values("score_final", kind="stable").reset_index(drop=True)
    data.insert(0, "rank", range(1, len(data) + 1))
    columns = [
        Column("rank", spec="d"),
        Column("model"),
        Column("params", "params (M)", ",.3f", 1e6),
        Column("fvcore_flops", "FLOPs [fvcore_flops] (G)", ",.2f", 1e9),
        Column("runtime_ms", "runtime (ms)", ",.1f"),
        Column("runtime_iqr_ms", "IQR (ms)", ",.1f"),
        Column("score_runtime", "Score_Runtime", ".4f"),
        Column("score_flops", "Score_FLOPs", ".4f"),
        Column("score_params", "Score_Params", ".4f"),
        Column("score_final", "Score_Final", ".4f"),
        Column("qualification"),
    ]
    notes = [
        f"NTIRE {year} ESR score: Score_X = exp(2·X / X_{rule.baseline}) for runtime, FLOPs, params; Score_Final = "
        f"{w_runtime}·Score_Runtime + {w_flops}·Score_FLOPs + {w_params}·Score_Params, lower is better "
        f"(weights: {rule.source}).",
        f"FLOPs = `fvcore_flops` at LR 256x256 ({preset.convention}); params = sum of parameters.",
        f"Runtime: {timing.convention()}, float32, random weights, on {device_label(device)}; every model, "
        f"the baseline {rule.baseline} included, timed in this run. Not the challenge's GPU figures: only the "
        "ratios to the baseline enter the score.",
        "Qualification: PSNR (RGB, crop 4) >= "
        + " and ".join(f"{threshold:.2f} dB on {name}" for name, threshold in rule.thresholds)
        + f"; not checked: {', '.join(missing)} not under --data-root.",
    ]
    return Table(name=f"ntire{year}-score", title=f"NTIRE {year} ESR score", data=data, columns=columns, notes=notes)
