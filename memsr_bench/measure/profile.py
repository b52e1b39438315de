"""One profile API: ``profile(model, input_shape | preset, quantities) -> Profile``.

The CLI, tables, the report, the pytest gates and the MemSR tools all measure through this function.
Only what the requested quantities need runs (:mod:`memsr_bench.measure.quantities` names them):

- ``params`` group: reads the parameters;
- ``trace`` group: one shape-only pass on fake tensors, every counter read from it (any size is cheap);
- ``predicted`` group: one pass on fake tensors (no memory allocated, any size is cheap);
- ``usage`` group: which parameters the operators of the shape-only pass read;
- ``measured`` group: one real pass measuring peak memory;
- ``runtime`` group: warm-up and timed real passes.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.counters import input_channels, untouched
from memsr_bench.measure.presets import Preset, get_preset
from memsr_bench.measure.quantities import COUNT_QUANTITIES, QUANTITIES

__all__ = ["Profile", "RuntimeOptions", "input_channels", "model_dtype", "model_input_shape", "profile"]


@dataclass(frozen=True)
class RuntimeOptions:
    """How runtime is measured (see :func:`memsr_bench.measure.runtime.measure_runtime`)."""

    warmup: int = 3
    repeats: int = 10
    threads: int | None = None
    protocol: str = "default"
    channels_last: bool = False

    def __post_init__(self):
        if self.warmup < 0:
            raise MemsrInputError("--warmup", f"must be 0 or more, not {self.warmup}")
        if self.repeats < 1:
            raise MemsrInputError("--repeats", f"must be at least 1, not {self.repeats}")
        if self.threads is not None and self.threads < 1:
            raise MemsrInputError("--threads", f"must be at least 1, not {self.threads}")

    def convention(self) -> str:
        statistic = "mean" if self.protocol == "ntire2022" else "median"
        warmup = 0 if self.protocol == "ntire2022" else self.warmup
        return (
            f"{self.protocol} protocol: {statistic} of {self.repeats} passes after {warmup} warm-up, "
            f"inference_mode, batch 1{', channels_last' if self.channels_last else ''}"
        )


@dataclass
class Profile:
    """Measured quantities of one model at one input, each named for its convention."""

    model: str
    input_shape: tuple[int, ...]
    values: dict[str, Any]
    scale: int | None = None
    preset: str | None = None
    fingerprint: str | None = None
    device: str = "cpu"
    details: dict[str, Any] = field(default_factory=dict)  # peak node, uncounted ops, runtime samples, ...

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def conventions(self) -> dict[str, str]:
        """``{quantity: definition}`` of every measured quantity, plus the input and runtime protocol."""
        out = {q: QUANTITIES[q].definition for q in self.values}
        out["input"] = "x".join(map(str, self.input_shape)) + (f" ({self.preset} preset)" if self.preset else "")
        if "runtime_protocol" in self.details:
            out["runtime_ms"] += f"; here {self.details['runtime_protocol']}"
        return out

    def reported(self) -> list[tuple[str, str, Any]]:
        """``(paper label, quantity, value)`` for the preset's reported quantities."""
        if self.preset is None:
            return []
        return [(label, q, self.values.get(q)) for label, q in get_preset(self.preset).reported]

    def unused_params(self) -> int | None:
        if "params_used" not in self.values or "params" not in self.values:
            return None
        return self.values["params"] - self.values["params_used"]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scale": self.scale,
            "input_shape": list(self.input_shape),
            "preset": self.preset,
            "fingerprint": self.fingerprint,
            "device": self.device,
            **self.values,
            "reported": {label: q for label, q, _ in self.reported()},
            "details": self.details,
            "conventions": self.conventions(),
        }


