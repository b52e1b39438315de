"""Refuse a real forward pass that would not fit, before it allocates anything.

``ensure_fits`` predicts the pass's peak live tensor storage on fake tensors
(:func:`memsr_bench.measure.memory_model.predict_peak_memory`: no memory used, any size) and compares
it with ``max_memory`` (default: the memory available on the device now: ``MemAvailable`` of
``/proc/meminfo`` on CPU, ``torch.cuda.mem_get_info`` on CUDA).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from memsr_bench.errors import MemsrInputError
from memsr_bench.units import format_bytes

__all__ = ["available_memory_bytes", "ensure_fits"]


def available_memory_bytes(device: str = "cpu") -> int:
    """Bytes a new allocation can use now on ``device``."""
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def ensure_fits(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str = "cpu",
    max_memory: int | None = None,
    what: str = "a forward pass",
    predicted_bytes: int | None = None,
    hint: str = "use a smaller input, or --counts-only for counts and predicted memory",
) -> int:
    """The predicted peak in bytes; a one-line ``MemsrInputError`` if it exceeds the limit."""
    if predicted_bytes is None:
        from memsr_bench.measure.memory_model import predict_peak_memory

        predicted_bytes = predict_peak_memory(model, input_shape).peak_bytes
    limit = available_memory_bytes(device) if max_memory is None else int(max_memory)
    if predicted_bytes > limit:
        whose = "--max-memory" if max_memory is not None else f"available on {device} now"
        shape = "x".join(str(int(s)) for s in input_shape)
        raise MemsrInputError(
            "--max-memory",
            f"{what} at input {shape} needs about {format_bytes(predicted_bytes)} (predicted peak), more than "
            f"{format_bytes(limit)} ({whose}); refused before allocating: {hint}",
        )
    return predicted_bytes
