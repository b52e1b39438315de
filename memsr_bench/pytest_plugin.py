"""pytest regression gates for the efficiency of SR models (loaded through the ``pytest11`` entry point).

A test gates a model's deterministic costs against a baseline file kept in version control::

    def test_imdn_efficiency(memsr_gate):
        model = zoo.create("imdn", scale=4)
        memsr_gate(model, input_shape=(1, 3, 64, 64))  # params, MACs, FLOPs, activations, convs, peak

    def test_rfdn_memory(memsr_gate):
        memsr_gate(zoo.create("rfdn", scale=4), preset="ntire2022", params=True, peak_memory=0.01)

Quantities (:data:`QUANTITIES`): ``params``, ``macs``, ``flops``, ``activations``, ``convs`` (from
:func:`memsr_bench.measure.count_efficiency`; with a ``preset`` the preset's conventions),
``peak_memory`` (predicted peak live tensor storage, bytes, :func:`~memsr_bench.measure.memory_model.
predict_peak_memory`, eager lifetimes), and on request ``trainable_params``, ``buffers``,
``last_use_peak_memory`` and ``measured_peak_memory`` (the CPU measurement, which runs the model and
moves it to the CPU). Without quantity arguments the gate checks :data:`DEFAULT_QUANTITIES`; with
some, only those: ``True`` checks with the gate's ``rtol`` (default 0: the value must be exactly
the baseline's), a number is that quantity's own relative tolerance. A value passes when
``|measured - baseline| <= rtol * |baseline|``; a decrease fails too (so the baseline records the
improvement) unless ``allow_decrease=True``.

The baseline: a JSON file, by default ``memsr_baseline.json`` in the rootdir; the ini option
``memsr_baseline`` (relative to the rootdir) or the command-line option ``--memsr-baseline PATH``
(relative to the current directory) move it. Each gate is an entry under the test's node id (plus
``::name`` when ``name=`` is given, or ``#2``, ``#3``, ... for further unnamed gates in one test),
holding the values and the context (model class, input shape, preset, scale, dtype): a gate whose
context changed fails, since its numbers are not comparable. A gate without a baseline entry fails.

``pytest --memsr-update-baseline`` measures every gate that runs, passes them, and at the end of the
session rewrites their entries (other entries are kept), deterministically (sorted keys, 2-space
indent): review the diff and commit it. Run it without ``-n`` (pytest-xdist).

Runtime is not deterministic and is gated by pytest-benchmark instead: the ``memsr_benchmark``
fixture (or :func:`benchmark_forward`) times the forward pass in pytest-benchmark's ``benchmark``
fixture, recording the model, input, device, threads and torch version in ``extra_info``::

    def test_imdn_speed(memsr_benchmark):
        memsr_benchmark(zoo.create("imdn", scale=4), (1, 3, 128, 128), threads=1)

    pytest --benchmark-enable --benchmark-autosave                         # record
    pytest --benchmark-enable --benchmark-compare --benchmark-compare-fail=median:10%  # gate

The standalone :func:`assert_efficiency` does the same check outside the plugin.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "DEFAULT_BASELINE",
    "DEFAULT_QUANTITIES",
    "QUANTITIES",
    "Baseline",
    "EfficiencyGate",
    "assert_efficiency",
    "benchmark_forward",
    "check_efficiency",
    "measure_efficiency",
]

DEFAULT_BASELINE = "memsr_baseline.json"
DEFAULT_QUANTITIES: tuple[str, ...] = ("params", "macs", "flops", "activations", "convs", "peak_memory")
QUANTITIES: tuple[str, ...] = (
    *DEFAULT_QUANTITIES,
    "trainable_params",
    "buffers",
    "last_use_peak_memory",
    "measured_peak_memory",
)
_COUNTED = ("macs", "flops", "activations", "convs")
_FORMAT = "memsr-bench efficiency baseline v1"
_CONTEXT_FIELDS = ("input_shape", "preset", "scale", "dtype")


# ----------------------------------------------------------------------------- measuring


def _model_dtype(model):
    import torch

    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def _input_shape(model, input_shape: Sequence[int] | None, preset: str | None, scale: int | None) -> tuple[int, ...]:
    from memsr_bench.errors import MemsrInputError

    if input_shape is None:
        if preset is None:
            raise MemsrInputError("memsr_gate", "give input_shape or a preset")
        from memsr_bench.measure.presets import get_preset

        if scale is None and isinstance(getattr(model, "scale", None), int):
            scale = model.scale
        from memsr_bench.measure.counters import input_channels

        input_shape = get_preset(preset).input_shape(scale, channels=input_channels(model))
    from memsr_bench.measure.counters import normalise_input_shape

    return normalise_input_shape(input_shape)


def _model_name(model) -> str:
    spec = getattr(model, "zoo_spec", None)
    return getattr(spec, "name", None) or type(model).__name__


def measure_efficiency(
    model,
    quantities: Sequence[str] = DEFAULT_QUANTITIES,
    *,
    input_shape: Sequence[int] | None = None,
    preset: str | None = None,
    scale: int | None = None,
    dtype=None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """``(context, values)``: the gate's context and the ``quantities`` of ``model`` (integers).

    Only what the quantities need runs: one trace for the counters, one fake-tensor pass for the
    predicted peak, a real CPU pass for ``measured_peak_memory``.
    """
    import torch

    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown:
        raise TypeError(f"unknown quantity {', '.join(unknown)}; known: {', '.join(QUANTITIES)}")
    shape = _input_shape(model, input_shape, preset, scale)
    dtype = _model_dtype(model) if dtype is None else dtype
    context = {
        "model": _model_name(model),
        "input_shape": list(shape),
        "preset": preset,
        "scale": None if scale is None else int(scale),
        "dtype": str(dtype).removeprefix("torch."),
    }
    values: dict[str, int] = {}
    wanted = set(quantities)
    if wanted & {"params", "trainable_params", "buffers"}:
        from memsr_bench.measure.counters import count_params

        p = count_params(model)
        values.update(params=p.params, trainable_params=p.trainable_params, buffers=p.buffers)
    if wanted & set(_COUNTED):
        from memsr_bench.measure.counters import count_efficiency

        c = count_efficiency(model, shape, preset, scale=scale)
        values.update(macs=c.macs, flops=c.flops, activations=c.activations, convs=c.convs)
    if wanted & {"peak_memory", "last_use_peak_memory"}:
        from memsr_bench.measure.memory_model import predict_peak_memory

        m = predict_peak_memory(model, shape, dtype=dtype)
        values.update(peak_memory=m.eager_peak_bytes, last_use_peak_memory=m.last_use_peak_bytes)
    if "measured_peak_memory" in wanted:
        from memsr_bench.measure.memory import measure_peak_memory

        x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
        values["measured_peak_memory"] = measure_peak_memory(model, x, "cpu").peak_bytes
    return context, {q: int(values[q]) for q in quantities}


def _selected(rtol: float, quantities: Mapping[str, Any]) -> dict[str, float]:
    """``{quantity: rtol}`` from the gate's quantity arguments (see the module docstring)."""
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown:
        raise TypeError(f"unknown quantity {', '.join(unknown)}; known: {', '.join(QUANTITIES)}")
    chosen = {}
    for q, spec in quantities.items():
        if spec is None or spec is False:
            continue
        tol = float(rtol) if spec is True else float(spec)
        if not tol >= 0:
            raise ValueError(f"rtol of {q} must be >= 0, not {spec!r}")
        chosen[q] = tol
    if not quantities:
        chosen = {q: float(rtol) for q in DEFAULT_QUANTITIES}
    if not chosen:
        raise ValueError("the gate checks no quantity (every one is False/None)")
    if not float(rtol) >= 0:
        raise ValueError(f"rtol must be >= 0, not {rtol!r}")
    return chosen


