"""Stage 2 of MemSR: initialise a narrow plain student from the wide plain model of stage 1.

For each plain layer ``i`` the plain (teacher) model's output features ``F_i`` on calibration patches
(``C_i x N``, N at most ``max_pixels`` pixels sampled with a fixed seed) are centred (mean ``b_i``) and
decomposed, ``F~ = U S V^T`` (via the eigendecomposition of ``F~ F~^T``). The student width is

- the smallest ``r_i`` with ``||F~ - U_r U_r^T F~||_F / ||F~||_F < theta`` (the relative-residual rule,
  MemSR's Plain-X_theta; ``theta <= 0`` keeps every channel), or
- ``min(fix_r, C_i)`` for a fixed width (``fix_r = 64`` on EDSR-baseline gives Plain-M).

The student feature is ``f_i = U_r^T F~_i``, shifted to be mostly non-negative so that the student's
ReLU keeps it (``adj = adjust * |row mean of min(f_i, 0)|``, ``adjust = 3``; the shift moves into the
bridge bias). The bridge ``F_i ~ M_i f_i + b'_i`` (``M_i = U[:, :r_i]``, a trainable 1x1 conv later)
links student and teacher features. Student layer ``i`` is the teacher layer applied to the input
bridge ``M_{i-1} f_{i-1} + b'_{i-1}`` (the bridge bias enters the constant channel on every tap, so
borders stay consistent), minus ``b'_i`` at the centre tap, solved by least squares onto ``M_i``.
Singular vectors have no intrinsic sign; each is oriented so that its feature has a positive third
moment (ReLU outputs are right-skewed), a deterministic choice that is independent of the LAPACK build.

Deliberate rules: the last body layer keeps its width and an identity bridge (so the teacher's tail is
reused as is), as in MemSR; and a layer that keeps all its channels (``r_i = C_i``) gets the identity
bridge instead of a rotation, so that the student *is* the plain model when nothing is compressed
(``theta = 0``). Student convs read the constant channel (``ConstChannelConv``), like MemSR's students.

A known limit of the SVD initialisation, and two variants (``method=``). A rotation does not commute
with a ReLU: for a ReLU layer the student computes ``relu(U_r^T (P - b'))`` from the teacher's
pre-activation ``P`` while the bridge expects ``U_r^T (relu(P) - b')``. The identity layers are exact
low-rank factorisations (errors track theta), but the ReLU layers pass pre-activations the teacher
clipped, whatever theta, so an SVD-initialised student is a starting point for training, not a usable
model by itself (measured: 25-27 dB on Set5 x2 for 34.7-35.1 dB teachers, below bicubic's 33.67, at
every theta from 0.2 to 0.001). wukailu/MemSR's ``rank_estimate`` and ``MemSR_Init.init_student`` do
the same algebra.

- ``"select"`` (not in MemSR) keeps actual teacher channels: a greedy selection (pivoted Cholesky of
  ``F~ F~^T``, each time the channel with the most unexplained variance) with the same relative-residual
  rule, bridge ``M`` = least-squares reconstruction of all channels from the kept ones. The ReLU acts
  channel-wise, so the student computes the kept channels exactly and its error is the residual.
- ``"hybrid"`` (not in MemSR) keeps MemSR's SVD wherever it is exact: the channels on which the
  activation is the identity for every calibration pixel (all channels of an identity layer, the
  carried skips of a ReLU layer) are rotated and truncated by the SVD, each component shifted to stay
  positive (its calibration minimum one calibration range above zero); the rectified channels are selected as in
  ``"select"``. Each group meets the theta rule, so the layer does too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from memsr_bench.errors import MemsrInputError
from memsr_bench.memsr.plainify import format_widths
from memsr_bench.units import format_bytes
from zoo.plain import ConstChannelConv, PlainSR

__all__ = [
    "METHODS",
    "LayerSpec",
    "StudentInit",
    "choose_width",
    "efficiency",
    "feature_means",
    "forward_features",
    "init_student",
    "plain_layers",
    "random_bridges",
    "relative_residuals",
]

_F64 = torch.float64
METHODS = ("svd", "select", "hybrid")
_PEAK_QUANTITIES = ("peak_memory_bytes_predicted", "peak_memory_bytes_predicted_last_use")


@dataclass(frozen=True)
class LayerSpec:
    """One plain layer as float64 ``(weight (C_out, C_in, k, k), const (C_out, k, k), act)``."""

    weight: Tensor
    const: Tensor
    act: str

    @property
    def k(self) -> int:
        return int(self.weight.shape[-1])


def plain_layers(model: PlainSR) -> list[LayerSpec]:
    """The body layers of a :class:`~zoo.plain.PlainSR` with their biases as constant-channel kernels."""
    if not isinstance(model, PlainSR):
        raise MemsrInputError("model", f"expected a PlainSR, got {type(model).__name__}")
    specs = []
    for conv, act in zip(model.convs, model.acts, strict=True):
        w = conv.weight.detach().to("cpu", _F64)
        k = w.shape[-1]
        if isinstance(conv, ConstChannelConv):
            const, w = w[:, 0].clone(), w[:, 1:].clone()
        else:
            const = torch.zeros(w.shape[0], k, k, dtype=_F64)
            if conv.bias is not None:
                const[:, k // 2, k // 2] = conv.bias.detach().to("cpu", _F64)
        specs.append(LayerSpec(w.clone(), const, act))
    return specs


def forward_features(model: PlainSR, x: Tensor) -> tuple[list[Tensor], Tensor]:
    """``(features, output)``: the output of every body layer (after its activation), and the SR image."""
    feats = []
    if model.sub_mean is not None:
        x = model.sub_mean(x)
    for module in model.body:
        x = module(x)
        if not isinstance(module, nn.Conv2d):
            feats.append(x)
    out = model.tail(x)
    if model.add_mean is not None:
        out = model.add_mean(out)
    return feats, out


def relative_residuals(s: Tensor) -> Tensor:
    """``res[r] = ||F~ - U_r U_r^T F~|| / ||F~||`` for ``r = 0 .. C`` from the singular values ``s``."""
    sq = s.to(_F64) ** 2
    tail = torch.flip(torch.cumsum(torch.flip(sq, [0]), 0), [0])  # tail[j] = sum_{i >= j} s_i^2
    tail = torch.cat([tail, torch.zeros(1, dtype=_F64)])
    total = tail[0]
    if total <= 0:
        return torch.zeros_like(tail)
    return torch.sqrt(tail.clamp_min(0) / total)


def choose_width(s: Tensor, theta: float, fix_r: int | None = None) -> int:
    """Student width for singular values ``s`` (``C`` of them): ``min(fix_r, C)``, or the smallest
    ``r >= 1`` with relative residual ``< theta`` (``C`` when ``theta <= 0``)."""
    c = int(s.numel())
    if fix_r is not None:
        return max(1, min(int(fix_r), c))
    if theta <= 0:
        return c
    res = relative_residuals(s)
    for r in range(1, c + 1):
        if res[r] < theta:
            return r
    return c


def _left_singular(a: Tensor) -> tuple[Tensor, Tensor]:
    """Left singular vectors and singular values of ``a`` (C x N, N >> C), descending, float64.

    From the eigendecomposition of the C x C Gram matrix ``a a^T`` (one BLAS product and a small
    ``eigh``): much faster than an SVD of the wide matrix, and accurate for the residuals the width
    rule needs (energies below ~1e-16 of the total are lost, far below any useful theta).
    """
    gram = a @ a.T
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small eigh: threaded LAPACK only adds contention (100x slower under load)
    try:
        evals, evecs = torch.linalg.eigh(gram)
    finally:
        torch.set_num_threads(threads)
    order = torch.argsort(evals, descending=True)
    u = evecs[:, order]
    sign = torch.sign(((u.T @ a) ** 3).sum(dim=1))  # orient each component: positive third moment
    sign[sign == 0] = 1
    return u * sign, torch.sqrt(evals[order].clamp_min(0))


def _greedy_channels(gram: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy channel selection (pivoted Cholesky of the centred Gram matrix): the order in which
    channels are picked (each time the one with the largest unexplained variance) and
    ``res[r]`` = relative residual of reconstructing all channels from the first ``r`` by least squares."""
    c = gram.shape[0]
    d = torch.diagonal(gram).clone()
    total = float(d.sum())
    factors = torch.zeros(c, c, dtype=_F64)
    order: list[int] = []
    remaining = [total]
    chosen = torch.zeros(c, dtype=torch.bool)
    for k in range(c):
        d_masked = d.masked_fill(chosen, -1.0)
        j = int(torch.argmax(d_masked))
        if d_masked[j] <= 1e-12 * max(total, 1e-300):  # the rest is explained: append in index order
            order += [i for i in range(c) if not chosen[i]]
            remaining += [0.0] * (c - k)
            break
        col = (gram[:, j] - factors[:, :k] @ factors[j, :k]) / torch.sqrt(d[j])
        factors[:, k] = col
        d = (d - col**2).clamp_min(0)
        chosen[j] = True
        d[chosen] = 0
        order.append(j)
        remaining.append(float(d.sum()))
    res = (
        torch.sqrt(torch.tensor(remaining, dtype=_F64).clamp_min(0) / total)
        if total > 0
        else torch.zeros(c + 1, dtype=_F64)
    )
    return torch.tensor(order), res


