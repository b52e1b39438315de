"""Test oracle: the suite's former counters, built on fvcore's JIT analysis of a real forward pass.

Kept unchanged (with ``jit_oracle_op_handles``) so that the shape-only counters of
:mod:`memsr_bench.measure.counters` can be checked to give exactly the numbers these gave.

Original description follows.


One trace per model and input: :func:`trace_model` runs ``fvcore.nn.JitModelAnalysis`` once, with
a handle (``set_op_handle``) for every operator of the formula table in
:mod:`memsr_bench.measure.op_handles`, and every analysis below is read from that one trace.
Each is an analysis object in the style of fvcore's ``FlopCountAnalysis``: ``.total()``,
``.by_operator()``, ``.by_module()``, ``.by_module_and_operator()``, ``.unsupported_ops()``, plus
``.convention``, a one-line description of what is counted.

Analyses (``ModelTrace.analysis(name)``, :data:`ANALYSES`):

* ``macs`` -- multiply-accumulates of convolutions, linear and matmul-type ops (0 for everything
  else, e.g. ``pixel_shuffle``); ``conv_macs`` -- the convolution part alone (the SR papers'
  "Mult-Adds");
* ``flops`` -- 2 FLOPs per MAC plus bias adds and element-wise, activation, normalisation,
  pooling, reduction and interpolation costs (convention in ``op_handles``);
* ``activations`` / ``convs`` -- output elements / number of calls of every convolution op;
* ``ntire2022_flops`` / ``ntire2022_activations`` / ``ntire2022_convs`` -- the NTIRE 2022 ESR
  ``get_model_flops`` / ``get_model_activation`` conventions: forward hooks on module *types*, so
  an operator counts only when it runs directly inside an instance of a hooked type
  (:data:`NTIRE2022_FLOPS`, :data:`NTIRE2022_CONVS`);
* ``thop_0031`` -- ``thop.profile`` 0.0.31 (the version MemSR's requirements name): hooks on
  exact module types (:data:`THOP_0031`).

Counting leaves the model as it was: it runs in eval mode under ``torch.no_grad()`` with every
module's ``training`` flag restored afterwards, adds no buffers or attributes, and removes every
hook it registered even when the trace fails. Parameters are counted on the model itself.

This module is the machinery; callers measure through :func:`memsr_bench.measure.profile.profile`,
which exposes each analysis as a quantity named for its convention
(:mod:`memsr_bench.measure.quantities`, e.g. analysis ``thop_0031`` -> quantity ``thop_0031_macs``).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS as FVCORE_FLOP_HANDLES
from fvcore.nn.jit_analysis import JitModelAnalysis
from jit_oracle_op_handles import IGNORED_OPS, OP_FORMULAS, QUANTITIES, OpFormula
from torch import nn

from memsr_bench.errors import MemsrInputError

__all__ = [
    "ANALYSES",
    "CountAnalysis",
    "HookRule",
    "ModelTrace",
    "ModuleConvention",
    "NTIRE2022_CONVS",
    "NTIRE2022_FLOPS",
    "ParamCounts",
    "THOP_0031",
    "count_params",
    "input_channels",
    "normalise_input_shape",
    "trace_model",
]

_SEP = "/"  # fvcore counter keys are "<quantity>/<operator>"
_FVCORE = "fvcore"  # counter key of what fvcore's own FlopCountAnalysis handles count
_UNSUPPORTED = "unsupported"  # counter key of ops only fvcore's table counts (no memsr-bench formula)
_CONV_OPS = frozenset({"conv", "conv_transpose"})


# ----------------------------------------------------------------------------- module-hook conventions


@dataclass(frozen=True)
class HookRule:
    """Modules of ``types`` are hooked; the ops in ``ops`` running directly inside them count."""

    types: tuple[type[nn.Module], ...]
    ops: frozenset[str]


@dataclass(frozen=True)
class ModuleConvention:
    """A counter that works by forward hooks on module types (NTIRE 2022, thop).

    ``quantity`` is the :class:`~memsr_bench.measure.op_handles.OpCost` field holding the value
    the tool's hook adds for an operator; ``exact_type`` distinguishes thop's ``type(m) in table``
    from NTIRE's ``isinstance`` (so a ``MeanShift(nn.Conv2d)`` subclass counts for NTIRE, not thop).
    """

    name: str
    quantity: str
    rules: tuple[HookRule, ...]
    exact_type: bool
    convention: str

    def ops_for(self, module: nn.Module) -> frozenset[str] | None:
        for rule in self.rules:
            hit = type(module) in rule.types if self.exact_type else isinstance(module, rule.types)
            if hit:
                return rule.ops
        return None


_NTIRE_ACTS = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)
_NTIRE_CONV_RULE = HookRule((nn.Conv2d, nn.ConvTranspose2d), _CONV_OPS)

NTIRE2022_FLOPS = ModuleConvention(
    name="ntire2022_flops",
    quantity="ntire",
    rules=(
        _NTIRE_CONV_RULE,
        HookRule(_NTIRE_ACTS, frozenset({"relu", "relu6", "hardtanh", "leaky_relu", "prelu", "elu"})),
        HookRule((nn.BatchNorm2d,), frozenset({"batch_norm"})),
        HookRule((nn.Linear,), frozenset({"linear"})),
    ),
    exact_type=False,
    convention=(
        "NTIRE 2022 ESR get_model_flops: forward hooks on nn.Conv2d/ConvTranspose2d "
        "(kh·kw·Cin·Cout/groups·Hout·Wout), output elements of nn.ReLU/PReLU/ELU/LeakyReLU/ReLU6, "
        "2x elements of nn.BatchNorm2d (1x without affine), batch·in·out of nn.Linear; "
        "functional calls are not counted"
    ),
)
NTIRE2022_ACTIVATIONS = ModuleConvention(
    name="ntire2022_activations",
    quantity="conv_outputs",
    rules=(_NTIRE_CONV_RULE,),
    exact_type=False,
    convention="NTIRE 2022 ESR get_model_activation: output elements of every nn.Conv2d/ConvTranspose2d call",
)
NTIRE2022_CONVS = ModuleConvention(
    name="ntire2022_convs",
    quantity="conv_calls",
    rules=(_NTIRE_CONV_RULE,),
    exact_type=False,
    convention="NTIRE 2022 ESR get_model_activation: number of nn.Conv2d/ConvTranspose2d calls",
)

THOP_0031 = ModuleConvention(
    name="thop_0031",
    quantity="thop",
    rules=(
        HookRule(
            (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
            _CONV_OPS,
        ),
        HookRule((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm), frozenset({"batch_norm"})),
        HookRule((nn.LeakyReLU,), frozenset({"leaky_relu"})),
        HookRule((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), frozenset({"avg_pool1d", "avg_pool2d", "avg_pool3d"})),
        HookRule(
            (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
            frozenset({"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d"}),
        ),
        HookRule((nn.Linear,), frozenset({"linear"})),
        HookRule(
            (nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d),
            frozenset({"upsample_linear1d", "upsample_bilinear2d", "upsample_bicubic2d", "upsample_trilinear3d"}),
        ),
    ),
    exact_type=True,
    convention=(
        "thop 0.0.31 profile: hooks on exact module types; conv (output elements)·(Cin/groups·kh·kw "
        "+ 1 with bias), BatchNorm 2x elements, LeakyReLU 1x elements, ReLU/ReLU6/PReLU/pooling-max 0, "
        "Linear in_features per output, AvgPool 1 and AdaptiveAvgPool prod(in//out)+1 per output, "
        "Upsample bilinear 11 / bicubic 259 per output; functional calls and subclasses not counted"
    ),
)

_CONVENTIONS = {c.name: c for c in (NTIRE2022_FLOPS, NTIRE2022_ACTIVATIONS, NTIRE2022_CONVS, THOP_0031)}

_SUITE_QUANTITIES: dict[str, tuple[str, frozenset[str] | None, str]] = {
    "macs": ("macs", None, "MACs of convolution, linear and matmul-type ops (memsr-bench op_handles)"),
    "conv_macs": ("macs", _CONV_OPS, "MACs (Mult-Adds) of convolution ops only"),
    "flops": (
        "flops",
        None,
        "FLOPs: 2 per MAC + bias adds + element-wise/activation/norm/pool/interpolation ops (memsr-bench op_handles)",
    ),
    "activations": ("conv_outputs", None, "output elements of every convolution op"),
    "convs": ("conv_calls", None, "number of convolution op calls"),
    "fvcore_flops": (
        _FVCORE,
        None,
        "fvcore 0.1.5 FlopCountAnalysis(...).total(): its own handles (conv/linear/matmul/einsum MACs, batch_norm, "
        "group/layer/instance_norm, nearest/bilinear upsampling, adaptive_avg_pool2d, grid_sampler); every other "
        "op (element-wise, activations, pixel_shuffle, bicubic interpolation) not counted",
    ),
}

#: Names accepted by :meth:`ModelTrace.analysis`.
ANALYSES: tuple[str, ...] = tuple(_SUITE_QUANTITIES) + tuple(_CONVENTIONS)


# ----------------------------------------------------------------------------- analyses


class CountAnalysis:
    """One counted quantity of one trace, with fvcore's ``JitModelAnalysis`` accessors."""

    def __init__(self, trace: ModelTrace, name: str, convention: str):
        self.trace = trace
        self.name = name
        self.convention = convention
        self._table: dict[str, Counter[str]] | None = None

    def _compute(self) -> dict[str, Counter[str]]:
        raise NotImplementedError

    def by_module_and_operator(self) -> dict[str, Counter[str]]:
        """``{module name: Counter({operator: count})}``; a module includes its submodules."""
        if self._table is None:
            self._table = self._compute()
        return {name: Counter(ops) for name, ops in self._table.items()}

    def by_operator(self, module_name: str = "") -> Counter[str]:
        return Counter(self.by_module_and_operator().get(self.trace.canonical(module_name), Counter()))

    def by_module(self) -> Counter[str]:
        return Counter({name: sum(ops.values()) for name, ops in self.by_module_and_operator().items()})

    def total(self, module_name: str = "") -> int:
        return int(sum(self.by_operator(module_name).values()))

    def unsupported_ops(self, module_name: str = "") -> Counter[str]:
        """Operators met in the trace that have no formula (they counted as 0)."""
        return self.trace.unsupported_ops(module_name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: {self.total():,} ({self.convention})>"


class OpCountAnalysis(CountAnalysis):
    """A quantity of the formula table summed over the ops (optionally only the ops ``ops``)."""

    def __init__(self, trace, name, quantity: str, convention: str, ops: frozenset[str] | None = None):
        super().__init__(trace, name, convention)
        self.quantity = quantity
        self.ops = ops

    def _compute(self):
        table = {}
        for module, counts in self.trace.counts().items():
            table[module] = Counter(
                {op: v for (q, op), v in _split(counts) if q == self.quantity and (self.ops is None or op in self.ops)}
            )
        return table


class ModuleHookAnalysis(CountAnalysis):
    """A :class:`ModuleConvention`: ops count only inside instances of the hooked module types."""

    def __init__(self, trace, convention: ModuleConvention):
        super().__init__(trace, convention.name, convention.convention)
        self.module_convention = convention

    def _compute(self):
        table: dict[str, Counter[str]] = {name: Counter() for name in self.trace.counts()}
        direct = self.trace.direct_counts()
        for name, module in self.trace.modules().items():
            allowed = self.module_convention.ops_for(module)
            if allowed is None:
                continue
            own = Counter(
                {
                    op: v
                    for (q, op), v in _split(direct.get(name, Counter()))
                    if q == self.module_convention.quantity and op in allowed
                }
            )
            if own:
                for ancestor in _ancestors(name):
                    table[ancestor].update(own)
        return table


def _split(counts: Counter[str]) -> Iterator[tuple[tuple[str, str], int]]:
    for key, value in counts.items():
        quantity, _, op = key.partition(_SEP)
        yield (quantity, op), int(value)


def _ancestors(name: str) -> list[str]:
    """``"a.b.c" -> ["", "a", "a.b", "a.b.c"]``."""
    if not name:
        return [""]
    parts = name.split(".")
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


# ----------------------------------------------------------------------------- the trace


def _fvcore_flops(kind: str, inputs, outputs) -> int:
    """What fvcore's own ``FlopCountAnalysis`` handle adds for this op (0 for ops it does not count)."""
    handle = FVCORE_FLOP_HANDLES.get(kind)
    if handle is None:
        return 0
    result = handle(inputs, outputs)
    return int(sum(result.values())) if isinstance(result, Counter) else int(result)


def _handle(kind: str, formula: OpFormula | None):
    """One trace handle per op kind: the memsr-bench formula's quantities and fvcore's own flop count."""
    name = formula.name if formula is not None else kind.split("::")[-1].rstrip("_")

    def handle(inputs, outputs) -> Counter[str]:
        counts: Counter[str] = Counter()
        if formula is None:  # fvcore counts it, memsr-bench has no formula: still reported as unsupported
            counts[f"{_UNSUPPORTED}{_SEP}{kind}"] = 1
        else:
            try:
                cost = formula.fn(inputs, outputs)
            except Exception as err:  # noqa: BLE001 - name the operator in the message
                raise RuntimeError(f"cost formula of {formula.kind} failed: {err}") from err
            label = cost.label or name
            counts.update({f"{q}{_SEP}{label}": getattr(cost, q) for q in QUANTITIES if getattr(cost, q)})
        fvcore = _fvcore_flops(kind, inputs, outputs)
        if fvcore:
            counts[f"{_FVCORE}{_SEP}{name}"] = fvcore
        return counts

    return handle


class _SuiteAnalysis(JitModelAnalysis):
    """fvcore's analysis with the memsr-bench formula table and ignore list, and no warnings."""

    def __init__(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]):
        super().__init__(model, inputs)
        # fvcore silently skips some computing ops (relu, clamp, max, ...); we report every op
        # without a formula except pure metadata/view ops.
        self._ignored_ops = set(IGNORED_OPS)
        kinds = set(OP_FORMULAS) | set(FVCORE_FLOP_HANDLES)
        self.set_op_handle(**{kind: _handle(kind, OP_FORMULAS.get(kind)) for kind in sorted(kinds)})
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)
        self.tracer_warnings("none")


