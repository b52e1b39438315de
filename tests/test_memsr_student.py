"""MemSR stage 2: student initialisation from the plain model (SVD widths, least squares, bridges).

- the width rule (relative residual < theta; fix_r) on constructed singular values;
- theta = 0 reproduces the plain model's features and output (up to float error);
- a smaller theta never gives fewer channels; fix_r gives min(fix_r, C) and, on EDSR-baseline,
  Plain-M's shape (34 layers of width 64);
- with the ReLUs removed (a linear teacher) the bridged student features match the teacher's within
  the chosen residual: the SVD / least-squares algebra is right;
- calibration patches come from a folder of real images with MATLAB-bicubic LR;
- efficiency report: params, conv MACs scaled by area (checked against a direct count), predicted peak;
- the channel-selection and hybrid variants are exact through a ReLU, where the SVD initialisation is
  not; selection never needs fewer channels than the SVD; the hybrid output error tracks theta;
- slow (``-m slow``, needs ../shared): with a small T91-trained teacher, a theta = 0.05 student scores
  above bicubic on Set5 before any training with the hybrid and selection initialisations; the SVD
  (MemSR) initialisation does not (measured and printed).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from memsr_bench.data.matlab_resize import imresize
from memsr_bench.errors import MemsrInputError
from memsr_bench.memsr.data import calibration_batch, load_training_images
from memsr_bench.memsr.distill import BridgeDistillLoss
from memsr_bench.memsr.plainify import max_abs_diff, plainify
from memsr_bench.memsr.student_init import (
    choose_width,
    efficiency,
    forward_features,
    init_student,
    plain_layers,
    relative_residuals,
)
from tests.conftest import require_shared
from zoo.edsr import EDSR
from zoo.plain import ConstChannelConv, PlainSR


def _smooth_images(n: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Image-like test inputs in 0..255: smooth random fields (a blurred noise) plus a gradient."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, *size, generator=gen)
    k = torch.ones(3, 1, 5, 5) / 25
    for _ in range(2):
        x = torch.nn.functional.conv2d(x, k, padding=2, groups=3)
    ramp = torch.linspace(0, 1, size[1]).view(1, 1, 1, -1)
    x = (x - x.amin()) / (x.amax() - x.amin())
    return (0.7 * x + 0.3 * ramp) * 255


def _teacher(n_resblocks=2, n_feats=8, scale=2, seed=0, linear=False) -> EDSR:
    torch.manual_seed(seed)
    t = EDSR(scale=scale, n_resblocks=n_resblocks, n_feats=n_feats)
    if linear:
        for block in t.body[:-1]:
            block.body[1] = nn.Identity()
    return t.eval()


@pytest.fixture(scope="module")
def small_plain():
    plain, report = plainify(_teacher())
    return plain, report


@pytest.fixture(scope="module")
def calib() -> torch.Tensor:
    return _smooth_images(6, (20, 20), seed=1)


def test_choose_width_rule():
    s = torch.tensor([4.0, 2.0, 1.0, 0.0])  # energy 16, 4, 1, 0 of 21
    res = relative_residuals(s)
    assert torch.allclose(res, torch.tensor([1.0, (5 / 21) ** 0.5, (1 / 21) ** 0.5, 0.0, 0.0], dtype=torch.float64))
    assert choose_width(s, 0.5) == 1  # 0.488 < 0.5
    assert choose_width(s, 0.4) == 2
    assert choose_width(s, 0.0) == 4  # theta = 0 keeps every channel
    assert choose_width(s, 0.9, fix_r=3) == 3 and choose_width(s, 0.9, fix_r=10) == 4
    assert choose_width(torch.zeros(3), 0.1) == 1  # constant features: one channel is exact


def test_choose_width_rule_boundary():
    s = torch.tensor([4.0, 2.0, 1.0, 0.0])
    assert choose_width(s, 0.2) == 3  # residual at r = 2 is sqrt(1/21) = 0.218
    assert choose_width(s, (1 / 21) ** 0.5 + 1e-9) == 2  # strictly below theta
    assert choose_width(s, float(relative_residuals(s)[2])) == 3


@pytest.mark.parametrize("method", ["svd", "hybrid", "select"])
def test_theta_zero_reproduces_the_plain_model(small_plain, calib, method):
    plain, report = small_plain
    init = init_student(plain, calib, theta=0.0, method=method)
    assert init.widths == report.widths and init.teacher_widths == report.widths
    assert all(isinstance(c, ConstChannelConv) for c in init.student.convs)
    x = _smooth_images(2, (11, 13), seed=9)
    with torch.no_grad():
        fs, out_s = forward_features(init.student, x)
        ft, out_t = forward_features(plain, x)
        assert len(fs) == len(ft) == len(init.bridges) - 1
        for a, b, bridge in zip([*fs, out_s], [*ft, out_t], init.bridges, strict=True):
            assert (bridge(a) - b).abs().max() <= 1e-3 * max(1.0, float(b.abs().max()) / 1000)
            assert (a - b).abs().max() <= 1e-3 * max(1.0, float(b.abs().max()) / 1000)  # identity bridges
        assert (out_s - out_t).abs().max() <= 1e-3
        loss = BridgeDistillLoss(init.bridges)([*fs, out_s], [*ft, out_t])
        assert float(loss) <= 1e-6


@pytest.mark.parametrize("method", ["svd", "hybrid", "select"])
def test_smaller_theta_never_gives_fewer_channels(small_plain, calib, method):
    plain, report = small_plain
    previous = None
    for theta in (0.5, 0.3, 0.1, 0.05, 0.02, 0.01, 0.001, 0.0):
        widths = init_student(plain, calib, theta=theta, method=method).widths
        assert widths[-1] == report.widths[-1]  # the last body layer keeps its width
        assert all(1 <= w <= c for w, c in zip(widths, report.widths, strict=True))
        if previous is not None:
            assert all(w >= p for w, p in zip(widths, previous, strict=True)), (theta, widths, previous)
        previous = widths
    assert previous == report.widths
    assert init_student(plain, calib, theta=0.5, method=method).widths != report.widths  # the rule does compress


@pytest.mark.parametrize("theta", [0.0, 0.02, 0.1, 0.3])
def test_channel_selection_needs_at_least_the_svd_width(small_plain, calib, theta):
    """The rank-r SVD is the best rank-r approximation, so selecting channels never needs fewer."""
    plain, report = small_plain
    svd = init_student(plain, calib, theta=theta)
    sel = init_student(plain, calib, theta=theta, method="select")
    assert all(s >= v for s, v in zip(sel.widths, svd.widths, strict=True))
    assert all(r["residual"] < theta or r["width"] == r["teacher_width"] for r in sel.layers)
    if theta == 0.0:
        assert sel.widths == report.widths


def test_selection_is_exact_through_relu_and_svd_is_not():
    """A ReLU first layer: the kept channels pass the student's ReLU unchanged, so the bridged error on
    the calibration data is exactly the selection residual; the rotated SVD features are not."""
    torch.manual_seed(0)
    teacher = PlainSR([12, 6], scale=2, acts=["relu", "identity"]).eval()
    with torch.no_grad():  # 4 distinct ReLU channels, each also present twice more, scaled by 0.5 and 2
        factor = torch.tensor([1.0, 0.5, 2.0]).repeat_interleave(4)
        w, b = teacher.convs[0].weight, teacher.convs[0].bias
        w.copy_(w[:4].repeat(3, 1, 1, 1) * factor.view(-1, 1, 1, 1))
        b.copy_(b[:4].repeat(3) * 10 * factor)  # relu(c * z) = c * relu(z) for c > 0
    plain, _ = plainify(teacher)
    x = _smooth_images(4, (16, 16), seed=3)
    errors = {}
    for method in ("select", "svd", "hybrid"):
        kwargs = {"theta": 1e-4} if method == "hybrid" else {"fix_r": 4}
        init = init_student(plain, x, method=method, max_pixels=10**9, **kwargs)
        with torch.no_grad():
            fs, _ = forward_features(init.student, x)
            ft, _ = forward_features(plain, x)
            centred = ft[0] - ft[0].mean(dim=(0, 2, 3), keepdim=True)
            errors[method] = (float((init.bridges[0](fs[0]) - ft[0]).norm() / centred.norm()), init.layers[0])
    sel_err, sel_info = errors["select"]
    assert sel_info["residual"] < 1e-6 and sel_err < 1e-5  # 4 channels explain the scaled copies exactly
    svd_err, svd_info = errors["svd"]
    assert svd_info["residual"] < 1e-6 and svd_err > 0.01  # same subspace, but the ReLU acts on rotated features
    hybrid_err, hybrid_info = errors["hybrid"]
    assert hybrid_info["width"] == 4 and hybrid_err < 1e-5  # linear channels rotated, rectified ones selected


def test_hybrid_tracks_theta_where_the_svd_init_does_not(small_plain, calib):
    """Whole network, random-weight EDSR teacher, unseen images: the hybrid student's output error
    shrinks with theta; the SVD (MemSR) student's stays near 20 % whatever theta (the ReLU layers)."""
    plain, _ = small_plain
    x = _smooth_images(2, (17, 15), seed=5)
    with torch.no_grad():
        ref = plain(x)
        scale = float((ref - ref.mean()).norm())
        for theta in (0.001, 0.01, 0.05, 0.1):
            err = {}
            for method in ("svd", "hybrid"):
                init = init_student(plain, calib, theta=theta, method=method, max_pixels=10**9)
                err[method] = float((init.student(x) - ref).norm()) / scale
                assert all(r["residual"] < theta or r["width"] == r["teacher_width"] for r in init.layers)
            assert err["hybrid"] < 2 * theta + 0.001, (theta, err)  # no clipping of the shifted components
            assert err["svd"] > 0.15, (theta, err)