def _width_from_residuals(res: Tensor, c: int, theta: float, fix_r: int | None) -> int:
    if fix_r is not None:
        return max(1, min(int(fix_r), c))
    if theta <= 0:
        return c
    for r in range(1, c + 1):
        if res[r] < theta:
            return r
    return c


@dataclass
class _Decomposition:
    """One layer's decision: student width, bridge ``F ~ bridge f + bridge_bias`` and the readout
    (student pre-activation = ``readout (teacher pre-activation - sub)``)."""

    width: int
    bridge: Tensor
    bridge_bias: Tensor
    readout: Tensor
    sub: Tensor
    residual: float
    kind: str
    shift_mean: float = 0.0


def _identity_decomposition(c: int, residual: float = 0.0) -> _Decomposition:
    eye, zero = torch.eye(c, dtype=_F64), torch.zeros(c, dtype=_F64)
    return _Decomposition(c, eye, zero, eye, zero, residual, "identity (all channels kept)")


def _svd_part(centred: Tensor, theta: float, fix_r: int | None, shift: str, adjust: float):
    """SVD of a centred group: ``(U_r, shift per component, width, residual energy)``. ``shift``:
    ``"mean"`` is MemSR's ``adjust * |row mean of min(f, 0)|``; ``"margin"`` lifts each component so
    that its calibration minimum sits one calibration range above zero, so that a following ReLU leaves
    it unchanged on unseen images too (with the minimum at zero, Set5 PSNR lost 0.6 dB to clipping)."""
    u, s = _left_singular(centred)
    r = choose_width(s, theta, fix_r)
    u = u[:, :r].clone()
    f = u.T @ centred
    adj = -adjust * f.clamp(max=0).mean(dim=1)
    if shift == "margin":
        lo, hi = f.amin(dim=1), f.amax(dim=1)
        adj = torch.maximum(adj, (hi - lo) - lo)
    energy = float((s.to(_F64)[r:] ** 2).sum())
    return u, adj, r, energy


