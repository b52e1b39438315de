"""The memsr_gate pytest plugin: efficiency regression gates against a baseline file (pytester)."""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points

import pytest
import torch
from torch import nn

from memsr_bench.measure.memory_model import predict_peak_memory
from memsr_bench.measure.profile import profile
from memsr_bench.measure.quantities import QUANTITIES
from memsr_bench.model.fingerprint import architecture_fingerprint
from memsr_bench.pytest_plugin import (
    DEFAULT_QUANTITIES,
    GATE_QUANTITIES,
    Baseline,
    BaselineError,
    assert_efficiency,
    measure_efficiency,
)

pytest_plugins = ["pytester"]

SHAPE = (1, 3, 16, 16)
PEAK = "peak_memory_bytes_predicted"
# Tiny's convolutions per output pixel (Cin·Cout·9 each) and output channels, by hand
CONV_MACS_PER_PIXEL = 3 * 8 * 9 + 8 * 8 * 9 + 8 * 12 * 9
CONV_OUT_CHANNELS = 8 + 8 + 12


class Tiny(nn.Module):
    """A small x2 SR net; ``extra_param`` adds one parameter, ``scratch_elems`` a float32 scratch
    tensor that lives through the whole forward pass (it raises the peak by its size only)."""

    def __init__(self, extra_param: bool = False, scratch_elems: int = 0):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 12, 3, padding=1)
        self.up = nn.PixelShuffle(2)
        if extra_param:
            self.extra = nn.Parameter(torch.zeros(1))
        self.scratch_elems = scratch_elems

    def forward(self, x):
        scratch = x.new_zeros(self.scratch_elems) if self.scratch_elems else None  # noqa: F841 - held
        return self.up(self.tail(torch.relu(self.body(torch.relu(self.head(x))))))


TEST_FILE = """
import os

from test_pytest_plugin_model import Tiny

SHAPE = (1, 3, 16, 16)


def build():
    return Tiny(extra_param=os.environ.get("GATE_EXTRA_PARAM") == "1",
                scratch_elems=int(os.environ.get("GATE_SCRATCH", "0")))


def test_tiny(memsr_gate):
    measured = memsr_gate(build(), input_shape=SHAPE, scale=2, params=True, macs=True, flops_all_ops=True,
                          activations=True, convs=True, peak_memory_bytes_predicted=0.005)
    assert set(measured) == {"params", "macs", "flops_all_ops", "activations", "convs",
                             "peak_memory_bytes_predicted"}


def test_defaults(memsr_gate):
    memsr_gate(build(), input_shape=SHAPE[1:])  # every default quantity, exactly
"""


def _plugin_args() -> list[str]:
    """``-p memsr_bench.pytest_plugin`` unless the installed entry point loads it already."""
    installed = any(ep.value == "memsr_bench.pytest_plugin" for ep in entry_points(group="pytest11"))
    if installed and not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return []
    return ["-p", "memsr_bench.pytest_plugin"]


@pytest.fixture(scope="module")
def warm():
    """Import everything a gate imports lazily *before* pytester snapshots ``sys.modules``: the
    in-process runs drop modules first imported inside them, and torch cannot import some twice."""
    import pytest_benchmark.plugin  # noqa: F401

    import memsr_bench.measure.runtime  # noqa: F401

    measure_efficiency(Tiny(), GATE_QUANTITIES, input_shape=SHAPE)
    measure_efficiency(Tiny(), ("params",), preset="ntire2022")


@pytest.fixture
def project(warm, pytester, monkeypatch):
    """A user project: the model module, a test gating it, no baseline yet."""
    import inspect

    model_src = "import torch\nfrom torch import nn\n\n\n" + inspect.getsource(Tiny)
    pytester.makepyfile(test_pytest_plugin_model=model_src, test_gates=TEST_FILE)
    pytester.syspathinsert()
    monkeypatch.delenv("GATE_EXTRA_PARAM", raising=False)
    monkeypatch.delenv("GATE_SCRATCH", raising=False)
    return pytester


def _run(pytester, *args):
    return pytester.runpytest(
        *_plugin_args(),
        *("-p", "no:cacheprovider", "-p", "no:hypothesispytest"),  # hypothesis: 1 s per in-process run
        *("-W", "ignore::pytest.PytestAssertRewriteWarning"),
        *args,
    )


