"""Per-operator cost formulas of the shape-only counters (one small function per operator).

The counters (:mod:`memsr_bench.measure.counters`) run the model on fake tensors and call, for every
aten operator, the formula registered here under its schema name (``"aten::convolution"``,
``"aten::add_"``, ...) with an :class:`OpCall`: the call's arguments bound to their schema names
(tensors are fake: only shapes, dtypes and devices) and its outputs. Formulas are registered with
:func:`op_formula`, in the manner of ``torch.utils.flop_counter``; :data:`OP_FORMULAS` is the whole
table and :data:`IGNORED_OPS` lists the metadata, view and allocation operators that cost nothing
and are not reported. Any other operator met is reported by ``unsupported_ops()``.

The pass runs under ``torch.inference_mode()``, where a dispatch mode sees every operator as the
model's code calls it, before PyTorch decomposes composite operators (``conv2d``, ``linear``,
``matmul``, ``einsum``, ``batch_norm``, ``adaptive_avg_pool2d``, ``instance_norm``, ``selu``, ...)
into smaller ones: the operators the JIT tracer records, so every quantity equals what fvcore's JIT
analysis of a real pass gives (tested on the whole zoo against the former JIT-based counters).

Conventions (the quantities of :class:`OpCost`)
-----------------------------------------------
``macs``
    Multiply-accumulates of tensor contractions only: convolutions (incl. grouped, depthwise and
    transposed), ``linear``, ``matmul``/``mm``/``bmm``/``addmm``/``baddbmm`` and ``einsum``.

    * convolution: ``N·Cout·Hout·Wout · (Cin/groups)·kh·kw``; transposed convolution:
      ``N·Cin·Hin·Win · (Cout/groups)·kh·kw`` (each input pixel is scattered into a kernel window);
    * linear: ``(output elements) · in_features``; matmul family: ``(output elements) · K``.

    Every other operator has 0 MACs: element-wise ops, activations, normalisation, pooling,
    interpolation, and the pure rearrangements ``pixel_shuffle``/``pixel_unshuffle``, ``cat``,
    padding and dropout (these also have 0 FLOPs).
``flops``
    Floating-point operations, counting every scalar add, subtract, multiply, divide, comparison
    (max/min/select) and elementary function (exp, log, sqrt, tanh, erf, ...) as 1 FLOP:

    * contractions: ``2 · MACs`` (one multiply and one add per MAC), plus 1 per output element for
      a bias (conv, linear) or for the added matrix of ``addmm``/``baddbmm``;
    * binary element-wise ``add sub mul div rsub maximum minimum`` and comparisons, incl. the
      in-place (``add_``) and scalar (``x + 1``) forms: 1 per output element (``add``/``sub`` with
      ``alpha != 1``: 2); ``where``/``masked_fill``: 1; ``addcmul``/``addcdiv``: 2; ``lerp``: 3.
      Operations whose tensor inputs and output are all 0-dim are size arithmetic and cost 0;
    * unary functions per element: ``relu threshold clamp_min clamp_max`` 1, ``clamp`` 1 per bound,
      ``hardtanh relu6 leaky_relu prelu rrelu`` 2, ``elu celu`` 4, ``selu`` 5, ``sigmoid`` 4
      (``1/(1+exp(-x))``), ``hardsigmoid`` 4, ``hardswish silu mish`` 5, ``gelu`` 5 (erf form) or
      9 (tanh form), ``softplus`` 3, ``tanh exp log sqrt rsqrt abs neg reciprocal erf pow sin cos
      sign floor ceil round square`` 1;
    * ``batch_norm`` in inference: 2 per element (the normalisation and the affine transform fold
      into one scale and one shift per channel); with batch statistics 6 per element (4 more for
      the batch mean and variance). ``layer_norm``/``group_norm``/``instance_norm`` (statistics
      computed on the fly): 6 per element (mean 1, variance 3, normalise 2) + 1 for a weight + 1
      for a bias;
    * reductions over ``n_in`` input and ``n_out`` output elements: ``sum prod amax amin max min``
      ``n_in - n_out``, ``mean`` ``n_in`` (adds and the divide), ``var``/``var_mean`` ``4·n_in``,
      ``std``/``std_mean`` ``4·n_in + n_out``; ``softmax`` over rows of length ``n``: ``5n - 2``
      per row (max, subtract, exp, sum, divide), ``log_softmax`` ``5n - 1``;
    * pooling with a ``k``-element window: max ``k - 1`` per output element, average ``k``;
      adaptive pooling: the same with each output's actual window;
    * interpolation: a weighted sum of ``t`` taps is ``2t - 1`` per output element: nearest 0,
      linear 3, bilinear 7, bicubic 31, trilinear 15.
``conv_outputs`` / ``conv_calls``
    Output elements and number of calls of convolution operators (the NTIRE 2022 "#Activations"
    and "#Conv" definitions, applied to every convolution op).
``ntire`` / ``thop``
    What the forward hook of the NTIRE 2022 ``get_model_flops`` / of thop 0.0.31 adds when this
    operator is the body of a module type that the tool hooks (see ``counters.NTIRE2022_FLOPS`` and
    ``counters.THOP_0031``); they are only counted for operators that run directly inside such a
    module. NTIRE: convolution ``N·Hout·Wout·kh·kw·Cin·Cout/groups`` (output-based, also for
    transposed convs), ReLU-family output elements, BatchNorm ``2×`` elements (``1×`` without
    affine), Linear ``batch·in·out`` read from ``input.shape[:2]``/``output.shape[1]``. thop 0.0.31:
    convolution ``(output elements)·(Cin/groups·kh·kw + 1 if bias)``, BatchNorm 2× elements,
    LeakyReLU 1× elements, ReLU/ReLU6/PReLU/ELU 0, Linear ``in_features`` per output element,
    AvgPool 1 per output element, AdaptiveAvgPool ``(prod(in // out) + 1)`` per output element,
    Upsample per output element nearest 0 / linear 5 / bilinear 11 / bicubic 259 / trilinear 31.
``fvcore``
    What fvcore 0.1.5.post20221221's ``FlopCountAnalysis`` handle for the operator adds (0 for the
    operators it does not count): its formulas re-expressed on shapes, the convolution one called
    from fvcore itself (``conv_flop_count``). Conv/linear/matmul/bmm/addmm/einsum MACs (no bias),
    ``batch_norm`` 1 or 2 per element (4 or 5 with batch statistics), ``group_norm``/``layer_norm``
    /``instance_norm`` 4 or 5 per element, nearest upsampling 1 and bilinear 4 per output element,
    ``adaptive_avg_pool2d`` 1 per input element, ``grid_sampler`` 4 per output element.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from fvcore.nn.jit_handles import conv_flop_count

__all__ = [
    "IGNORED_OPS",
    "OP_FORMULAS",
    "OpCall",
    "OpCost",
    "OpFormula",
    "QUANTITIES",
    "bind_call",
    "op_formula",
]


@dataclass(frozen=True)
class OpCost:
    """Cost of one operator call. ``label`` overrides the formula's operator name."""

    macs: int = 0
    flops: int = 0
    conv_outputs: int = 0
    conv_calls: int = 0
    ntire: int = 0
    thop: int = 0
    fvcore: int = 0
    label: str | None = None


