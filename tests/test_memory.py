"""Peak memory: the CPU measurement (live tensor storage) and the prediction (fake-tensor timeline).

Both count the same thing, so they are compared tightly (the contract is 2 %; they agree to the
byte on every model here). The FMEN memory argument (methods.md §1) is checked on small models
built to mimic the structures, and on the zoo's ``plain`` / ``fmen-deploy`` when the zoo is there.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memsr_bench.measure.memory import measure_peak_memory, unique_storage_bytes
from memsr_bench.measure.memory_model import (
    largest_input_for_budget,
    peak_vs_input_size,
    predict_peak_memory,
)

F32 = 4


def conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


def weights_of(model: nn.Module) -> int:
    return unique_storage_bytes([*model.parameters(), *model.buffers()])


# ---------------------------------------------------------------------------------------------
# Small models that mimic the structures of SR networks
# ---------------------------------------------------------------------------------------------
class PlainStack(nn.Module):
    """Head conv, ``n`` (conv + in-place ReLU) layers of width C, conv C->3s² + PixelShuffle.

    The tail holds C + 2·3s² maps (the body output stays referenced by the call's arguments), less
    than the body's 2·C when 3s² < C/2.
    """

    def __init__(self, c: int = 32, n: int = 4, scale: int = 2):
        super().__init__()
        layers = [conv(3, c)]
        for _ in range(n):
            layers += [conv(c, c), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.tail = nn.Sequential(conv(c, 3 * scale**2), nn.PixelShuffle(scale))

    def forward(self, x):
        return self.tail(self.body(x))


class AttentionBlock(nn.Module):
    """HFAB-like: 3x3 squeeze C->mid, LeakyReLU, 3x3 excite mid->C, sigmoid, multiply with input."""

    def __init__(self, c: int, mid: int):
        super().__init__()
        self.squeeze = conv(c, mid)
        self.excitate = conv(mid, c)

    def forward(self, x):
        a = F.leaky_relu(self.squeeze(x), 0.1)
        a = self.excitate(a)
        a = torch.sigmoid(a)
        return a * x


class FMENLike(nn.Module):
    """Head, global residual kept over the body, (conv, attention block) pairs, lr conv, tail."""

    def __init__(self, c: int = 16, mid: int = 8, n: int = 2, scale: int = 2):
        super().__init__()
        self.head = conv(3, c)
        self.trunk = nn.ModuleList([conv(c, c) for _ in range(n)])
        self.blocks = nn.ModuleList([AttentionBlock(c, mid) for _ in range(n)])
        self.lr_conv = conv(c, c)
        self.tail = nn.Sequential(conv(c, 3 * scale**2), nn.PixelShuffle(scale))

    def forward(self, x):
        x = self.head(x)
        h = x
        for trunk, block in zip(self.trunk, self.blocks, strict=True):
            h = trunk(h)
            h = block(h)
        h = self.lr_conv(h)
        h = h + x
        return self.tail(h)


class ResidualNet(nn.Module):
    """EDSR-like: residual blocks (conv, ReLU, conv, + identity), a global skip, a mean shift."""

    def __init__(self, c: int = 16, n: int = 3, scale: int = 2):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.45, 0.44, 0.40]).view(1, 3, 1, 1))
        self.head = conv(3, c)
        self.blocks = nn.ModuleList([nn.Sequential(conv(c, c), nn.ReLU(), conv(c, c)) for _ in range(n)])
        self.tail = nn.Sequential(conv(c, 3 * scale**2), nn.PixelShuffle(scale))

    def forward(self, x):
        x = self.head(x - self.mean)
        res = x
        for block in self.blocks:
            res = res + block(res)
        return self.tail(res + x) + self.mean


class ConcatFusion(nn.Module):
    """N same-size features kept alive until a concat and a 1x1 fusion (IMDN / RFDN style)."""

    def __init__(self, c: int = 16, n: int = 4):
        super().__init__()
        self.head = conv(3, c)
        self.convs = nn.ModuleList([conv(c, c) for _ in range(n)])
        self.fuse = conv(n * c, c, 1)
        self.tail = conv(c, 3)

    def forward(self, x):
        h = self.head(x)
        feats = []
        for m in self.convs:
            h = F.leaky_relu(m(h), 0.05)
            feats.append(h)
        h = self.fuse(torch.cat(feats, dim=1))
        del feats
        return self.tail(h)


class ViewsAndInplace(nn.Module):
    """Views (split, view, slicing), in-place ops (relu_, mul_, +=) and a chunked channel attention."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.head = conv(3, c)
        self.a = conv(c // 2, c // 2)
        self.b = conv(c, c)
        self.tail = conv(c, 3)

    def forward(self, x):
        h = self.head(x).relu_()
        left, right = h.chunk(2, dim=1)  # views of h
        left = self.a(left)
        h = torch.cat([left, right], dim=1)
        h = self.b(h)
        h.mul_(0.5)
        h += h.mean(dim=(2, 3), keepdim=True)
        n, c, hh, ww = h.shape
        h = h.view(n, c, hh * ww).view(n, c, hh, ww)
        return self.tail(h[:, :, :, :])


class HoldsLocals(nn.Module):
    """Keeps a dead intermediate in a local variable: eager frees it late, last-use frees it early."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.a, self.b, self.c = conv(3, c), conv(c, c), conv(c, c)

    def forward(self, x):
        first = self.a(x)
        second = self.b(first)
        third = self.c(second)  # first is dead here, but still referenced
        return third


class WithConstant(nn.Module):
    """A tensor attribute that is neither a parameter nor a buffer (a constant)."""

    def __init__(self):
        super().__init__()
        self.conv = conv(3, 8)
        self.shift = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1)

    def forward(self, x):
        return self.conv(x - self.shift)


SMALL_MODELS = {
    "plain": PlainStack,
    "fmen_like": FMENLike,
    "residual": ResidualNet,
    "concat": ConcatFusion,
    "views_inplace": ViewsAndInplace,
    "holds_locals": HoldsLocals,
    "constant": WithConstant,
}


def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    return SMALL_MODELS[name]().eval()


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
def test_plain_stack_measured_peak_is_two_feature_maps():
    c, h, w = 32, 20, 24
    model = PlainStack(c=c).eval()
    x = torch.rand(1, 3, h, w)
    m = measure_peak_memory(model, x)
    assert m.weights_bytes == weights_of(model)
    assert m.input_bytes == x.numel() * F32
    assert m.activations_bytes == 2 * c * h * w * F32  # input and output of a body conv
    assert m.peak_bytes == m.weights_bytes + m.input_bytes + m.activations_bytes
    assert m.device == "cpu" and "live tensor storage" in m.method


def test_views_and_inplace_ops_are_not_double_counted():
    class Chain(nn.Module):
        def forward(self, x):
            y = x * 2  # one new map
            y.relu_()  # in place: nothing new
            z = y.view(-1)[: y.numel()].view_as(y).transpose(2, 3)  # views of y
            return z

    x = torch.rand(1, 4, 8, 8)
    m = measure_peak_memory(Chain(), x)
    assert m.weights_bytes == 0
    assert m.activations_bytes == x.numel() * F32


def test_constants_count_as_weights():
    model = WithConstant().eval()
    m = measure_peak_memory(model, torch.rand(1, 3, 8, 8))
    assert m.weights_bytes == weights_of(model) + 3 * F32
    p = predict_peak_memory(model, (1, 3, 8, 8))
    assert p.weights_bytes == m.weights_bytes
    assert p.peak_bytes == m.peak_bytes


def test_measured_memory_is_freed_tensor_aware():
    """A chain whose temporaries die at once needs 2 maps; one that keeps them needs 3."""
    c, hw = 16, (12, 12)
    x = torch.rand(1, 3, *hw)
    m = measure_peak_memory(HoldsLocals(c).eval(), x)
    assert m.activations_bytes == 3 * c * hw[0] * hw[1] * F32


# ---------------------------------------------------------------------------------------------
# Prediction vs measurement
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
@pytest.mark.parametrize("size", [(16, 16), (20, 28)])
def test_prediction_matches_measurement(name, size):
    model = make(name)
    x = torch.rand(1, 3, *size)
    measured = measure_peak_memory(model, x)
    predicted = predict_peak_memory(model, x.shape)
    assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.02 * measured.peak_bytes
    # same definition, so in fact they agree to the byte
    assert predicted.peak_bytes == measured.peak_bytes
    assert predicted.weights_bytes == measured.weights_bytes
    assert predicted.input_bytes == measured.input_bytes


def test_prediction_timeline_names_and_output():
    model = make("fmen_like")
    p = predict_peak_memory(model, (1, 3, 16, 16))
    names = [n for n, _ in p.timeline]
    assert names[0] == "aten.conv2d @ head"
    assert "aten.mul @ blocks.0" in names and "aten.pixel_shuffle @ tail.1" in names
    assert p.timeline[p.peak_index] == (p.peak_node, p.peak_bytes)
    assert max(live for _, live in p.timeline) == p.peak_bytes
    assert p.output_bytes == 3 * 32 * 32 * F32
    assert p.activations_bytes == p.peak_bytes - p.weights_bytes - p.input_bytes


def test_last_use_lifetimes_free_dead_locals():
    c, h, w = 16, 12, 12
    model = HoldsLocals(c).eval()
    eager = predict_peak_memory(model, (1, 3, h, w))
    ideal = predict_peak_memory(model, (1, 3, h, w), lifetimes="last_use")
    assert eager.activations_bytes == 3 * c * h * w * F32
    assert ideal.activations_bytes == 2 * c * h * w * F32
    assert eager.last_use_peak_bytes == ideal.peak_bytes and ideal.eager_peak_bytes == eager.peak_bytes
    with pytest.raises(ValueError, match="lifetimes"):
        predict_peak_memory(model, (1, 3, h, w), lifetimes="greedy")


def test_prediction_stops_once_above_the_limit():
    """``stop_above_bytes``: a pass that exceeds it ends at the first op above it, with a lower bound of the
    peak above the limit; a limit at the peak changes nothing."""
    model = make("fmen_like")
    full = predict_peak_memory(model, (1, 3, 16, 16))
    assert not full.stopped
    limit = (full.timeline[0][1] + full.peak_bytes) // 2  # between the first op and the peak
    assert full.timeline[0][1] <= limit < full.peak_bytes
    stopped = predict_peak_memory(model, (1, 3, 16, 16), stop_above_bytes=limit)
    assert stopped.stopped
    assert limit < stopped.peak_bytes <= full.peak_bytes
    first_above = next(i for i, (_, live) in enumerate(full.timeline) if live > limit)
    assert stopped.timeline == full.timeline[: first_above + 1]
    assert predict_peak_memory(model, (1, 3, 16, 16), stop_above_bytes=full.peak_bytes) == full
    with pytest.raises(ValueError, match="eager"):
        predict_peak_memory(model, (1, 3, 16, 16), lifetimes="last_use", stop_above_bytes=limit)


def test_prediction_allocates_nothing_for_large_inputs():
    """A 4K input to the plain stack: predicted from shapes alone (fake tensors), in a blink."""
    c = 32
    p = predict_peak_memory(PlainStack(c=c).eval(), (1, 3, 2160, 3840))
    assert p.activations_bytes == 2 * c * 2160 * 3840 * F32


# ---------------------------------------------------------------------------------------------
# The FMEN memory argument (methods.md §1)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lifetimes", ["eager", "last_use"])
def test_plain_network_peaks_at_two_feature_maps(lifetimes):
    c, h, w = 32, 24, 20
    model = PlainStack(c=c, n=6).eval()
    p = predict_peak_memory(model, (1, 3, h, w), lifetimes=lifetimes)
    assert p.peak_bytes == p.weights_bytes + p.input_bytes + 2 * c * h * w * F32
    assert p.peak_node.startswith("aten.conv2d @ body.")


@pytest.mark.parametrize("lifetimes", ["eager", "last_use"])
def test_fmen_like_network_peaks_at_four_feature_maps_in_the_attention_multiply(lifetimes):
    c, mid, h, w = 16, 8, 24, 20
    model = FMENLike(c=c, mid=mid).eval()
    p = predict_peak_memory(model, (1, 3, h, w), lifetimes=lifetimes)
    # global residual + block input + attention map + product
    assert p.activations_bytes == 4 * c * h * w * F32
    mul_peak = max(live for name, live in p.timeline if name.startswith("aten.mul @ blocks."))
    assert mul_peak == p.peak_bytes
    measured = measure_peak_memory(model, torch.rand(1, 3, h, w))
    assert measured.activations_bytes == 4 * c * h * w * F32


def test_concat_fusion_keeps_all_features_alive():
    c, n, h, w = 16, 4, 16, 16
    model = ConcatFusion(c=c, n=n).eval()
    ideal = predict_peak_memory(model, (1, 3, h, w), lifetimes="last_use")
    assert ideal.peak_node == "aten.cat"
    assert ideal.activations_bytes == 2 * n * c * h * w * F32  # N features + their concat
    eager = predict_peak_memory(model, (1, 3, h, w))  # the list still holds them during the fusion
    assert eager.peak_node == "aten.conv2d @ fuse"
    assert eager.activations_bytes == (2 * n + 1) * c * h * w * F32


# ---------------------------------------------------------------------------------------------
# Input-size fit and budget
# ---------------------------------------------------------------------------------------------
def test_peak_is_affine_in_pixels_for_fully_convolutional_models():
    c = 32
    model = PlainStack(c=c).eval()
    fit = peak_vs_input_size(model, [16, (24, 32), 40])
    slope, intercept = fit
    assert fit.max_residual_bytes < 1e-6 * max(fit.peaks)
    assert slope == pytest.approx((2 * c + 3) * F32)  # two body maps + the input, per pixel
    assert intercept == pytest.approx(weights_of(model), abs=1e-3)
    assert fit.predict(64, 64) == pytest.approx(predict_peak_memory(model, (1, 3, 64, 64)).peak_bytes)
    with pytest.raises(ValueError):
        peak_vs_input_size(model, [16, 16])


def test_largest_input_for_budget():
    model = FMENLike().eval()
    budget = 20 * 2**20
    h, w = largest_input_for_budget(model, budget, aspect=(9, 16))
    assert w == round(h * 16 / 9)
    assert predict_peak_memory(model, (1, 3, h, w)).peak_bytes <= budget
    h1 = h + 1
    assert predict_peak_memory(model, (1, 3, h1, round(h1 * 16 / 9))).peak_bytes > budget
    h8, w8 = largest_input_for_budget(model, budget, aspect=(1, 1), multiple_of=8)
    assert h8 % 8 == 0 and w8 == h8
    assert predict_peak_memory(model, (1, 3, h8 + 8, w8 + 8)).peak_bytes > budget
    with pytest.raises(ValueError, match="does not fit"):
        largest_input_for_budget(model, 1000)


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peak_is_at_least_the_live_storage():
    model = make("fmen_like")
    x = torch.rand(1, 3, 64, 64)
    predicted = predict_peak_memory(model, x.shape)
    m = measure_peak_memory(model, x, "cuda")
    assert m.device.startswith("cuda") and "max_memory_allocated" in m.method
    assert m.weights_bytes == predicted.weights_bytes and m.input_bytes == predicted.input_bytes
    # the allocator rounds every block up to 512 bytes and may add cuDNN workspace
    assert m.peak_bytes >= predicted.peak_bytes
    assert m.peak_bytes <= 1.5 * predicted.peak_bytes + 256 * 2**20


# ---------------------------------------------------------------------------------------------
# The zoo: every model at three input sizes
# ---------------------------------------------------------------------------------------------
try:
    import zoo

    ZOO_NAMES = zoo.names()
    ZOO_SKIP = None
except Exception as err:  # the zoo is another part of the project; report why it is missing
    ZOO_NAMES = []
    ZOO_SKIP = f"the model zoo is not importable ({type(err).__name__}: {err})"

ZOO_PARAMS = ZOO_NAMES or [pytest.param("<zoo>", marks=pytest.mark.skip(reason=ZOO_SKIP or "empty zoo"))]
ZOO_SIZES = [(16, 16), (20, 24), (28, 20)]


def zoo_model(name: str) -> tuple[nn.Module, int]:
    torch.manual_seed(0)
    model = zoo.create(name)
    channels = 1 if model.zoo_spec.channels == "y" else 3
    return model, channels


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_zoo_prediction_matches_measurement(name):
    model, channels = zoo_model(name)
    for h, w in ZOO_SIZES:
        x = torch.rand(1, channels, h, w) * model.zoo_spec.input_range
        measured = measure_peak_memory(model, x)
        predicted = predict_peak_memory(model, x.shape)
        assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.02 * measured.peak_bytes, (
            f"{name} at {h}x{w}: predicted {predicted.peak_bytes} ({predicted.peak_node}), "
            f"measured {measured.peak_bytes}"
        )


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_zoo_peak_is_affine_in_pixels(name):
    """Peak = a + b·H·W; exact for most, within 0.1 % for models with strided / padded stages."""
    model, channels = zoo_model(name)
    fit = peak_vs_input_size(model, [32, 48, 64], channels=channels)
    assert fit.slope > 0 and fit.intercept > 0
    assert fit.max_relative_residual < 1e-3, f"{name}: residual {fit.max_residual_bytes:.0f} bytes"


def first_conv_width(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).out_channels


@pytest.mark.skipif("plain" not in ZOO_NAMES, reason="zoo has no 'plain' model")
def test_zoo_plain_body_peaks_at_two_feature_maps():
    model = zoo.create("plain", 2)
    c, h, w = first_conv_width(model), 32, 40
    p = predict_peak_memory(model, (1, 3, h, w))
    base = p.weights_bytes + p.input_bytes
    body = [live for name, live in p.timeline if "@ body." in name]
    assert max(body) - base == 2 * c * h * w * F32
    # the EDSR upsampler (conv C->4C, PixelShuffle) holds C + 4C + 4C maps: the whole net peaks there
    assert p.peak_node.startswith("aten.pixel_shuffle @ tail")
    assert p.activations_bytes == 9 * c * h * w * F32


@pytest.mark.skipif("fmen-deploy" not in ZOO_NAMES, reason="zoo has no 'fmen-deploy' model")
def test_zoo_fmen_deploy_peaks_in_an_hfab():
    model = zoo.create("fmen-deploy", 4)
    c, h, w = first_conv_width(model), 32, 40
    ideal = predict_peak_memory(model, (1, 3, h, w), lifetimes="last_use")
    # freed at last use: global residual + HFAB input + attention map + product = 4 C H W
    assert ideal.activations_bytes == 4 * c * h * w * F32
    mul_peak = max(live for name, live in ideal.timeline if name.startswith("aten.mul @ "))
    assert mul_peak == ideal.peak_bytes
    # eager (what is measured): the zoo's forward drops each map as soon as it is rebound, so the
    # peak is the paper's too: the multiply of an HFAB (the warm-up block is an HFAB as well).
    eager = predict_peak_memory(model, (1, 3, h, w))
    assert eager.peak_node.startswith("aten.mul @ ")
    assert "HFABs" in eager.peak_node or "warmup" in eager.peak_node
    assert eager.activations_bytes == 4 * c * h * w * F32