def test_gate_workflow(project, monkeypatch):
    baseline = project.path / "memsr_baseline.json"

    # no baseline yet: the gates fail and say how to make one
    result = _run(project)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*no baseline for this gate in*memsr_baseline.json*", "*--memsr-update-baseline*"]
    )
    assert not baseline.exists()

    # --memsr-update-baseline writes it (v2, sorted, deterministic) and passes
    result = _run(project, "--memsr-update-baseline")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["memsr: 2 gate(s) written to *memsr_baseline.json"])
    text = baseline.read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"
    assert doc["format"] == "memsr-bench efficiency baseline v2"
    entry = doc["gates"]["test_gates.py::test_tiny"]
    context, values = measure_efficiency(Tiny(), DEFAULT_QUANTITIES, input_shape=SHAPE, scale=2)
    fingerprint = entry["context"].pop("fingerprint")  # of the project's Tiny (another module: another hash)
    assert len(fingerprint) == 16 and fingerprint != context.pop("fingerprint")
    assert entry["values"] == values and entry["context"] == context
    assert entry["context"]["input_shape"] == [1, 3, 16, 16] and entry["torch_version"] == torch.__version__
    # every gated quantity is recorded with its label (no preset: its name) and its convention
    assert entry["quantities"] == {q: {"label": q, "convention": QUANTITIES[q].definition} for q in values}
    assert set(doc["gates"]) == {"test_gates.py::test_tiny", "test_gates.py::test_defaults"}
    assert set(doc["gates"]["test_gates.py::test_defaults"]["values"]) == set(DEFAULT_QUANTITIES)
    assert _run(project, "--memsr-update-baseline").ret == 0
    assert baseline.read_text() == text  # rewriting an unchanged baseline changes nothing

    # unchanged model: passes
    _run(project).assert_outcomes(passed=2)

    # one more parameter: params (gated exactly) fails, naming baseline, measured and the change
    params = values["params"]
    assert params == 1684  # 3·8·9+8 + 8·8·9+8 + 8·12·9+12
    pct = f"{100 / params:.4g}"
    monkeypatch.setenv("GATE_EXTRA_PARAM", "1")
    result = _run(project, "-k", "test_tiny")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*memsr gate 'test_gates.py::test_tiny' (Tiny, input 1x3x16x16) failed against*baseline.json:",
            f"*params: baseline {params:,}, measured {params + 1:,} (+1, +{pct} %; allowed exactly)",
            f"*(architecture fingerprint: baseline {fingerprint}, now *)",
        ]
    )
    assert f"now {fingerprint})" not in result.stdout.str()  # the extra parameter changed it
    assert f"{PEAK}:" not in result.stdout.str()  # +4 bytes of weights is within its 0.5 %
    monkeypatch.delenv("GATE_EXTRA_PARAM")

    # predicted peak +1 % (a scratch tensor; no parameter added): the peak (rtol 0.5 %) fails
    peak = values[PEAK]
    scratch = round(0.01 * peak / 4)
    grown = predict_peak_memory(Tiny(scratch_elems=scratch), SHAPE).peak_bytes
    assert grown - peak == 4 * scratch and abs(grown / peak - 1.01) < 1e-3
    monkeypatch.setenv("GATE_SCRATCH", str(scratch))
    result = _run(project)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    change = f"+{grown - peak:,}, +{(grown - peak) / peak * 100:.4g} %"  # +1 %
    assert f"{PEAK}: baseline {peak:,}, measured {grown:,} ({change}; allowed within ±0.5 %)" in out
    assert "params:" not in out and "macs:" not in out
    assert "architecture fingerprint" not in out  # same module tree and code: only the numbers moved
    # a smaller growth, within the 0.5 % tolerance, passes that gate (the exact default gate still fails)
    monkeypatch.setenv("GATE_SCRATCH", str(round(0.002 * peak / 4)))
    _run(project).assert_outcomes(passed=1, failed=1)

    # --memsr-update-baseline accepts the change; then the gates pass again
    monkeypatch.setenv("GATE_SCRATCH", str(scratch))
    _run(project, "--memsr-update-baseline").assert_outcomes(passed=2)
    assert json.loads(baseline.read_text())["gates"]["test_gates.py::test_tiny"]["values"][PEAK] == grown
    _run(project).assert_outcomes(passed=2)


def test_fingerprint_is_reported_not_compared(project):
    """A gate fails on the counted numbers, never on the hash: a changed fingerprint alone passes."""
    _run(project, "--memsr-update-baseline").assert_outcomes(passed=2)
    path = project.path / "memsr_baseline.json"
    doc = json.loads(path.read_text())
    for entry in doc["gates"].values():
        entry["context"]["fingerprint"] = "0" * 16
    path.write_text(json.dumps(doc))
    _run(project).assert_outcomes(passed=2)


