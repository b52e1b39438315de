"""One efficiency profile of a model at one input size: counters, runtime, measured and predicted
peak memory, as a flat dict with every convention named (what ``memsr-bench profile`` prints)."""

from __future__ import annotations

import platform
import re
from typing import Any

import torch
from torch import nn

from memsr_bench.errors import MemsrInputError
from memsr_bench.measure import (
    count_efficiency,
    get_preset,
    measure_peak_memory,
    measure_runtime,
    predict_peak_memory,
)

DEFAULT_LR_SIZE = (256, 256)


def parse_size(text: str, option: str) -> tuple[int, int]:
    """'HxW' -> (H, W) with positive integers, else a one-line error naming the option."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise MemsrInputError(option, f"expected HxW with positive integers, e.g. 256x256, not {text!r}")
    return int(match[1]), int(match[2])


def lr_size_for(
    scale: int, input_size: tuple[int, int] | None, output_size: tuple[int, int] | None, preset: str | None
) -> tuple[int, int]:
    """The LR input size: --input, or --output / scale (must divide), or the preset's rule, or 256x256."""
    if input_size and output_size:
        raise MemsrInputError("--input/--output", "give one of them, not both")
    if input_size:
        return input_size
    if output_size:
        if output_size[0] % scale or output_size[1] % scale:
            raise MemsrInputError("--output", f"{output_size[0]}x{output_size[1]} is not divisible by x{scale}")
        return output_size[0] // scale, output_size[1] // scale
    if preset:
        return get_preset(preset).lr_shape(scale)
    return DEFAULT_LR_SIZE


def profile_model(
    model: nn.Module,
    name: str,
    scale: int,
    lr_size: tuple[int, int],
    preset: str | None = None,
    device: str = "cpu",
    channels: int = 3,
    warmup: int = 3,
    repeats: int = 10,
    runtime: bool = True,
    protocol: str = "default",
    channels_last: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Counters (by ``preset``'s convention), runtime, measured and predicted peak memory.

    ``protocol="ntire2022"`` times as the NTIRE 2022 challenge did (no warm-up, the mean).
    """
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MemsrInputError("--device", "CUDA is not available on this machine")
    input_shape = (1, channels, *lr_size)
    counts = count_efficiency(model, input_shape=input_shape, preset=preset, scale=scale)
    predicted = predict_peak_memory(model, input_shape)
    x = torch.rand(input_shape, generator=torch.Generator().manual_seed(0))
    measured = measure_peak_memory(model, x, device=device)
    timing = None
    if runtime:
        timing = measure_runtime(
            model,
            x,
            device=device,
            warmup=warmup,
            repeats=repeats,
            threads=threads,
            channels_last=channels_last,
            protocol=protocol,
        )
    return {
        "model": name,
        "scale": scale,
        "input": list(lr_size),
        "output": [lr_size[0] * scale, lr_size[1] * scale],
        "preset": preset,
        "params": counts.params,
        "trainable_params": counts.trainable_params,
        "buffers": counts.buffers,
        "macs": counts.macs,
        "macs_label": counts.macs_label,
        "flops": counts.flops,
        "activations": counts.activations,
        "convs": counts.convs,
        "unsupported_ops": dict(counts.unsupported_ops()),
        "runtime_ms": None if timing is None else timing.ms,
        "runtime_iqr_ms": None if timing is None else timing.iqr_ms,
        "peak_bytes_measured": measured.peak_bytes,
        "peak_bytes_predicted": predicted.peak_bytes,
        "peak_node": predicted.peak_node,
        "weights_bytes": predicted.weights_bytes,
        "device": device if timing is None else timing.device_name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "conventions": {
            "counts": counts.convention,
            "runtime": None
            if timing is None
            else f"{timing.protocol}: {'mean' if timing.protocol == 'ntire2022' else 'median'} of {repeats} passes "
            f"after {timing.warmup} warm-up, inference_mode, batch 1, float32, {timing.threads} threads"
            f"{', channels_last' if timing.channels_last else ''}",
            "peak_measured": measured.method,
            "peak_predicted": f"live tensor storage from the traced graph ({predicted.lifetimes} frees)",
        },
    }