def _select_part(centred: Tensor, theta: float, fix_r: int | None):
    """Greedy channel selection of a centred group: ``(kept indices, M with F~ ~ M F~[kept], width,
    residual energy)``."""
    c = centred.shape[0]
    gram = centred @ centred.T
    order, residuals = _greedy_channels(gram)
    r = _width_from_residuals(residuals, c, theta, fix_r)
    keep = torch.sort(order[:r]).values
    ridge = 1e-12 * float(torch.trace(gram)) * torch.eye(r, dtype=_F64)
    m = torch.linalg.solve(gram[keep][:, keep] + ridge, gram[keep]).T
    energy = float(residuals[r]) ** 2 * float(torch.trace(gram))
    return keep, m, r, energy


def _relative(energy: float, total: float) -> float:
    """Relative residual ``sqrt(energy / total)`` (0 for an all-constant feature)."""
    return (energy / total) ** 0.5 if total > 0 else 0.0


def _decompose(
    feat: Tensor, linear: Tensor, method: str, theta: float, fix_r: int | None, adjust: float
) -> _Decomposition:
    """The student width and bridge for one layer's teacher features ``feat`` (C x N, float64).

    ``linear`` marks channels on which the layer's activation is the identity for every calibration
    pixel (all channels of an identity layer; the carried skips of a ReLU layer)."""
    c = feat.shape[0]
    mean = feat.mean(dim=1)
    centred = feat - mean[:, None]
    total = float((centred**2).sum())
    if method == "svd":  # MemSR: rotate all channels together
        u, adj, r, energy = _svd_part(centred, theta, fix_r, "mean", adjust)
        residual = _relative(energy, total)
        if r >= c:
            return _identity_decomposition(c, residual)
        b = mean - u @ adj
        return _Decomposition(r, u, b, u.T, b, residual, "svd", float(adj.mean()))
    if method == "select":
        keep, m, r, energy = _select_part(centred, theta, fix_r)
        residual = _relative(energy, total)
        if r >= c:
            return _identity_decomposition(c, residual)
        b = mean - m @ mean[keep]
        readout = torch.eye(c, dtype=_F64)[keep]  # the student computes the kept teacher channels
        return _Decomposition(r, m, b, readout, torch.zeros(c, dtype=_F64), residual, f"select {r} of {c} channels")
    # hybrid: SVD on the linear channels (exact up to theta), selection on the rectified ones
    lin, rect = torch.nonzero(linear).flatten(), torch.nonzero(~linear).flatten()
    r_lin = r_rect = 0
    energy = 0.0
    m = torch.zeros(c, 0, dtype=_F64)
    readout = torch.zeros(0, c, dtype=_F64)
    b, sub, shift = mean.clone(), torch.zeros(c, dtype=_F64), 0.0
    if lin.numel():
        u, adj, r_lin, e = _svd_part(centred[lin], theta, None, "margin", adjust)
        energy += e
        block = torch.zeros(c, r_lin, dtype=_F64)
        block[lin] = u
        m = torch.cat([m, block], dim=1)
        rows = torch.zeros(r_lin, c, dtype=_F64)
        rows[:, lin] = u.T
        readout = torch.cat([readout, rows])
        b[lin] = mean[lin] - u @ adj
        sub[lin] = b[lin]
        shift = float(adj.mean())
    if rect.numel():
        keep, m_rect, r_rect, e = _select_part(centred[rect], theta, None)
        energy += e
        block = torch.zeros(c, r_rect, dtype=_F64)
        block[rect] = m_rect
        m = torch.cat([m, block], dim=1)
        readout = torch.cat([readout, torch.eye(c, dtype=_F64)[rect[keep]]])
        b[rect] = mean[rect] - m_rect @ mean[rect[keep]]
    r = r_lin + r_rect
    residual = _relative(energy, total)
    if r >= c:
        return _identity_decomposition(c, residual)
    kind = f"hybrid: svd {r_lin} of {lin.numel()} linear, select {r_rect} of {rect.numel()} rectified"
    return _Decomposition(r, m, b, readout, sub, residual, kind, shift)