def test_preset_gate_records_the_papers_labels(project):
    project.makepyfile(
        test_ntire="""
        from test_pytest_plugin_model import Tiny

        def test_ntire(memsr_gate):
            memsr_gate(Tiny(), preset="ntire2022", scale=2)
        """
    )
    _run(project, "--memsr-update-baseline", "test_ntire.py").assert_outcomes(passed=1)
    entry = json.loads((project.path / "memsr_baseline.json").read_text())["gates"]["test_ntire.py::test_ntire"]
    assert entry["context"]["input_shape"] == [1, 3, 256, 256] and entry["context"]["preset"] == "ntire2022"
    # the defaults plus the table's quantities, each under its own name, with the paper's label
    reported = {"ntire2022_flops": "FLOPs", "ntire2022_activations": "#Activations", "ntire2022_convs": "#Conv"}
    assert set(entry["values"]) == {*DEFAULT_QUANTITIES, *reported}
    for q, label in reported.items():
        assert entry["quantities"][q] == {"label": label, "convention": QUANTITIES[q].definition}
    assert entry["quantities"]["macs"]["label"] == "macs"
    pixels = 256 * 256  # module hooks: the functional relu is not counted, so FLOPs = conv MACs here
    assert entry["values"]["ntire2022_flops"] == entry["values"]["macs"] == CONV_MACS_PER_PIXEL * pixels
    assert entry["values"]["ntire2022_activations"] == CONV_OUT_CHANNELS * pixels
    assert entry["values"]["ntire2022_convs"] == 3
    assert "FLOPs" not in entry["values"] and "flops" not in entry["values"]
    _run(project, "test_ntire.py").assert_outcomes(passed=1)

    # a failing preset quantity is named with the paper's label too
    project.makepyfile(
        test_ntire="""
        from test_pytest_plugin_model import Tiny

        def test_ntire(memsr_gate):
            memsr_gate(Tiny(), preset="ntire2022", scale=2, ntire2022_flops=True, ntire2022_convs=True)
        """
    )
    doc = json.loads((project.path / "memsr_baseline.json").read_text())
    doc["gates"]["test_ntire.py::test_ntire"]["values"]["ntire2022_convs"] = 2
    (project.path / "memsr_baseline.json").write_text(json.dumps(doc))
    result = _run(project, "test_ntire.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ntire2022_convs (#Conv): baseline 2, measured 3 (+1, +50 %; allowed exactly)"])
    assert "ntire2022_flops (FLOPs):" not in result.stdout.str()


def test_v1_baseline_is_refused_with_a_hint(project):
    path = project.path / "memsr_baseline.json"
    v1 = {
        "format": "memsr-bench efficiency baseline v1",
        "gates": {
            "test_gates.py::test_defaults": {"context": {}, "values": {"flops": 1, "peak_memory": 2}},
            "test_gone.py::test_old": {"context": {}, "values": {"flops": 1}},
        },
    }
    path.write_text(json.dumps(v1))
    result = _run(project)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    hint = (
        "*memsr_baseline.json: baseline format v1, this memsr-bench reads v2 (quantities renamed for their "
        "conventions): run pytest --memsr-update-baseline, then review the diff and commit it"
    )
    result.stdout.fnmatch_lines(["*_ test_tiny _*", hint, "*_ test_defaults _*", hint, "*short test summary*"])
    assert "def " not in out and "During handling" not in out  # one line each, no code, no exception chain

    # the update rewrites it as v2: the v1 entries (other names, no conventions) are not kept
    result = _run(project, "--memsr-update-baseline")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["memsr: 2 gate(s) written to *memsr_baseline.json (*1 entr(ies) of gates not run*"])
    doc = json.loads(path.read_text())
    assert doc["format"] == "memsr-bench efficiency baseline v2"
    assert set(doc["gates"]) == {"test_gates.py::test_tiny", "test_gates.py::test_defaults"}
    assert "flops" not in doc["gates"]["test_gates.py::test_defaults"]["values"]
    _run(project).assert_outcomes(passed=2)

    # a file with no format at all is refused the same way
    path.write_text(json.dumps({"gates": {}}))
    _run(project).stdout.fnmatch_lines(["*baseline format None, this memsr-bench reads v2*"])


