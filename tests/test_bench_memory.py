"""Cost of the CPU peak-memory measurement against a plain forward pass (pytest-benchmark).

The model is a 64-channel, 10-conv net at 128x128 input. ``pytest tests/test_bench_memory.py
--benchmark-enable`` prints both timings side by side (group ``memory-overhead``); with the
project's default ``--benchmark-disable`` each runs once. ``test_measured_pass_overhead`` checks the
ratio itself (at most 1.3x) with interleaved passes and the minimum of each (robust to a busy
machine), and prints it (``-s``).
"""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from memsr_bench.measure.memory import measure_peak_memory

MAX_RATIO = 1.3


def conv_net(c: int = 64, layers: int = 10) -> nn.Module:
    mods: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.ReLU(inplace=True)]
    for _ in range(layers - 2):
        mods += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True)]
    mods.append(nn.Conv2d(c, 3, 3, padding=1))
    torch.manual_seed(0)
    return nn.Sequential(*mods).eval()


@pytest.fixture(scope="module")
def net_and_input():
    return conv_net(), torch.rand(1, 3, 128, 128)


def plain_forward(model: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        model(x)


@pytest.mark.benchmark(group="memory-overhead")
def test_bench_plain_forward(benchmark, net_and_input):
    model, x = net_and_input
    benchmark.pedantic(plain_forward, args=(model, x), warmup_rounds=1, rounds=5)


@pytest.mark.benchmark(group="memory-overhead")
def test_bench_measured_forward(benchmark, net_and_input):
    model, x = net_and_input
    result = benchmark.pedantic(measure_peak_memory, args=(model, x), warmup_rounds=1, rounds=5)
    assert result.activations_bytes == 2 * 64 * 128 * 128 * 4


def test_measured_pass_overhead(net_and_input):
    model, x = net_and_input
    plain_forward(model, x)
    measure_peak_memory(model, x)  # first use of a dispatch mode imports torch._dynamo: not timed
    plain, measured = [], []
    for _ in range(7):
        for fn, times in ((plain_forward, plain), (measure_peak_memory, measured)):
            t0 = time.perf_counter()
            fn(model, x)
            times.append(time.perf_counter() - t0)
    ratio = min(measured) / min(plain)
    print(f"\nplain {1e3 * min(plain):.1f} ms, measured {1e3 * min(measured):.1f} ms: ratio {ratio:.3f}")
    assert ratio <= MAX_RATIO, f"measurement costs {ratio:.2f}x a plain forward pass"
