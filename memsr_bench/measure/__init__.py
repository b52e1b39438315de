"""Efficiency measurement: one profile API over counters, memory, runtime, and the papers' presets.

``profile(model, input_shape | preset=..., quantities=...) -> Profile`` measures; each value is
stored under a quantity name that says its convention (``QUANTITIES``), whatever the preset.

``profile`` here is the function: it shadows the submodule of the same name as an attribute of
this package, so import from the submodule by ``from memsr_bench.measure.profile import ...``.
"""

# No import cycle: profile.py imports counters, presets and quantities directly, never this package.
from memsr_bench.measure.counters import ModelTrace, ParamCounts, count_params, trace_model  # noqa: F401
from memsr_bench.measure.memory import PeakMemory, measure_peak_memory  # noqa: F401
from memsr_bench.measure.memory_model import MemoryPrediction, predict_peak_memory  # noqa: F401
from memsr_bench.measure.presets import PRESETS, Preset, get_preset  # noqa: F401
from memsr_bench.measure.profile import Profile, RuntimeOptions, profile  # noqa: F401
from memsr_bench.measure.quantities import COUNT_QUANTITIES, QUANTITIES, Quantity, definitions  # noqa: F401
from memsr_bench.measure.runtime import RuntimeResult, measure_runtime  # noqa: F401
