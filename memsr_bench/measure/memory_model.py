"""Predicted peak memory: an op-level timeline of live tensor storage, computed without real tensors.

How it works. The model runs once on *fake* tensors (``FakeTensorMode``: shapes, dtypes and strides
are propagated, no memory is allocated, no kernel runs; the real weights are wrapped, not copied), and
the same storage accounting as the CPU measurement (:class:`memory.LiveStorageMode`) records every
aten op: its readable name (``aten.mul @ body.1.attn``, the module path coming from module hooks), the
storages it reads and the storages it creates, each with its size in bytes (numel × itemsize of the
storage; views and in-place results share their base's storage and are never counted twice). This is
the aten-level graph with shapes that ``make_fx`` would give, plus one thing a traced graph has lost:
the moment each tensor really dies in the model's Python code.

From that graph two lifetimes policies give the live bytes after every node:

- ``"eager"`` (default): a tensor dies when the model's Python code drops its last reference, which is
  what eager PyTorch does and therefore what :func:`memory.measure_peak_memory` measures (and what
  ``torch.cuda.max_memory_allocated`` sees, up to allocator rounding and kernel workspaces). A local
  variable that still holds a tensor after its last use keeps it alive until it is reassigned or the
  function returns.
- ``"last_use"``: a tensor is freed right after the last node that reads (or writes) it; the graph's
  outputs stay alive to the end; weights, constants and the input are alive throughout. This is the
  ideal a graph executor reaches, and the quantity the FMEN memory argument is about.

``MemoryPrediction`` reports both peaks; ``peak_bytes``, ``peak_node`` and ``timeline`` follow the
chosen policy. ``peak_bytes`` has the same definition as the CPU measurement (weights and input
included), so the two agree exactly for models whose ops behave alike on fake and real tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from memsr_bench.measure.counters import input_channels
from memsr_bench.measure.fake_pass import ModuleStack, fake_forward
from memsr_bench.measure.memory import LiveStorageMode, model_tensors

__all__ = [
    "LIFETIMES",
    "MemoryPrediction",
    "PeakFit",
    "largest_input_for_budget",
    "peak_vs_input_size",
    "predict_peak_memory",
]

LIFETIMES = ("eager", "last_use")


@dataclass(frozen=True)
class MemoryPrediction:
    """Predicted peak memory of one forward pass, in bytes (live tensor storage).

    ``timeline[i] = (name of node i, live bytes right after node i ran)`` under ``lifetimes``;
    ``peak_node`` names the node where ``peak_bytes`` is reached (the first, on ties). ``stopped``: the
    pass was ended as soon as the live bytes exceeded ``stop_above_bytes``; the timeline then ends there,
    and ``peak_bytes`` (above that limit) and both policies' peaks are lower bounds of the full pass's.
    ``weights_bytes`` includes constant tensors the model reads; ``output_bytes`` is the output's
    storage. ``eager_peak_bytes`` and ``last_use_peak_bytes`` are the peaks under both policies.
    """

    peak_bytes: int
    peak_node: str
    peak_index: int
    timeline: list[tuple[str, int]]
    weights_bytes: int
    input_bytes: int
    output_bytes: int
    input_shape: tuple[int, ...]
    lifetimes: str
    eager_peak_bytes: int
    last_use_peak_bytes: int
    stopped: bool = False  # the pass ended early, above ``stop_above_bytes``: ``peak_bytes`` is a lower bound

    @property
    def activations_bytes(self) -> int:
        return self.peak_bytes - self.weights_bytes - self.input_bytes


@dataclass
class _Graph:
    names: list[str]
    inputs: list[list[int]]
    outputs: list[list[int]]
    eager_live: list[int]  # live bytes after each node, from the real deaths
    nbytes: list[int]  # storage id -> bytes
    persistent: set[int]  # weights, constants, input: alive throughout
    graph_outputs: set[int]
    start_live: int
    weights_bytes: int
    input_bytes: int
    output_bytes: int


class _Stop(Exception):
    """Raised inside the fake pass once the live bytes exceed the caller's limit."""


