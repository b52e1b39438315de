"""Efficiency measurement: counters (params, MACs, FLOPs, activations, convs) and presets."""

from memsr_bench.measure.counters import EfficiencyCounts, ModelTrace, count_efficiency, count_params, trace_model  # noqa: F401
from memsr_bench.measure.memory import PeakMemory, measure_peak_memory  # noqa: F401
from memsr_bench.measure.memory_model import MemoryPrediction, predict_peak_memory  # noqa: F401
from memsr_bench.measure.presets import PRESETS, Preset, get_preset  # noqa: F401
from memsr_bench.measure.runtime import RuntimeResult, measure_runtime  # noqa: F401