class ModelTrace:
    """One JIT trace of ``model(input)``; every quantity is an analysis over it."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], analysis: JitModelAnalysis):
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self._analysis = analysis
        self._counts: dict[str, Counter[str]] = analysis.by_module_and_operator()
        self._modules = dict(model.named_modules())  # first-occurrence names = fvcore's canonical names
        self._direct: dict[str, Counter[str]] | None = None
        self._cache: dict[str, CountAnalysis] = {}

    def canonical(self, module_name: str) -> str:
        return self._analysis.canonical_module_name(module_name) if module_name else ""

    def counts(self) -> dict[str, Counter[str]]:
        """fvcore's ``by_module_and_operator()`` with ``"<quantity>/<operator>"`` keys."""
        return self._counts

    def modules(self) -> dict[str, nn.Module]:
        return self._modules

    def direct_counts(self) -> dict[str, Counter[str]]:
        """Counts of the ops that run directly in each module (not in its submodules)."""
        if self._direct is None:
            children: dict[str, list[str]] = {name: [] for name in self._counts}
            for name in self._counts:
                if name:
                    parent = name.rpartition(".")[0]
                    if parent in children:
                        children[parent].append(name)
            self._direct = {}
            for name, counts in self._counts.items():
                own = Counter(counts)
                for child in children[name]:
                    own.subtract(self._counts[child])
                self._direct[name] = Counter({k: v for k, v in own.items() if v > 0})
        return self._direct

    def unsupported_ops(self, module_name: str = "") -> Counter[str]:
        """Ops without a memsr-bench formula (fvcore's list, plus those only fvcore's table counts)."""
        ops = Counter(self._analysis.unsupported_ops(self.canonical(module_name)))
        for (quantity, op), n in _split(self._counts.get(self.canonical(module_name), Counter())):
            if quantity == _UNSUPPORTED:
                ops[op] += n
        return ops

    def analysis(self, name: str) -> CountAnalysis:
        """The analysis ``name`` (one of :data:`ANALYSES`) of this trace."""
        if name not in self._cache:
            if name in _SUITE_QUANTITIES:
                quantity, ops, convention = _SUITE_QUANTITIES[name]
                self._cache[name] = OpCountAnalysis(self, name, quantity, convention, ops)
            elif name in _CONVENTIONS:
                self._cache[name] = ModuleHookAnalysis(self, _CONVENTIONS[name])
            else:
                raise KeyError(f"unknown analysis {name!r}; known: {', '.join(ANALYSES)}")
        return self._cache[name]


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Eval mode and no_grad for the trace; training flags and hook tables restored after.

    The flags are set directly instead of calling ``model.eval()``, so that a module whose
    ``train()`` does more than set flags (e.g. re-parameterises) is not changed.
    """
    modules = list(model.modules())
    modes = [m.training for m in modules]
    hooks = [{d: set(getattr(m, d, {})) for d in _HOOK_DICTS} for m in modules]
    try:
        for module in modules:  # flags only: a custom train()/eval() override must not run
            module.training = False
        with torch.no_grad():
            yield
    finally:
        for module, mode, before in zip(modules, modes, hooks, strict=True):
            module.training = mode
            for d, keys in before.items():
                table = getattr(module, d, None)
                if table is not None:
                    for key in [k for k in table if k not in keys]:
                        del table[key]


def normalise_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """``(C, H, W)`` or ``(N, C, H, W)`` as a 4-tuple of positive ints, else a one-line error."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or min(shape) < 1:
        raise MemsrInputError(
            "input_shape", f"expected (C, H, W) or (N, C, H, W) with positive sizes, got {input_shape}"
        )
    return shape


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.float32


