"""Per-operator cost formulas for the JIT-traced counters (one small function per operator).

Every formula takes the JIT values of one traced ``aten::`` node (its inputs and outputs, whose
shapes are complete in a trace) and returns an :class:`OpCost`. Formulas are registered with
:func:`op_formula` under one or more operator kinds (``"aten::add"``, ``"aten::add_"``, ...), in the
manner of ``torch.utils.flop_counter``; :data:`OP_FORMULAS` is the whole table and
:data:`IGNORED_OPS` lists the pure metadata/view operators that cost nothing and are not reported.
Any other operator met in a trace is reported by ``unsupported_ops()``.

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
      Operations whose inputs and output are all 0-dim are shape arithmetic recorded by the tracer
      (``h // 2``) and cost 0;
    * unary functions per element: ``relu threshold clamp_min clamp_max`` 1, ``clamp`` 1 per bound,
      ``hardtanh relu6 leaky_relu prelu rrelu`` 2, ``elu celu`` 4, ``selu`` 5, ``sigmoid`` 4
      (``1/(1+exp(-x))``), ``hardsigmoid`` 4, ``hardswish silu mish`` 5, ``gelu`` 5 (erf form) or
      9 (tanh form), ``softplus`` 3, ``tanh exp log sqrt rsqrt abs neg reciprocal erf pow sin cos
      sign floor ceil round square`` 1;
    * ``batch_norm`` in inference: 2 per element (the normalisation and the affine transform fold
      into one scale and one shift per channel); in training mode 6 per element (4 more for the
      batch mean and variance). ``layer_norm``/``group_norm``/``instance_norm`` (statistics
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
    operator is the body of a module type that the tool hooks (see ``counters.NTIRE2022`` and
    ``counters.THOP_0031``); they are only counted for operators that run directly inside such a
    module. NTIRE: convolution ``N·Hout·Wout·kh·kw·Cin·Cout/groups`` (output-based, also for
    transposed convs), ReLU-family output elements, BatchNorm ``2×`` elements (``1×`` without
    affine), Linear ``batch·in·out`` read from ``input.shape[:2]``/``output.shape[1]``. thop 0.0.31:
    convolution ``(output elements)·(Cin/groups·kh·kw + 1 if bias)``, BatchNorm 2× elements,
    LeakyReLU 1× elements, ReLU/ReLU6/PReLU/ELU 0, Linear ``in_features`` per output element,
    AvgPool 1 per output element, AdaptiveAvgPool ``(prod(in // out) + 1)`` per output element,
    Upsample per output element nearest 0 / linear 5 / bilinear 11 / bicubic 259 / trilinear 31.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

__all__ = [
    "IGNORED_OPS",
    "OP_FORMULAS",
    "OpCost",
    "OpFormula",
    "QUANTITIES",
    "op_formula",
]

JitValue = Any  # torch._C.Value


@dataclass(frozen=True)
class OpCost:
    """Cost of one traced operator call. ``label`` overrides the formula's operator name."""

    macs: int = 0
    flops: int = 0
    conv_outputs: int = 0
    conv_calls: int = 0
    ntire: int = 0
    thop: int = 0
    label: str | None = None


QUANTITIES: tuple[str, ...] = tuple(f.name for f in fields(OpCost) if f.name != "label")


@dataclass(frozen=True)
class OpFormula:
    kind: str  # "aten::add_"
    name: str  # operator name in breakdowns ("add")
    fn: Callable[[Sequence[JitValue], Sequence[JitValue]], OpCost]


OP_FORMULAS: dict[str, OpFormula] = {}


def op_formula(*kinds: str, name: str | None = None):
    """Register ``fn(inputs, outputs) -> OpCost`` for the operator kinds ``kinds``.

    ``name`` is the operator's name in ``by_operator()`` breakdowns (default: each kind without
    its namespace and trailing ``_``, so that in-place and out-of-place forms share it).
    """

    def decorator(fn):
        for kind in kinds:
            if kind in OP_FORMULAS:
                raise ValueError(f"operator {kind!r} has two formulas")
            label = name or kind.split("::", 1)[-1].rstrip("_")
            OP_FORMULAS[kind] = OpFormula(kind=kind, name=label, fn=fn)
        return fn

    return decorator


def _with_inplace(*names: str) -> tuple[str, ...]:
    """``("aten::add",) -> ("aten::add", "aten::add_")``."""
    out: list[str] = []
    for n in names:
        out += [n, n + "_"]
    return tuple(out)


