"""The ``memsr-bench`` command line (also ``python -m memsr_bench``).

Every sub-command lives in a small ``_cmd_*`` function; bad input raises MemsrInputError, which
``main`` prints as one line on stderr with exit code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from memsr_bench.color import Y_VARIANTS
from memsr_bench.data.datasets import LR_SOURCES, discover_test_set
from memsr_bench.data.matlab_resize import BORDERS
from memsr_bench.errors import MemsrInputError
from memsr_bench.metrics import CHANNELS
from memsr_bench.upscalers import make_upscaler, sweep_upscaler_factory


def _cmd_eval(args: argparse.Namespace) -> int:
    from memsr_bench.evaluate import evaluate

    test_set = discover_test_set(args.data, args.scale, lr_source=args.lr_source, border=args.border)
    upscaler = make_upscaler(args.model, args.scale, args.weights, args.device)
    result = evaluate(upscaler, test_set, channel=args.channel, y_variant=args.y_variant, crop_border=args.crop)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(f"{result.model} x{result.scale} on {result.dataset} ({len(result.images)} images)")
    for image in result.images:
        print(f"  {image.name:<20} PSNR {image.psnr:8.4f} dB   SSIM {image.ssim:.4f}")
    print(f"mean PSNR {result.psnr:.4f} dB   SSIM {result.ssim:.4f}")
    print(f"conventions: {result.conventions['summary']}; LR {result.conventions['lr_source']}")
    return 0


def _cmd_sweep_quality(args: argparse.Namespace) -> int:
    from memsr_bench.published import default_reference_dir
    from memsr_bench.quality_sweep import sweep_quality, to_markdown, with_published

    if args.from_csv:  # re-render a table measured before, e.g. after the published CSVs changed
        import pandas as pd

        if not Path(args.from_csv).is_file():
            raise MemsrInputError(args.from_csv, "CSV of a previous sweep not found")
        measured, skipped = pd.read_csv(args.from_csv), []
    else:
        if not args.data_root:
            raise MemsrInputError("--data-root", "required (or --from-csv to re-render a previous sweep)")
        paths = [Path(args.data_root) / name for name in args.sets]
        measured, skipped = sweep_quality(
            sweep_upscaler_factory(args.weights, args.device),
            args.models,
            args.scales,
            paths,
            y_variants=args.y_variants,
            lr_source=args.lr_source,
            border=args.border,
        )
    reference_dir = Path(args.reference) if args.reference else default_reference_dir()
    notes = [
        "Measured here: HR modcropped to the scale, SR rounded to uint8, crop = scale, BT.601 Y "
        "(float = unrounded, rounded = MATLAB uint8), PSNR peak 255, SSIM as ssim_index.m.",
        f"LR inputs: {args.border} border, lr-source {args.lr_source} "
        "(files LR_bicubic/X<s> when present, else MATLAB-exact imresize).",
        f"Published: {args.source} "
        f"({os.path.relpath(reference_dir / 'published_quality.csv') if reference_dir else 'not found'}); "
        "diff = measured - published.",
    ]
    notes += [f"Skipped {s.model} x{s.scale}: {s.reason}." for s in skipped]
    extra = [s for s in args.extra_sources if s != args.source]
    table = with_published(measured, reference_dir, args.source, extra) if len(measured) else measured
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not args.from_csv:
            measured.to_csv(out.with_suffix(".csv"), index=False)
        out.with_suffix(".md").write_text(to_markdown(table, args.title, notes))
    print(to_markdown(table, args.title, notes))
    return 0


def _format_bytes(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB ({n:,} B)"


def _cmd_profile(args: argparse.Namespace) -> int:
    import zoo
    from memsr_bench.measure.counters import input_channels
    from memsr_bench.profile import lr_size_for, parse_size, profile_model

    if args.model not in zoo.names():
        raise MemsrInputError(args.model, f"unknown model; choose one of: {', '.join(zoo.names())}")
    spec = zoo.get_spec(args.model)
    scale = spec.scales[0] if args.scale is None else args.scale
    input_size = parse_size(args.input, "--input") if args.input else None
    output_size = parse_size(args.output, "--output") if args.output else None
    lr_size = lr_size_for(scale, input_size, output_size, args.preset)
    model = zoo.create(args.model, scale=scale, checkpoint=args.weights)
    result = profile_model(
        model,
        args.model,
        scale,
        lr_size,
        args.preset,
        args.device,
        input_channels(model),
        warmup=args.warmup,
        repeats=args.repeats,
        protocol=args.protocol,
        channels_last=args.channels_last,
        threads=args.threads,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    out_h, out_w = result["output"]
    print(f"{args.model} x{scale}, LR input {lr_size[0]}x{lr_size[1]} (output {out_h}x{out_w})")
    print(
        f"  params             {result['params']:>16,}  "
        f"(trainable {result['trainable_params']:,}, buffers {result['buffers']:,})"
    )
    label = f"{result['macs_label']} ({args.preset})" if args.preset else "MACs"
    print(f"  {label:<18} {result['macs']:>16,}  ({result['macs'] / 1e9:.2f} G)")
    print(f"  FLOPs (all ops)    {result['flops']:>16,}  ({result['flops'] / 1e9:.2f} G)")
    print(f"  activations        {result['activations']:>16,}  ({result['activations'] / 1e6:.2f} M)")
    print(f"  convs              {result['convs']:>16,}")
    print(
        f"  runtime            {result['runtime_ms']:>13.2f} ms  "
        f"(IQR {result['runtime_iqr_ms']:.2f} ms, {result['device']}, {result['threads']} threads)"
    )
    print(f"  peak measured      {_format_bytes(result['peak_bytes_measured'])}")
    print(f"  peak predicted     {_format_bytes(result['peak_bytes_predicted'])} at {result['peak_node']}")
    if result["unsupported_ops"]:
        print(f"  uncounted ops: {result['unsupported_ops']}")
    for key, text in result["conventions"].items():
        print(f"  [{key}] {text}")
    return 0


def _zoo_rows() -> list[dict]:
    import zoo

    rows = []
    for name in zoo.names():
        spec = zoo.get_spec(name)
        for scale in spec.scales:
            model = spec.build(scale=scale)
            rows.append(
                {
                    "model": name,
                    "scale": scale,
                    "params": sum(p.numel() for p in model.parameters()),
                    "published_params": spec.published_params.get(scale),
                    "input_range": spec.input_range,
                    "channels": spec.channels,
                    "checkpoint": (ckpt.filename if (ckpt := spec.checkpoint_for(scale)) else None),
                    "paper": spec.paper,
                }
            )
    return rows


def _cmd_report(args: argparse.Namespace) -> int:
    import pandas as pd

    from memsr_bench.plots import write_report_figures
    from memsr_bench.published import default_reference_dir
    from memsr_bench.quality_sweep import sweep_quality, to_markdown, with_published
    from memsr_bench.report import write_efficiency_reports, write_index
    from memsr_bench.results import ResultsStore, checkpoint_id
    from memsr_bench.tables import markdown_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(args.store)
    reference_dir = default_reference_dir()
    print(f"results store: {store.path}; published tables: {reference_dir or 'not found (../shared absent)'}")
    sections: dict[str, list[str]] = {}

    zoo_table = pd.DataFrame(
        [
            {
                "model": row["model"],
                "scale": row["scale"],
                "params": f"{row['params']:,}",
                "published": f"{row['published_params']:,}" if row["published_params"] else None,
                "input": f"{row['channels'].upper()} 0..{int(row['input_range'])}",
                "checkpoint": row["checkpoint"],
                "paper": row["paper"],
            }
            for row in _zoo_rows()
        ]
    )
    (out / "zoo.md").write_text(
        "# Zoo: parameter counts\n\n`sum(p.numel() for p in model.parameters())` of each zoo module "
        "(buffers such as BatchNorm statistics and EDSR's fixed mean shift excluded), beside the paper's figure.\n\n"
        + markdown_table(zoo_table)
        + "\n"
    )
    sections["Zoo"] = ["- [zoo.md](zoo.md): models, scales, parameter counts, checkpoints"]

    written = write_efficiency_reports(out, args.presets, store, reference_dir, force=args.force)
    sections["Efficiency (no data needed)"] = [
        f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in written if p.suffix == ".md"
    ]

    skipped_quality = []
    if args.data_root and args.weights:
        import zoo

        models = [n for n in zoo.names() if any(zoo.get_spec(n).checkpoint_for(s) for s in zoo.get_spec(n).scales)]
        sets = [Path(args.data_root) / name for name in args.sets]
        measured, skipped = sweep_quality(
            sweep_upscaler_factory(args.weights, "cpu"),
            ["bicubic", *models],
            [2, 3, 4],
            sets,
            store=store,
            checkpoint_of=lambda m, s: "none" if m == "bicubic" else checkpoint_id(args.weights, m, s),
            force=args.force,
        )
        table = with_published(measured, reference_dir)
        notes = [f"Skipped {s.model} x{s.scale}: {s.reason}." for s in skipped]
        path = out / "quality" / "report_quality.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_markdown(table, "PSNR/SSIM of the zoo's public checkpoints vs FMEN Table 3", notes))
        measured.to_csv(path.with_suffix(".csv"), index=False)
        sections["Quality"] = [f"- [{path.relative_to(out)}]({path.relative_to(out)})"]
        print(f"wrote {path}")
    else:
        skipped_quality.append(
            "quality tables: give --data-root and --weights (e.g. ../shared/datasets, ../shared/weights)"
        )
    figure_preset = "memsr" if "memsr" in args.presets else args.presets[0]
    figures = write_report_figures(out, store, reference_dir, preset=figure_preset)
    sections["Figures"] = [f"![{p.stem}]({p.relative_to(out)})" for p in figures if p.suffix == ".png"]
    for extra in sorted(out.glob("quality/*.md")):
        entry = f"- [{extra.relative_to(out)}]({extra.relative_to(out)})"
        if entry not in sections.get("Quality", []):
            sections.setdefault("Quality", []).append(entry)
    tables = sorted(out.glob("tables/*.md"))  # written by `memsr-bench table PRESET --out reports/tables/PRESET`
    if tables:
        sections["Paper tables"] = [f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in tables]
    # written by `python -m memsr_bench.memsr.reproduce`, and its analysis
    memsr = [p for p in (out / "memsr" / "reproduction.md", out / "memsr" / "findings.md") if p.is_file()]
    if memsr:
        sections["MemSR reproduction"] = [f"- [{p.relative_to(out)}]({p.relative_to(out)})" for p in memsr]
    notes = [name for name in ("zoo_verification.md", "benchmarks.md") if (out / name).is_file()]
    if notes:
        sections["Notes"] = [f"- [{name}]({name})" for name in notes]
    index = write_index(out, sections)
    print(f"wrote {index}")
    for reason in skipped_quality:
        print(f"skipped {reason}")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    rows = _zoo_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<18} {'scale':>5} {'params':>11} {'published':>11}  {'input':<10} checkpoint")
    for row in rows:
        published = f"{row['published_params']:,}" if row["published_params"] else "-"
        data_range = f"{row['channels'].upper()} 0..{int(row['input_range'])}"
        print(
            f"{row['model']:<18} {row['scale']:>5} {row['params']:>11,} {published:>11}  {data_range:<10} "
            f"{row['checkpoint'] or '-'}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memsr-bench",
        description="Benchmark and memory analysis for efficient single-image super-resolution.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser(
        "eval",
        help="PSNR/SSIM of bicubic or a zoo model on a test set",
        description="Evaluate an upscaler on a test set (EDSR benchmark layout or a folder of HR images) "
        "with the published conventions: HR modcropped, SR rounded to uint8, crop = scale, "
        "BT.601 Y (float by default), SSIM as ssim_index.m.",
    )
    ev.add_argument("model", help="'bicubic' or a zoo model name (see `memsr-bench zoo`)")
    ev.add_argument("--scale", type=int, required=True, help="upscaling factor, e.g. 2, 3 or 4")
    ev.add_argument("--data", required=True, help="test-set folder, e.g. ../shared/datasets/Set5")
    ev.add_argument("--weights", help="checkpoint file or weights directory for a zoo model")
    ev.add_argument(
        "--border",
        choices=BORDERS,
        default="symmetric",
        help="LR convention: symmetric (MATLAB, LR_bicubic) or replicate (SelfExSR/RCAN, LR_bicubic_rcan)",
    )
    ev.add_argument(
        "--lr-source",
        choices=LR_SOURCES,
        default="auto",
        help="LR from the set's LR folder, regenerated from HR, or auto (folder if present)",
    )
    ev.add_argument("--y-variant", choices=Y_VARIANTS, default="float", help="BT.601 Y unrounded or rounded")
    ev.add_argument("--channel", choices=CHANNELS, default="y", help="compare Y (papers) or RGB (NTIRE)")
    ev.add_argument("--crop", type=int, default=None, help="border pixels cropped (default: the scale)")
    ev.add_argument("--device", default="cpu", help="torch device for zoo models (cpu, cuda)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(run=_cmd_eval)

    sw = sub.add_parser(
        "sweep-quality",
        help="PSNR/SSIM of several models x scales x test sets beside the published figures",
    )
    sw.add_argument("--models", nargs="+", default=["bicubic"], help="bicubic and/or zoo model names")
    sw.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    sw.add_argument("--data-root", help="folder holding the test sets, e.g. ../shared/datasets")
    sw.add_argument("--from-csv", help="re-render the table of a previous sweep's CSV instead of measuring")
    sw.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    sw.add_argument("--weights", help="weights directory with the models' public checkpoints")
    sw.add_argument("--y-variants", nargs="+", choices=Y_VARIANTS, default=list(Y_VARIANTS))
    sw.add_argument("--border", choices=BORDERS, default="symmetric")
    sw.add_argument("--lr-source", choices=LR_SOURCES, default="auto")
    sw.add_argument("--reference", help="folder with published_quality.csv (default ../shared/reference)")
    sw.add_argument("--source", default="FMEN Table 3", help="published table to compare with")
    sw.add_argument(
        "--extra-sources", nargs="*", default=["MemSR slides"], help="more published tables, as extra columns"
    )
    sw.add_argument("--title", default="PSNR/SSIM reproduction")
    sw.add_argument("--out", help="write OUT.md and OUT.csv (e.g. reports/quality/bicubic)")
    sw.add_argument("--device", default="cpu")
    sw.set_defaults(run=_cmd_sweep_quality)

    pr = sub.add_parser(
        "profile",
        help="params, MACs, FLOPs, activations, convs, runtime, measured and predicted peak memory",
        description="Profile a zoo model at one input size. Input: --input HxW (LR), --output HxW (HR), "
        "or the preset's rule (ntire2022: LR 256x256; fmen: HR 1280x720; memsr: HR 1920x1080); "
        "default LR 256x256.",
    )
    pr.add_argument("model", help="zoo model name (see `memsr-bench zoo`)")
    pr.add_argument("--scale", type=int, help="upscaling factor (default: the model's first)")
    pr.add_argument("--input", help="LR input size HxW")
    pr.add_argument("--output", help="HR output size HxW (LR = output / scale)")
    pr.add_argument("--preset", choices=["ntire2022", "fmen", "memsr"], help="counting convention of a paper")
    pr.add_argument("--device", default="cpu", help="cpu or cuda")
    pr.add_argument("--weights", help="checkpoint file or weights directory (efficiency does not need one)")
    pr.add_argument("--warmup", type=int, default=3, help="untimed passes before timing")
    pr.add_argument("--repeats", type=int, default=10, help="timed passes (median and IQR reported)")
    pr.add_argument(
        "--protocol",
        choices=["default", "ntire2022"],
        default="default",
        help="runtime protocol: default (warm-up, median) or ntire2022 (no warm-up, mean)",
    )
    pr.add_argument("--channels-last", action="store_true", help="time with channels_last memory format")
    pr.add_argument("--threads", type=int, help="torch threads while timing (default: torch's)")
    pr.add_argument("--json", action="store_true", help="print one JSON object")
    pr.set_defaults(run=_cmd_profile)

    rp = sub.add_parser(
        "report",
        help="regenerate every table under reports/ (efficiency always; quality with data and weights)",
        description="Regenerate reports/: the zoo's parameter counts, efficiency tables at the three presets "
        "(no data needed), and PSNR/SSIM of every public checkpoint when --data-root and --weights are given. "
        "Every cell is cached in the results store, so a rerun only reads it (--force recomputes).",
    )
    rp.add_argument("--out", default="reports", help="output folder (default reports/)")
    rp.add_argument("--data-root", help="test sets folder, e.g. ../shared/datasets")
    rp.add_argument("--weights", help="weights directory, e.g. ../shared/weights")
    rp.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    rp.add_argument(
        "--presets", nargs="+", default=["ntire2022", "fmen", "memsr"], choices=["ntire2022", "fmen", "memsr"]
    )
    rp.add_argument(
        "--store", help="results store file (default $MEMSR_RESULTS or ~/.cache/memsr-bench/results.sqlite)"
    )
    rp.add_argument("--force", action="store_true", help="recompute cells already in the store")
    rp.set_defaults(run=_cmd_report)

    from memsr_bench.memsr.cli_commands import add_convert_parsers
    from memsr_bench.plots import add_plot_parser
    from memsr_bench.table_presets import add_table_parser

    add_convert_parsers(sub)  # convert plain / convert student / train (MemSR tools)
    add_table_parser(sub)  # table fmen-table3 | fmen-table4 | memsr-table
    add_plot_parser(sub)  # plot psnr-memory | psnr-runtime | timeline | peak-vs-size

    zo = sub.add_parser("zoo", help="list the zoo's models, scales and parameter counts")
    zo.add_argument("--json", action="store_true", help="print a JSON list")
    zo.set_defaults(run=_cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except MemsrInputError as err:
        print(f"memsr-bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memsr-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