QUANTITIES: tuple[str, ...] = tuple(f.name for f in fields(OpCost) if f.name != "label")


class OpCall:
    """One operator call: ``args`` by schema name (fake tensors, ints, lists, None) and ``outputs``."""

    def __init__(self, kind: str, args: dict[str, Any], outputs: Sequence[Any]):
        self.kind = kind
        self.args = args
        self.outputs = [o for o in outputs if isinstance(o, torch.Tensor)]

    def value(self, name: str, default: Any = None) -> Any:
        return self.args.get(name, default)

    def has(self, name: str) -> bool:
        """Whether argument ``name`` is a tensor (an optional weight or bias was given)."""
        return isinstance(self.args.get(name), torch.Tensor)

    def shape(self, name: str) -> list[int]:
        value = self.args.get(name)
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{self.kind}: argument {name!r} is not a tensor")
        return [int(s) for s in value.shape]

    def out_shape(self) -> list[int]:
        return [int(s) for s in self.outputs[0].shape]

    def out(self) -> int:
        """Elements of the first output."""
        return math.prod(self.out_shape())

    def tensor_shapes(self) -> list[list[int]]:
        leaves = torch.utils._pytree.tree_leaves(list(self.args.values()))
        return [[int(s) for s in t.shape] for t in leaves if isinstance(t, torch.Tensor)]


