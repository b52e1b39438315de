"""The shape-only counters give exactly the numbers of the former fvcore-JIT counters, on the whole zoo.

``jit_oracle_counters`` is the suite's previous implementation, unchanged: fvcore's JIT analysis of
a *real* forward pass with the same formulas. Every zoo model at every scale is counted both ways at
three LR sizes (odd, even, non-square), and every analysis -- the suite's MACs/FLOPs/activations/
convs, fvcore's ``FlopCountAnalysis`` convention of NTIRE 2023-2026, the NTIRE 2022 and thop 0.0.31
module-hook conventions, so every preset's quantities -- must agree in total, per operator and per
module, and so must the operators reported as unsupported. fvcore itself, the NTIRE 2022 script and
thop 0.0.31 remain the oracles of the conventions (``test_counters.py``, ``test_ntire_presets.py``).
"""

from __future__ import annotations

import jit_oracle_counters as oracle
import pytest

import zoo
from memsr_bench.measure.counters import ANALYSES, trace_model
from memsr_bench.measure.presets import PRESETS
from memsr_bench.measure.quantities import QUANTITIES

SIZES = ((17, 19), (24, 24), (31, 20))  # ESA (RFDN, RLFN) needs about 15 LR pixels
CASES = [(name, scale) for name in zoo.names() for scale in zoo.get_spec(name).scales]


def test_every_preset_quantity_is_covered():
    reported = {q for preset in PRESETS.values() for _, q in preset.reported}
    counted = {q for q in reported if QUANTITIES[q].group == "trace"}
    assert counted and {QUANTITIES[q].analysis for q in counted} <= set(ANALYSES)


@pytest.mark.parametrize(("name", "scale"), CASES, ids=[f"{n}-x{s}" for n, s in CASES])
def test_zoo_counts_equal_the_jit_oracle(name, scale):
    model = zoo.create(name, scale=scale)
    channels = 1 if zoo.get_spec(name).channels == "y" else 3
    for height, width in SIZES:
        shape = (1, channels, height, width)
        new, old = trace_model(model, shape), oracle.trace_model(model, shape)
        for analysis in ANALYSES:
            a, b = new.analysis(analysis), old.analysis(analysis)
            assert a.total() == b.total(), (shape, analysis)
            assert a.by_operator() == b.by_operator(), (shape, analysis)
            assert a.by_module() == b.by_module(), (shape, analysis)
        assert new.unsupported_ops() == old.unsupported_ops() == {}