# Metadata, views and allocation: no arithmetic, not reported at all.
IGNORED_OPS: frozenset[str] = frozenset(
    "aten::" + n
    for n in """
    Int ScalarImplicit Float Bool size numel dim len view view_as reshape reshape_as flatten
    unflatten permute transpose t contiguous expand expand_as squeeze squeeze_ unsqueeze unsqueeze_
    select slice narrow chunk split split_with_sizes unbind unsafe_chunk unsafe_split movedim
    as_strided alias detach detach_ to type_as copy_ clone empty empty_like zeros zeros_like ones
    ones_like full full_like new_zeros new_ones new_empty new_full arange linspace scalar_tensor
    lift_fresh _unsafe_view resolve_conj resolve_neg index index_select gather
    """.split()
)


# ----------------------------------------------------------------------------- value helpers


def _shape(value: JitValue) -> list[int]:
    if not value.isCompleteTensor():
        raise ValueError(f"no complete shape for {value.debugName()} ({value.type()})")
    return list(value.type().sizes())


def _is_tensor(value: JitValue) -> bool:
    return value.isCompleteTensor()


def _is_none(value: JitValue) -> bool:
    return value.type().kind() == "NoneType"


def _const(value: JitValue) -> Any:
    """Python value of a constant input (lists of constants included); None where not constant."""
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [_const(v) for v in node.inputs()]
    if node.kind() == "prim::Constant":
        return value.toIValue()
    return None


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def _out(outputs: Sequence[JitValue]) -> int:
    return _numel(_shape(outputs[0]))


def _tensor_inputs(inputs: Sequence[JitValue]) -> list[list[int]]:
    return [_shape(v) for v in inputs if _is_tensor(v)]


def _scalar_arithmetic(inputs: Sequence[JitValue], outputs: Sequence[JitValue]) -> bool:
    """0-dim in, 0-dim out: size arithmetic the tracer records (``h // 2``), not model compute."""
    return len(_shape(outputs[0])) == 0 and all(len(s) == 0 for s in _tensor_inputs(inputs))


# ----------------------------------------------------------------------------- contractions


def _conv_cost(inputs, outputs, transposed: bool, groups: int | None) -> OpCost:
    x, w, y = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
    kernel = _numel(w[2:])
    n_out = _numel(y)
    if transposed:
        # weight (Cin, Cout/groups, k...): every input element meets Cout/groups·k filters taps
        macs = _numel(x) * w[1] * kernel
        thop_cin_per_group = w[0] // (groups or 1)
    else:
        # weight (Cout, Cin/groups, k...)
        macs = n_out * w[1] * kernel
        thop_cin_per_group = w[1]
    bias = 0 if _is_none(inputs[2]) else 1
    return OpCost(
        macs=macs,
        flops=2 * macs + bias * n_out,
        conv_outputs=n_out,
        conv_calls=1,
        ntire=y[0] * _numel(y[2:]) * w[0] * w[1] * kernel,
        thop=n_out * (thop_cin_per_group * kernel + bias),
        label="conv_transpose" if transposed else "conv",
    )


@op_formula("aten::_convolution", "aten::convolution", name="conv")
def _convolution(inputs, outputs):
    # _convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups, ...)
    return _conv_cost(inputs, outputs, transposed=bool(_const(inputs[6])), groups=_const(inputs[8]))


@op_formula("aten::conv1d", "aten::conv2d", "aten::conv3d", name="conv")
def _conv_nd(inputs, outputs):
    # conv2d(input, weight, bias, stride, padding, dilation, groups)
    return _conv_cost(inputs, outputs, transposed=False, groups=_const(inputs[6]))


@op_formula("aten::conv_transpose1d", "aten::conv_transpose2d", "aten::conv_transpose3d", name="conv")
def _conv_transpose_nd(inputs, outputs):
    # conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _conv_cost(inputs, outputs, transposed=True, groups=_const(inputs[6]))


@op_formula("aten::linear")
def _linear(inputs, outputs):
    # linear(input, weight (out, in), bias)
    x, w, y = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
    n_out = _numel(y)
    macs = n_out * w[1]
    bias = 0 if _is_none(inputs[2]) else 1
    # NTIRE's hook: batch · input.shape[1] · output.shape[1] (input.shape[0] · output.shape[0] for 1-D)
    ntire = x[0] * y[0] if len(x) == 1 else x[0] * x[1] * y[1]
    return OpCost(macs=macs, flops=2 * macs + bias * n_out, ntire=ntire, thop=w[1] * n_out)


@op_formula("aten::matmul", "aten::mm", "aten::bmm")
def _matmul(inputs, outputs):
    a = _shape(inputs[0])
    macs = _out(outputs) * a[-1]
    return OpCost(macs=macs, flops=2 * macs)


