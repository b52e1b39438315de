"""The ``memsr-bench`` command line (also ``python -m memsr_bench``): a thin layer over the library.

One module per command group registers its sub-commands (``add_parsers``); shared options are
declared once in :mod:`memsr_bench.cli.options`. Bad input raises MemsrInputError, which ``main``
prints as one line on stderr with exit code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from memsr_bench.errors import MemsrInputError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one ``--help`` away), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from memsr_bench.cli import compress, convert, plot, profile, quality, receptive_field, report, table, upscale, zoo

    parser = _Parser(
        prog="memsr-bench",
        description="Benchmark and memory analysis for efficient single-image super-resolution. Every MODEL "
        "is a zoo name, path/to/file.py:factory, package.module:factory or an installed entry point.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (quality, profile, table, plot, report, zoo, receptive_field, upscale):
        group.add_parsers(sub)
    convert.add_convert_parsers(sub)  # convert plain / convert student / train (MemSR tools)
    compress.add_parsers(sub)  # compress prune / compress distill (Jiang et al.)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or a bad option (one line already printed): its exit code
        return done.code if isinstance(done.code, int) else 2
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except MemsrInputError as err:
        print(f"memsr-bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memsr-bench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `memsr-bench zoo --json | head`: the reader left; nothing more to say
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing it at exit does not raise a second BrokenPipeError."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