@dataclass
class StudentInit:
    """A student initialised from a plain model, with its bridges and the per-layer decisions."""

    student: PlainSR
    bridges: nn.ModuleList  # one per body layer + one for the output: student feature -> teacher feature
    teacher_widths: list[int]
    widths: list[int]
    layers: list[dict[str, Any]]
    theta: float | None
    fix_r: int | None
    method: str
    n_pixels: int
    calibration: str
    efficiency: dict[str, Any] = field(default_factory=dict)

    @property
    def widths_text(self) -> str:
        return format_widths(self.widths)

    def as_dict(self) -> dict[str, Any]:
        return {
            "theta": self.theta,
            "fix_r": self.fix_r,
            "method": self.method,
            "teacher_widths": self.teacher_widths,
            "widths": self.widths,
            "widths_text": self.widths_text,
            "params": sum(p.numel() for p in self.student.parameters()),
            "n_pixels": self.n_pixels,
            "calibration": self.calibration,
            "efficiency": self.efficiency,
            "layers": self.layers,
        }


def _bridge_conv(m: Tensor, b: Tensor, dtype: torch.dtype) -> nn.Conv2d:
    conv = nn.Conv2d(m.shape[1], m.shape[0], 1, bias=True)
    with torch.no_grad():
        conv.weight.copy_(m[:, :, None, None])
        conv.bias.copy_(b)
    return conv.to(dtype)


