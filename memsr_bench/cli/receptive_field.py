"""``memsr-bench receptive-field``: whether each output pixel depends on a bounded LR neighbourhood, and how far."""

from __future__ import annotations

import argparse

from memsr_bench.cli import options

DEFAULT_LR = (64, 64)


def _cmd_receptive_field(args: argparse.Namespace) -> int:
    from memsr_bench.measure.receptive_field import receptive_field
    from memsr_bench.model import load_model

    loaded = load_model(args.model, args.scale, **options.model_options(args))
    size = options.lr_size(args, loaded.scale) or DEFAULT_LR
    channels = 1 if loaded.entry.spec.channels == "y" else 3
    result = receptive_field(loaded.module, loaded.scale, name=loaded.name, channels=channels, lr_size=size)
    if args.json:
        options.print_json(result.as_dict())
        return 0
    print(f"{result.model} x{result.scale}, analysed on LR {size[0]}x{size[1]}")
    if result.local:
        print(
            f"local: yes, radius {result.radius} LR pixels (a {2 * result.radius + 1}x{2 * result.radius + 1} "
            "LR window around the output pixel's LR pixel)"
        )
    else:
        print(f"local: no ({result.reason})")
    print(f"grid: {result.grid} (tiles must start at multiples of {result.grid} LR pixels)")
    if result.size_dependent:
        print(
            "size-dependent: resizes to a size computed from the input (e.g. ESA): the bound holds for this LR "
            "size, and tiles do not reproduce the whole-image output exactly"
        )
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "receptive-field",
        help="the LR neighbourhood each output pixel depends on (radius, alignment grid, or not local)",
        description="Propagates, on fake tensors (shapes only), the LR range each tensor pixel depends on through "
        "convolutions, pooling, pixel shuffle, padding and interpolation. Reports the radius in LR pixels around "
        "the LR pixel an output pixel lies in, the grid (LR shift the model is equivariant to: strided ops), and "
        "local: false with the op responsible for models using whole-image statistics (global pooling, contrast "
        "channel attention, instance statistics) or layouts not analysed (window attention).",
    )
    options.add_model(p)
    p.add_argument("--scale", type=options.positive_int, help="upscaling factor (default: the model's first)")
    options.add_input_size(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(run=_cmd_receptive_field)
