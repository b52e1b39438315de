"""pytest regression gates for the efficiency of SR models (loaded through the ``pytest11`` entry point).

A test gates a model's deterministic costs against a baseline file kept in version control::

    def test_imdn_efficiency(memsr_gate):
        model = zoo.create("imdn", scale=4)
        memsr_gate(model, input_shape=(1, 3, 64, 64))  # the default quantities, exactly

    def test_rfdn_ntire(memsr_gate):
        # defaults + the NTIRE 2022 table's FLOPs, #Activations, #Conv at its LR 256x256 input
        memsr_gate(zoo.create("rfdn", scale=4), preset="ntire2022")

    def test_rfdn_memory(memsr_gate):
        memsr_gate(zoo.create("rfdn", scale=4), preset="ntire2022", params=True, peak_memory_bytes_predicted=0.01)

Every gated quantity is named for its convention (:mod:`memsr_bench.measure.quantities` defines
them; a name never changes meaning with a preset), and all are measured through the one profile
API, :func:`memsr_bench.measure.profile.profile`:

- ``params``: parameters (shared ones once, buffers excluded); ``trainable_params``: those with
  ``requires_grad``; ``buffers``: buffer elements; ``params_used``: parameters the forward reads;
- ``macs``: multiply-accumulates of every convolution, linear and matmul-type op;
  ``conv_macs``: of convolutions only (FMEN's Mult-Adds);
- ``flops_all_ops``: FLOPs of all ops (2 per MAC, bias adds, element-wise, activation,
  normalisation, pooling, interpolation ops);
- ``activations``: output elements of every convolution op; ``convs``: convolution op calls;
- ``ntire2022_flops``, ``ntire2022_activations``, ``ntire2022_convs``: the NTIRE 2022 ESR counters
  (module hooks; the challenge's FLOPs are MACs); ``thop_0031_macs``: thop 0.0.31 MACs (MemSR's FLOPs);
- ``peak_memory_bytes_predicted``: predicted peak live tensor storage of one forward pass (bytes,
  eager lifetimes, no real pass); ``peak_memory_bytes_predicted_last_use``: the same with tensors
  freed at their last use; ``peak_memory_bytes_measured``: measured on one CPU pass (runs the model
  and moves it to the CPU).

Without quantity arguments a gate checks :data:`DEFAULT_QUANTITIES` (``params``, ``macs``,
``flops_all_ops``, ``activations``, ``convs``, ``peak_memory_bytes_predicted``), plus, with a
``preset``, the quantities the preset's table reports (:attr:`~memsr_bench.measure.presets.Preset.reported`);
a preset also fixes the input size. With quantity arguments, only those: ``True`` checks with the
gate's ``rtol`` (default 0: the value must be exactly the baseline's), a number is that quantity's
own relative tolerance. A value passes when ``|measured - baseline| <= rtol * |baseline|``; a
decrease fails too (so the baseline records the improvement) unless ``allow_decrease=True``. The
names before v2 (``flops``, ``peak_memory``, ``last_use_peak_memory``, ``measured_peak_memory``)
raise a ``TypeError`` naming their replacement; runtime quantities are not gated here (see below).

The baseline: a JSON file, by default ``memsr_baseline.json`` in the rootdir; the ini option
``memsr_baseline`` (relative to the rootdir) or the command-line option ``--memsr-baseline PATH``
(relative to the current directory) move it. Each gate is an entry under the test's node id (plus
``::name`` when ``name=`` is given, or ``#2``, ``#3``, ... for further unnamed gates in one test),
holding the ``values``, a ``quantities`` section giving each gated quantity's label (the preset's
paper label where it reports one, else the name) and convention, and the ``context`` (model name,
input shape, preset, scale, dtype, and the architecture fingerprint). A gate whose input shape,
preset, scale or dtype changed fails, since its numbers are not comparable; the fingerprint is only
reported (a refactor that keeps every gated number passes). A gate without a baseline entry fails,
and so does every gate against a baseline file of format v1 (written before the renaming).

``pytest --memsr-update-baseline`` measures every gate that runs, passes them, and at the end of the
session rewrites their entries (other v2 entries are kept; a v1 file is replaced), deterministically
(sorted keys, 2-space indent): review the diff and commit it. Run it without ``-n`` (pytest-xdist).

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

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.quantities import QUANTITIES

__all__ = [
    "DEFAULT_BASELINE",
    "DEFAULT_QUANTITIES",
    "GATE_QUANTITIES",
    "RENAMED",
    "Baseline",
    "BaselineError",
    "EfficiencyGate",
    "assert_efficiency",
    "benchmark_forward",
    "check_efficiency",
    "default_quantities",
    "measure_efficiency",
    "quantity_labels",
]

DEFAULT_BASELINE = "memsr_baseline.json"
DEFAULT_QUANTITIES: tuple[str, ...] = (
    "params",
    "macs",
    "flops_all_ops",
    "activations",
    "convs",
    "peak_memory_bytes_predicted",
)
#: Every quantity a gate accepts: all but runtime ones (timings are gated by pytest-benchmark).
GATE_QUANTITIES: tuple[str, ...] = tuple(q for q, spec in QUANTITIES.items() if spec.group != "runtime")
#: Gate keywords of baseline format v1 -> (their name now, what it counts).
RENAMED: dict[str, tuple[str, str]] = {
    "flops": ("flops_all_ops", "FLOPs of all ops"),
    "peak_memory": ("peak_memory_bytes_predicted", "predicted peak live tensor storage, eager lifetimes"),
    "last_use_peak_memory": (
        "peak_memory_bytes_predicted_last_use",
        "predicted peak with every tensor freed at its last use",
    ),
    "measured_peak_memory": ("peak_memory_bytes_measured", "measured peak of one CPU forward pass"),
}
_FORMAT = "memsr-bench efficiency baseline v2"
_CONTEXT_FIELDS = ("input_shape", "preset", "scale", "dtype")  # compared; model and fingerprint are not


class BaselineError(MemsrInputError):
    """The baseline file cannot be used: unreadable, not a baseline, or of an older format."""


# ----------------------------------------------------------------------------- measuring


def _check_names(names) -> None:
    """``TypeError`` for renamed, runtime or unknown quantity names (they are gate keywords)."""
    renamed = [q for q in names if q in RENAMED]
    if renamed:
        told = "; ".join(f"{q} was renamed {RENAMED[q][0]} ({RENAMED[q][1]})" for q in renamed)
        if "flops" in renamed:  # the old name hid which FLOPs: say where the papers' ones are now
            told += "; a table's FLOPs are their own quantities: ntire2022_flops (NTIRE 2022), thop_0031_macs (MemSR)"
        raise TypeError(told)
    runtime = [q for q in names if q in QUANTITIES and q not in GATE_QUANTITIES]
    if runtime:
        raise TypeError(
            f"{', '.join(runtime)} cannot be gated exactly (timings vary): use the memsr_benchmark "
            "fixture with pytest-benchmark"
        )
    unknown = [q for q in names if q not in QUANTITIES]
    if unknown:
        raise TypeError(f"unknown quantity {', '.join(unknown)}; known: {', '.join(GATE_QUANTITIES)}")


def default_quantities(preset: str | None = None) -> tuple[str, ...]:
    """:data:`DEFAULT_QUANTITIES`, plus the quantities the ``preset``'s table reports."""
    if preset is None:
        return DEFAULT_QUANTITIES
    from memsr_bench.measure.presets import get_preset

    extra = [q for _, q in get_preset(preset).reported if q not in DEFAULT_QUANTITIES]
    return (*DEFAULT_QUANTITIES, *dict.fromkeys(extra))


