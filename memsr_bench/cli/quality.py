"""``memsr-bench eval`` and ``memsr-bench sweep-quality``: PSNR/SSIM with the published conventions.

Both write every measurement to the results store (keyed by the model's name, architecture
fingerprint and weights sha256), so evaluated models appear in tables and figures.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from memsr_bench.cli import options
from memsr_bench.color import Y_VARIANTS
from memsr_bench.data.datasets import LR_SOURCES
from memsr_bench.data.matlab_resize import BORDERS
from memsr_bench.errors import MemsrInputError
from memsr_bench.metrics import CHANNELS


def _upscaler_options(args: argparse.Namespace) -> dict:
    kwargs = options.model_options(args)
    return {**kwargs, "random_weights": args.random_weights}


def _print_eval(result, upscaler) -> None:
    print(f"{result.model} x{result.scale} on {result.dataset} ({len(result.images)} images)")
    for image in result.images:
        print(f"  {image.name:<20} PSNR {image.psnr:8.4f} dB   SSIM {image.ssim:.4f}")
    print(f"mean PSNR {result.psnr:.4f} dB   SSIM {result.ssim:.4f}")
    print(f"conventions: {result.conventions['summary']}; LR {result.conventions['lr_source']}")
    print(
        f"model: fingerprint {upscaler.fingerprint}, weights {upscaler.checkpoint}; "
        f"{result.conventions.get('threads')} threads"
    )


def _cmd_eval(args: argparse.Namespace) -> int:
    from memsr_bench.data.datasets import discover_test_set
    from memsr_bench.metrics import QualityConvention
    from memsr_bench.results import ResultsStore
    from memsr_bench.results.cells import stored_quality
    from memsr_bench.upscalers import make_upscaler

    test_set = discover_test_set(args.data, args.scale, lr_source=args.lr_source, border=args.border)
    store = ResultsStore(args.store)
    upscaler = make_upscaler(
        args.model, args.scale, weights=args.weights, device=args.device, **_upscaler_options(args)
    )
    model = getattr(upscaler, "model", None)
    if model is not None:  # refuse before the first image if the largest one would not fit
        from memsr_bench.measure.guard import ensure_fits
        from memsr_bench.measure.profile import input_channels

        h, w = test_set.largest_lr_size()
        ensure_fits(
            model,
            (1, input_channels(model), h, w),
            args.device,
            args.max_memory,
            f"upscaling {test_set.name}",
            hint="a larger --max-memory, or a machine with more memory",
        )
    crop = args.scale if args.crop is None else args.crop
    convention = QualityConvention(channel=args.channel, y_variant=args.y_variant, crop_border=crop)
    result = stored_quality(store, upscaler, test_set, [convention], force=args.force)[0]
    if args.json:
        options.print_json(
            {
                **result.to_json(),
                "fingerprint": upscaler.fingerprint,
                "weights_sha256": upscaler.checkpoint,
                "weights": args.weights,
                "threads": result.conventions.get("threads"),
                "device": args.device,
                "versions": _versions(),
                "model_description": getattr(upscaler, "description", None),
            }
        )
    else:
        _print_eval(result, upscaler)
    return 0


def _versions() -> dict[str, str]:
    import platform

    import torch

    import memsr_bench

    return {"memsr_bench": memsr_bench.__version__, "torch": torch.__version__, "python": platform.python_version()}


def _sweep_table(args: argparse.Namespace):
    import pandas as pd

    from memsr_bench.reporting.quality import sweep_quality, sweep_upscalers
    from memsr_bench.results import ResultsStore

    if args.from_csv:  # re-render a table measured before, e.g. after the published CSVs changed
        if not Path(args.from_csv).is_file():
            raise MemsrInputError(args.from_csv, "CSV of a previous sweep not found")
        return pd.read_csv(args.from_csv), []
    if not args.data_root:
        raise MemsrInputError("--data-root", "required (or --from-csv to re-render a previous sweep)")
    import zoo
    from memsr_bench.model import resolve_model
    from memsr_bench.upscalers import UPSCALERS

    for ref in args.models:  # a wrong reference stops the sweep before anything is measured
        if ref not in UPSCALERS and ref not in zoo.names():
            resolve_model(ref, input_range=args.input_range, channels=args.channels)
    store = ResultsStore(args.store)  # an unusable store or cluster is refused before anything is measured
    factory = sweep_upscalers(args.weights, args.device, **_upscaler_options(args))
    with options.cluster_client(args) as cluster:
        return sweep_quality(
            factory,
            args.models,
            args.scales,
            [Path(args.data_root) / name for name in args.sets],
            y_variants=args.y_variants,
            lr_source=args.lr_source,
            border=args.border,
            store=store,
            force=args.force,
            cluster=cluster,
        )


def _cmd_sweep_quality(args: argparse.Namespace) -> int:
    from memsr_bench.reporting.published import default_reference_dir
    from memsr_bench.reporting.quality import to_markdown, with_published

    measured, skipped = _sweep_table(args)
    reference_dir = Path(args.reference) if args.reference else default_reference_dir()
    notes = [
        "Measured here: HR modcropped to the scale, SR rounded to uint8, crop = scale, BT.601 Y "
        "(float = unrounded, rounded = MATLAB uint8), PSNR peak 255, SSIM as ssim_index.m.",
        f"LR inputs: {args.border} border, lr-source {args.lr_source} "
        "(files LR_bicubic/X<s> when present, else MATLAB-exact imresize).",
        f"Published: {args.source} "
        f"({os.path.relpath(reference_dir / 'published_quality.csv') if reference_dir else 'not found'}); "
        "diff = measured - published.",
        *[f"Skipped {s.model} x{s.scale}: {s.reason}." for s in skipped],
    ]
    if "fingerprint" in measured:  # what each row measured: architecture and weights
        ids = measured.drop_duplicates(["model", "scale"])
        notes.append(
            "Measured: "
            + "; ".join(
                f"{r.model} x{r.scale} (fingerprint {r.fingerprint}, weights {r.weights_sha256[:12]})"
                for r in ids.itertuples()
            )
            + "."
        )
    extra = [s for s in args.extra_sources if s != args.source]
    table = with_published(measured, reference_dir, args.source, extra) if len(measured) else measured
    text = to_markdown(table, args.title, notes)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not args.from_csv:
            measured.to_csv(out.with_suffix(".csv"), index=False)
        out.with_suffix(".md").write_text(text)
    print(text)
    return 0


def _add_weights(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--weights",
        help=f"{what}; a file is recognised by its sha256 (public checkpoints) or loaded "
        "strictly as the user's own (plain state_dict, params, params_ema, state_dict, model, module.)",
    )
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="allow a network without weights (its PSNR/SSIM says nothing about the architecture)",
    )


def _add_conventions(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--border",
        choices=BORDERS,
        default="symmetric",
        help="LR convention: symmetric (MATLAB, LR_bicubic) or replicate (SelfExSR/RCAN, LR_bicubic_rcan)",
    )
    p.add_argument(
        "--lr-source",
        choices=LR_SOURCES,
        default="auto",
        help="LR from the set's LR folder, regenerated from HR, or auto (folder if present)",
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "eval",
        help="PSNR/SSIM of bicubic or any model on a test set (stored in the results store)",
        description="Evaluate an upscaler on a test set (EDSR benchmark layout or a folder of HR images) with the "
        "published conventions: HR modcropped, SR rounded to uint8, crop = scale, BT.601 Y (float by default), "
        "SSIM as ssim_index.m. The result is stored, keyed by model, fingerprint and weights sha256.",
    )
    ev.add_argument("model", metavar="MODEL", help="'bicubic' or " + options.MODEL_HELP)
    options.add_model_metadata(ev)
    ev.add_argument("--scale", type=options.positive_int, required=True, help="upscaling factor, e.g. 2, 3 or 4")
    ev.add_argument("--data", required=True, help="test-set folder, e.g. ../shared/datasets/Set5")
    _add_weights(ev, "checkpoint file or weights folder (a folder holds the zoo's public files)")
    _add_conventions(ev)
    ev.add_argument("--y-variant", choices=Y_VARIANTS, default="float", help="BT.601 Y unrounded or rounded")
    ev.add_argument("--channel", choices=CHANNELS, default="y", help="compare Y (papers) or RGB (NTIRE)")
    ev.add_argument(
        "--crop", type=options.non_negative_int, default=None, help="border pixels cropped (default: scale)"
    )
    options.add_device(ev, "the model")
    options.add_max_memory(ev)
    options.add_store(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(run=_cmd_eval)

    sw = sub.add_parser("sweep-quality", help="PSNR/SSIM of models x scales x test sets beside the published figures")
    sw.add_argument("--models", nargs="+", default=["bicubic"], metavar="REF", help="bicubic and/or model references")
    options.add_model_metadata(sw)
    sw.add_argument("--scales", nargs="+", type=options.positive_int, default=[2, 3, 4])
    sw.add_argument("--data-root", help="folder holding the test sets, e.g. ../shared/datasets")
    sw.add_argument("--from-csv", help="re-render the table of a previous sweep's CSV instead of measuring")
    sw.add_argument("--sets", nargs="+", default=["Set5", "Set14", "BSD100"])
    _add_weights(sw, "weights folder with public checkpoints (models without one there are skipped), or a file")
    sw.add_argument("--y-variants", nargs="+", choices=Y_VARIANTS, default=list(Y_VARIANTS))
    _add_conventions(sw)
    sw.add_argument("--reference", help="folder with published_quality.csv (default ../shared/reference)")
    sw.add_argument("--source", default="FMEN Table 3", help="published table to compare with")
    sw.add_argument("--extra-sources", nargs="*", default=["MemSR slides"], help="more published tables, as columns")
    sw.add_argument("--title", default="PSNR/SSIM reproduction")
    sw.add_argument("--out", help="write OUT.md and OUT.csv (e.g. reports/quality/bicubic)")
    options.add_device(sw, "the models")
    options.add_store(sw)
    options.add_cluster(sw)
    sw.set_defaults(run=_cmd_sweep_quality)