def model_input_shape(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    preset: str | Preset | None = None,
    scale: int | None = None,
) -> tuple[int, int, int, int]:
    """``(N, C, H, W)``: ``input_shape`` (``(C, H, W)`` or ``(N, C, H, W)``) or the preset's input."""
    if input_shape is None:
        if preset is None:
            raise MemsrInputError("input_shape", "give an input shape or a preset")
        preset_obj = get_preset(preset) if isinstance(preset, str) else preset
        if scale is None and isinstance(getattr(model, "scale", None), int):
            scale = model.scale
        return preset_obj.input_shape(scale, channels=input_channels(model))
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise MemsrInputError("input_shape", f"expected (C, H, W) or (N, C, H, W) with positive sizes, not {shape}")
    return shape  # type: ignore[return-value]


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter or buffer (float32 if none)."""
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def _random_input(shape: Sequence[int], dtype: torch.dtype, input_range: float) -> torch.Tensor:
    x = torch.rand(tuple(shape), generator=torch.Generator().manual_seed(0)) * input_range
    return x.to(dtype)


def _measure(model, shape, dtype, quantities, groups, device, runtime, max_memory, values, details) -> None:
    """Fill ``values`` and ``details`` with what the ``groups`` of ``quantities`` need; passes on real tensors
    at ``shape`` (measured memory, runtime) are refused first if they would not fit."""
    from memsr_bench.measure.counters import CountingPass, count_params
    from memsr_bench.measure.fake_pass import fake_forward

    real = groups & {"measured", "runtime"}
    counting = CountingPass(model) if groups & {"trace", "usage"} else None
    if "predicted" in groups or real:
        from memsr_bench.measure.guard import ensure_fits
        from memsr_bench.measure.memory_model import predict_peak_memory

        # one fake pass: nothing allocated; the counters observe the same pass
        prediction = predict_peak_memory(model, shape, dtype=dtype, observers=[counting] if counting else [])
        if "predicted" in groups:
            values["peak_memory_bytes_predicted"] = prediction.eager_peak_bytes
            values["peak_memory_bytes_predicted_last_use"] = prediction.last_use_peak_bytes
            details.update(peak_node=prediction.peak_node, weights_bytes=prediction.weights_bytes)
        if real:
            hint = "use a smaller input, or --counts-only for counts and predicted memory"
            ensure_fits(model, shape, device, max_memory, "a real forward pass", prediction.eager_peak_bytes, hint)
    elif counting is not None:
        fake_forward(model, shape, dtype, [counting])

    if "params" in groups:
        counts = count_params(model)
        values.update(params=counts.params, trainable_params=counts.trainable_params, buffers=counts.buffers)
    if counting is not None:
        trace = counting.trace(shape)
        for q in quantities:
            if QUANTITIES[q].group == "trace":
                values[q] = trace.analysis(QUANTITIES[q].analysis).total()
        if "trace" in groups:
            details["unsupported_ops"] = dict(trace.unsupported_ops())
        if "usage" in groups:
            values["params_used"] = trace.params_used
    spec = getattr(model, "zoo_spec", None)
    input_range = float(getattr(spec, "input_range", 1.0))
    if "measured" in groups:
        from memsr_bench.measure.memory import measure_peak_memory

        measured = measure_peak_memory(model, _random_input(shape, dtype, input_range), device=device)
        values["peak_memory_bytes_measured"] = measured.peak_bytes
        details["peak_memory_measured_method"] = measured.method
    if "runtime" in groups:
        from memsr_bench.measure.runtime import measure_runtime

        options = runtime or RuntimeOptions()
        timing = measure_runtime(
            model,
            _random_input(shape, dtype, input_range),
            device=device,
            warmup=options.warmup,
            repeats=options.repeats,
            threads=options.threads,
            channels_last=options.channels_last,
            protocol=options.protocol,
        )
        values.update(runtime_ms=timing.ms, runtime_iqr_ms=timing.iqr_ms)
        details.update(
            runtime_samples_ms=timing.samples_ms,
            runtime_protocol=options.convention(),
            threads=timing.threads,
            device_name=timing.device_name,
        )


def profile(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    *,
    preset: str | None = None,
    scale: int | None = None,
    quantities: Sequence[str] = COUNT_QUANTITIES,
    device: str = "cpu",
    runtime: RuntimeOptions | None = None,
    name: str | None = None,
    fingerprint: str | None = None,
    max_memory: int | None = None,
) -> Profile:
    """Measure ``quantities`` of ``model`` on an input of ``input_shape`` (or the ``preset``'s input).

    Counts and the predicted peak run on fake tensors at any size. Passes on real tensors at the
    input (measured memory, runtime) are refused
    with a one-line error when their predicted peak exceeds ``max_memory`` bytes (default: the memory
    available on ``device``). Everything runs as inference: the modules' ``training`` flags are cleared
    for the measurement and restored after (no BatchNorm statistics move), hooks are removed; real passes
    move the model to ``device``.
    """
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown:
        raise MemsrInputError("quantities", f"unknown {', '.join(unknown)}; known: {', '.join(QUANTITIES)}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MemsrInputError("--device", "CUDA is not available on this machine")
    if preset is not None:
        get_preset(preset)
    shape = model_input_shape(model, input_shape, preset, scale)
    scale = scale if scale is not None else getattr(model, "scale", None)
    dtype = model_dtype(model)
    groups = {QUANTITIES[q].group for q in quantities}
    values: dict[str, Any] = {}
    details: dict[str, Any] = {}
    with untouched(model):  # inference: eval flags (not eval(), which may re-parameterise), restored after
        _measure(model, shape, dtype, quantities, groups, device, runtime, max_memory, values, details)
    details.setdefault("threads", torch.get_num_threads())
    details.update(torch=torch.__version__, machine=platform.processor() or platform.machine())
    spec = getattr(model, "zoo_spec", None)
    ordered = {q: values[q] for q in QUANTITIES if q in values and (q in quantities or QUANTITIES[q].group != "trace")}
    return Profile(
        model=name or getattr(spec, "name", None) or type(model).__name__,
        input_shape=tuple(shape),
        values=ordered,
        scale=None if scale is None else int(scale),
        preset=preset,
        fingerprint=fingerprint,
        device=device,
        details=details,
    )
