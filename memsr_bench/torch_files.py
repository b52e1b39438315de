"""The one way the suite reads PyTorch files: ``torch.load(..., weights_only=True)``, errors in one line.

Checkpoints, model files and training states all go through :func:`load_weights_only`. Whatever goes
wrong -- a file that is neither PyTorch format (a zip archive or a pickle), a truncated archive,
pickled Python objects that safe loading refuses (possibly malicious code), random bytes -- becomes
a :class:`~memsr_bench.errors.CheckpointError` naming the file and the problem. The message never
suggests loading with ``weights_only=False``: that would run whatever code the file carries.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from memsr_bench.errors import CheckpointError

__all__ = ["load_weights_only"]

_ZIP = b"PK\x03\x04"
_PICKLE = 0x80  # the PROTO opcode that starts every pickle of protocol 2 and later (torch's legacy format)


def _first_sentence(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    return text.split(". ")[0].rstrip(".")[:160]


def load_weights_only(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, or a one-line ``CheckpointError``."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except FileNotFoundError:
        raise CheckpointError(path, f"{what} not found") from None
    except OSError as err:
        raise CheckpointError(path, f"cannot read {what} ({err.strerror or err})") from None
    if not head:
        raise CheckpointError(path, f"empty file, not a PyTorch {what}")
    if not (head.startswith(_ZIP) or (head[0] == _PICKLE and len(head) > 1 and 2 <= head[1] <= 5)):
        raise CheckpointError(
            path, f"not a PyTorch {what}: neither a zip archive nor a pickle (first bytes {head.hex()})"
        )
    try:
        with warnings.catch_warnings():  # torch's warnings about odd pickles: the error below says it in one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found:
            raise CheckpointError(
                path,
                f"the {what} holds pickled Python objects ({found.group(1)}) that safe loading refuses; "
                "only tensors and plain containers are read (re-save its state_dict() from code you trust)",
            ) from None
        detail = next((line.strip() for line in str(err).splitlines() if "Unpickler error" in line), "")
        detail = detail.split("error:", 1)[-1].strip() or _first_sentence(err)
        raise CheckpointError(path, f"corrupt {what}: its pickle data cannot be read ({detail})") from None
    except Exception as err:  # noqa: BLE001 - zip, EOF and storage errors of every kind mean the same here
        raise CheckpointError(
            path, f"truncated or corrupt {what} ({type(err).__name__}: {_first_sentence(err)})"
        ) from None
