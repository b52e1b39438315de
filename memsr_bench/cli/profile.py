"""``memsr-bench profile MODEL``: every quantity of one model at one input, each named for its convention."""

from __future__ import annotations

import argparse
import sys

from memsr_bench.cli import options
from memsr_bench.measure.quantities import QUANTITIES

DEFAULT_LR_SIZE = (256, 256)
_QUANTITY_LINES = "\n".join(f"  {q.name}: {q.definition}" for q in QUANTITIES.values())


def _print_text(loaded, result) -> None:
    shape = result.input_shape
    print(
        f"{loaded.name} x{loaded.scale}, LR input {shape[2]}x{shape[3]} (output {shape[2] * loaded.scale}x"
        f"{shape[3] * loaded.scale}); {loaded.entry.origin}"
    )
    print(f"  input              {loaded.entry.describe_input()}")
    weights = loaded.weights.describe() if loaded.weights else "random initialisation (counts do not need weights)"
    print(f"  weights            {weights}")
    print(
        f"  fingerprint        {loaded.fingerprint}"
        + (
            f"; deploy form: {len(loaded.deploy_calls)} calls "
            f"({', '.join(loaded.deploy_calls[:3])}{', ...' if len(loaded.deploy_calls) > 3 else ''})"
            if loaded.deploy_calls
            else ""
        )
    )
    labels = {q: label for label, q, _ in result.reported()}
    from memsr_bench.units import format_bytes

    for name, value in result.values.items():
        unit = QUANTITIES[name].unit
        if unit == "B":
            text = format_bytes(value, exact=True)
        elif unit == "ms":
            text = f"{value:,.2f} ms"
        else:
            text = f"{value:,}" + (f"  ({value / 1e9:.2f} G)" if value >= 1e9 else "")
        label = f"  [{result.preset} {labels[name]}]" if name in labels else ""
        print(f"  {name:<38} {text}{label}")
    details = result.details
    print(
        f"  peak node          {details.get('peak_node')}; runtime on {details.get('device_name', result.device)}, "
        f"{details.get('threads')} threads"
    )
    if details.get("unsupported_ops"):
        print(f"  uncounted ops: {details['unsupported_ops']}")
    print("definitions (memsr-bench profile --help lists every quantity):")
    for name, text in result.conventions().items():
        if name in result.values or name == "input":
            print(f"  {name}: {text}")


def _warn_unused(loaded, result) -> None:
    unused = result.unused_params()
    if unused:
        print(
            f"memsr-bench: warning: {unused:,} of {result['params']:,} parameters of {loaded.name} are not used by the "
            f"forward pass (training-only branches?); params_used = {result['params_used']:,}"
            + ("" if loaded.deploy_calls else "; --deploy measures the deploy form"),
            file=sys.stderr,
        )


def _cmd_profile(args: argparse.Namespace) -> int:
    from memsr_bench.measure.presets import get_preset
    from memsr_bench.measure.profile import input_channels, profile
    from memsr_bench.model import load_model
    from memsr_bench.results import ResultsStore
    from memsr_bench.results.cells import stored_profile

    loaded = load_model(args.model, args.scale, weights=args.weights, **options.model_options(args))
    size = options.lr_size(args, loaded.scale)
    if size is None:
        size = get_preset(args.preset).lr_shape(loaded.scale) if args.preset else DEFAULT_LR_SIZE
    shape = (1, input_channels(loaded.module), *size)
    live = [q for q in QUANTITIES if QUANTITIES[q].group in ("runtime", "measured")]
    counted = [q for q in QUANTITIES if q not in live]
    store = ResultsStore(args.store)
    result = stored_profile(
        store, loaded, shape, counted, preset=args.preset, force=args.force, max_memory=args.max_memory
    )
    if args.runtime:
        measured = profile(
            loaded.module,
            shape,
            quantities=live,
            device=args.device,
            runtime=options.runtime_options(args),
            max_memory=args.max_memory,
        )
        result.values.update(measured.values)
        result.details.update(measured.details)
        result.device = args.device
    _warn_unused(loaded, result)
    largest = _largest_input(loaded, shape, args.max_memory) if args.max_memory is not None else None
    if largest is not None:
        result.details["largest_input_within_max_memory"] = largest
    if args.json:
        options.print_json({**loaded.describe(), **result.to_json(), "model": loaded.name})
    else:
        _print_text(loaded, result)
        if largest is not None:
            print(f"  largest input within --max-memory {largest['text']}")
    return 0


def _largest_input(loaded, shape, budget: int) -> dict:
    """The largest LR input of this input's aspect ratio that fits ``budget`` bytes, by two conventions: the
    predicted tensor peak of one whole-image pass (device memory), and the whole CPU process as
    ``memsr-bench upscale`` accounts it (runtime, uint8 buffers, native convolutions' column buffers)."""
    import math

    from memsr_bench.measure.memory_model import largest_input_for_budget
    from memsr_bench.tiling import RUNTIME_ALLOWANCE_BYTES, largest_whole_input
    from memsr_bench.units import format_bytes

    h, w = shape[2], shape[3]
    aspect = (h // math.gcd(h, w), w // math.gcd(h, w))
    s = loaded.scale
    try:
        lr = largest_input_for_budget(loaded.module, budget, aspect=aspect, channels=shape[1])
    except ValueError as err:
        lr, why = None, str(err)
    process = largest_whole_input(loaded, budget, aspect) if shape[1] in (1, 3) else None
    tensor_text = f"LR {lr[0]}x{lr[1]} (HR {lr[0] * s}x{lr[1] * s})" if lr else f"none ({why})"
    process_text = f"LR {process[0]}x{process[1]} (HR {process[0] * s}x{process[1] * s})" if process else "none"
    text = (
        f"{format_bytes(budget)}, aspect {aspect[0]}:{aspect[1]} of the input: tensor peak of one whole-image pass "
        f"(device memory): {tensor_text}; whole CPU process as `memsr-bench upscale` counts it (runtime "
        f"{format_bytes(RUNTIME_ALLOWANCE_BYTES)}, uint8 buffers, native conv column buffers, +5 %): {process_text}; "
        "`memsr-bench upscale` streams anything larger by rows or tiles"
    )
    return {
        "budget_bytes": budget,
        "aspect": list(aspect),
        "lr": list(lr) if lr else None,
        "hr": [lr[0] * s, lr[1] * s] if lr else None,
        "convention": "predicted tensor peak of one whole-image pass",
        "lr_whole_process_cpu": list(process) if process else None,
        "text": text,
    }


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="params, MACs, FLOPs, activations, convs, runtime, measured and predicted peak memory of any model",
        description="Profile a model at one input size: --input HxW (LR), --output HxW (HR), or the preset's rule "
        "(ntire2022: LR 256x256; fmen: HR 1280x720; memsr: HR 1920x1080); default LR 256x256. Counts come from "
        "the results store when this architecture was counted before at this input (keyed by its fingerprint); "
        "runtime and measured memory are measured every time.",
        epilog="Quantities, each named for its convention:\n" + _QUANTITY_LINES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_model(p)
    p.add_argument("--scale", type=options.positive_int, help="upscaling factor (default: the model's first)")
    p.add_argument("--weights", help="checkpoint file or weights folder (efficiency does not need one)")
    options.add_input_size(p)
    options.add_preset(p)
    options.add_device(p)
    options.add_runtime(p)
    p.add_argument(
        "--counts-only",
        "--no-runtime",
        dest="runtime",
        action="store_false",
        help="counts and predicted memory only: no runtime, no measured memory",
    )
    options.add_max_memory(p)
    options.add_store(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_cmd_profile)