@dataclass(frozen=True)
class OpFormula:
    kind: str  # "aten::add_"
    name: str  # operator name in breakdowns ("add")
    fn: Callable[[OpCall], OpCost]
    suite: bool = True  # False: only fvcore's count; memsr-bench has no formula (reported as unsupported)


OP_FORMULAS: dict[str, OpFormula] = {}


def op_formula(*kinds: str, name: str | None = None, suite: bool = True):
    """Register ``fn(call: OpCall) -> OpCost`` for the operator kinds ``kinds``.

    ``name`` is the operator's name in ``by_operator()`` breakdowns (default: each kind without
    its namespace and trailing ``_``, so that in-place and out-of-place forms share it).
    """

    def decorator(fn):
        for kind in kinds:
            if kind in OP_FORMULAS:
                raise ValueError(f"operator {kind!r} has two formulas")
            label = name or kind.split("::", 1)[-1].rstrip("_")
            OP_FORMULAS[kind] = OpFormula(kind=kind, name=label, fn=fn, suite=suite)
        return fn

    return decorator


def _with_inplace(*names: str) -> tuple[str, ...]:
    """``("aten::add",) -> ("aten::add", "aten::add_")``."""
    out: list[str] = []
    for n in names:
        out += [n, n + "_"]
    return tuple(out)


# Metadata, views, copies and allocation: no arithmetic, not reported at all.
IGNORED_OPS: frozenset[str] = frozenset(
    ["prim::device", "prim::layout", "prim::dtype"]
    + [
        "aten::" + n
        for n in """
    sym_size sym_stride sym_numel sym_storage_offset size stride numel dim is_same_size
    view view_as reshape reshape_as _reshape_alias flatten unflatten permute transpose transpose_ t t_
    contiguous expand expand_as squeeze squeeze_ unsqueeze unsqueeze_ select slice narrow chunk split
    split_with_sizes unbind unsafe_chunk unsafe_split movedim as_strided alias detach detach_ to
    _to_copy type_as copy_ clone empty empty_like empty_strided zeros zeros_like ones ones_like full
    full_like fill_ zero_ new_zeros new_ones new_empty new_full new_empty_strided arange linspace
    scalar_tensor lift_fresh lift_fresh_copy _unsafe_view resolve_conj resolve_neg index index_select
    gather rand rand_like randn randn_like _local_scalar_dense item
    """.split()
    ]
)


# ----------------------------------------------------------------------------- binding


def _schema_names(op: torch._ops.OpOverload) -> list[tuple[str, Any]]:
    return [(a.name, a.default_value if a.has_default_value() else None) for a in op._schema.arguments]


_SCHEMA_CACHE: dict[Any, list[tuple[str, Any]]] = {}