def _trace(
    model: nn.Module,
    input_shape: Sequence[int],
    dtype: torch.dtype,
    observers: Sequence[AbstractContextManager] = (),
    stop_above_bytes: int | None = None,
) -> tuple[_Graph, bool]:
    names: list[str] = []
    inputs: list[list[int]] = []
    outputs: list[list[int]] = []
    eager_live: list[int] = []
    modules = ModuleStack(model)

    def on_op(func, in_ids, out_ids):
        path = modules.path
        op = f"{func.namespace}.{func.overloadpacket.__name__}"
        names.append(f"{op} @ {path}" if path else op)
        inputs.append(in_ids)
        outputs.append(out_ids)
        eager_live.append(mode.live)
        if stop_above_bytes is not None and mode.live > stop_above_bytes:
            raise _Stop

    mode = LiveStorageMode(on_op=on_op)
    weight_ids = mode.track(model_tensors(model))
    input_ids: list[int] = []
    start: list[int] = []

    def on_input(x):
        input_ids.extend(mode.track([x]))
        start.append(mode.live)

    try:
        out = fake_forward(model, input_shape, dtype, [modules, mode, *observers], on_input=on_input)
    except _Stop:
        out, stopped = None, True
    else:
        stopped = False
    out_ids = set(mode.track(t for t in tree_leaves(out) if isinstance(t, torch.Tensor)))
    del out
    start_live = start[0]
    graph = _Graph(
        names=names,
        inputs=inputs,
        outputs=outputs,
        eager_live=eager_live,
        nbytes=list(mode.nbytes),
        persistent={*weight_ids, *input_ids, *mode.constants},
        graph_outputs=out_ids,
        start_live=start_live,
        weights_bytes=mode.bytes_of(weight_ids + mode.constants),
        input_bytes=mode.bytes_of(input_ids),
        output_bytes=mode.bytes_of(out_ids),
    )
    return graph, stopped


def _last_use_live(g: _Graph) -> list[int]:
    """Live bytes after each node when every intermediate is freed right after its last use."""
    n = len(g.names)
    birth: dict[int, int] = {}
    last: dict[int, int] = {}
    for k in range(n):
        for sid in g.outputs[k]:
            birth.setdefault(sid, k)
            last[sid] = k
        for sid in g.inputs[k]:
            last[sid] = k
    always = sum(g.nbytes[s] for s in g.persistent)
    delta = [0] * (n + 1)
    for sid, b in birth.items():
        if sid in g.persistent:
            continue
        end = n - 1 if sid in g.graph_outputs else last[sid]
        delta[b] += g.nbytes[sid]
        delta[end + 1] -= g.nbytes[sid]
    live, running = [], always
    for k in range(n):
        running += delta[k]
        live.append(running)
    return live


def predict_peak_memory(
    model: nn.Module,
    input_shape: Sequence[int],
    dtype: torch.dtype = torch.float32,
    lifetimes: str = "eager",
    observers: Sequence[AbstractContextManager] = (),
    stop_above_bytes: int | None = None,
) -> MemoryPrediction:
    """Predict the peak live tensor storage of ``model`` on an input of ``input_shape`` (N, C, H, W).

    Nothing is allocated and no kernel runs (fake tensors), so any input size is cheap. See the
    module docstring for the two ``lifetimes`` policies. ``observers`` are entered around the same
    fake pass (e.g. a :class:`~memsr_bench.measure.counters.CountingPass`, to count in it too).

    ``stop_above_bytes`` (``"eager"`` only): end the pass as soon as the live bytes exceed it, for
    "does it fit?" questions, where a pass that does not fit is often decided in its first ops; the
    result is then ``stopped``, with a ``peak_bytes`` above the limit that is a lower bound.
    """
    if lifetimes not in LIFETIMES:
        raise ValueError(f"lifetimes must be one of {LIFETIMES}, not {lifetimes!r}")
    if stop_above_bytes is not None and lifetimes != "eager":
        raise ValueError("stop_above_bytes needs the eager lifetimes (last-use lifetimes need the whole pass)")
    g, stopped = _trace(model, input_shape, dtype, observers, stop_above_bytes)
    timelines = {"eager": g.eager_live, "last_use": _last_use_live(g)}
    peaks = {k: max([g.start_live, *v]) for k, v in timelines.items()}
    live = timelines[lifetimes]
    peak = peaks[lifetimes]
    index = live.index(peak) if peak in live else -1
    return MemoryPrediction(
        peak_bytes=peak,
        peak_node=g.names[index] if index >= 0 else "<input>",
        peak_index=index,
        timeline=list(zip(g.names, live, strict=True)),
        weights_bytes=g.weights_bytes,
        input_bytes=g.input_bytes,
        output_bytes=g.output_bytes,
        input_shape=tuple(int(s) for s in input_shape),
        lifetimes=lifetimes,
        eager_peak_bytes=peaks["eager"],
        last_use_peak_bytes=peaks["last_use"],
        stopped=stopped,
    )


