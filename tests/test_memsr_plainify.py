"""MemSR stage 1: ``plainify`` turns a residual teacher into an equivalent plain network.

- random-weight EDSR-style teachers (several widths, depths, res_scale, scales 2/3/4, odd image sizes):
  max |teacher - plain| <= 1e-3 on 0..255 outputs in float32, and ~1e-9 in float64 (exact algebra),
  for both skip carries and with the input mean shift kept or folded;
- EDSR-baseline becomes widths [64, (192, 128) x16, 64] with alternating activations;
- nested skips, skips whose branch ends in a ReLU or starts with one, 1x1 convs, BatchNorm (eval),
  grouped convs: exact;
- anything it cannot convert (attention, pooling, BatchNorm in train mode, LeakyReLU, strided conv,
  unknown modules or models) raises UnsupportedLayerError naming the layer;
- the offset carry's documented limit (values below -B) is real, and the split carry removes it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from memsr_bench.errors import MemsrInputError
from memsr_bench.memsr.plainify import Residual, UnsupportedLayerError, format_widths, max_abs_diff, plainify
from zoo.edsr import EDSR, ResBlock
from zoo.plain import PlainSR


def _randomize(model: nn.Module, seed: int, std: float | None = None) -> nn.Module:
    """Random weights (default: PyTorch's init re-drawn with a seed; ``std``: Gaussian)."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
            if std is not None:
                with torch.no_grad():
                    m.weight.normal_(0, std)
                    if m.bias is not None:
                        m.bias.normal_(0, std)
    return model.eval()


def _edsr(scale=2, n_resblocks=3, n_feats=8, res_scale=1.0, seed=0) -> EDSR:
    return _randomize(EDSR(scale=scale, n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale), seed)


CASES = [
    # scale, n_resblocks, n_feats, res_scale, (H, W)
    (2, 2, 8, 1.0, (13, 11)),
    (3, 3, 12, 0.1, (9, 15)),
    (4, 4, 16, 1.0, (7, 9)),
    (2, 5, 24, 0.5, (17, 5)),
    (3, 1, 4, 2.0, (5, 7)),
    (4, 0, 8, 1.0, (11, 13)),
]


@pytest.mark.parametrize("scale,n_resblocks,n_feats,res_scale,size", CASES)
@pytest.mark.parametrize("carry", ["offset", "split"])
def test_edsr_teacher_and_plain_agree(scale, n_resblocks, n_feats, res_scale, size, carry):
    teacher = _edsr(scale, n_resblocks, n_feats, res_scale, seed=scale * 100 + n_resblocks)
    plain, report = plainify(teacher, carry=carry)
    assert isinstance(plain, PlainSR) and not plain.training
    assert report.widths == list(plain.widths) and len(plain.convs) == 2 * n_resblocks + 2
    assert max_abs_diff(teacher, plain, size=size, seed=1) <= 1e-3
    plain64, _ = plainify(teacher, carry=carry, dtype=torch.float64)
    assert max_abs_diff(teacher, plain64, size=size, seed=2, batch=2, dtype=torch.float64) <= 1e-9


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_folded_input_mean_shift_is_exact_on_the_border(scale):
    """Folding the mean shift spreads its bias over the constant channel's taps (const_channel)."""
    teacher = _edsr(scale, 2, 8, seed=scale)
    plain, report = plainify(teacher, fold_input_shift=True, dtype=torch.float64)
    assert report.const_channel and plain.const_channel and plain.sub_mean is None
    assert report.input_shift == "folded"
    assert max_abs_diff(teacher, plain, size=(6, 5), dtype=torch.float64) <= 1e-9
    kept, report_kept = plainify(teacher)
    assert not report_kept.const_channel and kept.sub_mean is not None and report_kept.input_shift == "separate"


def test_edsr_baseline_widths_and_equivalence():
    teacher = _randomize(EDSR(scale=2), seed=0)
    plain, report = plainify(teacher)
    assert report.widths == [64] + [192, 128] * 16 + [64]
    assert report.widths_text == "[64, (192, 128) x16, 64]"
    assert report.acts == ["identity"] + ["relu", "identity"] * 16 + ["identity"]
    assert report.n_skips == 17 and report.kernel_sizes == [3] * 34
    assert report.teacher_params == 1_369_859
    assert report.plain_params == sum(p.numel() for p in plain.parameters())
    # layer 1 holds [global-skip carry, block-skip carry, branch]
    assert [p["channels"] for p in report.layers[1]["parts"]] == [64, 64, 64]
    assert "carry of body (global skip)" in report.layers[1]["parts"][0]["holds"]
    assert max_abs_diff(teacher, plain, size=(9, 7)) <= 1e-3
    text = report.explanation()
    assert "[64, (192, 128) x16, 64]" in text and "+1000" in text


def test_split_carry_is_wider_and_exact():
    teacher = _edsr(2, 2, 8)
    _, offset = plainify(teacher)
    _, split = plainify(teacher, carry="split")
    assert offset.widths == [8, 24, 16, 24, 16, 8]
    assert split.widths == [8, 40, 24, 40, 24, 8]  # carries crossing a ReLU are doubled


def test_offset_carry_breaks_below_minus_b_and_split_does_not():
    """The offset trick is exact only while carried values stay above -B (documented limit)."""
    teacher = _edsr(2, 2, 8, seed=3)
    with torch.no_grad():  # a large negative head output: carried values far below -B
        teacher.head[0].bias.fill_(-500.0)
    small_b, _ = plainify(teacher, skip_offset=10.0, dtype=torch.float64)
    assert max_abs_diff(teacher, small_b, size=(7, 7), dtype=torch.float64) > 1.0
    split, _ = plainify(teacher, carry="split", dtype=torch.float64)
    assert max_abs_diff(teacher, split, size=(7, 7), dtype=torch.float64) <= 1e-9


def _nested_teacher(seed: int = 0) -> EDSR:
    c = 6
    teacher = EDSR(scale=3, n_resblocks=3, n_feats=c)
    teacher.body[0] = Residual(
        nn.Sequential(ResBlock(c, res_scale=0.7), ResBlock(c), Residual(nn.Identity(), 0.2)), 0.5
    )
    teacher.body[1] = Residual(  # pre-activation branch ending in a ReLU, with a 1x1 conv and a BN (eval)
        nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 1),
            nn.BatchNorm2d(2 * c),
            nn.Conv2d(2 * c, c, 3, padding=1),
            nn.ReLU(),
        ),
        -1.5,
    )
    teacher.body[2] = nn.Sequential(
        nn.Conv2d(c, c, 3, padding=1, groups=3),
        nn.ReLU(inplace=True),
        nn.Conv2d(c, c, 5, padding=2),
        nn.ReLU(),
    )
    _randomize(teacher, seed)
    gen = torch.Generator().manual_seed(seed)
    bn = teacher.body[1].body[2]
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(2 * c, generator=gen))
        bn.running_var.copy_(torch.rand(2 * c, generator=gen) + 0.3)
        bn.weight.copy_(torch.randn(2 * c, generator=gen))
        bn.bias.copy_(torch.randn(2 * c, generator=gen))
    return teacher.eval()