def test_fix_r(small_plain, calib):
    plain, report = small_plain
    init = init_student(plain, calib, fix_r=10)
    assert init.widths == [min(10, c) for c in report.widths[:-1]] + [report.widths[-1]]
    assert init.fix_r == 10 and init.theta is None


def test_fix_r_64_on_edsr_baseline_is_plain_m_shaped():
    plain, _ = plainify(_teacher(16, 64, seed=3))
    init = init_student(plain, _smooth_images(2, (12, 12), seed=2), fix_r=64)
    assert init.widths == [64] * 34
    assert list(init.student.acts) == ["identity"] + ["relu", "identity"] * 16 + ["identity"]


def test_linear_teacher_features_within_theta(calib):
    """Without ReLUs the student is an exact low-rank factorisation: errors track theta."""
    plain, _ = plainify(_teacher(3, 8, seed=4, linear=True))
    for theta in (0.01, 0.05, 0.2):
        init = init_student(plain, calib, theta=theta, max_pixels=10**9)
        with torch.no_grad():
            fs, out_s = forward_features(init.student, calib)
            ft, out_t = forward_features(plain, calib)
        for i, (a, b) in enumerate(zip(fs, ft, strict=True)):
            centred = b - b.mean(dim=(0, 2, 3), keepdim=True)
            with torch.no_grad():
                rel = float((init.bridges[i](a) - b).norm() / centred.norm())
            if i == 0:  # the first layer's error on the calibration data is exactly the SVD residual
                assert rel == pytest.approx(init.layers[0]["residual"], rel=1e-3, abs=1e-5)
            assert rel <= 2 * theta + 1e-4, (theta, i, rel)
        assert init.layers[0]["residual"] < theta


