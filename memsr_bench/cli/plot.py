"""``memsr-bench plot KIND``: psnr-memory, psnr-runtime, timeline, peak-vs-size, for any models."""

from __future__ import annotations

import argparse
from pathlib import Path

from memsr_bench.cli import options
from memsr_bench.errors import MemsrInputError


def _stem(args: argparse.Namespace, default: str) -> Path:
    return Path(args.out) if args.out else Path("reports") / "figures" / default


def _written(paths) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def _cmd_psnr(args: argparse.Namespace) -> int:
    from memsr_bench.reporting.efficiency import choose_models
    from memsr_bench.reporting.figures import psnr_kind_figure, save_figure
    from memsr_bench.reporting.published import default_reference_dir
    from memsr_bench.reporting.tradeoffs import psnr_points
    from memsr_bench.results import ResultsStore

    reference_dir = Path(args.reference) if args.reference else default_reference_dir()
    if reference_dir is not None and not reference_dir.is_dir():
        raise MemsrInputError("--reference", f"folder not found: {reference_dir}")
    store = ResultsStore(args.store)
    models, highlighted = choose_models(options.model_choice(args), [args.scale], log=lambda m: None)
    points = psnr_points(models, highlighted, store, args.dataset, args.preset, args.y_variant)
    if len(points) < 1:
        raise MemsrInputError(
            store.path,
            f"no model has a stored PSNR on {args.dataset} x{args.scale} for its current architecture "
            "(memsr-bench eval MODEL --weights W ... stores one)",
        )
    if args.kind == "psnr-runtime":
        points = points[points["runtime_ms"].notna()] if "runtime_ms" in points else points.iloc[0:0]
        if len(points) < 1:
            raise MemsrInputError(
                store.path,
                f"no model with a stored PSNR on {args.dataset} x{args.scale} has a stored runtime at the input of "
                f"preset {args.preset} (memsr-bench table memsr-table measures them)",
            )
    fig = psnr_kind_figure(args.kind, points, args.scale, args.dataset, args.preset, reference_dir)
    return _written(save_figure(fig, _stem(args, f"{args.kind.replace('-', '_vs_')}_{args.dataset}_x{args.scale}")))


def _cmd_timeline(args: argparse.Namespace) -> int:
    from memsr_bench.measure.memory_model import predict_peak_memory
    from memsr_bench.measure.presets import get_preset
    from memsr_bench.measure.profile import input_channels
    from memsr_bench.model import load_model
    from memsr_bench.reporting.figures import model_label, save_figure, timeline_figure

    loaded = load_model(args.model, args.scale, **options.model_options(args))
    size = options.lr_size(args, loaded.scale)
    if size is None:
        size = get_preset(args.preset).lr_shape(loaded.scale) if args.preset else (256, 256)
    prediction = predict_peak_memory(loaded.module, (1, input_channels(loaded.module), *size), lifetimes=args.lifetimes)
    fig = timeline_figure(prediction, f"{model_label(loaded.name, loaded.entry.channels)} x{loaded.scale}")
    return _written(save_figure(fig, _stem(args, f"timeline_{loaded.name.replace(':', '_')}_x{loaded.scale}")))


def _cmd_peak_vs_size(args: argparse.Namespace) -> int:
    from memsr_bench.measure.memory_model import peak_vs_input_size
    from memsr_bench.measure.profile import input_channels
    from memsr_bench.model import load_model
    from memsr_bench.reporting.figures import hd_sizes, model_label, peak_vs_size_figure, save_figure
    from memsr_bench.units import parse_size

    sizes = [parse_size(s, "--sizes") for s in args.sizes] if args.sizes else hd_sizes(args.scale)
    if len({h * w for h, w in sizes}) < 2:
        raise MemsrInputError("--sizes", "give at least two sizes with different H·W")
    fits = {}
    for ref in dict.fromkeys(args.models):
        loaded = load_model(ref, args.scale, **options.model_options(args))
        fits[model_label(loaded.name, loaded.entry.channels)] = peak_vs_input_size(
            loaded.module, sizes, channels=input_channels(loaded.module)
        )
    return _written(
        save_figure(peak_vs_size_figure(fits, args.scale), _stem(args, f"peak_vs_input_size_x{args.scale}"))
    )


def _add_psnr_kinds(kinds: argparse._SubParsersAction) -> None:
    for kind, text in (
        ("psnr-memory", "PSNR vs predicted peak memory, marker area ∝ params (FMEN Fig. 1 style)"),
        ("psnr-runtime", "PSNR vs runtime (median; IQR and threads in the label), marker area ∝ params"),
    ):
        kp = kinds.add_parser(
            kind,
            help=text,
            description=text + ". PSNR: the results store's latest row of each "
            "model's current architecture (memsr-bench eval / sweep-quality / report write them).",
        )
        options.add_models(kp, "default: every zoo model with a stored PSNR")
        kp.add_argument("--scale", type=options.positive_int, default=4, help="SR factor (default 4)")
        kp.add_argument("--dataset", default="Set5", help="test set as stored (Set5, Set14, BSD100, ...)")
        options.add_preset(kp, "memsr", "efficiency preset giving the input size (default memsr: HR 1920x1080)")
        kp.add_argument("--y-variant", default="float", choices=["float", "rounded"], help="Y convention of PSNR")
        options.add_store(kp, force=False)
        kp.add_argument("--reference", help="published tables folder (default ../shared/reference, if present)")
        kp.add_argument("--out", help="output stem: writes OUT.png and OUT.svg")
        kp.set_defaults(run=_cmd_psnr)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    pp = sub.add_parser(
        "plot",
        help="figures (PNG and SVG): psnr-memory, psnr-runtime, timeline, peak-vs-size",
        description="Draw a figure as OUT.png and OUT.svg (default reports/figures/<name>). psnr-memory and "
        "psnr-runtime read PSNR and runtime from the results store; timeline and peak-vs-size predict memory "
        "without data.",
    )
    kinds = pp.add_subparsers(dest="kind", required=True, metavar="KIND")
    _add_psnr_kinds(kinds)

    tl = kinds.add_parser(
        "timeline",
        help="predicted live memory after every op of one forward pass",
        description="Predicted memory timeline of a model (fake tensors: any input size is cheap).",
    )
    options.add_model(tl)
    tl.add_argument("--scale", type=options.positive_int, help="SR factor (default: the model's first)")
    options.add_input_size(tl)
    options.add_preset(tl)
    tl.add_argument("--lifetimes", choices=["eager", "last_use"], default="eager", help="when tensors are freed")
    tl.add_argument("--out", help="output stem: writes OUT.png and OUT.svg")
    tl.set_defaults(run=_cmd_timeline)

    ps = kinds.add_parser(
        "peak-vs-size",
        help="predicted peak memory vs input size for several models",
        description="Predicted peak memory of each model at several LR sizes (default: the LR of "
        "360p..4K outputs), with the affine fit.",
    )
    ps.add_argument("models", nargs="+", metavar="MODEL", help="model references (zoo names, FILE.py:factory, ...)")
    options.add_model_metadata(ps)
    ps.add_argument("--scale", type=options.positive_int, default=4, help="SR factor (default 4)")
    ps.add_argument("--sizes", nargs="+", metavar="HxW", help="LR input sizes (default: LR of 360p, 720p, ... 4K)")
    ps.add_argument("--out", help="output stem: writes OUT.png and OUT.svg")
    ps.set_defaults(run=_cmd_peak_vs_size)
