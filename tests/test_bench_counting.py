"""Shape-only counting against fvcore's real JIT trace, IMDN x2 and EDSR-baseline x2 at LR 540x960.

The former counters (``jit_oracle_counters``: fvcore's ``JitModelAnalysis`` of a real forward pass)
against :func:`memsr_bench.measure.counters.trace_model` (fake tensors: no kernel runs). Both give
identical numbers for every analysis (checked here at this size; at three small sizes for the whole
zoo in ``test_counters_equal_jit_oracle.py``).

``pytest tests/test_bench_counting.py -m slow --benchmark-enable`` prints both timings side by side
(groups ``counting-imdn-x2`` and ``counting-edsr-baseline-x2``); ``test_counting_speedup`` measures
the ratio in one run (minimum of interleaved repeats) and prints it (``-s``); it must be at least 50.
Marked slow: the real traces take several seconds each on 2 cores.
"""

from __future__ import annotations

import time

import jit_oracle_counters as oracle
import pytest

import zoo
from memsr_bench.measure.counters import ANALYSES, trace_model

pytestmark = pytest.mark.slow

SHAPE = (1, 3, 540, 960)
MODELS = ("imdn", "edsr-baseline")
MIN_SPEEDUP = 50


@pytest.fixture(scope="module", params=MODELS)
def model(request):
    return request.param, zoo.create(request.param, scale=2)


def _totals(trace) -> dict[str, int]:
    return {a: trace.analysis(a).total() for a in ANALYSES}


def test_bench_shape_only(benchmark, model):
    name, module = model
    benchmark.group = f"counting-{name}-x2"
    trace = benchmark.pedantic(trace_model, args=(module, SHAPE), warmup_rounds=1, rounds=5)
    assert trace.unsupported_ops() == {}


def test_bench_fvcore_jit_trace(benchmark, model):
    name, module = model
    benchmark.group = f"counting-{name}-x2"
    trace = benchmark.pedantic(oracle.trace_model, args=(module, SHAPE), rounds=2)
    assert _totals(trace) == _totals(trace_model(module, SHAPE))


def test_counting_speedup(model):
    name, module = model
    trace_model(module, SHAPE)  # first use of the fake mode: not timed
    fake, real = [], []
    for _ in range(2):
        for fn, times in ((trace_model, fake), (oracle.trace_model, real)):
            t0 = time.perf_counter()
            trace = fn(module, SHAPE)
            times.append(time.perf_counter() - t0)
            totals = _totals(trace)
        assert totals == _totals(trace_model(module, SHAPE))
    ratio = min(real) / min(fake)
    print(
        f"\n{name} x2 at LR 540x960: shape-only {1e3 * min(fake):.0f} ms, fvcore JIT trace "
        f"{1e3 * min(real):.0f} ms: {ratio:.0f}x, identical counts"
    )
    assert ratio >= MIN_SPEEDUP, f"shape-only counting is only {ratio:.1f}x faster"
