"""``memsr-bench report``: regenerate reports/ (efficiency always; quality with data and weights)."""

from __future__ import annotations

import argparse
from pathlib import Path

from memsr_bench.cli import options
from memsr_bench.cli.table import existing_dir
from memsr_bench.reporting.report import EFFICIENCY_TABLES


def _cmd_report(args: argparse.Namespace) -> int:
    from memsr_bench.reporting.published import default_reference_dir
    from memsr_bench.reporting.report import build_report
    from memsr_bench.results import ResultsStore

    data_root = existing_dir(args.data_root, "--data-root")
    weights = existing_dir(args.weights, "--weights")
    store = ResultsStore(args.store)
    reference_dir = default_reference_dir()
    print(f"results store: {store.location}; published tables: {reference_dir or 'not found (../shared absent)'}")
    with options.cluster_client(args) as cluster:
        index = build_report(
            Path(args.out),
            store,
            args.presets,
            reference_dir,
            data_root=data_root,
            weights=weights,
            sets=args.sets,
            force=args.force,
            extra=options.model_choice(args) if args.models else None,
            max_memory=args.max_memory,
            cluster=cluster,
        )
    print(f"wrote {index}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="regenerate every table under reports/ (efficiency always; quality with data and weights)",
        description="Regenerate reports/: the zoo's parameter counts, efficiency tables at every preset "
        "(no data needed), and PSNR/SSIM of every public checkpoint when --data-root and --weights are given. "
        "Every cell is cached in the results store, so a rerun only reads it (--force recomputes).",
    )
    p.add_argument("--out", default="reports", help="output folder (default reports/)")
    options.add_models(p, "your models, added to the zoo's in the efficiency tables and figures (starred)")
    p.add_argument("--data-root", help="test sets folder, e.g. ../shared/datasets")
    p.add_argument("--weights", help="weights folder, e.g. ../shared/weights")
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    p.add_argument("--presets", nargs="+", default=list(EFFICIENCY_TABLES), choices=list(EFFICIENCY_TABLES))
    options.add_store(p)
    options.add_cluster(p)
    options.add_max_memory(p)
    p.set_defaults(run=_cmd_report)
