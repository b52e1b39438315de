"""Parameter, MAC, FLOP, activation and convolution counters, computed on shapes only.

One pass per model and input: :func:`trace_model` runs the model once on *fake* tensors
(``FakeTensorMode``: no kernel runs and no activation memory is allocated, so any input size is
cheap) under ``torch.inference_mode()``, where a dispatch mode sees every aten operator as the
model's code calls it (composite ones such as ``conv2d`` or ``linear`` undecomposed: the operators
fvcore's JIT trace records). Each call's cost comes from the formula table of
:mod:`memsr_bench.measure.op_costs` and is attributed to the innermost module running (forward
hooks, fvcore's canonical module names), and every analysis below is read from that one pass. Each
is an analysis object in the style of fvcore's ``FlopCountAnalysis``: ``.total()``,
``.by_operator()``, ``.by_module()``, ``.by_module_and_operator()``, ``.unsupported_ops()``, plus
``.convention``, a one-line description of what is counted.

Analyses (``ModelTrace.analysis(name)``, :data:`ANALYSES`):

* ``macs`` -- multiply-accumulates of convolutions, linear and matmul-type ops (0 for everything
  else, e.g. ``pixel_shuffle``); ``conv_macs`` -- the convolution part alone (the SR papers'
  "Mult-Adds");
* ``flops`` -- 2 FLOPs per MAC plus bias adds and element-wise, activation, normalisation,
  pooling, reduction and interpolation costs (convention in ``op_costs``);
* ``activations`` / ``convs`` -- output elements / number of calls of every convolution op;
* ``fvcore_flops`` -- fvcore 0.1.5's ``FlopCountAnalysis(...).total()`` (its handles re-expressed
  per operator; equal to fvcore's own JIT analysis, which the tests use as the oracle);
* ``ntire2022_flops`` / ``ntire2022_activations`` / ``ntire2022_convs`` -- the NTIRE 2022 ESR
  ``get_model_flops`` / ``get_model_activation`` conventions: forward hooks on module *types*, so
  an operator counts only when it runs directly inside an instance of a hooked type
  (:data:`NTIRE2022_FLOPS`, :data:`NTIRE2022_CONVS`);
* ``thop_0031`` -- ``thop.profile`` 0.0.31 (the version MemSR's requirements name): hooks on
  exact module types (:data:`THOP_0031`).

Counting leaves the model as it was: it runs in eval mode under ``torch.inference_mode()`` with
every module's ``training`` flag restored afterwards, adds no buffers or attributes, and removes
every hook it registered even when the pass fails. Parameters are counted on the model itself.
A model whose forward reads tensor *values* (``x.item()``, data-dependent shapes) cannot be
counted on shapes and gets a one-line error.

This module is the machinery; callers measure through :func:`memsr_bench.measure.profile.profile`,
which exposes each analysis as a quantity named for its convention
(:mod:`memsr_bench.measure.quantities`, e.g. analysis ``thop_0031`` -> quantity ``thop_0031_macs``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from memsr_bench.errors import MemsrInputError
from memsr_bench.measure.op_costs import IGNORED_OPS, OP_FORMULAS, QUANTITIES, OpCall, bind_call

__all__ = [
    "ANALYSES",
    "CountAnalysis",
    "CountingPass",
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

_SEP = "/"  # counter keys are "<quantity>/<operator>"
_UNSUPPORTED = "unsupported"  # counter key of ops without a memsr-bench formula
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

    ``quantity`` is the :class:`~memsr_bench.measure.op_costs.OpCost` field holding the value
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
    "macs": ("macs", None, "MACs of convolution, linear and matmul-type ops (memsr-bench op_costs)"),
    "conv_macs": ("macs", _CONV_OPS, "MACs (Mult-Adds) of convolution ops only"),
    "flops": (
        "flops",
        None,
        "FLOPs: 2 per MAC + bias adds + element-wise/activation/norm/pool/interpolation ops (memsr-bench op_costs)",
    ),
    "activations": ("conv_outputs", None, "output elements of every convolution op"),
    "convs": ("conv_calls", None, "number of convolution op calls"),
    "fvcore_flops": (
        "fvcore",
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


# ----------------------------------------------------------------------------- the pass


class CountingPass:
    """Records the operator costs of a fake forward pass run inside it (a context manager).

    :func:`trace_model` runs one; :func:`memsr_bench.measure.profile.profile` enters one inside the
    memory prediction's fake pass, so that counts and the predicted peak come from a single pass.
    """

    def __init__(self, model: nn.Module):
        from memsr_bench.measure.fake_pass import ModuleStack

        self.model = model
        self.modules = ModuleStack(model, unknown="caller")
        self.direct: dict[str, Counter[str]] = {}
        self.storages_read: set[int] = set()  # of the real tensors (weights) the operators read
        self._stack: ExitStack | None = None

    def __enter__(self) -> CountingPass:
        self._stack = ExitStack()
        self._stack.enter_context(self.modules)
        self._stack.enter_context(_DispatchedOps(self))
        return self

    def __exit__(self, *exc) -> None:
        assert self._stack is not None
        self._stack.close()

    def trace(self, input_shape: Sequence[int]) -> ModelTrace:
        """The analyses of what was recorded, for a pass on an input of ``input_shape``."""
        used = sum(p.numel() for p in self.model.parameters() if p.untyped_storage().data_ptr() in self.storages_read)
        return ModelTrace(self.model, input_shape, self.direct, params_used=used)

    def read(self, args) -> None:
        for arg in args:
            if isinstance(arg, torch.Tensor) and not isinstance(arg, FakeTensor):
                self.storages_read.add(arg.untyped_storage().data_ptr())

    def record(self, kind: str, args: dict, outputs) -> None:
        formula = OP_FORMULAS.get(kind)
        counts = self.direct.setdefault(self.modules.path, Counter())
        if formula is None:
            counts[f"{_UNSUPPORTED}{_SEP}{kind}"] += 1
            return
        try:
            cost = formula.fn(OpCall(kind, args, [t for t in tree_leaves(outputs) if isinstance(t, torch.Tensor)]))
        except Exception as err:  # noqa: BLE001 - name the operator in the message
            raise RuntimeError(f"cost formula of {kind} failed: {err}") from err
        if not formula.suite:
            counts[f"{_UNSUPPORTED}{_SEP}aten::{formula.name}"] += 1
        for quantity in QUANTITIES:
            value = getattr(cost, quantity)
            if value:
                # fvcore names an operator by its kind (one "conv" for both directions), as its breakdowns do
                label = formula.name if quantity == "fvcore" else cost.label or formula.name
                counts[f"{quantity}{_SEP}{label}"] += value


class _DispatchedOps(TorchDispatchMode):
    """Counts every aten operator the model calls (under inference mode: composite ones undecomposed)."""

    def __init__(self, recorder: CountingPass):
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.recorder.read(tree_leaves((args, kwargs)))
        kind = func._schema.name
        if kind not in IGNORED_OPS:
            self.recorder.record(kind, bind_call(func, args, kwargs), out)
        return out


class ModelTrace:
    """One shape-only pass of ``model(input)``; every quantity is an analysis over it."""

    def __init__(self, model: nn.Module, input_shape: Sequence[int], direct: dict[str, Counter[str]], params_used: int):
        self.model = model
        self.input_shape = tuple(int(s) for s in input_shape)
        self.params_used = params_used  # parameters the operators read (training-only branches are not)
        self._modules = dict(model.named_modules())  # first-occurrence names = fvcore's canonical names
        self._direct = {name: Counter(direct.get(name, Counter())) for name in self._modules}
        self._counts: dict[str, Counter[str]] = {name: Counter() for name in self._modules}
        for name, own in self._direct.items():
            for ancestor in _ancestors(name):
                self._counts[ancestor].update(own)
        canonical = {id(m): name for name, m in self._modules.items()}
        self._aliases = {name: canonical[id(m)] for name, m in model.named_modules(remove_duplicate=False)}
        self._cache: dict[str, CountAnalysis] = {}

    def canonical(self, module_name: str) -> str:
        if not module_name:
            return ""
        if module_name not in self._aliases:
            raise KeyError(f"{module_name!r} is not a submodule name of the model")
        return self._aliases[module_name]

    def counts(self) -> dict[str, Counter[str]]:
        """``{module: Counter({"<quantity>/<operator>": count})}``; a module includes its submodules."""
        return self._counts

    def modules(self) -> dict[str, nn.Module]:
        return self._modules

    def direct_counts(self) -> dict[str, Counter[str]]:
        """Counts of the ops that run directly in each module (not in its submodules)."""
        return self._direct

    def unsupported_ops(self, module_name: str = "") -> Counter[str]:
        """Operators met that have no memsr-bench formula (they counted as 0)."""
        ops: Counter[str] = Counter()
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
    """Eval mode and no_grad for the pass; training flags and hook tables restored after.

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


def trace_model(model: nn.Module, input_shape: Sequence[int]) -> ModelTrace:
    """Count ``model`` on an input of ``input_shape`` (``(C,H,W)`` or ``(N,C,H,W)``), on shapes only.

    The pass runs on fake tensors of the model's device and dtype; the counts depend on neither.
    """
    from memsr_bench.measure.fake_pass import fake_forward

    shape = normalise_input_shape(input_shape)
    dtype = next((t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()), torch.float32)
    counting = CountingPass(model)
    with untouched(model):
        fake_forward(model, shape, dtype, [counting])
    return counting.trace(shape)


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