def random_bridges(
    student_widths: list[int],
    teacher_widths: list[int],
    seed: int = 0,
    teacher_means: list[Tensor] | None = None,
) -> nn.ModuleList:
    """Bridges with PyTorch's default 1x1 conv initialisation (feature distillation without MemSR init);
    the last body layer and the output are compared directly (identity), as with the SVD bridges.

    ``teacher_means`` (e.g. :func:`feature_means`) sets each bridge's bias to the teacher layer's channel
    means. Plain teachers carry skips at an offset (+1000), which a zero-mean bridge bias cannot reach
    at Adam's step size (about lr per step), so without it the feature MSE stays near 1e5..1e6.
    """
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        bridges = [nn.Conv2d(s, t, 1) for s, t in zip(student_widths[:-1], teacher_widths[:-1], strict=True)]
    finally:
        torch.random.set_rng_state(gen_state)
    if teacher_means is not None:
        with torch.no_grad():
            for bridge, mean in zip(bridges, teacher_means, strict=False):
                bridge.bias.copy_(mean)
    return nn.ModuleList([*bridges, nn.Identity(), nn.Identity()])


def feature_means(plain: PlainSR, calib_lr: Tensor) -> list[Tensor]:
    """Channel means of every body feature of ``plain`` on the calibration images (float32)."""
    model = copy.deepcopy(plain).to("cpu", torch.float32).eval()
    with torch.no_grad():
        feats, _ = forward_features(model, calib_lr.to(torch.float32))
    return [f.mean(dim=(0, 2, 3)) for f in feats]


def _student_like(plain: PlainSR, widths: list[int]) -> PlainSR:
    first = plain.convs[0]
    in_channels = first.in_channels - (1 if isinstance(first, ConstChannelConv) else 0)
    out_conv = [m for m in plain.tail.modules() if isinstance(m, nn.Conv2d)][-1]
    out_channels = out_conv.out_channels // (plain.scale**2 if plain.tail_kind == "pixelshuffle" else 1)
    student = PlainSR(
        widths=widths,
        scale=plain.scale,
        acts=list(plain.acts),
        bias=True,
        kernel_sizes=list(plain.kernel_sizes),
        in_channels=in_channels,
        out_channels=out_channels,
        tail=plain.tail_kind,
        sub_mean=plain.sub_mean is not None,
        add_mean=plain.add_mean is not None,
        const_channel=True,
    )
    return student


def random_student(plain: PlainSR, widths: list[int], seed: int = 0) -> PlainSR:
    """The student architecture with fresh PyTorch-default weights (the "direct training" baseline).

    The fixed mean shifts are copied from the plain model, as for the initialised student.
    """
    torch.manual_seed(seed)
    student = _student_like(plain, widths)
    for name in ("sub_mean", "add_mean"):
        if getattr(plain, name) is not None:
            getattr(student, name).load_state_dict(copy.deepcopy(getattr(plain, name).state_dict()))
    return student