def bind_call(op: torch._ops.OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``{schema argument name: value}`` of a dispatcher call, defaults filled in."""
    names = _SCHEMA_CACHE.get(op)
    if names is None:
        names = _SCHEMA_CACHE[op] = _schema_names(op)
    bound = {name: default for name, default in names}
    bound.update(zip((n for n, _ in names), args, strict=False))
    bound.update(kwargs)
    return bound


# ----------------------------------------------------------------------------- helpers


def _numel(shape) -> int:
    return math.prod(shape)


def _scalar_arithmetic(call: OpCall) -> bool:
    """0-dim in, 0-dim out: size arithmetic, not model compute."""
    return len(call.out_shape()) == 0 and all(len(s) == 0 for s in call.tensor_shapes())


# ----------------------------------------------------------------------------- contractions


def _conv_cost(call: OpCall, transposed: bool) -> OpCost:
    x, w, y = call.shape("input"), call.shape("weight"), call.out_shape()
    groups = call.value("groups") or 1
    kernel = _numel(w[2:])
    n_out = _numel(y)
    if transposed:
        # weight (Cin, Cout/groups, k...): every input element meets Cout/groups·k filter taps
        macs = _numel(x) * w[1] * kernel
        thop_cin_per_group = w[0] // groups
    else:
        # weight (Cout, Cin/groups, k...)
        macs = n_out * w[1] * kernel
        thop_cin_per_group = w[1]
    bias = 1 if call.has("bias") else 0
    return OpCost(
        macs=macs,
        flops=2 * macs + bias * n_out,
        conv_outputs=n_out,
        conv_calls=1,
        ntire=y[0] * _numel(y[2:]) * w[0] * w[1] * kernel,
        thop=n_out * (thop_cin_per_group * kernel + bias),
        fvcore=int(conv_flop_count(x, w, y, transposed=transposed)),
        label="conv_transpose" if transposed else "conv",
    )


@op_formula("aten::convolution", "aten::_convolution", name="conv")
def _convolution(call):
    # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return _conv_cost(call, transposed=bool(call.value("transposed")))


@op_formula("aten::conv1d", "aten::conv2d", "aten::conv3d", name="conv")
def _conv_nd(call):
    # conv2d(input, weight, bias, stride, padding, dilation, groups)
    return _conv_cost(call, transposed=False)


@op_formula("aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d", name="conv")
def _conv_transpose_nd(call):
    # conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _conv_cost(call, transposed=True)


@op_formula("aten::linear")
def _linear(call):
    # linear(input, weight (out, in), bias)
    x, w, y = call.shape("input"), call.shape("weight"), call.out_shape()
    n_out = _numel(y)
    macs = n_out * w[1]
    bias = 1 if call.has("bias") else 0
    # NTIRE's hook: batch · input.shape[1] · output.shape[1] (input.shape[0] · output.shape[0] for 1-D)
    ntire = x[0] * y[0] if len(x) == 1 else x[0] * x[1] * y[1]
    return OpCost(macs=macs, flops=2 * macs + bias * n_out, ntire=ntire, thop=w[1] * n_out, fvcore=_numel(x) * w[0])


@op_formula("aten::matmul", "aten::mm", "aten::bmm")
def _matmul(call):
    a, b = call.shape("self"), call.shape("mat2" if "mat2" in call.args else "other")
    macs = call.out() * a[-1]
    return OpCost(macs=macs, flops=2 * macs, fvcore=_numel(a) * b[-1])


@op_formula("aten::addmm", "aten::baddbmm", "aten::addbmm")
def _addmm(call):
    # addmm(self, mat1, mat2, beta, alpha): out = beta·self + alpha·mat1@mat2 (baddbmm: batch1, batch2)
    first, second = ("mat1", "mat2") if "mat1" in call.args else ("batch1", "batch2")
    a, b = call.shape(first), call.shape(second)
    n_out = call.out()
    macs = _numel(a[:-1]) * a[-1] * b[-1] if len(a) == 3 else n_out * a[-1]
    fvcore = a[0] * a[1] * b[1] if call.kind == "aten::addmm" else 0
    return OpCost(macs=macs, flops=2 * macs + n_out, fvcore=fvcore)


def _fvcore_einsum(equation: str, shapes: list[list[int]]) -> int:
    """fvcore's ``einsum_flop_jit``: two batched-matmul equations by formula, others by numpy's path."""
    letters = OrderedDict((k, 0) for k in equation if k.isalpha()).keys()
    equation = equation.translate({ord(x): 97 + i for i, x in enumerate(letters)})
    if equation == "abc,abd->acd":
        n, c, t = shapes[0]
        return n * c * t * shapes[-1][-1]
    if equation == "abc,adc->adb":
        n, t, g = shapes[0]
        return n * t * g * shapes[-1][1]
    path = np.einsum_path(equation, *[np.zeros(s) for s in shapes], optimize="optimal")[1]
    for line in path.split("\n"):
        if "optimized flop" in line.lower():
            return int(np.floor(float(line.split(":")[-1]) / 2))
    raise ValueError(f"einsum {equation!r}: no flop count")


@op_formula("aten::einsum")
def _einsum(call):
    equation = call.value("equation").replace(" ", "")
    operands = [[int(s) for s in t.shape] for t in call.value("tensors")]
    lhs = equation.split("->")[0].split(",")
    if "..." in equation or len(lhs) != len(operands):
        raise ValueError(f"einsum {equation!r} with ellipsis is not supported")
    sizes: dict[str, int] = {}
    for letters, shape in zip(lhs, operands, strict=True):
        sizes.update(zip(letters, shape, strict=True))
    terms = _numel(sizes.values())
    fvcore = _fvcore_einsum(equation, operands)
    if len(operands) == 1:
        return OpCost(flops=terms - call.out(), fvcore=fvcore)
    macs = terms * (len(operands) - 1)
    return OpCost(macs=macs, flops=2 * macs, fvcore=fvcore)


# ----------------------------------------------------------------------------- element-wise


def _elementwise(per_element: int):
    def fn(call):
        if _scalar_arithmetic(call):
            return OpCost()
        return OpCost(flops=per_element * call.out())

    return fn


_ELEMENTWISE_COSTS = {
    # binary (tensor or scalar operand) and comparisons: 1 per output element
    "mul div rsub true_divide floor_divide remainder maximum minimum fmax fmin eq ne lt le gt ge "
    "masked_fill pow atan2": 1,
    # unary functions: 1 per element
    "exp exp2 expm1 log log2 log10 log1p sqrt rsqrt abs neg reciprocal sin cos tan erf sign floor "
    "ceil round trunc square tanh": 1,
    "addcmul addcdiv": 2,
    "lerp": 3,
}
for _names, _cost in _ELEMENTWISE_COSTS.items():
    for _n in _names.split():
        op_formula(*_with_inplace(f"aten::{_n}"))(_elementwise(_cost))

op_formula("aten::where", name="where")(_elementwise(1))


@op_formula(*_with_inplace("aten::add", "aten::sub"))
def _add_sub(call):
    if _scalar_arithmetic(call):
        return OpCost()
    alpha = call.value("alpha", 1)
    return OpCost(flops=(1 if alpha in (1, None) else 2) * call.out())


@op_formula(*_with_inplace("aten::clamp"))
def _clamp(call):
    bounds = sum(call.value(b) is not None for b in ("min", "max"))
    return OpCost(flops=bounds * call.out())


for _n in ("clamp_min", "clamp_max", "threshold"):
    op_formula(*_with_inplace(f"aten::{_n}"))(_elementwise(1))


# Activations. NTIRE hooks nn.ReLU/ReLU6/PReLU/ELU/LeakyReLU and adds their output elements;
# thop 0.0.31 counts only nn.LeakyReLU (input elements) and treats ReLU/ReLU6 as free.
def _activation(per_element: int, ntire: bool = False, thop: bool = False):
    def fn(call):
        n = call.out()
        return OpCost(flops=per_element * n, ntire=n if ntire else 0, thop=n if thop else 0)

    return fn


op_formula(*_with_inplace("aten::relu"))(_activation(1, ntire=True))
op_formula(*_with_inplace("aten::relu6"))(_activation(2, ntire=True))
op_formula(*_with_inplace("aten::hardtanh"))(_activation(2, ntire=True))
op_formula(*_with_inplace("aten::leaky_relu"))(_activation(2, ntire=True, thop=True))
op_formula("aten::prelu", "aten::_prelu_kernel", name="prelu")(_activation(2, ntire=True))
op_formula(*_with_inplace("aten::rrelu"))(_activation(2))
op_formula(*_with_inplace("aten::elu"))(_activation(4, ntire=True))
op_formula(*_with_inplace("aten::celu"))(_activation(4))
op_formula(*_with_inplace("aten::selu"))(_activation(5))
op_formula(*_with_inplace("aten::sigmoid"))(_activation(4))
op_formula(*_with_inplace("aten::hardsigmoid"))(_activation(4))
op_formula(*_with_inplace("aten::hardswish"))(_activation(5))
op_formula(*_with_inplace("aten::silu"))(_activation(5))
op_formula(*_with_inplace("aten::mish"))(_activation(5))
op_formula("aten::softplus")(_activation(3))


@op_formula("aten::gelu", "aten::gelu_")
def _gelu(call):
    return OpCost(flops=(9 if call.value("approximate") == "tanh" else 5) * call.out())


# ----------------------------------------------------------------------------- normalisation


@op_formula("aten::batch_norm")
def _batch_norm(call):
    # batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled)
    n = call.out()
    training = bool(call.value("training", False))
    affine = call.has("weight")
    fvcore = n * ((5 if affine else 4) if training else (2 if affine else 1))
    return OpCost(flops=(6 if training else 2) * n, ntire=(2 if affine else 1) * n, thop=2 * n, fvcore=fvcore)


def _norm_with_stats(call: OpCall, statistics: int = 4) -> OpCost:
    n = _numel(call.shape("input"))
    per_element = statistics + 2 + call.has("weight") + call.has("bias")
    return OpCost(flops=per_element * n, fvcore=n * (5 if call.has("weight") else 4))


@op_formula("aten::layer_norm")
def _layer_norm(call):
    return _norm_with_stats(call)


@op_formula("aten::group_norm")
def _group_norm(call):
    return _norm_with_stats(call)


@op_formula("aten::instance_norm")
def _instance_norm(call):
    return _norm_with_stats(call, statistics=4 if call.value("use_input_stats") in (True, None) else 0)


# ----------------------------------------------------------------------------- reductions


def _reduced(call: OpCall) -> tuple[int, int]:
    return _numel(call.shape("self")), call.out()


@op_formula("aten::sum", "aten::prod", "aten::amax", "aten::amin")
def _sum_like(call):
    n_in, n_out = _reduced(call)
    return OpCost(flops=n_in - n_out)


@op_formula("aten::max", "aten::min")
def _max_min(call):
    if call.has("other"):  # max(x, other): element-wise
        return _elementwise(1)(call)
    n_in, n_out = _reduced(call)  # max(x) or max(x, dim, keepdim) -> (values, indices)
    return OpCost(flops=n_in - n_out)


@op_formula("aten::mean")
def _mean(call):
    n_in, _ = _reduced(call)
    return OpCost(flops=n_in)


@op_formula("aten::var", "aten::var_mean", name="var")
def _var(call):
    n_in, _ = _reduced(call)
    return OpCost(flops=4 * n_in)


@op_formula("aten::std", "aten::std_mean", name="std")
def _std(call):
    n_in, n_out = _reduced(call)
    return OpCost(flops=4 * n_in + n_out)


def _softmax(extra: int):
    def fn(call):
        x = call.shape("self")
        dim = call.value("dim")
        n = x[dim] if x else 1
        rows = _numel(x) // n
        return OpCost(flops=rows * (5 * n + extra))

    return fn


op_formula("aten::softmax")(_softmax(-2))
op_formula("aten::log_softmax")(_softmax(-1))


# ----------------------------------------------------------------------------- pooling


def _window(call: OpCall, spatial: int) -> int:
    kernel = call.value("kernel_size")
    kernel = [kernel] if isinstance(kernel, int) else list(kernel)
    if len(kernel) == 1:
        kernel = kernel * spatial
    return _numel(kernel)


def _pool(kind: str, spatial: int):
    def fn(call):
        n_out = call.out()
        k = _window(call, spatial)
        if kind == "max":
            return OpCost(flops=n_out * (k - 1))
        return OpCost(flops=n_out * k, thop=n_out)

    return fn


for _d in (1, 2, 3):
    op_formula(f"aten::max_pool{_d}d", f"aten::max_pool{_d}d_with_indices", name=f"max_pool{_d}d")(_pool("max", _d))
    op_formula(f"aten::avg_pool{_d}d")(_pool("avg", _d))


def _adaptive_windows(size_in: int, size_out: int) -> int:
    """Sum over the outputs of one dimension of their window lengths (PyTorch's start/end rule)."""
    total = 0
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        total += end - start
    return total


def _adaptive_pool(kind: str, spatial: int):
    def fn(call):
        x, y = call.shape("self"), call.out_shape()
        lead = _numel(x[:-spatial])
        window_sum = lead * _numel(_adaptive_windows(i, o) for i, o in zip(x[-spatial:], y[-spatial:], strict=True))
        n_out = _numel(y)
        if kind == "max":
            return OpCost(flops=window_sum - n_out)
        kernel = _numel(i // o for i, o in zip(x[-spatial:], y[-spatial:], strict=True))
        fvcore = _numel(x) if spatial == 2 else 0  # fvcore handles adaptive_avg_pool2d only
        return OpCost(flops=window_sum, thop=(kernel + 1) * n_out, fvcore=fvcore)

    return fn


for _d in (1, 2, 3):
    op_formula(f"aten::adaptive_avg_pool{_d}d")(_adaptive_pool("avg", _d))
    op_formula(f"aten::adaptive_max_pool{_d}d")(_adaptive_pool("max", _d))


# ----------------------------------------------------------------------------- interpolation


def _upsample(taps: int, thop_per_output: int, fvcore_per_output: int = 0):
    def fn(call):
        n_out = call.out()
        return OpCost(
            flops=(2 * taps - 1) * n_out if taps else 0, thop=thop_per_output * n_out, fvcore=fvcore_per_output * n_out
        )

    return fn


op_formula("aten::upsample_nearest1d", "aten::_upsample_nearest_exact1d")(_upsample(0, 0))
op_formula("aten::upsample_nearest2d")(_upsample(0, 0, fvcore_per_output=1))
op_formula("aten::_upsample_nearest_exact2d")(_upsample(0, 0))
op_formula("aten::upsample_nearest3d", "aten::_upsample_nearest_exact3d")(_upsample(0, 0))
op_formula("aten::upsample_linear1d")(_upsample(2, 5))
op_formula("aten::upsample_bilinear2d")(_upsample(4, 11, fvcore_per_output=4))
op_formula("aten::upsample_bicubic2d")(_upsample(16, 224 + 35))
op_formula("aten::upsample_trilinear3d")(_upsample(8, 13 * 2 + 5))


@op_formula("aten::grid_sampler", suite=False)
def _grid_sampler(call):
    return OpCost(fvcore=4 * call.out())  # fvcore assumes bilinear


# ----------------------------------------------------------------------------- free rearrangements


def _free(call):
    """Pure data movement: 0 MACs, 0 FLOPs."""
    return OpCost()


for _n in (
    "pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle cat concat concatenate "
    "stack pad constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d "
    "replication_pad2d replication_pad3d dropout dropout_ feature_dropout feature_dropout_ "
    "alpha_dropout alpha_dropout_ feature_alpha_dropout feature_alpha_dropout_ flip roll "
    "repeat tile im2col"
).split():
    op_formula(f"aten::{_n}")(_free)
