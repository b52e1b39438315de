"""Structural re-parameterization: exact algebra on conv weights, and ``deploy(model)``.

Conventions. A conv is a pair ``(weight, bias)`` with ``weight`` of shape ``(C_out, C_in, k, k)``
(``groups=1``, stride 1, odd ``k``, "same" padding ``k // 2``) and ``bias`` of shape ``(C_out,)``.
A BatchNorm in eval mode is the per-channel affine map ``y = scale * x + shift``
(:func:`bn_to_affine`). Every helper is a pure function: it returns new tensors, computed in float64
and cast back to the input dtype, and never modifies its arguments.

Padding is the one place where merging is subtle. A ``k x k`` conv that follows an affine layer
(``1x1`` conv or BN) sees that layer's output zero-padded, but the merged conv would see the
*input* zero-padded, i.e. the affine layer's output padded with its bias. The two agree on the
border only when the ``k x k`` conv's input is padded with the preceding bias instead of zeros;
FMEN does exactly that in training form (RRRB pads with the expand conv's bias, HFAB pads with
the BN's shift), which makes its re-parameterization exact on every pixel. Merges in the other
order (``k x k`` followed by an affine layer), identities and parallel branches are exact with
ordinary zero padding.

``deploy(model)`` returns the inference form of a training-form model: it deep-copies the model
and replaces every submodule that has a ``to_deploy()`` method by what that method returns (the
method is responsible for the whole block, so the walk does not descend into it). Any
re-parameterizable block plugs in by defining ``to_deploy()``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "add_identity",
    "bn_to_affine",
    "deploy",
    "fuse_bn_conv",
    "fuse_conv_bn",
    "identity_kernel",
    "merge_1x1_kxk",
    "merge_kxk_1x1",
    "merge_parallel",
    "pad_kernel",
    "pad_with_values",
]


def _f64(t: Tensor) -> Tensor:
    return t.detach().to(torch.float64)


def _bias_or_zeros(bias: Tensor | None, n: int, like: Tensor) -> Tensor:
    if bias is None:
        return torch.zeros(n, dtype=torch.float64, device=like.device)
    return _f64(bias)


def _check_conv(weight: Tensor, name: str = "weight") -> None:
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 != 1:
        raise ValueError(f"{name} must be a (C_out, C_in, k, k) kernel with odd k, got {tuple(weight.shape)}")


# ----------------------------------------------------------------------------------------------
# BatchNorm
# ----------------------------------------------------------------------------------------------


def bn_to_affine(
    bn: nn.BatchNorm2d | None = None,
    *,
    gamma: Tensor | None = None,
    beta: Tensor | None = None,
    mean: Tensor | None = None,
    var: Tensor | None = None,
    eps: float = 1e-5,
) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` of an eval-mode BatchNorm: ``bn(x) = scale * x + shift`` per channel.

    ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale`` (``shift`` is what
    FMEN calls the "BN bias" and pads with). Pass a module, or the four tensors and ``eps``;
    a BN without affine parameters has ``gamma = 1``, ``beta = 0``. Results are float64.
    """
    if bn is not None:
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("BatchNorm without running statistics cannot be folded")
        n = bn.num_features
        ref = bn.running_mean
        gamma = bn.weight if bn.weight is not None else torch.ones(n, device=ref.device)
        beta = bn.bias if bn.bias is not None else torch.zeros(n, device=ref.device)
        mean, var, eps = bn.running_mean, bn.running_var, bn.eps
    if gamma is None or beta is None or mean is None or var is None:
        raise ValueError("pass a BatchNorm module or gamma, beta, mean and var")
    scale = _f64(gamma) / torch.sqrt(_f64(var) + eps)
    shift = _f64(beta) - _f64(mean) * scale
    return scale, shift