# ----------------------------------------------------------------------------- the baseline file


class Baseline:
    """The baseline JSON file: ``{"format": ..., "gates": {gate id: entry}}``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._gates: dict[str, Any] | None = None
        self.updated: dict[str, Any] = {}

    def _read(self) -> dict[str, Any]:
        from memsr_bench.errors import MemsrInputError

        if not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise MemsrInputError(self.path, f"unreadable baseline file ({err})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("gates"), dict):
            raise MemsrInputError(self.path, 'not a memsr-bench baseline (expected {"gates": {...}})')
        return doc["gates"]

    @property
    def gates(self) -> dict[str, Any]:
        if self._gates is None:
            self._gates = self._read()
        return self._gates

    def entry(self, gate_id: str) -> dict[str, Any] | None:
        return self.gates.get(gate_id)

    def record(self, gate_id: str, entry: dict[str, Any]) -> None:
        self.updated[gate_id] = entry

    def save(self) -> None:
        """Write the file: the entries read from it, with every recorded entry replaced or added.

        The file is re-read first (so entries written meanwhile are kept) and replaced atomically.
        """
        gates = {**self._read(), **self.updated}
        doc = {"format": _FORMAT, "gates": gates}
        text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)
        self._gates = gates


# ----------------------------------------------------------------------------- checking


def _fmt(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.6g}"


def _percent(rel: float) -> str:
    if math.isinf(rel):
        return "inf %"
    return f"{rel * 100:+.4g} %"


def check_efficiency(
    gate_id: str,
    context: Mapping[str, Any],
    measured: Mapping[str, int],
    tolerances: Mapping[str, float],
    entry: Mapping[str, Any] | None,
    *,
    baseline_path: str | os.PathLike = DEFAULT_BASELINE,
    allow_decrease: bool = False,
) -> list[str]:
    """The failures of a gate (empty when it passes), one line each, naming the quantity, the
    baseline value, the measured value, the change and the tolerance."""
    if entry is None:
        return [f"no baseline for this gate in {baseline_path}"]
    failures = []
    old_context = entry.get("context", {})
    for f in _CONTEXT_FIELDS:
        if old_context.get(f) != context.get(f):
            failures.append(
                f"{f} changed: baseline {old_context.get(f)!r}, now {context.get(f)!r} (the numbers are not comparable)"
            )
    if failures:
        return failures
    values = entry.get("values", {})
    for q, tol in tolerances.items():
        got = measured[q]
        if q not in values:
            failures.append(f"{q}: no baseline value (measured {_fmt(got)})")
            continue
        want = values[q]
        diff = got - want
        if abs(diff) <= tol * abs(want) or (allow_decrease and diff < 0):
            continue
        rel = diff / want if want else math.inf
        allowed = "exactly" if tol == 0 else f"within ±{tol * 100:.4g} %"
        change = f"{diff:+,}, {_percent(rel)}"
        failures.append(f"{q}: baseline {_fmt(want)}, measured {_fmt(got)} ({change}; allowed {allowed})")
    return failures


def _failure_message(gate_id, context, failures, entry, baseline_path) -> str:
    import torch

    shape = "x".join(str(s) for s in context["input_shape"])
    head = f"memsr gate {gate_id!r} ({context['model']}, input {shape}"
    head += f", preset {context['preset']}" if context.get("preset") else ""
    lines = [head + f") failed against {baseline_path}:"]
    lines += [f"  {f}" for f in failures]
    recorded = (entry or {}).get("torch_version")
    if recorded and recorded != torch.__version__:
        lines.append(f"  (baseline recorded with torch {recorded}, running torch {torch.__version__})")
    lines.append(f"If the change is intended: pytest --memsr-update-baseline, then review and commit {baseline_path}.")
    return "\n".join(lines)


def _entry(context: Mapping[str, Any], measured: Mapping[str, int]) -> dict[str, Any]:
    import torch

    from memsr_bench import __version__

    return {
        "context": dict(context),
        "values": dict(measured),
        "torch_version": torch.__version__,
        "memsr_bench_version": __version__,
    }


def _gate(
    baseline: Baseline,
    gate_id: str,
    update: bool,
    model,
    *,
    input_shape,
    preset,
    scale,
    dtype,
    rtol,
    allow_decrease,
    quantities,
) -> dict[str, int]:
    __tracebackhide__ = True
    tolerances = _selected(rtol, quantities)
    context, measured = measure_efficiency(
        model, tuple(tolerances), input_shape=input_shape, preset=preset, scale=scale, dtype=dtype
    )
    if update:
        baseline.record(gate_id, _entry(context, measured))
        return measured
    entry = baseline.entry(gate_id)
    failures = check_efficiency(
        gate_id,
        context,
        measured,
        tolerances,
        entry,
        baseline_path=baseline.path,
        allow_decrease=allow_decrease,
    )
    if failures:
        raise AssertionError(_failure_message(gate_id, context, failures, entry, baseline.path))
    return measured


def assert_efficiency(
    model,
    gate_id: str,
    *,
    baseline: str | os.PathLike | Baseline = DEFAULT_BASELINE,
    update: bool = False,
    input_shape: Sequence[int] | None = None,
    preset: str | None = None,
    scale: int | None = None,
    dtype=None,
    rtol: float = 0.0,
    allow_decrease: bool = False,
    **quantities: bool | float | None,
) -> dict[str, int]:
    """Check ``model`` against the entry ``gate_id`` of ``baseline``; ``AssertionError`` if it fails.

    ``update=True`` writes the measured values into the baseline file at once instead. Returns the
    measured values. Quantities and tolerances as in the module docstring.
    """
    __tracebackhide__ = True
    base = baseline if isinstance(baseline, Baseline) else Baseline(baseline)
    measured = _gate(
        base,
        gate_id,
        update,
        model,
        input_shape=input_shape,
        preset=preset,
        scale=scale,
        dtype=dtype,
        rtol=rtol,
        allow_decrease=allow_decrease,
        quantities=quantities,
    )
    if update:
        base.save()
    return measured


class EfficiencyGate:
    """What the ``memsr_gate`` fixture gives: call it (or ``.assert_efficiency``) with a model."""

    def __init__(self, baseline: Baseline, update: bool, node):
        self.baseline = baseline
        self.update = update
        self.node = node
        self._used: set[str] = set()

    def _gate_id(self, name: str | None) -> str:
        if name is not None:
            gate_id = f"{self.node.nodeid}::{name}"
            if gate_id in self._used:
                raise ValueError(f"gate name {name!r} used twice in one test")
        else:
            gate_id, n = self.node.nodeid, 1
            while gate_id in self._used:
                n += 1
                gate_id = f"{self.node.nodeid}#{n}"
        self._used.add(gate_id)
        return gate_id

    def assert_efficiency(
        self,
        model,
        name: str | None = None,
        *,
        input_shape: Sequence[int] | None = None,
        preset: str | None = None,
        scale: int | None = None,
        dtype=None,
        rtol: float = 0.0,
        allow_decrease: bool = False,
        **quantities: bool | float | None,
    ) -> dict[str, int]:
        """Gate ``model`` (see the module docstring); returns the measured values."""
        __tracebackhide__ = True
        gate_id = self._gate_id(name)
        measured = _gate(
            self.baseline,
            gate_id,
            self.update,
            model,
            input_shape=input_shape,
            preset=preset,
            scale=scale,
            dtype=dtype,
            rtol=rtol,
            allow_decrease=allow_decrease,
            quantities=quantities,
        )
        self.node.user_properties.append((f"memsr_gate {gate_id}", json.dumps(measured, sort_keys=True)))
        return measured

    __call__ = assert_efficiency


# ----------------------------------------------------------------------------- runtime (pytest-benchmark)


def benchmark_forward(
    benchmark,
    model,
    input_shape: Sequence[int],
    *,
    device: str = "cpu",
    threads: int | None = None,
    channels_last: bool = False,
    rounds: int | None = None,
    warmup_rounds: int = 1,
):
    """Time ``model(x)`` (``torch.inference_mode``, random ``x`` of ``input_shape``) in pytest-benchmark's
    ``benchmark`` fixture; returns the output. ``rounds``: fixed rounds (``benchmark.pedantic``) instead
    of pytest-benchmark's calibration. The model is moved to ``device`` in place; on CUDA each pass
    ends with a ``synchronize``. Model, input, device, threads and torch version go into ``extra_info``.
    """
    import torch

    from memsr_bench.measure.runtime import device_name

    shape = _input_shape(model, input_shape, None, None)
    dev = torch.device(device)
    model = model.to(dev).eval()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(dev, _model_dtype(model))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)

    def forward():
        with torch.inference_mode():
            out = model(x)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return out

    try:
        benchmark.extra_info.update(
            model=_model_name(model),
            input_shape=list(shape),
            device=str(dev),
            device_name=device_name(dev),
            threads=torch.get_num_threads(),
            channels_last=channels_last,
            torch_version=torch.__version__,
        )
        if rounds is not None:
            return benchmark.pedantic(forward, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        return benchmark(forward)
    finally:
        torch.set_num_threads(old_threads)
        if channels_last:
            model.to(memory_format=torch.contiguous_format)


# ----------------------------------------------------------------------------- the plugin

_STATE = pytest.StashKey["_GateSession"]()


class _GateSession:
    def __init__(self, baseline: Baseline, update: bool):
        self.baseline = baseline
        self.update = update


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("memsr", "memsr-bench efficiency gates")
    group.addoption(
        "--memsr-update-baseline",
        action="store_true",
        default=False,
        help="measure every memsr_gate, pass it, and rewrite its entry in the baseline file",
    )
    group.addoption(
        "--memsr-baseline",
        default=None,
        metavar="PATH",
        help=f"baseline file of memsr_gate (default: ini option memsr_baseline, else {DEFAULT_BASELINE})",
    )
    parser.addini(
        "memsr_baseline",
        help=f"baseline file of the memsr_gate fixture, relative to the rootdir (default {DEFAULT_BASELINE})",
        default=DEFAULT_BASELINE,
    )


def _baseline_path(config: pytest.Config) -> Path:
    cli = config.getoption("memsr_baseline")
    if cli:
        return Path(config.invocation_params.dir, cli)
    return Path(config.rootpath, config.getini("memsr_baseline") or DEFAULT_BASELINE)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_STATE] = _GateSession(Baseline(_baseline_path(config)), config.getoption("memsr_update_baseline"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is not None and state.update and state.baseline.updated:
        state.baseline.save()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.update:
        n = len(state.baseline.updated)
        if n:
            terminalreporter.write_line(f"memsr: {n} gate(s) written to {state.baseline.path}")
        else:
            terminalreporter.write_line(f"memsr: no gate measured; {state.baseline.path} not written")


@pytest.fixture
def memsr_gate(request: pytest.FixtureRequest) -> EfficiencyGate:
    """Efficiency regression gate against the baseline file (see :mod:`memsr_bench.pytest_plugin`)."""
    state = request.config.stash[_STATE]
    return EfficiencyGate(state.baseline, state.update, request.node)


@pytest.fixture
def memsr_benchmark(request: pytest.FixtureRequest):
    """``memsr_benchmark(model, input_shape, **kw)``: :func:`benchmark_forward` in pytest-benchmark."""
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:
        pytest.fail("memsr_benchmark needs pytest-benchmark (pip install pytest-benchmark)", pytrace=False)

    def run(model, input_shape, **kwargs):
        return benchmark_forward(benchmark, model, input_shape, **kwargs)

    return run