@op_formula("aten::addmm", "aten::baddbmm", "aten::addbmm")
def _addmm(inputs, outputs):
    # addmm(bias, a, b, beta, alpha): out = beta·bias + alpha·a@b
    a, b = _shape(inputs[1]), _shape(inputs[2])
    n_out = _out(outputs)
    macs = _numel(a[:-1]) * a[-1] * b[-1] if len(a) == 3 else n_out * a[-1]
    return OpCost(macs=macs, flops=2 * macs + n_out)


@op_formula("aten::einsum")
def _einsum(inputs, outputs):
    equation = _const(inputs[0]).replace(" ", "")
    operands = [_shape(v) for v in inputs[1].node().inputs()]
    lhs = equation.split("->")[0].split(",")
    if "..." in equation or len(lhs) != len(operands):
        raise ValueError(f"einsum {equation!r} with ellipsis is not supported")
    sizes: dict[str, int] = {}
    for letters, shape in zip(lhs, operands, strict=True):
        sizes.update(zip(letters, shape, strict=True))
    terms = _numel(sizes.values())
    if len(operands) == 1:
        return OpCost(flops=terms - _out(outputs))
    macs = terms * (len(operands) - 1)
    return OpCost(macs=macs, flops=2 * macs)


# ----------------------------------------------------------------------------- element-wise


def _elementwise(per_element: int):
    def fn(inputs, outputs):
        if _scalar_arithmetic(inputs, outputs):
            return OpCost()
        return OpCost(flops=per_element * _out(outputs))

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
def _add_sub(inputs, outputs):
    if _scalar_arithmetic(inputs, outputs):
        return OpCost()
    alpha = _const(inputs[2]) if len(inputs) > 2 else 1
    return OpCost(flops=(1 if alpha in (1, None) else 2) * _out(outputs))


@op_formula(*_with_inplace("aten::clamp"))
def _clamp(inputs, outputs):
    bounds = sum(not _is_none(v) for v in inputs[1:3])
    return OpCost(flops=bounds * _out(outputs))


for _n in ("clamp_min", "clamp_max", "threshold"):
    op_formula(*_with_inplace(f"aten::{_n}"))(_elementwise(1))


# Activations. NTIRE hooks nn.ReLU/ReLU6/PReLU/ELU/LeakyReLU and adds their output elements;
# thop 0.0.31 counts only nn.LeakyReLU (input elements) and treats ReLU/ReLU6 as free.
def _activation(per_element: int, ntire: bool = False, thop: bool = False):
    def fn(inputs, outputs):
        n = _out(outputs)
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
def _gelu(inputs, outputs):
    approximate = _const(inputs[1]) if len(inputs) > 1 else "none"
    return OpCost(flops=(9 if approximate == "tanh" else 5) * _out(outputs))


# ----------------------------------------------------------------------------- normalisation


@op_formula("aten::batch_norm")
def _batch_norm(inputs, outputs):
    # batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn)
    n = _out(outputs)
    training = bool(_const(inputs[5]))
    affine = not _is_none(inputs[1])
    return OpCost(flops=(6 if training else 2) * n, ntire=(2 if affine else 1) * n, thop=2 * n)


def _norm_with_stats(weight_index: int, bias_index: int):
    def fn(inputs, outputs):
        n = _out(outputs)
        per_element = 6 + (not _is_none(inputs[weight_index])) + (not _is_none(inputs[bias_index]))
        return OpCost(flops=per_element * n)

    return fn


op_formula("aten::layer_norm")(_norm_with_stats(2, 3))  # (input, shape, weight, bias, eps, cudnn)
op_formula("aten::group_norm")(_norm_with_stats(2, 3))  # (input, groups, weight, bias, eps, cudnn)


@op_formula("aten::instance_norm")
def _instance_norm(inputs, outputs):
    # instance_norm(input, weight, bias, running_mean, running_var, use_input_stats, ...)
    n = _out(outputs)
    stats = 4 if _const(inputs[5]) in (True, None) else 0
    per_element = stats + 2 + (not _is_none(inputs[1])) + (not _is_none(inputs[2]))
    return OpCost(flops=per_element * n)


# ----------------------------------------------------------------------------- reductions


def _reduced(inputs, outputs) -> tuple[int, int]:
    return _numel(_shape(inputs[0])), _out(outputs)


@op_formula("aten::sum", "aten::prod", "aten::amax", "aten::amin")
def _sum_like(inputs, outputs):
    n_in, n_out = _reduced(inputs, outputs)
    return OpCost(flops=n_in - n_out)


@op_formula("aten::max", "aten::min")
def _max_min(inputs, outputs):
    if len(inputs) > 1 and _is_tensor(inputs[1]):  # max(x, other): element-wise
        return _elementwise(1)(inputs, outputs)
    n_in, n_out = _reduced(inputs, outputs)  # max(x) or max(x, dim, keepdim) -> (values, indices)
    return OpCost(flops=n_in - n_out)