def fuse_conv_bn(weight: Tensor, bias: Tensor | None, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """Fold an affine/BN layer that FOLLOWS a conv: ``bn(conv(x)) == conv'(x)``.

    ``W' = scale[o] * W[o]`` and ``b' = scale * b + shift``. Exact with any padding.
    ``scale``/``shift`` come from :func:`bn_to_affine`.
    """
    _check_conv(weight)
    c_out = weight.shape[0]
    w = _f64(weight) * _f64(scale).view(-1, 1, 1, 1)
    b = _f64(scale) * _bias_or_zeros(bias, c_out, weight) + _f64(shift)
    return w.to(weight.dtype), b.to(weight.dtype)


def fuse_bn_conv(scale: Tensor, shift: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Fold an affine/BN layer that PRECEDES a conv: ``conv(pad_shift(bn(x))) == conv'(x)``.

    ``W'[o, i] = W[o, i] * scale[i]`` and ``b'[o] = b[o] + sum_{i,u,v} W[o, i, u, v] * shift[i]``,
    where ``conv'`` zero-pads ``x`` as usual. Exact on every pixel only when the original conv's
    input (the BN output) is padded with ``shift``, as FMEN's HFAB does; with zero padding the
    border pixels of a ``k > 1`` conv differ (the interior is still exact). This is the diagonal
    case of :func:`merge_1x1_kxk`.
    """
    _check_conv(weight)
    w = _f64(weight) * _f64(scale).view(1, -1, 1, 1)
    b = _bias_or_zeros(bias, weight.shape[0], weight) + (_f64(weight).sum(dim=(2, 3)) @ _f64(shift))
    return w.to(weight.dtype), b.to(weight.dtype)


# ----------------------------------------------------------------------------------------------
# Sequential merges of 1x1 and k x k convs
# ----------------------------------------------------------------------------------------------


def merge_1x1_kxk(w1: Tensor, b1: Tensor | None, wk: Tensor, bk: Tensor | None) -> tuple[Tensor, Tensor]:
    """Merge a 1x1 conv followed by a ``k x k`` conv into one ``k x k`` conv.

    ``w1``: ``(C_mid, C_in, 1, 1)``, ``wk``: ``(C_out, C_mid, k, k)``. Result:
    ``W[o, i] = sum_m wk[o, m] * w1[m, i]`` and ``b = bk + sum_{m,u,v} wk[o, m, u, v] * b1[m]``.
    Exact on every pixel when the ``k x k`` conv's input is padded with ``b1`` (FMEN's RRRB pads
    the expanded map with the expand bias); with zero padding only the interior is exact.
    """
    _check_conv(w1, "w1")
    _check_conv(wk, "wk")
    if w1.shape[2] != 1:
        raise ValueError(f"w1 must be a 1x1 kernel, got {tuple(w1.shape)}")
    if wk.shape[1] != w1.shape[0]:
        raise ValueError(f"channel mismatch: w1 gives {w1.shape[0]}, wk takes {wk.shape[1]}")
    a = _f64(w1)[:, :, 0, 0]  # (C_mid, C_in)
    k = _f64(wk)
    w = torch.einsum("omuv,mi->oiuv", k, a)
    b = _bias_or_zeros(bk, wk.shape[0], wk) + k.sum(dim=(2, 3)) @ _bias_or_zeros(b1, w1.shape[0], w1)
    return w.to(wk.dtype), b.to(wk.dtype)


def merge_kxk_1x1(wk: Tensor, bk: Tensor | None, w1: Tensor, b1: Tensor | None) -> tuple[Tensor, Tensor]:
    """Merge a ``k x k`` conv followed by a 1x1 conv into one ``k x k`` conv (exact, any padding).

    ``wk``: ``(C_mid, C_in, k, k)``, ``w1``: ``(C_out, C_mid, 1, 1)``. Result:
    ``W[o] = sum_m w1[o, m] * wk[m]`` and ``b = w1 @ bk + b1``.
    """
    _check_conv(w1, "w1")
    _check_conv(wk, "wk")
    if w1.shape[2] != 1:
        raise ValueError(f"w1 must be a 1x1 kernel, got {tuple(w1.shape)}")
    if w1.shape[1] != wk.shape[0]:
        raise ValueError(f"channel mismatch: wk gives {wk.shape[0]}, w1 takes {w1.shape[1]}")
    a = _f64(w1)[:, :, 0, 0]  # (C_out, C_mid)
    w = torch.einsum("om,miuv->oiuv", a, _f64(wk))
    b = a @ _bias_or_zeros(bk, wk.shape[0], wk) + _bias_or_zeros(b1, w1.shape[0], w1)
    return w.to(wk.dtype), b.to(wk.dtype)


# ----------------------------------------------------------------------------------------------
# Identities, padding, parallel branches
# ----------------------------------------------------------------------------------------------


def identity_kernel(channels: int, k: int = 3, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``(C, C, k, k)`` kernel of the identity map: 1 at ``[i, i, k//2, k//2]``, 0 elsewhere."""
    if k % 2 != 1:
        raise ValueError(f"k must be odd, got {k}")
    w = torch.zeros(channels, channels, k, k, dtype=dtype)
    idx = torch.arange(channels)
    w[idx, idx, k // 2, k // 2] = 1.0
    return w


def add_identity(weight: Tensor) -> Tensor:
    """``conv(x) + x`` as one conv: add 1 to the centre tap of each ``[i, i]`` (needs C_out == C_in).

    Exact with zero padding (the centre tap never reads the padding). The bias is unchanged.
    """
    _check_conv(weight)
    if weight.shape[0] != weight.shape[1]:
        raise ValueError(f"identity needs C_out == C_in, got {tuple(weight.shape)}")
    return (
        _f64(weight) + identity_kernel(weight.shape[0], weight.shape[2], torch.float64).to(weight.device)
    ).to(weight.dtype)


def pad_kernel(weight: Tensor, k: int = 3) -> Tensor:
    """Zero-pad a kernel to ``k x k`` around its centre (a 1x1 kernel becomes a 3x3 with zeros around).

    A ``j x j`` conv with padding ``j // 2`` equals the padded ``k x k`` conv with padding ``k // 2``.
    """
    _check_conv(weight)
    j = weight.shape[2]
    if k < j or (k - j) % 2:
        raise ValueError(f"cannot pad a {j}x{j} kernel to {k}x{k}")
    p = (k - j) // 2
    return F.pad(weight.detach(), (p, p, p, p))


def merge_parallel(*branches: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor]:
    """Sum of parallel convs on the same input, ``sum_j conv_j(x)``, as one conv.

    Each branch is ``(weight, bias)``; kernels of different (odd) sizes are zero-padded to the
    largest first (:func:`pad_kernel`). Exact with zero padding.
    """
    if not branches:
        raise ValueError("merge_parallel needs at least one branch")
    k = max(w.shape[2] for w, _ in branches)
    c_out = branches[0][0].shape[0]
    dtype = branches[0][0].dtype
    w_sum = torch.zeros_like(_f64(pad_kernel(branches[0][0], k)))
    b_sum = torch.zeros(c_out, dtype=torch.float64, device=w_sum.device)
    for w, b in branches:
        if w.shape[:2] != branches[0][0].shape[:2]:
            raise ValueError(f"branch shapes differ: {tuple(w.shape)} vs {tuple(branches[0][0].shape)}")
        w_sum += _f64(pad_kernel(w, k))
        b_sum += _bias_or_zeros(b, c_out, w)
    return w_sum.to(dtype), b_sum.to(dtype)


def pad_with_values(x: Tensor, values: Tensor, pad: int = 1) -> Tensor:
    """Pad ``x`` (N, C, H, W) by ``pad`` pixels on every side with the per-channel ``values`` (C,).

    FMEN's training form pads with a bias this way so that its convs re-parameterize exactly.
    Differentiable in both ``x`` and ``values``.
    """
    n, c, h, w = x.shape
    out = values.to(x.dtype).view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    out[:, :, pad : pad + h, pad : pad + w] = x
    return out


def set_conv(conv: nn.Conv2d, weight: Tensor, bias: Tensor) -> nn.Conv2d:
    """Copy ``weight`` and ``bias`` into ``conv`` (which must have a bias), in place; returns it."""
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv


# ----------------------------------------------------------------------------------------------
# Model-level conversion
# ----------------------------------------------------------------------------------------------


def _deploy_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if callable(getattr(child, "to_deploy", None)):
            setattr(module, name, child.to_deploy().train(child.training))
        else:
            _deploy_children(child)


def deploy(model: nn.Module) -> nn.Module:
    """The deploy (inference) form of ``model``; ``model`` itself is left untouched.

    Deep-copies ``model``, then replaces every submodule that defines ``to_deploy()`` by its
    result (top-down; the walk does not descend into a replaced block). BatchNorms inside such
    blocks are folded with their running statistics, i.e. with eval-mode semantics, whatever
    mode the model is in. Modules without re-parameterizable blocks come back as an equal copy.
    The result keeps the input's ``training`` flag on the modules that remain.
    """
    model = copy.deepcopy(model)
    if callable(getattr(model, "to_deploy", None)):
        return model.to_deploy().train(model.training)
    _deploy_children(model)
    return model