@dataclass(frozen=True)
class PeakFit:
    """``peak_bytes ≈ intercept + slope · H · W`` fitted to predictions; unpacks as ``(slope, intercept)``.

    ``sizes`` and ``peaks`` are the predictions fitted; ``max_residual_bytes`` and
    ``max_relative_residual`` are the worst |prediction − fit|, absolute and over the prediction. An
    exactly affine model (fully convolutional, no size-dependent padding or pooling) has residual 0;
    with only two sizes the residual is 0 by construction.
    """

    slope: float
    intercept: float
    sizes: list[tuple[int, int]]
    peaks: list[int]

    def __iter__(self):
        return iter((self.slope, self.intercept))

    def predict(self, height: int, width: int) -> float:
        return self.intercept + self.slope * height * width

    @property
    def max_residual_bytes(self) -> float:
        return max(abs(p - self.predict(h, w)) for (h, w), p in zip(self.sizes, self.peaks, strict=True))

    @property
    def max_relative_residual(self) -> float:
        return max(abs(p - self.predict(h, w)) / p for (h, w), p in zip(self.sizes, self.peaks, strict=True))


def _hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def peak_vs_input_size(
    model: nn.Module,
    sizes: Sequence[int | Sequence[int]],
    channels: int | None = None,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    lifetimes: str = "eager",
) -> PeakFit:
    """Fit ``peak = intercept + slope · H · W`` (least squares) to predicted peaks at ``sizes``.

    ``sizes`` are input (LR) sizes, ``(H, W)`` pairs or ints for squares; ``channels`` defaults to
    the model's input channels. Returns a :class:`PeakFit` (unpacks as ``(slope, intercept)``).
    """
    hws = [_hw(s) for s in sizes]
    if len({h * w for h, w in hws}) < 2:
        raise ValueError("peak_vs_input_size needs at least two sizes with different H·W")
    c = input_channels(model) if channels is None else channels
    peaks = [predict_peak_memory(model, (batch, c, h, w), dtype, lifetimes).peak_bytes for h, w in hws]
    xs = [h * w for h, w in hws]
    mx, my = sum(xs) / len(xs), sum(peaks) / len(peaks)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, peaks, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return PeakFit(slope, my - slope * mx, hws, peaks)


def largest_input_for_budget(
    model: nn.Module,
    budget_bytes: int,
    aspect: tuple[int, int] = (1, 1),
    channels: int | None = None,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    multiple_of: int = 1,
    lifetimes: str = "eager",
) -> tuple[int, int]:
    """The largest input ``(H, W)`` with ``H : W = aspect`` whose predicted peak fits ``budget_bytes``.

    ``H`` runs over multiples of ``multiple_of`` and ``W = round(H · aspect[1] / aspect[0])``; the
    answer assumes the peak grows with the input (true of every SR network) and is checked by
    prediction at ``H`` and at the next size up. Raises ``ValueError`` if even the smallest size
    does not fit.
    """
    ah, aw = aspect
    if ah <= 0 or aw <= 0 or multiple_of <= 0:
        raise ValueError(f"aspect and multiple_of must be positive, not {aspect}, {multiple_of}")
    c = input_channels(model) if channels is None else channels

    def size(k: int) -> tuple[int, int]:  # k-th candidate, H = k * multiple_of
        h = k * multiple_of
        return h, max(1, round(h * aw / ah))

    cache: dict[int, bool] = {}

    def fits(k: int) -> bool:
        if k not in cache:
            h, w = size(k)
            stop = budget_bytes if lifetimes == "eager" else None  # a size that does not fit ends early
            prediction = predict_peak_memory(model, (batch, c, h, w), dtype, lifetimes, stop_above_bytes=stop)
            cache[k] = prediction.peak_bytes <= budget_bytes
        return cache[k]

    # first guess from the affine fit on two small sizes, then bracket and bisect on k
    k1, k2 = max(1, 16 // multiple_of), max(2, 32 // multiple_of)
    if not fits(k1):
        h, w = size(k1)
        raise ValueError(f"even a {h}x{w} input does not fit in {budget_bytes} bytes")
    fit = peak_vs_input_size(model, [size(k1), size(k2)], c, batch, dtype, lifetimes)
    per_k2 = fit.slope * multiple_of**2 * aw / ah  # peak ≈ intercept + per_k2 · k²
    guess = math.sqrt(max(budget_bytes - fit.intercept, 0) / per_k2) if per_k2 > 0 else 1
    lo, hi = k1, max(k1 + 1, int(guess))
    if fits(hi):
        lo = hi
        hi = max(hi + 1, int(hi * 1.05) + 1)
        while fits(hi):
            lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return size(lo)