def test_student_layers_use_the_bridges_exactly_at_full_rank_svd(small_plain, calib):
    """plain_layers round-trips the plain model's convs (bias -> centre tap of the constant kernel)."""
    plain, _ = small_plain
    specs = plain_layers(plain)
    assert [s.weight.shape[0] for s in specs] == list(plain.widths)
    for s, conv in zip(specs, plain.convs, strict=True):
        assert torch.equal(s.const[:, 1, 1].float(), conv.bias.detach())
        assert float(s.const.abs().sum() - s.const[:, 1, 1].abs().sum()) == 0.0


def test_bad_arguments(small_plain, calib):
    plain, _ = small_plain
    with pytest.raises(MemsrInputError, match="theta"):
        init_student(plain, calib, theta=1.5)
    with pytest.raises(MemsrInputError, match="fix-r"):
        init_student(plain, calib, fix_r=0)
    with pytest.raises(MemsrInputError, match="hybrid"):
        init_student(plain, calib, fix_r=4, method="hybrid")
    with pytest.raises(MemsrInputError, match="decomposition"):
        init_student(plain, calib, theta=0.1, method="nmf")
    with pytest.raises(MemsrInputError, match="PlainSR"):
        init_student(_teacher(), calib)  # stage 2 needs the plain model, not the teacher