def init_student(
    plain: PlainSR,
    calib_lr: Tensor,
    theta: float | None = 0.05,
    fix_r: int | None = None,
    *,
    method: str = "svd",
    max_pixels: int = 32768,
    adjust: float = 3.0,
    seed: int = 0,
    feature_dtype: torch.dtype = torch.float32,
    calibration: str = "",
) -> StudentInit:
    """MemSR initialisation of a plain student from ``plain`` (e.g. ``plainify(teacher)[0]``).

    ``calib_lr``: LR calibration images ``(N, C, h, w)`` in 0..255 (e.g. 16 patches from
    :func:`memsr_bench.memsr.data.calibration_batch`). Give ``theta`` (relative-residual rule) or
    ``fix_r`` (fixed width, takes precedence). ``method``: ``"svd"`` (MemSR) or ``"select"`` (the
    channel-selection variant, see the module docstring). Features run in ``feature_dtype``;
    decompositions and least squares in float64. The student is in eval mode, float32, on the CPU.
    """
    if method not in METHODS:
        raise MemsrInputError("--decomposition", f"must be one of {METHODS}, not {method!r}")
    if fix_r is None and theta is None:
        raise MemsrInputError("--theta", "give theta or fix_r")
    if fix_r is not None and fix_r < 1:
        raise MemsrInputError("--fix-r", f"must be a positive width, not {fix_r}")
    if fix_r is not None and method == "hybrid":
        raise MemsrInputError("--fix-r", "the hybrid decomposition chooses widths by theta only")
    if fix_r is None and not (0 <= theta < 1):
        raise MemsrInputError("--theta", f"must be in [0, 1), not {theta}")
    if calib_lr.dim() != 4:
        raise MemsrInputError("calibration", f"expected N x C x H x W images, got shape {tuple(calib_lr.shape)}")
    specs = plain_layers(plain)
    n_layers = len(specs)
    teacher_widths = [s.weight.shape[0] for s in specs]

    model = copy.deepcopy(plain).to("cpu", feature_dtype).eval()
    x = calib_lr.to(feature_dtype)
    n_total = x.shape[0] * x.shape[2] * x.shape[3]
    gen = torch.Generator().manual_seed(seed)
    cols = torch.randperm(n_total, generator=gen)[: min(max_pixels, n_total)] if n_total > max_pixels else None
    n_pixels = n_total if cols is None else int(cols.numel())

    decisions: list[_Decomposition] = []
    layer_info: list[dict[str, Any]] = []
    convs = list(model.body)
    with torch.no_grad():
        if model.sub_mean is not None:
            x = model.sub_mean(x)
        for i in range(n_layers):
            pre = convs[2 * i](x)
            pre_min = pre.amin(dim=(0, 2, 3)).to("cpu")
            x = convs[2 * i + 1](pre)
            c = teacher_widths[i]
            info: dict[str, Any] = {"index": i, "teacher_width": c}
            if i == n_layers - 1:  # the last body feature keeps its width: identity bridge
                d = replace(_identity_decomposition(c), kind="kept (last body layer)")
            else:
                feat = x.transpose(0, 1).reshape(c, -1)
                linear = pre_min >= 0 if specs[i].act == "relu" else torch.ones(c, dtype=torch.bool)
                if cols is not None:
                    feat = feat[:, cols]
                d = _decompose(feat.to(_F64), linear, method, theta if theta is not None else 0.0, fix_r, adjust)
                info.update(shift_mean=d.shift_mean, linear_channels=int(linear.sum()))
            decisions.append(d)
            layer_info.append({**info, "width": d.width, "bridge": d.kind, "residual": d.residual, "act": specs[i].act})

    widths = [d.width for d in decisions]
    student = _student_like(plain, widths)
    c_in = specs[0].weight.shape[1]
    in_m, in_b = torch.eye(c_in, dtype=_F64), torch.zeros(c_in, dtype=_F64)
    with torch.no_grad():
        for i, (spec, conv) in enumerate(zip(specs, student.convs, strict=True)):
            k, mid = spec.k, spec.k // 2
            w = torch.einsum("omuv,mj->ojuv", spec.weight, in_m)
            const = spec.const + torch.einsum("omuv,m->ouv", spec.weight, in_b)
            readout, sub = decisions[i].readout, decisions[i].sub
            const[:, mid, mid] -= sub
            target = torch.cat([const[:, None], w], dim=1).reshape(spec.weight.shape[0], -1)
            sol = readout @ target
            conv.weight.copy_(sol.reshape(readout.shape[0], w.shape[1] + 1, k, k).to(conv.weight.dtype))
            in_m, in_b = decisions[i].bridge, decisions[i].bridge_bias
        student.tail.load_state_dict(copy.deepcopy(plain.tail).cpu().float().state_dict())
        for name in ("sub_mean", "add_mean"):
            src = getattr(plain, name)
            if src is not None:
                getattr(student, name).weight.copy_(src.weight)
                getattr(student, name).bias.copy_(src.bias)
    from zoo.registry import get_spec

    student.zoo_spec = get_spec("plain")
    bridges = nn.ModuleList(
        [_bridge_conv(d.bridge, d.bridge_bias, torch.float32) for d in decisions[:-1]] + [nn.Identity(), nn.Identity()]
    )
    return StudentInit(
        student=student.eval(),
        bridges=bridges,
        teacher_widths=teacher_widths,
        widths=widths,
        layers=layer_info,
        theta=None if fix_r is not None else theta,
        fix_r=fix_r,
        method=method,
        n_pixels=n_pixels,
        calibration=calibration or f"{calib_lr.shape[0]} LR images of {calib_lr.shape[2]}x{calib_lr.shape[3]}",
    )