@op_formula("aten::mean")
def _mean(inputs, outputs):
    n_in, _ = _reduced(inputs, outputs)
    return OpCost(flops=n_in)


@op_formula("aten::var", "aten::var_mean", name="var")
def _var(inputs, outputs):
    n_in, _ = _reduced(inputs, outputs)
    return OpCost(flops=4 * n_in)


@op_formula("aten::std", "aten::std_mean", name="std")
def _std(inputs, outputs):
    n_in, n_out = _reduced(inputs, outputs)
    return OpCost(flops=4 * n_in + n_out)


def _softmax(extra: int):
    def fn(inputs, outputs):
        x = _shape(inputs[0])
        dim = _const(inputs[1])
        n = x[dim] if x else 1
        rows = _numel(x) // n
        return OpCost(flops=rows * (5 * n + extra))

    return fn


op_formula("aten::softmax", "aten::_softmax", name="softmax")(_softmax(-2))
op_formula("aten::log_softmax", "aten::_log_softmax", name="log_softmax")(_softmax(-1))


# ----------------------------------------------------------------------------- pooling


def _window(inputs, spatial: int) -> int:
    kernel = _const(inputs[1])
    kernel = [kernel] if isinstance(kernel, int) else list(kernel)
    if len(kernel) == 1:
        kernel = kernel * spatial
    return _numel(kernel)


def _pool(kind: str, spatial: int):
    def fn(inputs, outputs):
        n_out = _out(outputs)
        k = _window(inputs, spatial)
        if kind == "max":
            return OpCost(flops=n_out * (k - 1))
        return OpCost(flops=n_out * k, thop=n_out)

    return fn


for _d in (1, 2, 3):
    op_formula(f"aten::max_pool{_d}d", f"aten::max_pool{_d}d_with_indices")(_pool("max", _d))
    op_formula(f"aten::avg_pool{_d}d")(_pool("avg", _d))


def _adaptive_windows(size_in: int, size_out: int) -> int:
    """Sum over the outputs of one dimension of their window lengths (PyTorch's start/end rule)."""
    total = 0
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        total += end - start
    return total


def _adaptive_pool(kind: str):
    def fn(inputs, outputs):
        x, y = _shape(inputs[0]), _shape(outputs[0])
        spatial = len(_const(inputs[1]))
        lead = _numel(x[:-spatial])
        window_sum = lead * _numel(_adaptive_windows(i, o) for i, o in zip(x[-spatial:], y[-spatial:], strict=True))
        n_out = _numel(y)
        if kind == "max":
            return OpCost(flops=window_sum - n_out)
        kernel = _numel(i // o for i, o in zip(x[-spatial:], y[-spatial:], strict=True))
        return OpCost(flops=window_sum, thop=(kernel + 1) * n_out)

    return fn


for _d in (1, 2, 3):
    op_formula(f"aten::adaptive_avg_pool{_d}d")(_adaptive_pool("avg"))
    op_formula(f"aten::adaptive_max_pool{_d}d")(_adaptive_pool("max"))


# ----------------------------------------------------------------------------- interpolation


def _upsample(taps: int, thop_per_output: int):
    def fn(inputs, outputs):
        n_out = _out(outputs)
        return OpCost(flops=(2 * taps - 1) * n_out if taps else 0, thop=thop_per_output * n_out)

    return fn


for _d in (1, 2, 3):
    op_formula(f"aten::upsample_nearest{_d}d", f"aten::_upsample_nearest_exact{_d}d")(_upsample(0, 0))
op_formula("aten::upsample_linear1d")(_upsample(2, 5))
op_formula("aten::upsample_bilinear2d")(_upsample(4, 11))
op_formula("aten::upsample_bicubic2d")(_upsample(16, 224 + 35))
op_formula("aten::upsample_trilinear3d")(_upsample(8, 13 * 2 + 5))


# ----------------------------------------------------------------------------- free rearrangements


def _free(inputs, outputs):
    """Pure data movement: 0 MACs, 0 FLOPs."""
    return OpCost()


for _n in (
    "pixel_shuffle pixel_unshuffle channel_shuffle native_channel_shuffle cat concat concatenate "
    "stack pad constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d "
    "replication_pad2d replication_pad3d dropout dropout_ feature_dropout feature_dropout_ "
    "alpha_dropout alpha_dropout_ feature_alpha_dropout feature_alpha_dropout_ flip roll repeat tile "
    "im2col"
).split():
    op_formula(f"aten::{_n}")(_free)
