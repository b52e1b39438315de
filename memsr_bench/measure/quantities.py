"""Every measured quantity, named for its convention and defined once.

A quantity's name never changes meaning with a preset: what the NTIRE 2022 table calls "FLOPs" is
``ntire2022_flops`` (MACs of hooked module types), what FMEN calls "Mult-Adds" is ``conv_macs``,
what MemSR prints as "FLOPs" is ``thop_0031_macs``. A preset only chooses the input size and which
quantities its table shows under the paper's labels (:attr:`~memsr_bench.measure.presets.Preset.reported`).
JSON, the results store, gate baselines, tables and plots all use these names.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COUNT_QUANTITIES", "QUANTITIES", "Quantity", "definitions"]


@dataclass(frozen=True)
class Quantity:
    name: str
    group: str  # what computes it: params, trace (one shape-only pass), predicted, measured, runtime, usage
    unit: str  # "" (a count), "B" (bytes), "ms"
    definition: str
    analysis: str | None = None  # the ModelTrace.analysis name, for trace quantities


_ALL = (
    Quantity(
        "params",
        "params",
        "",
        "parameters: sum(p.numel() for p in model.parameters()), shared ones once, "
        "buffers excluded (the NTIRE and papers' #Params)",
    ),
    Quantity("trainable_params", "params", "", "parameters with requires_grad"),
    Quantity("buffers", "params", "", "elements of all buffers (BatchNorm statistics, fixed mean shifts)"),
    Quantity(
        "params_used",
        "usage",
        "",
        "parameters that the forward pass reads (the rest are training-only "
        "branches; equal to params for a deploy-form model)",
    ),
    Quantity(
        "macs",
        "trace",
        "",
        "multiply-accumulates of every convolution, linear and matmul-type op (memsr-bench; functional calls included)",
        "macs",
    ),
    Quantity(
        "conv_macs",
        "trace",
        "",
        "multiply-accumulates of convolution ops only (FMEN Table 3 and most SR papers' Mult-Adds)",
        "conv_macs",
    ),
    Quantity(
        "flops_all_ops",
        "trace",
        "",
        "FLOPs (all ops): 2 per MAC + 1 per bias add + the element-wise, "
        "activation, normalisation, pooling, reduction and interpolation ops (memsr-bench op table)",
        "flops",
    ),
    Quantity("activations", "trace", "", "output elements of every convolution op", "activations"),
    Quantity("convs", "trace", "", "number of convolution op calls", "convs"),
    Quantity(
        "ntire2022_flops",
        "trace",
        "",
        "NTIRE 2022 ESR get_model_flops: MACs of nn.Conv2d/ConvTranspose2d "
        "module hooks + ReLU-family output elements + 2x BatchNorm2d elements + nn.Linear (functional calls "
        "not counted); the challenge calls it FLOPs",
        "ntire2022_flops",
    ),
    Quantity(
        "ntire2022_activations",
        "trace",
        "",
        "NTIRE 2022 ESR get_model_activation: output elements of nn.Conv2d/ConvTranspose2d calls",
        "ntire2022_activations",
    ),
    Quantity(
        "ntire2022_convs", "trace", "", "NTIRE 2022 ESR: number of nn.Conv2d/ConvTranspose2d calls", "ntire2022_convs"
    ),
    Quantity(
        "fvcore_flops",
        "trace",
        "",
        "fvcore 0.1.5 FlopCountAnalysis(model, input).total() with its own handles: MACs of conv/linear/"
        "matmul/einsum, batch_norm, group/layer/instance_norm, nearest/bilinear upsampling, adaptive_avg_pool2d; "
        "element-wise ops, activations, pixel_shuffle and bicubic interpolation not counted; NTIRE 2024-2026 "
        "call it FLOPs",
        "fvcore_flops",
    ),
    Quantity(
        "thop_0031_macs",
        "trace",
        "",
        "thop 0.0.31 profile MACs (hooks on exact module types); MemSR prints them as FLOPs",
        "thop_0031",
    ),
    Quantity(
        "peak_memory_bytes_predicted",
        "predicted",
        "B",
        "predicted peak live tensor storage of one float "
        "forward pass from the traced graph, tensors freed when their last reference goes (eager), weights "
        "and input included",
    ),
    Quantity(
        "peak_memory_bytes_predicted_last_use",
        "predicted",
        "B",
        "the same with every tensor freed right after its last use (a lower bound for any framework)",
    ),
    Quantity(
        "peak_memory_bytes_measured",
        "measured",
        "B",
        "measured peak of one forward pass: live tensor "
        "storage on CPU, torch.cuda.max_memory_allocated on CUDA; weights and input included",
    ),
    Quantity(
        "runtime_ms",
        "runtime",
        "ms",
        "forward-pass time: the median after warm-up (default protocol) or "
        "the mean without warm-up (ntire2022 protocol); batch 1, inference_mode",
    ),
    Quantity("runtime_iqr_ms", "runtime", "ms", "interquartile range of the timed passes"),
)

QUANTITIES: dict[str, Quantity] = {q.name: q for q in _ALL}
#: What profiles count by default: every counter and the predicted peak (no real forward pass).
COUNT_QUANTITIES: tuple[str, ...] = tuple(q.name for q in _ALL if q.group in ("params", "trace", "predicted"))


def definitions(names: tuple[str, ...] | list[str] | None = None) -> dict[str, str]:
    """``{name: definition}`` for ``names`` (default: all), in the order given."""
    return {n: QUANTITIES[n].definition for n in (names or QUANTITIES)}