def test_update_keeps_other_entries_and_context_changes_fail(project):
    _run(project, "--memsr-update-baseline").assert_outcomes(passed=2)
    # updating one test keeps the other's entry
    _run(project, "--memsr-update-baseline", "-k", "test_defaults").assert_outcomes(passed=1, deselected=1)
    assert len(json.loads((project.path / "memsr_baseline.json").read_text())["gates"]) == 2

    project.makepyfile(
        test_more="""
        from test_pytest_plugin_model import Tiny

        def test_shape_changed(memsr_gate):
            memsr_gate(Tiny(), input_shape=(1, 3, 8, 8), name="small")

        def test_two_gates(memsr_gate):
            memsr_gate(Tiny(), input_shape=(1, 3, 8, 8), params=True)
            memsr_gate(Tiny(extra_param=True), input_shape=(1, 3, 8, 8), params=True)
        """
    )
    _run(project, "--memsr-update-baseline", "test_more.py").assert_outcomes(passed=2)
    gates = json.loads((project.path / "memsr_baseline.json").read_text())["gates"]
    assert {"test_more.py::test_shape_changed::small", "test_more.py::test_two_gates#2"} <= set(gates)
    assert (
        gates["test_more.py::test_two_gates#2"]["values"]["params"]
        == gates["test_more.py::test_two_gates"]["values"]["params"] + 1
    )
    _run(project).assert_outcomes(passed=4)

    project.makepyfile(
        test_more="""
        from test_pytest_plugin_model import Tiny

        def test_shape_changed(memsr_gate):
            memsr_gate(Tiny(), input_shape=(1, 3, 12, 12), name="small")
        """
    )
    result = _run(project, "test_more.py")
    result.assert_outcomes(failed=1)
    assert "input_shape changed: baseline [1, 3, 8, 8], now [1, 3, 12, 12]" in result.stdout.str()


def test_baseline_location_options(project):
    project.makeini("[pytest]\nmemsr_baseline = gates/base.json\n")
    _run(project, "--memsr-update-baseline").assert_outcomes(passed=2)
    assert (project.path / "gates" / "base.json").exists() and not (
        project.path / "memsr_baseline.json"
    ).exists()
    _run(project).assert_outcomes(passed=2)

    _run(project, "--memsr-baseline", "elsewhere.json").assert_outcomes(failed=2)
    _run(project, "--memsr-baseline", "elsewhere.json", "--memsr-update-baseline").assert_outcomes(passed=2)
    assert (project.path / "elsewhere.json").exists()

    (project.path / "gates" / "base.json").write_text("{not json")
    result = _run(project)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*_ test_tiny _*", "*/gates/base.json: unreadable baseline file (*)", "*_ test_defaults _*"]
    )


def test_benchmark_helper(project):
    project.makepyfile(
        test_speed="""
        from test_pytest_plugin_model import Tiny

        def test_speed(memsr_benchmark):
            out = memsr_benchmark(Tiny(), (1, 3, 16, 16), threads=1, rounds=3)
            assert tuple(out.shape) == (1, 3, 32, 32)
        """
    )
    result = _run(project, "test_speed.py", "--benchmark-json=bench.json")
    result.assert_outcomes(passed=1)
    bench = json.loads((project.path / "bench.json").read_text())["benchmarks"][0]
    assert bench["stats"]["rounds"] == 3
    assert bench["extra_info"]["model"] == "Tiny" and bench["extra_info"]["threads"] == 1
    assert bench["extra_info"]["input_shape"] == [1, 3, 16, 16]


def test_assert_efficiency_standalone(warm, tmp_path):
    path = tmp_path / "b.json"
    with pytest.raises(AssertionError, match="no baseline for this gate"):
        assert_efficiency(Tiny(), "tiny", baseline=path, input_shape=SHAPE, params=True)
    measured = assert_efficiency(
        Tiny(), "tiny", baseline=path, input_shape=SHAPE, update=True, params=True, convs=True
    )
    assert measured == {"params": 1684, "convs": 3}  # 3·8·9+8 + 8·8·9+8 + 8·12·9+12
    assert assert_efficiency(Tiny(), "tiny", baseline=path, input_shape=SHAPE, params=True) == {
        "params": 1684
    }
    with pytest.raises(AssertionError, match=r"params: baseline 1,684, measured 1,685 \(\+1, \+0.05938 %"):
        assert_efficiency(Tiny(extra_param=True), "tiny", baseline=path, input_shape=SHAPE, params=True)
    assert_efficiency(
        Tiny(extra_param=True), "tiny", baseline=path, input_shape=SHAPE, params=1e-3
    )  # within rtol
    with pytest.raises(AssertionError, match="macs: no baseline value"):
        assert_efficiency(Tiny(), "tiny", baseline=Baseline(path), input_shape=SHAPE, macs=True)
    with pytest.raises(TypeError, match="unknown quantity parms"):
        assert_efficiency(Tiny(), "tiny", baseline=path, input_shape=SHAPE, parms=True)

    path.write_text(json.dumps({"format": "memsr-bench efficiency baseline v1", "gates": {}}))
    with pytest.raises(BaselineError, match="baseline format v1.*pytest --memsr-update-baseline"):
        assert_efficiency(Tiny(), "tiny", baseline=path, input_shape=SHAPE, params=True)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("flops", "flops_all_ops"),
        ("peak_memory", "peak_memory_bytes_predicted"),
        ("last_use_peak_memory", "peak_memory_bytes_predicted_last_use"),
        ("measured_peak_memory", "peak_memory_bytes_measured"),
    ],
)
def test_renamed_quantities_say_their_new_name(tmp_path, old, new):
    with pytest.raises(TypeError, match=rf"^{old} was renamed {new} \("):
        assert_efficiency(Tiny(), "t", baseline=tmp_path / "b.json", input_shape=SHAPE, **{old: True})
    with pytest.raises(TypeError, match=f"{old} was renamed {new}"):
        measure_efficiency(Tiny(), (old,), input_shape=SHAPE)
    assert not (tmp_path / "b.json").exists()


