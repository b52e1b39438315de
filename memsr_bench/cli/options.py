"""Options shared by several commands, declared once (choices come from the registries).

Values are checked at parse time where argparse can (types below); argparse reports a bad value as one
line with exit code 2, like every other input error of the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from collections.abc import Iterator
from typing import Any

from memsr_bench.measure.presets import PRESETS
from memsr_bench.measure.runtime import PROTOCOLS
from memsr_bench.model.refs import DEFAULT_CHANNELS, DEFAULT_INPUT_RANGE

MODEL_HELP = (
    "a model reference: a zoo name (memsr-bench zoo), path/to/file.py:factory, package.module:factory, or a "
    "name an installed package registers under the entry-point group memsr_bench.models"
)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, not {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def device(text: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``; CUDA only where it is available."""
    import re

    if text != "cpu" and not re.fullmatch(r"cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, not {text!r}")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError("CUDA is not available on this machine")
    return text


def add_model_metadata(p: argparse.ArgumentParser, deploy: bool = True) -> None:
    """--config, --input-range, --channels (and --deploy) for user models."""
    p.add_argument(
        "--config",
        nargs="+",
        metavar="KEY=VALUE",
        default=None,
        help="constructor arguments of the factory, e.g. --config n_feats=48 n_blocks=4 (Python literals)",
    )
    p.add_argument(
        "--input-range",
        type=float,
        choices=[1.0, 255.0],
        default=None,
        help=f"input range of an unregistered factory: 1 (0..1) or 255 (0..255); default {DEFAULT_INPUT_RANGE:g} "
        "(registered models carry their own)",
    )
    p.add_argument(
        "--channels",
        choices=["rgb", "y"],
        default=None,
        help=f"input channels of an unregistered factory: rgb or y; default {DEFAULT_CHANNELS}",
    )
    if deploy:
        p.add_argument(
            "--deploy",
            action="store_true",
            help="measure the deploy form: calls to_deploy(), switch_to_deploy(), reparameterize(), fuse() or "
            "deploy() on the model and its blocks",
        )


def add_model(p: argparse.ArgumentParser, deploy: bool = True) -> None:
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_model_metadata(p, deploy)


def add_models(p: argparse.ArgumentParser, default_help: str) -> None:
    p.add_argument("--models", nargs="+", metavar="REF", default=None, help=f"model references; {default_help}")
    p.add_argument("--highlight", nargs="+", metavar="REF", default=(), help="mark these models' rows and points")
    add_model_metadata(p)


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """``load_model`` keyword arguments from the shared options."""
    from memsr_bench.model import parse_config

    return {
        "config": parse_config(args.config),
        "input_range": args.input_range,
        "channels": args.channels,
        "deploy": getattr(args, "deploy", False),
    }


def model_choice(args: argparse.Namespace):
    from memsr_bench.model import parse_config
    from memsr_bench.reporting.efficiency import ModelChoice

    return ModelChoice(
        refs=tuple(args.models or ()),
        highlight=tuple(args.highlight or ()),
        config=tuple(parse_config(args.config).items()),
        deploy=args.deploy,
        input_range=args.input_range,
        channels=args.channels,
    )


def add_store(p: argparse.ArgumentParser, force: bool = True) -> None:
    p.add_argument(
        "--store",
        metavar="PATH|URL",
        help="results store: a file or sqlite:///path (default $MEMSR_RESULTS or ~/.cache/memsr-bench/results.sqlite), "
        "or postgresql://user@host:port/db, a store shared by many hosts",
    )
    if force:
        p.add_argument("--force", action="store_true", help="re-measure cells already in the store")


def add_cluster(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="compute the missing cells on the Dask cluster of this scheduler (tcp://host:port); start workers "
        "with: dask worker ADDRESS --nthreads 1 --resources RUNTIME=1 (RUNTIME=1,GPU=1 on a GPU host); "
        "needs pip install 'memsr-bench[cluster]'",
    )


@contextlib.contextmanager
def cluster_client(args: argparse.Namespace) -> Iterator[Any]:
    """A ``distributed.Client`` of ``--cluster`` (closed afterwards), or None without it."""
    address = getattr(args, "cluster", None)
    if not address:
        yield None
        return
    from memsr_bench.results.jobs import connect

    client = connect(address)
    try:
        yield client
    finally:
        client.close()


def add_device(p: argparse.ArgumentParser, what: str = "the forward passes") -> None:
    p.add_argument("--device", type=device, default="cpu", help=f"torch device of {what}: cpu, cuda or cuda:N")


def add_preset(p: argparse.ArgumentParser, default: str | None = None, help: str = "") -> None:
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=default,
        help=help or "input of a paper's table: ntire2022 (LR 256x256), fmen (HR 1280x720), memsr (HR 1920x1080)",
    )


def add_input_size(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", metavar="HxW", help="LR input size, e.g. 256x256")
    p.add_argument("--output", metavar="HxW", help="HR output size (LR = output / scale), e.g. 1080x1920")


def byte_size(text: str) -> int:
    from memsr_bench.errors import MemsrInputError
    from memsr_bench.units import parse_bytes

    try:
        return parse_bytes(text, "--max-memory")
    except MemsrInputError as err:
        raise argparse.ArgumentTypeError(err.problem) from None


def add_max_memory(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-memory",
        type=byte_size,
        metavar="SIZE",
        help="refuse, before allocating, a forward pass whose predicted peak exceeds SIZE (700MiB, 1GiB, 1.5G; "
        "default: the memory available on the device)",
    )


def add_runtime(p: argparse.ArgumentParser, warmup: int | None = 3, repeats: int | None = 10) -> None:
    p.add_argument("--warmup", type=non_negative_int, default=warmup, help=f"untimed passes before timing ({warmup})")
    p.add_argument("--repeats", type=positive_int, default=repeats, help=f"timed passes ({repeats})")
    p.add_argument("--threads", type=positive_int, help="torch threads while timing (default: torch's)")
    p.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        default="default",
        help="runtime protocol: default (warm-up, median) or ntire2022 (no warm-up, mean)",
    )
    p.add_argument("--channels-last", action="store_true", help="time with the channels_last memory format")


def runtime_options(args: argparse.Namespace):
    from memsr_bench.measure.profile import RuntimeOptions

    return RuntimeOptions(
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        protocol=args.protocol,
        channels_last=args.channels_last,
    )


def lr_size(args: argparse.Namespace, scale: int) -> tuple[int, int] | None:
    """The LR size from --input or --output (which must divide by the scale); None if neither."""
    from memsr_bench.errors import MemsrInputError
    from memsr_bench.units import parse_size

    if args.input and args.output:
        raise MemsrInputError("--input/--output", "give one of them, not both")
    if args.input:
        return parse_size(args.input, "--input")
    if args.output:
        h, w = parse_size(args.output, "--output")
        if h % scale or w % scale:
            raise MemsrInputError("--output", f"{h}x{w} is not divisible by x{scale}")
        return h // scale, w // scale
    return None


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
