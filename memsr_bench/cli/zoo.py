"""``memsr-bench zoo``: the registered models (zoo and entry points), scales, parameter counts, checkpoints."""

from __future__ import annotations

import argparse

from memsr_bench.cli import options


def zoo_rows() -> list[dict]:
    """One row per zoo model x scale, then one per entry-point model (with the package it comes from)."""
    from memsr_bench.model import entry_point_models, resolve_model
    from memsr_bench.reporting.report import zoo_frame

    frame = zoo_frame().astype(object)
    rows = [{**row, "origin": "zoo"} for row in frame.where(frame.notna(), None).to_dict("records")]
    for name in entry_point_models():
        entry = resolve_model(name)
        scales = list(entry.spec.scales) or None
        rows.append(
            {
                "model": name,
                "scale": scales,
                "params": None,
                "published_params": None,
                "input": entry.describe_input(),
                "checkpoint": None,
                "paper": entry.spec.paper,
                "origin": entry.origin,
            }
        )
    return rows


def _cmd_zoo(args: argparse.Namespace) -> int:
    rows = zoo_rows()
    if args.json:
        options.print_json(rows)
        return 0
    print(f"{'model':<18} {'scale':>5} {'params':>11} {'published':>11}  {'input':<28} checkpoint / origin")
    for row in rows:
        published = f"{int(row['published_params']):,}" if row["published_params"] else "-"
        params = f"{row['params']:,}" if row["params"] is not None else "-"
        scale = row["scale"] if isinstance(row["scale"], int) else "/".join(map(str, row["scale"] or ["any"]))
        where = (row["checkpoint"] or "-") if row["origin"] == "zoo" else row["origin"]
        print(f"{row['model']:<18} {scale:>5} {params:>11} {published:>11}  {row['input']:<28} {where}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "zoo",
        help="list the zoo's and installed packages' models, scales and parameter counts",
        description="The zoo's models (every scale, parameter count, published count, public checkpoint) and the "
        "models installed packages register under the entry-point group memsr_bench.models.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(run=_cmd_zoo)