def test_renamed_flops_points_to_the_tables_flops(tmp_path):
    with pytest.raises(TypeError) as err:
        assert_efficiency(Tiny(), "t", baseline=tmp_path / "b.json", input_shape=SHAPE, flops=True, peak_memory=0.1)
    message = str(err.value)
    assert message.startswith("flops was renamed flops_all_ops (FLOPs of all ops); peak_memory was renamed ")
    assert "ntire2022_flops (NTIRE 2022)" in message and "thop_0031_macs (MemSR)" in message


def test_gate_quantities_are_the_profile_names_without_runtime(tmp_path):
    assert set(GATE_QUANTITIES) == {q for q in QUANTITIES if not q.startswith("runtime")}
    assert set(DEFAULT_QUANTITIES) == {"params", "macs", "flops_all_ops", "activations", "convs", PEAK}
    with pytest.raises(TypeError, match="runtime_ms cannot be gated.*memsr_benchmark"):
        assert_efficiency(Tiny(), "t", baseline=tmp_path / "b.json", input_shape=SHAPE, runtime_ms=0.1)


def test_decrease_fails_unless_allowed(warm, tmp_path):
    path = tmp_path / "b.json"
    assert_efficiency(Tiny(extra_param=True), "t", baseline=path, input_shape=SHAPE, update=True)
    with pytest.raises(AssertionError, match=r"params: baseline 1,685, measured 1,684 \(-1, -0.05935 %"):
        assert_efficiency(Tiny(), "t", baseline=path, input_shape=SHAPE, params=True)
    assert_efficiency(Tiny(), "t", baseline=path, input_shape=SHAPE, allow_decrease=True)


def test_measure_efficiency_goes_through_profile(warm):
    context, values = measure_efficiency(Tiny(), GATE_QUANTITIES, input_shape=SHAPE[1:])
    assert context == {
        "model": "Tiny",
        "input_shape": [1, 3, 16, 16],
        "preset": None,
        "scale": None,
        "dtype": "float32",
        "fingerprint": architecture_fingerprint(Tiny()),
    }
    assert list(values) == list(GATE_QUANTITIES) and all(isinstance(v, int) for v in values.values())
    assert values == profile(Tiny(), SHAPE, quantities=GATE_QUANTITIES).values
    pixels = 16 * 16
    assert values["macs"] == values["conv_macs"] == CONV_MACS_PER_PIXEL * pixels
    assert values["activations"] == CONV_OUT_CHANNELS * pixels and values["convs"] == 3
    assert values["params_used"] == values["params"] == 1684
    assert values["peak_memory_bytes_measured"] == values[PEAK]  # CPU measurement = prediction
    assert values["peak_memory_bytes_predicted_last_use"] <= values[PEAK]

    # a preset fixes the input; only the requested quantities come back
    context, values = measure_efficiency(Tiny(), ("macs", "ntire2022_convs"), preset="ntire2022", scale=2)
    assert context["input_shape"] == [1, 3, 256, 256] and context["preset"] == "ntire2022"
    assert context["scale"] == 2
    assert values == {"macs": CONV_MACS_PER_PIXEL * 256 * 256, "ntire2022_convs": 3}


def test_measure_efficiency_dtype_measures_a_copy(warm):
    model = Tiny()
    context32, values32 = measure_efficiency(model, ("params", PEAK), input_shape=SHAPE)
    context64, values64 = measure_efficiency(model, ("params", PEAK), input_shape=SHAPE, dtype=torch.float64)
    assert context64["dtype"] == "float64" and next(model.parameters()).dtype == torch.float32
    assert values64["params"] == values32["params"] and values64[PEAK] == 2 * values32[PEAK]
