"""Forward-pass runtime of a model (batch as given, ``torch.inference_mode``).

Two protocols:

- ``"default"``: ``warmup`` untimed passes, then ``repeats`` timed passes; the headline number is the
  median (with the interquartile range). CPU passes are timed with ``time.perf_counter``; CUDA passes
  with a pair of CUDA events around each pass and a ``synchronize`` before reading them (so
  asynchronous launches are not mistaken for work done).
- ``"ntire2022"``: the NTIRE 2022 Efficient SR challenge script: no warm-up, CUDA events around every
  pass, ``synchronize``, and the *mean* of the passes (the first pass, with cuDNN autotuning and lazy
  initialisation, is included). On CPU the same with ``perf_counter``.

The result records the thread count (``torch.get_num_threads()`` during the passes), the device name
and the torch version, which any CPU timing needs to be read correctly.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PROTOCOLS", "RuntimeResult", "device_name", "measure_runtime"]

PROTOCOLS = ("default", "ntire2022")


@dataclass(frozen=True)
class RuntimeResult:
    """Timings of ``repeats`` forward passes, in milliseconds; ``ms`` is the protocol's headline."""

    median_ms: float
    iqr_ms: float
    mean_ms: float
    samples_ms: list[float]
    protocol: str
    device: str
    device_name: str
    torch_version: str
    threads: int
    warmup: int
    channels_last: bool

    @property
    def ms(self) -> float:
        """The protocol's figure: the median (default) or the mean (NTIRE 2022)."""
        return self.mean_ms if self.protocol == "ntire2022" else self.median_ms


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine()
    return str(device)


def _iqr(samples: list[float]) -> float:
    if len(samples) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q3 - q1


def _time_cpu(model: nn.Module, x: torch.Tensor, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        model(x)
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def _time_cuda(model: nn.Module, x: torch.Tensor, n: int, device: torch.device) -> list[float]:
    samples = []
    with torch.cuda.device(device):
        torch.cuda.synchronize(device)
        for _ in range(n):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            torch.cuda.synchronize(device)
            samples.append(start.elapsed_time(end))
    return samples


def measure_runtime(
    model: nn.Module,
    x: torch.Tensor,
    device: str | torch.device = "cpu",
    warmup: int = 10,
    repeats: int = 100,
    threads: int | None = None,
    channels_last: bool = False,
    protocol: str = "default",
) -> RuntimeResult:
    """Time ``model(x)`` on ``device`` (the model is moved there in place; ``x`` is copied there).

    ``threads`` sets ``torch.set_num_threads`` for the measurement (restored afterwards);
    ``channels_last`` converts the model and input to the channels-last memory format for the
    measurement (the model is converted back afterwards). ``protocol="ntire2022"`` ignores
    ``warmup`` (the challenge script has none) and reports the mean.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, not {repeats}, {warmup}")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"measure_runtime supports cpu and cuda devices, not {device}")
    if protocol == "ntire2022":
        warmup = 0

    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    model = model.to(device)
    x = x.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        used_threads = torch.get_num_threads()
        with torch.inference_mode():
            if device.type == "cuda":
                _time_cuda(model, x, warmup, device)
                samples = _time_cuda(model, x, repeats, device)
            else:
                _time_cpu(model, x, warmup)
                samples = _time_cpu(model, x, repeats)
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        torch.set_num_threads(old_threads)

    return RuntimeResult(
        median_ms=statistics.median(samples),
        iqr_ms=_iqr(samples),
        mean_ms=statistics.fmean(samples),
        samples_ms=samples,
        protocol=protocol,
        device=str(device),
        device_name=device_name(device),
        torch_version=torch.__version__,
        threads=used_threads,
        warmup=warmup,
        channels_last=channels_last,
    )