def efficiency(
    model: nn.Module,
    scale: int,
    hr_size: tuple[int, int] = (1080, 1920),
    count_size: int = 64,
) -> dict[str, Any]:
    """Params, conv MACs and predicted peak memory for an HR output of ``hr_size``, measured by
    :func:`memsr_bench.measure.profile.profile`; the keys are the quantity names of
    :mod:`memsr_bench.measure.quantities` (``params``, ``conv_macs``, ``peak_memory_bytes_predicted``,
    ``peak_memory_bytes_predicted_last_use``), plus ``peak_node``, the sizes and the convention.

    The predicted peaks (fake tensors, float32, batch 1) are computed at the full LR size
    ``round(H/s) x round(W/s)``. Conv MACs are traced at ``count_size x count_size`` and scaled
    by the area ratio, which is exact for fully convolutional, stride-1, same-padded models (the count
    is a sum of per-output-pixel costs) and saves a minute-long full-size trace on a CPU. (thop-style
    "FLOPs" are not reported: thop counts exact ``nn.Conv2d`` types only and would skip the students'
    constant-channel convs.)
    """
    from memsr_bench.measure.profile import profile

    h, w = round(hr_size[0] / scale), round(hr_size[1] / scale)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    channels = first.in_channels - (1 if isinstance(first, ConstChannelConv) else 0)  # built inside, not an input
    counts = profile(model, (channels, count_size, count_size), scale=scale, quantities=("params", "conv_macs"))
    peaks = profile(model, (channels, h, w), scale=scale, quantities=_PEAK_QUANTITIES)
    ratio = (h * w) / (count_size * count_size)
    return {
        "params": counts["params"],
        "conv_macs": int(round(counts["conv_macs"] * ratio)),
        **{q: peaks[q] for q in _PEAK_QUANTITIES},
        "peak_node": peaks.details["peak_node"],
        "lr_size": [h, w],
        "hr_size": list(hr_size),
        "convention": (
            f"params = sum of parameters; conv_macs traced at {count_size}x{count_size} (memsr_bench.measure) "
            f"and scaled to LR {h}x{w} (HR {hr_size[1]}x{hr_size[0]}); peak_memory_bytes_predicted = predicted "
            "live tensor storage (eager lifetimes; _last_use: every tensor freed after its last use), float32, "
            "batch 1, weights and input included"
        ),
    }


def summary_lines(init: StudentInit) -> list[str]:
    """Human-readable lines for the CLI."""
    lines = [f"student widths {init.widths_text} ({len(init.widths)} layers)"]
    eff = init.efficiency
    if eff:
        lines.append(
            f"params {eff['params']:,}; conv MACs {eff['conv_macs'] / 1e9:.2f} G; "
            f"predicted peak {format_bytes(eff['peak_memory_bytes_predicted'])} "
            f"(LR {eff['lr_size'][0]}x{eff['lr_size'][1]})"
        )
    for info in init.layers:
        lines.append(
            f"  layer {info['index']:>2}: {info['teacher_width']:>4} -> {info['width']:>4}  {info['act']:<8} "
            f"residual {info['residual']:.4f}  bridge {info['bridge']}"
        )
    return lines