@pytest.mark.parametrize("carry", ["offset", "split"])
@pytest.mark.parametrize("fold", [False, True])
def test_nested_and_irregular_skips_are_exact(carry, fold):
    teacher = _nested_teacher()
    plain, report = plainify(teacher, carry=carry, fold_input_shift=fold, dtype=torch.float64)
    assert max_abs_diff(teacher, plain, size=(8, 11), seed=4, dtype=torch.float64) <= 1e-9
    assert report.n_skips == 1 + 1 + 2 + 1 + 1  # global, body.0, its two ResBlocks and inner Residual, body.1
    plain32, _ = plainify(teacher, carry=carry, fold_input_shift=fold)
    assert max_abs_diff(teacher, plain32, size=(8, 11), seed=4) <= 1e-3
    assert 5 in report.kernel_sizes  # kernel sizes are kept per layer


def test_plain_teacher_converts_to_itself():
    teacher = _randomize(PlainSR([8, 6, 8], scale=2, acts=["relu", "identity", "relu"], sub_mean=True), seed=5)
    plain, report = plainify(teacher, dtype=torch.float64)
    assert report.widths == [8, 6, 8] and report.n_skips == 0
    assert max_abs_diff(teacher, plain, size=(5, 6), dtype=torch.float64) <= 1e-9


def test_teacher_is_not_modified():
    teacher = _edsr(2, 2, 8)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    plainify(teacher, fold_input_shift=True)
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


class _ChannelAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(self.pool(x)))


class _LoggingSequential(nn.Sequential):
    def forward(self, x):  # a different computation hidden in a Sequential subclass
        return super().forward(x) * 2


def _teacher_with(layer: nn.Module, where: int = 1) -> EDSR:
    teacher = _edsr(2, 2, 8)
    teacher.body[where] = layer
    return teacher


@pytest.mark.parametrize(
    "build,path,words",
    [
        (lambda: _teacher_with(_ChannelAttention(8)), "body.1", "_ChannelAttention"),
        (lambda: _teacher_with(nn.Sequential(nn.AdaptiveAvgPool2d(1))), "body.1.0", "AdaptiveAvgPool2d"),
        (lambda: _teacher_with(nn.BatchNorm2d(8).train()), "body.1", "train mode"),
        (lambda: _teacher_with(nn.LeakyReLU(0.1)), "body.1", "LeakyReLU"),
        (lambda: _teacher_with(nn.Conv2d(8, 8, 3, stride=2, padding=1)), "body.1", "stride"),
        (lambda: _teacher_with(nn.Conv2d(8, 8, 3, padding=0)), "body.1", "padding"),
        (lambda: _teacher_with(nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")), "body.1", "padding"),
        (lambda: _teacher_with(nn.Dropout(0.5).train()), "body.1", "train mode"),
        (lambda: _teacher_with(_LoggingSequential(nn.ReLU())), "body.1", "_LoggingSequential"),
        (lambda: _teacher_with(Residual(nn.Conv2d(8, 4, 3, padding=1))), "body.1", "skip adds"),
        (lambda: _teacher_with(ResBlock(8, kernel_size=2)), "body.1.body.0", "square and odd"),
    ],
)
def test_unconvertible_layers_raise_and_name_the_layer(build, path, words):
    with pytest.raises(UnsupportedLayerError) as info:
        plainify(build())
    assert isinstance(info.value, MemsrInputError)
    assert info.value.where == path and words in info.value.problem
    assert "\n" not in str(info.value)


def test_unsupported_models_raise():
    import zoo

    for name in ("fsrcnn", "imdn"):
        with pytest.raises(UnsupportedLayerError, match="not a supported teacher"):
            plainify(zoo.create(name, scale=2))
    with pytest.raises(MemsrInputError, match="carry"):
        plainify(_edsr(), carry="clip")
    with pytest.raises(MemsrInputError, match="skip_offset"):
        plainify(_edsr(), skip_offset=0)


def test_format_widths():
    assert format_widths([64, 192, 128, 192, 128, 64]) == "[64, (192, 128) x2, 64]"
    assert format_widths([4, 4, 4, 16]) == "[4 x3, 16]"
    assert format_widths([3, 5, 7]) == "[3, 5, 7]"