def quantity_labels(quantities: Sequence[str], preset: str | None = None) -> dict[str, dict[str, str]]:
    """``{quantity: {"label", "convention"}}``: the preset's paper label where it reports the
    quantity (else the name), and the quantity's definition."""
    labels: dict[str, str] = {}
    if preset is not None:
        from memsr_bench.measure.presets import get_preset

        labels = {q: label for label, q in get_preset(preset).reported}
    return {q: {"label": labels.get(q, q), "convention": QUANTITIES[q].definition} for q in quantities}


def measure_efficiency(
    model,
    quantities: Sequence[str] | None = None,
    *,
    input_shape: Sequence[int] | None = None,
    preset: str | None = None,
    scale: int | None = None,
    dtype=None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """``(context, values)``: the gate's context and the ``quantities`` of ``model`` (integers).

    ``quantities`` defaults to :func:`default_quantities` of ``preset``. Measured by
    :func:`memsr_bench.measure.profile.profile`, which runs only what the quantities need; ``dtype``
    measures a converted copy of the model.
    """
    from memsr_bench.measure.profile import model_dtype, profile
    from memsr_bench.model.fingerprint import architecture_fingerprint

    quantities = default_quantities(preset) if quantities is None else tuple(quantities)
    _check_names(quantities)
    target = model
    if dtype is not None and dtype != model_dtype(model):
        target = copy.deepcopy(model).to(dtype)  # the caller's model keeps its dtype
    measured = profile(
        target,
        input_shape,
        preset=preset,
        scale=scale,
        quantities=quantities,
        device="cpu",
        fingerprint=architecture_fingerprint(target),
    )
    context = {
        "model": measured.model,
        "input_shape": list(measured.input_shape),
        "preset": preset,
        "scale": measured.scale,
        "dtype": str(model_dtype(target)).removeprefix("torch."),
        "fingerprint": measured.fingerprint,
    }
    return context, {q: int(measured.values[q]) for q in quantities}


def _selected(rtol: float, quantities: Mapping[str, Any], preset: str | None) -> dict[str, float]:
    """``{quantity: rtol}`` from the gate's quantity arguments (see the module docstring)."""
    _check_names(list(quantities))
    if not float(rtol) >= 0:
        raise ValueError(f"rtol must be >= 0, not {rtol!r}")
    if not quantities:
        return {q: float(rtol) for q in default_quantities(preset)}
    chosen = {}
    for q, spec in quantities.items():
        if spec is None or spec is False:
            continue
        tol = float(rtol) if spec is True else float(spec)
        if not tol >= 0:
            raise ValueError(f"rtol of {q} must be >= 0, not {spec!r}")
        chosen[q] = tol
    if not chosen:
        raise ValueError("the gate checks no quantity (every one is False/None)")
    return chosen


# ----------------------------------------------------------------------------- the baseline file


class Baseline:
    """The baseline JSON file: ``{"format": ..., "gates": {gate id: entry}}``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._gates: dict[str, Any] | None = None
        self.updated: dict[str, Any] = {}
        self.dropped = 0  # entries of an older-format file that the last save() left out

    def _load(self) -> tuple[Any, dict[str, Any]]:
        """``(format, gates)`` of the file; a missing file is an empty current one."""
        if not self.path.exists():
            return _FORMAT, {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BaselineError(self.path, f"unreadable baseline file ({err})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("gates"), dict):
            raise BaselineError(self.path, 'not a memsr-bench baseline (expected {"gates": {...}})')
        return doc.get("format"), doc["gates"]

    @property
    def gates(self) -> dict[str, Any]:
        if self._gates is None:
            fmt, gates = self._load()
            if fmt != _FORMAT:
                # v1 stored other quantity names (flops, peak_memory) and no conventions: comparing
                # against it would fail every gate with "no baseline value"; say what to do instead.
                found = fmt.rsplit(" ", 1)[-1] if isinstance(fmt, str) else repr(fmt)
                raise BaselineError(
                    self.path,
                    f"baseline format {found}, this memsr-bench reads v2 (quantities renamed for their "
                    f"conventions): run pytest --memsr-update-baseline, then review the diff and commit it",
                )
            self._gates = gates
        return self._gates

    def entry(self, gate_id: str) -> dict[str, Any] | None:
        return self.gates.get(gate_id)

    def record(self, gate_id: str, entry: dict[str, Any]) -> None:
        self.updated[gate_id] = entry

    def save(self) -> None:
        """Write the file: the entries read from it, with every recorded entry replaced or added.

        The file is re-read first (so entries written meanwhile are kept) and replaced atomically.
        Entries of an older-format file are not kept: their quantity names mean other things.
        """
        fmt, old = self._load()
        if fmt != _FORMAT:
            self.dropped = len(set(old) - set(self.updated))
            old = {}
        gates = {**old, **self.updated}
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
    """The failures of a gate (empty when it passes), one line each, naming the quantity (and the
    paper's label for it), the baseline value, the measured value, the change and the tolerance."""
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
    labels = quantity_labels(list(tolerances), context.get("preset"))
    for q, tol in tolerances.items():
        label = labels[q]["label"]
        name = q if label == q else f"{q} ({label})"
        got = measured[q]
        if q not in values:
            failures.append(f"{name}: no baseline value (measured {_fmt(got)})")
            continue
        want = values[q]
        diff = got - want
        if abs(diff) <= tol * abs(want) or (allow_decrease and diff < 0):
            continue
        rel = diff / want if want else math.inf
        allowed = "exactly" if tol == 0 else f"within ±{tol * 100:.4g} %"
        change = f"{diff:+,}, {_percent(rel)}"
        failures.append(f"{name}: baseline {_fmt(want)}, measured {_fmt(got)} ({change}; allowed {allowed})")
    return failures


def _failure_message(gate_id, context, failures, entry, baseline_path) -> str:
    import torch

    shape = "x".join(str(s) for s in context["input_shape"])
    head = f"memsr gate {gate_id!r} ({context['model']}, input {shape}"
    head += f", preset {context['preset']}" if context.get("preset") else ""
    lines = [head + f") failed against {baseline_path}:"]
    lines += [f"  {f}" for f in failures]
    old_fingerprint = (entry or {}).get("context", {}).get("fingerprint")
    if old_fingerprint and old_fingerprint != context.get("fingerprint"):
        lines.append(f"  (architecture fingerprint: baseline {old_fingerprint}, now {context.get('fingerprint')})")
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
        "quantities": quantity_labels(list(measured), context.get("preset")),
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
    tolerances = _selected(rtol, quantities, preset)
    entry = None if update else baseline.entry(gate_id)  # a bad baseline file fails before measuring
    context, measured = measure_efficiency(
        model, tuple(tolerances), input_shape=input_shape, preset=preset, scale=scale, dtype=dtype
    )
    if update:
        baseline.record(gate_id, _entry(context, measured))
        return measured
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
    """Check ``model`` against the entry ``gate_id`` of ``baseline``; ``AssertionError`` if it fails
    (:class:`BaselineError` if the file cannot be used).

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
        unusable = None
        try:
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
        except BaselineError as err:
            unusable = str(err)
        if unusable is not None:  # outside the except: no "during handling" chain in the report
            # the file, not the test, is wrong: one line saying what to do, no plugin traceback
            pytest.fail(unusable, pytrace=False)
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

    from memsr_bench.measure.profile import model_dtype, model_input_shape
    from memsr_bench.measure.runtime import device_name

    shape = model_input_shape(model, input_shape)
    dev = torch.device(device)
    model = model.to(dev).eval()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(dev, model_dtype(model))
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
            model=getattr(getattr(model, "zoo_spec", None), "name", None) or type(model).__name__,
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
            dropped = state.baseline.dropped
            note = f" (replacing an older-format file: {dropped} entr(ies) of gates not run dropped)" if dropped else ""
            terminalreporter.write_line(f"memsr: {n} gate(s) written to {state.baseline.path}{note}")
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
