"""``memsr-bench table PRESET``: a published comparison table measured here, for the zoo or your models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memsr_bench.cli import options
from memsr_bench.errors import MemsrInputError
from memsr_bench.reporting.render import FORMATS
from memsr_bench.reporting.tables import CPU_MAX_GMACS, CPU_TIMING, CUDA_TIMING, PRESETS

SCORE = "ntire-score"


def existing_dir(value: str | None, option: str) -> Path | None:
    if value is None:
        return None
    if not Path(value).is_dir():
        raise MemsrInputError(option, f"folder not found: {value}")
    return Path(value)


def _score_table(args: argparse.Namespace, store, data_root):
    from memsr_bench.reporting.score import build_score_table

    if args.year is None:
        raise MemsrInputError("--year", "required for ntire-score (2024, 2025 or 2026)")
    return build_score_table(
        args.year,
        store,
        models=options.model_choice(args),
        data_root=data_root,
        device=args.device,
        repeats=args.repeats or 5,
        max_memory=args.max_memory,
        log=lambda msg: print(msg, file=sys.stderr),
    )


def _build_table(args: argparse.Namespace, store, data_root, weights, reference_dir, runtime, cluster):
    from memsr_bench.reporting.tables import build_table

    return build_table(
        args.preset,
        store,
        models=options.model_choice(args),
        data_root=data_root,
        weights=weights,
        reference_dir=reference_dir,
        device=args.device,
        runtime=runtime,
        max_gmacs=args.max_gmacs,
        force=args.force,
        max_memory=args.max_memory,
        log=lambda msg: print(msg, file=sys.stderr),
        cluster=cluster,
    )


def _cmd_table(args: argparse.Namespace) -> int:
    from memsr_bench.measure.profile import RuntimeOptions
    from memsr_bench.reporting.published import default_reference_dir
    from memsr_bench.results import ResultsStore

    data_root = existing_dir(args.data_root, "--data-root")
    weights = existing_dir(args.weights, "--weights")
    reference_dir = existing_dir(args.reference, "--reference") if args.reference else default_reference_dir()
    store = ResultsStore(args.store)
    if args.preset == SCORE:
        table = _score_table(args, store, data_root)
    else:
        default = CUDA_TIMING if args.device.startswith("cuda") else CPU_TIMING
        runtime = RuntimeOptions(
            warmup=default.warmup if args.warmup is None else args.warmup,
            repeats=default.repeats if args.repeats is None else args.repeats,
        )
        with options.cluster_client(args) as cluster:
            table = _build_table(args, store, data_root, weights, reference_dir, runtime, cluster)
    if args.out:
        for path in table.write(Path(args.out)):
            print(f"wrote {path}", file=sys.stderr)
    print(table.render(args.format))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "table",
        help="a published comparison table (fmen-table3, fmen-table4, memsr-table) measured here, any models",
        description="Build a published comparison table from measurements (cached in the results store, keyed by "
        "each model's architecture fingerprint), with the published figure and the difference beside every "
        "measured one. Rows: the zoo, or --models mixing zoo names and your own references. PSNR/SSIM: measured "
        "with the public checkpoints in --weights, or read from the rows `memsr-bench eval` stored for the same "
        "architecture. Missing data (no weights, no data set, a cell too heavy for the CPU) stays missing.",
    )
    p.add_argument(
        "preset",
        metavar="PRESET",
        choices=[*PRESETS, SCORE],
        help=f"one of: {', '.join(PRESETS)}; or {SCORE} --year Y (the NTIRE ESR score against the year's baseline)",
    )
    p.add_argument("--year", type=int, choices=[2024, 2025, 2026], help="challenge year of ntire-score")
    options.add_models(p, "default: every zoo model (--config/--deploy/--input-range/--channels apply to yours)")
    p.add_argument("--data-root", help="folder holding the test sets (e.g. ../shared/datasets); PSNR/SSIM need it")
    p.add_argument("--weights", help="weights folder with public checkpoints (e.g. ../shared/weights)")
    p.add_argument("--format", default="md", choices=FORMATS, help="printed format: md, csv or latex (default md)")
    p.add_argument("--out", help="also write OUT.md, OUT.csv and OUT.tex (e.g. reports/tables/fmen-table3)")
    p.add_argument("--reference", help="folder with the published CSVs (default ../shared/reference)")
    options.add_store(p)
    options.add_cluster(p)
    options.add_device(p, "runtime, memory and PSNR/SSIM")
    p.add_argument("--warmup", type=options.non_negative_int, help="untimed passes (default 1 on CPU, 10 on CUDA)")
    p.add_argument("--repeats", type=options.positive_int, help="timed passes (default 3 on CPU, 100 on CUDA)")
    p.add_argument(
        "--max-gmacs",
        type=options.positive_float,
        help=f"skip runtime/memory above this many G MACs per pass (default {CPU_MAX_GMACS:.0f} on CPU, none on CUDA)",
    )
    options.add_max_memory(p)
    p.set_defaults(run=_cmd_table)