def trace_model(model: nn.Module, input_shape: Sequence[int], *, dtype: torch.dtype | None = None) -> ModelTrace:
    """Trace ``model`` once on a random input of ``input_shape`` (``(C,H,W)`` or ``(N,C,H,W)``).

    The trace runs on the model's device and dtype; ``dtype`` traces a converted deep copy instead
    (the counts do not depend on it; ``torch.bfloat16`` is much faster on CPUs with bf16 units).
    """
    shape = normalise_input_shape(input_shape)
    device, model_dtype = _model_device_dtype(model)
    target = model
    if dtype is not None and dtype != model_dtype:
        target = copy.deepcopy(model).to(dtype)
        model_dtype = dtype
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=generator).to(device=device, dtype=model_dtype)
    with untouched(target):
        analysis = _SuiteAnalysis(target, (x,))
        trace = ModelTrace(target, shape, analysis)  # runs the trace
    if target is not model:
        trace.model = model
    return trace


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ParamCounts:
    params: int  # all parameters (shared ones once), as NTIRE's sum(p.numel() for p in parameters())
    trainable_params: int  # those with requires_grad
    buffers: int  # elements of all buffers (BatchNorm running stats, ...)


def count_params(model: nn.Module) -> ParamCounts:
    params = list(model.parameters())
    return ParamCounts(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        buffers=sum(b.numel() for b in model.buffers()),
    )


# ----------------------------------------------------------------------------- input


def input_channels(model: nn.Module) -> int:
    """Channels of the model's input: from its zoo metadata (Y-only models read 1), else its first conv."""
    spec = getattr(model, "zoo_spec", None)
    if spec is not None:
        return 1 if spec.channels == "y" else 3
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return 3