def _write_images(folder: Path, sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        img = _smooth_images(1, (h, w), seed=seed + i)[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
        Image.fromarray(img).save(folder / f"img{i}.png")
    return folder


def test_calibration_patches_are_real_image_crops_with_matlab_lr(tmp_path):
    folder = _write_images(tmp_path / "hr", [(40, 52), (30, 30), (64, 50)])
    images, skipped = load_training_images(folder, 2, min_lr_size=16)
    assert skipped == ["img1"]  # 15 px LR: too small for 16-px patches
    lr_full = imresize(images[0].hr, 0.5)
    assert np.array_equal(images[0].lr, lr_full)
    batch = calibration_batch(folder, 2, n=5, patch_size=16, seed=3)
    assert batch.shape == (5, 3, 16, 16) and batch.dtype == torch.float32
    assert torch.equal(batch, calibration_batch(folder, 2, n=5, patch_size=16, seed=3))
    lrs = [im.lr for im in images]
    for patch in batch.numpy().astype(np.uint8).transpose(0, 2, 3, 1):  # each patch is a crop of an LR image
        assert any(
            (lr[y : y + 16, x : x + 16] == patch).all()
            for lr in lrs
            for y in range(lr.shape[0] - 15)
            for x in range(lr.shape[1] - 15)
        )
    with pytest.raises(MemsrInputError, match="not found"):
        calibration_batch(tmp_path / "missing", 2)
    with pytest.raises(MemsrInputError, match="large enough"):
        calibration_batch(folder, 2, patch_size=64)


_PEAKS = ("peak_memory_bytes_predicted", "peak_memory_bytes_predicted_last_use")


def test_efficiency_report(small_plain, calib):
    plain, _ = small_plain
    init = init_student(plain, calib, theta=0.05)
    eff = efficiency(init.student, 2, hr_size=(64, 96), count_size=16)
    assert eff["params"] == sum(p.numel() for p in init.student.parameters())
    assert eff["lr_size"] == [32, 48]
    from memsr_bench.measure.profile import profile

    direct = profile(init.student, (3, 32, 48), quantities=("conv_macs", *_PEAKS))
    assert eff["conv_macs"] == direct["conv_macs"]  # area scaling is exact for these models
    assert all(eff[q] == direct[q] for q in _PEAKS) and eff["peak_node"] == direct.details["peak_node"]
    assert eff["peak_memory_bytes_predicted"] > eff["peak_memory_bytes_predicted_last_use"] > 0
    smaller = init_student(plain, calib, theta=0.3)
    assert efficiency(smaller.student, 2, hr_size=(64, 96), count_size=16)["conv_macs"] < eff["conv_macs"]


@pytest.mark.slow
@pytest.mark.shared
def test_memsr_init_student_vs_bicubic_on_set5():
    """A 2x16 EDSR-style teacher trained 800 steps on T91 (cached in the temp folder), then stage 2 at
    theta = 0.05 and no training. The hybrid and selection students score above bicubic on Set5; the
    SVD (MemSR) student does not (its ReLU layers, see student_init), but stays a plausible image.
    About 10 min on 2 shared CPU cores the first time, seconds afterwards."""
    from memsr_bench.data.datasets import discover_test_set
    from memsr_bench.evaluate import evaluate
    from memsr_bench.memsr.train import TrainConfig, evaluate_model, train
    from memsr_bench.upscalers import BicubicUpscaler

    t91 = require_shared("train", "T91")
    set5 = require_shared("datasets", "Set5")
    cache = Path(tempfile.gettempdir()) / "memsr-bench-test-cache" / "teacher-2x16-x2-v1"
    torch.manual_seed(0)
    teacher = EDSR(scale=2, n_resblocks=2, n_feats=16)
    config = TrainConfig(
        train_dir=str(t91), scale=2, epochs=8, steps_per_epoch=100, batch_size=16, patch_size=32, lr=1e-3,
        val_dir=str(set5), val_every=2, seed=0,
    )  # fmt: skip
    train(teacher, config, cache, resume=True, progress=False)
    bicubic = evaluate(BicubicUpscaler(2), discover_test_set(set5, 2), progress=False).psnr
    teacher_psnr, _ = evaluate_model(teacher, set5, 2)
    plain, _ = plainify(teacher)
    assert max_abs_diff(teacher, plain, size=(37, 29)) <= 1e-3  # stage 1 on a trained teacher
    calib = calibration_batch(t91, 2, n=16, patch_size=48)
    with torch.no_grad():
        assert float((teacher(calib) - plain(calib)).abs().max()) <= 1e-3  # and on real image patches
    psnr = {}
    for method in ("hybrid", "select", "svd"):
        init = init_student(plain, calib, theta=0.05, method=method)
        psnr[method] = evaluate_model(init.student, set5, 2)[0]
        assert sum(init.widths) < sum(plain.widths)
    print(f"Set5 x2: bicubic {bicubic:.3f}, teacher {teacher_psnr:.3f}, init (no training): {psnr}")
    assert teacher_psnr > bicubic + 0.5
    assert psnr["hybrid"] > bicubic and psnr["select"] > bicubic
    assert 15 < psnr["svd"] < bicubic


def test_random_bridges_start_at_the_teacher_means(small_plain, calib):
    """KD without MemSR init: bridge biases at the teacher's channel means (the +1000 carried skips
    included) make the initial feature MSE the teachers' feature variance, not ~1e6."""
    from memsr_bench.memsr.student_init import feature_means, random_bridges, random_student

    plain, report = small_plain
    widths = [4] * (len(report.widths) - 1) + [report.widths[-1]]
    means = feature_means(plain, calib)
    assert [m.numel() for m in means] == report.widths and float(max(m.max() for m in means)) > 500
    student = random_student(plain, widths, seed=0)
    with torch.no_grad():
        fs, out_s = forward_features(student, calib)
        ft, out_t = forward_features(plain, calib)
        losses = {}
        for name, bridge_means in (("zero", None), ("mean", means)):
            bridges = random_bridges(widths, report.widths, seed=0, teacher_means=bridge_means)
            losses[name] = float(BridgeDistillLoss(bridges)([*fs[:-1], ft[-1], out_t], [*ft, out_t]))
        assert torch.equal(bridges[0].bias, means[0])
    assert losses["zero"] > 1e5 and losses["mean"] < losses["zero"] / 100, losses
