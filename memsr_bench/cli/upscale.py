"""``memsr-bench upscale``: super-resolve an image or a folder of images tile by tile within a memory budget."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memsr_bench.cli import options
from memsr_bench.data.image_io import PNG_LEVEL
from memsr_bench.errors import MemsrInputError

DEFAULT_MAX_MEMORY = 2**30  # 1 GiB when --max-memory is not given


def _inputs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs; one-line errors for a missing input or an output of the wrong kind."""
    from memsr_bench.data.image_io import looks_like_image

    if not source.exists():
        raise MemsrInputError(source, "no such file or folder")
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise MemsrInputError(target, "exists and is not a folder (INPUT is a folder)")
        files = sorted(p for p in source.iterdir() if p.is_file() and looks_like_image(p))
        if not files:
            raise MemsrInputError(source, "contains no PNG or BMP images")
        return [(p, target / f"{p.stem}.png") for p in files]
    if target.is_dir():
        raise MemsrInputError(target, "is a folder (INPUT is a file: give an output file)")
    if target.suffix.lower() != ".png":
        raise MemsrInputError(target, "the output is written as PNG: give a .png file name")
    if not looks_like_image(source):
        raise MemsrInputError(source, "is not a PNG or BMP image")
    return [(source, target)]


def _cmd_upscale(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from memsr_bench.data.image_io import read_image_rgb
    from memsr_bench.measure.receptive_field import receptive_field
    from memsr_bench.model import load_model
    from memsr_bench.tiling import METHODS, configure_allocator, upscale_to_png

    configure_allocator()  # before any tensor is made (PyTorch reads its huge-page setting once) and any image read
    if args.method not in METHODS:
        raise MemsrInputError("--method", f"must be one of {', '.join(METHODS)}, not {args.method!r}")
    pairs = _inputs(Path(args.input), Path(args.output))
    loaded = load_model(args.model, args.scale, weights=args.weights, **options.model_options(args))
    channels = 1 if loaded.entry.spec.channels == "y" else 3
    rf = receptive_field(loaded.module, loaded.scale, name=loaded.name, channels=channels)
    if args.method == "rows":
        from memsr_bench.tiling import row_program

        program = row_program(loaded, rf)
        if isinstance(program, str):
            raise MemsrInputError("--method", f"rows: {loaded.name} cannot be streamed by rows: {program}")
    if not rf.local or rf.size_dependent:
        why = rf.reason or "it resizes to a size computed from the input"
        print(f"memsr-bench: {loaded.name}: approximate tiles (overlapping, large halo): {why}", file=sys.stderr)
    budget = args.max_memory or DEFAULT_MAX_MEMORY
    images = tqdm(pairs, desc="images", unit="image", disable=len(pairs) < 2 or args.quiet)
    for src, dst in images:
        lr = read_image_rgb(src)
        # the output is streamed to the PNG band by band: never held whole (a 192-megapixel SR photo is 576 MB)
        plan = upscale_to_png(
            loaded,
            lr,
            dst,
            budget,
            args.device,
            rf=rf,
            progress=not args.quiet,
            method=args.method,
            compress_level=args.png_level,
        )
        del lr
        line = (
            f"{src.name} -> {dst}: {plan.describe()}, {plan.seconds:.2f} s (CPU {plan.cpu_seconds:.2f} s; "
            f"planning {plan.planning_seconds:.2f} s, PNG {plan.writing_seconds:.2f} s)"
        )
        if not plan.exact:
            if plan.deviation is not None:
                d = plan.deviation
                line += f"; deviation vs whole image: max {d['max_abs']:g}, PSNR {d['psnr_db']:.2f} dB"
            else:
                line += f"; deviation vs whole image {plan.deviation_note}"
        tqdm.write(line, file=sys.stdout)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="super-resolve an image or a folder of images within --max-memory, by row bands or tiles (8-bit PNG out)",
        description="Streams full-width bands of LR rows through the network, each layer computing each row once and "
        "keeping only the rows its consumers still need (models whose graph is row-local: convolutions, pointwise "
        "ops, channel concatenation and splits, pixel shuffle), or else tiles the image with a halo. The band or tile "
        "is chosen so that its predicted peak (tensors and convolution workspace), the uint8 input and the output rows "
        "held on the host (the output is streamed to the PNG) and a fixed runtime allowance (337 MiB) stay within "
        "--max-memory. For local models (see receptive-field) rows and tiles (halo >= the receptive radius, on the "
        "model's grid) are bit-identical to whole-image inference; other models get overlapping tiles with a large "
        "halo.",
    )
    p.add_argument("input", metavar="INPUT", help="an image (PNG/BMP) or a folder of images")
    p.add_argument("output", metavar="OUTPUT", help="the output PNG file, or a folder (for a folder INPUT)")
    p.add_argument("--model", required=True, metavar="REF", help=options.MODEL_HELP)
    options.add_model_metadata(p)
    p.add_argument("--scale", type=options.positive_int, help="upscaling factor (default: the model's first)")
    p.add_argument("--weights", help="checkpoint file or weights folder (default: random initialisation)")
    options.add_max_memory(p)
    p.add_argument(
        "--method",
        default="auto",
        metavar="{auto,rows,tiles}",
        help="rows (no recomputed halo), tiles, or auto: rows where the model's graph allows, tiles otherwise",
    )
    p.add_argument(
        "--png-level",
        type=int,
        default=PNG_LEVEL,
        choices=range(10),
        metavar="0-9",
        help=f"PNG compression: 0 stored, 1-3 ISA-L (fast), 4-9 zlib (a few %% smaller, 5-15x slower); default "
        f"{PNG_LEVEL}. At zlib's 6 the 192-megapixel PNG of reports/tiling/large_photos.md took 46 s; ISA-L's 2 "
        "compresses about 15x faster to a 6 %% larger file",
    )
    options.add_device(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_cmd_upscale)
