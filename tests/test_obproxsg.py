"""OBProxSG (released algebra of Pikapi22/SRModelCompression@ab9919e) and the density read-outs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from memsr_bench.compress import (
    OBProxSG,
    block_density,
    channel_density,
    layer_density,
    propose_compact_config,
    released_prune_schedule,
    released_weight_density,
)
from memsr_bench.compress.density import default_block_name

# ---------------------------------------------------------------------------------------------- helpers


def _regression_problem(seed: int = 0, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 32, generator=g, dtype=dtype)
    w_true = torch.zeros(32, 4, dtype=dtype)
    w_true[:6] = torch.randn(6, 4, generator=g, dtype=dtype)  # only 6 informative inputs
    y = x @ w_true + 0.01 * torch.randn(256, 4, generator=g, dtype=dtype)
    return x, y


def _train_linear(lambda_: float, steps: int, n_p: float, seed: int = 0) -> nn.Linear:
    x, y = _regression_problem(seed)
    torch.manual_seed(seed)
    model = nn.Linear(32, 4)
    opt = OBProxSG(model.parameters(), lr=0.05, lambda_=lambda_, epoch_size=10, n_p=n_p)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model


def _ref_prox(x: torch.Tensor, g: torch.Tensor, lr: float, lam: float) -> torch.Tensor:
    # Entry by entry, the two released branches: shrink towards zero by lr·λ, or land on zero.
    out = torch.zeros_like(x)
    for i in range(x.numel()):
        z = x.view(-1)[i] - lr * g.view(-1)[i]
        if z - lr * lam > 0:
            out.view(-1)[i] = z - lr * lam
        elif z + lr * lam < 0:
            out.view(-1)[i] = z + lr * lam
    return out


def _ref_orthant(x: torch.Tensor, g: torch.Tensor, lr: float, lam: float, eps: float) -> torch.Tensor:
    out = torch.zeros_like(x)
    for i in range(x.numel()):
        xi, gi = x.view(-1)[i], g.view(-1)[i]
        if xi > 0:
            trial = xi - lr * (gi + lam)
            out.view(-1)[i] = trial if trial > eps else 0.0
        elif xi < 0:
            trial = xi - lr * (gi - lam)
            out.view(-1)[i] = trial if -trial > eps else 0.0
    return out


# ------------------------------------------------------------------------------------------- optimiser


def test_prox_step_matches_entrywise_transcription() -> None:
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, generator=g, dtype=torch.float64)
    grad = torch.randn(64, generator=g, dtype=torch.float64)
    p = nn.Parameter(x0.clone())
    p.grad = grad.clone()
    OBProxSG([p], lr=0.1, lambda_=3.0, n_p=1).step()
    assert torch.equal(p.detach(), _ref_prox(x0, grad, 0.1, 3.0))
    assert 0 < torch.count_nonzero(p).item() < 64


def test_orthant_step_matches_entrywise_transcription() -> None:
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(200, generator=g, dtype=torch.float64)
    x0[::7] = 0.0
    grad = 3 * torch.randn(200, generator=g, dtype=torch.float64)
    p = nn.Parameter(x0.clone())
    p.grad = grad.clone()
    OBProxSG([p], lr=0.2, lambda_=0.5, n_p=0, eps=0.05).step()
    assert torch.equal(p.detach(), _ref_orthant(x0, grad, 0.2, 0.5, 0.05))


def test_orthant_projection_never_flips_a_sign() -> None:
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4096, generator=g)
    x0[::5] = 0.0
    p = nn.Parameter(x0.clone())
    opt = OBProxSG([p], lr=1.0, lambda_=0.1, n_p=0)
    for _ in range(5):
        before = p.detach().clone()
        p.grad = 2 * torch.randn(4096, generator=g)  # large steps: many entries try to cross zero
        opt.step()
        after = p.detach()
        assert (after * before >= 0).all()
        assert (after[before == 0] == 0).all()
        crossed = (before - 1.0 * (p.grad + 0.1 * torch.sign(before))) * torch.sign(before) <= 0
        assert (after[crossed & (before != 0)] == 0).all()
    assert torch.count_nonzero(p).item() < 0.6 * 4096


def test_lambda_zero_prox_phase_is_plain_sgd() -> None:
    x, y = _regression_problem(4, torch.float64)
    torch.manual_seed(4)
    a = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    b = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    b.load_state_dict(a.state_dict())
    ours = OBProxSG(a.parameters(), lr=0.03, lambda_=0.0, epoch_size=1, n_p=1000)
    sgd = torch.optim.SGD(b.parameters(), lr=0.03)
    for _ in range(25):
        for model, opt in ((a, ours), (b, sgd)):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            torch.testing.assert_close(pa, pb, rtol=0, atol=1e-12)


def test_lambda_zero_orthant_phase_is_sgd_with_zero_crossings_cut() -> None:
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(512, generator=g, dtype=torch.float64)
    x0[:50] = 0.0
    grad = torch.randn(512, generator=g, dtype=torch.float64)
    p = nn.Parameter(x0.clone())
    p.grad = grad.clone()
    OBProxSG([p], lr=0.5, lambda_=0.0, n_p=0).step()
    sgd = x0 - 0.5 * grad
    keep = (torch.sign(sgd) == torch.sign(x0)) & (x0 != 0)
    assert torch.equal(p.detach()[keep], sgd[keep])
    assert (p.detach()[~keep] == 0).all()


def test_exact_zeros_on_conv_regression() -> None:
    g = torch.Generator().manual_seed(6)
    teacher = nn.Conv2d(4, 8, 3, padding=1)
    with torch.no_grad():
        teacher.weight.zero_()
        teacher.weight[:3] = torch.randn(3, 4, 3, 3, generator=g)  # 5 of 8 output channels are dead
    x = torch.randn(8, 4, 12, 12, generator=g)
    y = teacher(x).detach()
    torch.manual_seed(6)
    student = nn.Conv2d(4, 8, 3, padding=1)
    opt = OBProxSG(student.parameters(), lr=0.05, lambda_=0.02, epoch_size=20, n_p=5)
    for step in range(200):
        assert opt.in_prox_phase == (step < 100)
        opt.zero_grad()
        nn.functional.mse_loss(student(x), y).backward()
        opt.step()
    w = student.weight.detach()
    assert torch.count_nonzero(w).item() < 0.5 * w.numel()
    # The teacher's dead channels should be the ones that died.
    dead = (w.reshape(8, -1) == 0).all(dim=1)
    assert dead[3:].sum().item() >= 4
    assert not dead[:3].any()


def test_density_falls_as_lambda_grows() -> None:
    densities = []
    for lam in (1e-3, 3e-2, 1e-1):
        w = _train_linear(lam, steps=300, n_p=10).weight.detach()
        densities.append(torch.count_nonzero(w).item() / w.numel())
    assert densities[0] > densities[1] > densities[2]
    assert densities[2] < 0.5


def test_switching_rule_counts_steps_in_epochs() -> None:
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.zeros(3)

    def phases(opt: OBProxSG, n: int) -> str:
        out = ""
        for _ in range(n):
            out += "P" if opt.in_prox_phase else "O"
            opt.step()
        return out

    assert phases(OBProxSG([p], lr=0.1, lambda_=0.0, epoch_size=3, n_p=2), 12) == "PPPPPP" + "OOOOOO"
    assert phases(OBProxSG([p], lr=0.1, lambda_=0.0, epoch_size=2, n_p=2, n_o=1), 12) == "PPPPOO" * 2
    assert phases(OBProxSG([p], lr=0.1, lambda_=0.0, epoch_size=5, n_p=0), 4) == "OOOO"


def test_state_dict_keeps_the_phase() -> None:
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.zeros(3)
    opt = OBProxSG([p], lr=0.1, lambda_=0.0, epoch_size=2, n_p=2)
    for _ in range(4):
        opt.step()
    assert not opt.in_prox_phase
    fresh = OBProxSG([p], lr=0.1, lambda_=0.0, epoch_size=2, n_p=2)
    fresh.load_state_dict(opt.state_dict())
    assert not fresh.in_prox_phase and fresh.epochs_done == 2 and fresh.steps_in_epoch == 0


def test_param_groups_scheduler_and_missing_grads() -> None:
    a = nn.Parameter(torch.full((4,), 1.0))
    b = nn.Parameter(torch.full((4,), 1.0))
    c = nn.Parameter(torch.full((4,), 1.0))  # no gradient: untouched
    opt = OBProxSG([{"params": [a]}, {"params": [b], "lambda_": 10.0}, {"params": [c]}], lr=0.1, lambda_=1.0, n_p=1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    a.grad, b.grad = torch.zeros(4), torch.zeros(4)
    opt.step()
    sched.step()
    assert torch.allclose(a.detach(), torch.full((4,), 0.9))
    assert (b.detach() == 0).all()
    assert (c.detach() == 1).all()
    opt.step()
    assert torch.allclose(a.detach(), torch.full((4,), 0.85))  # lr halved by the scheduler


def test_closure_loss_is_returned() -> None:
    p = nn.Parameter(torch.ones(2))

    def closure() -> torch.Tensor:
        p.grad = None
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert OBProxSG([p], lr=0.1, lambda_=0.0, n_p=1).step(closure).item() == 2.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": -1.0, "lambda_": 0.0},
        {"lr": 0.1, "lambda_": -1.0},
        {"lr": 0.1, "lambda_": 0.0, "eps": -1.0},
        {"lr": 0.1, "lambda_": 0.0, "epoch_size": 0},
        {"lr": 0.1, "lambda_": 0.0, "n_p": 0, "n_o": 0},
        {"lr": float("nan"), "lambda_": 0.0},
    ],
)
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        OBProxSG([nn.Parameter(torch.ones(1))], **kwargs)


def test_released_prune_schedule_never_reaches_orthant_steps() -> None:
    # EDSR prune config: epochSize 2560 samples with batch 16 -> 160 iterations per epoch, 1e5 iterations.
    edsr = released_prune_schedule(num_train_images=2560, batch_size=16, total_iter=100_000)
    assert edsr == {
        "iters_per_epoch": 160,
        "epoch_size": 2560,
        "n_p": 62,
        "prox_steps": 158_720,
        "orthant_steps": 0,
    }
    # SwinIR prune config: epochSize 32592 -> 2037 iterations per epoch, 5e5 iterations.
    swin = released_prune_schedule(num_train_images=32592, batch_size=16, total_iter=500_000)
    assert swin["n_p"] == 24 and swin["prox_steps"] == 782_208 and swin["orthant_steps"] == 0
    # With batch 1 the phase is ~10 % of the run, as the "epochs / 10" heuristic intends.
    one = released_prune_schedule(num_train_images=1000, batch_size=1, total_iter=100_000)
    assert one["prox_steps"] == 10_000 and one["orthant_steps"] == 90_000
    with pytest.raises(ValueError, match="batch_size"):
        released_prune_schedule(num_train_images=10, batch_size=0, total_iter=10)


# --------------------------------------------------------------------------------------------- density


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.norm = nn.LayerNorm(c)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 16, 3)
        self.body = nn.Sequential(_Block(16), _Block(16), _Block(16))
        self.tail = nn.Linear(16, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.fill_(1.0)
            self.body[0].conv1.weight[6:] = 0  # 6 of 16 output channels alive
            self.body[0].conv2.weight[5:] = 0  # 5 of 16
            self.body[0].conv2.weight[0, 0, 0, 0] = -0.0  # negative zero is zero
            self.body[1].conv1.weight.zero_()
            self.body[1].conv2.weight.zero_()
            self.body[1].conv2.weight[2, 3, 1, 1] = 0.5  # one survivor
            self.body[2].conv1.weight.zero_()
            self.body[2].conv2.weight.zero_()
            self.tail.weight[:, 8:] = 0


def test_layer_and_channel_density_by_hand() -> None:
    model = _Toy()
    dens = layer_density(model)
    assert list(dens) == [
        "head",
        "body.0.conv1",
        "body.0.conv2",
        "body.1.conv1",
        "body.1.conv2",
        "body.2.conv1",
        "body.2.conv2",
        "tail",
    ]
    assert dens["head"] == 1.0
    assert dens["body.0.conv1"] == 6 / 16
    assert dens["body.0.conv2"] == (5 * 144 - 1) / (16 * 144)
    assert dens["body.1.conv2"] == 1 / 2304
    assert dens["body.2.conv1"] == 0.0
    assert dens["tail"] == 0.5
    ch = channel_density(model)
    assert ch["body.0.conv1"] == 6 / 16 and ch["body.0.conv2"] == 5 / 16
    assert ch["body.1.conv2"] == 1 / 16 and ch["body.2.conv2"] == 0.0
    assert ch["tail"] == 1.0  # every output still reads half of its inputs


def test_block_density_by_hand() -> None:
    model = _Toy()
    assert default_block_name("body.3.body.0") == "body.3"
    assert default_block_name("layers.2.residual_group.blocks.0.attn.qkv") == "layers.2"
    assert default_block_name("conv_after_body") == "conv_after_body"
    assert default_block_name("head.0") == "head.0"
    blocks = block_density(model)
    assert list(blocks) == ["head", "body.0", "body.1", "body.2", "tail"]
    assert blocks["body.0"] == (6 * 144 + 5 * 144 - 1) / 4608
    assert blocks["body.1"] == 1 / 4608
    assert blocks["body.2"] == 0.0
    chosen = block_density(model, ["body.1", "body.0"])
    assert list(chosen) == ["body.1", "body.0"] and chosen["body.0"] == blocks["body.0"]
    with pytest.raises(ValueError, match="body.9"):
        block_density(model, ["body.9"])


def test_released_weight_density_counts_norm_weights() -> None:
    model = _Toy()
    # Every parameter named "*weight*" under "body": 6 convs plus 3 LayerNorm weights of 16 ones each.
    nonzero = 6 * 144 + 5 * 144 - 1 + 1 + 3 * 16
    total = 6 * 2304 + 3 * 16
    assert released_weight_density(model, "body") == nonzero / total
    with pytest.raises(ValueError, match="nothing"):
        released_weight_density(model, "nothing")


def test_propose_compact_config_rule() -> None:
    model = _Toy()
    body_channels = {k: v for k, v in channel_density(model).items() if k.startswith("body.")}
    body_blocks = block_density(model, [f"body.{i}" for i in range(3)])
    cfg = propose_compact_config(body_channels, body_blocks, base_channels=16)
    # max fraction 6/16 -> 6 channels -> up to a multiple of 4 -> 8; only body.0 is above 5 % dense.
    assert (cfg.channels, cfg.blocks, cfg.kept_blocks) == (8, 1, ("body.0",))
    assert cfg.max_channel_fraction == 6 / 16
    exact = propose_compact_config(body_channels, body_blocks, base_channels=16, channel_multiple=1, block_threshold=0)
    assert (exact.channels, exact.blocks) == (6, 2)
    # Rounding: 11/18 · 180 is 110.00000000000001 in floating point but means 110 channels.
    assert propose_compact_config({"a": 11 / 18}, {}, base_channels=180, channel_multiple=1).channels == 110
    # Never below one multiple, never above the base width.
    assert propose_compact_config({"a": 0.0}, {}, base_channels=64).channels == 4
    assert propose_compact_config({"a": 1.0}, {}, base_channels=30).channels == 30
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        propose_compact_config({"a": 1.5}, {}, base_channels=16)
    with pytest.raises(ValueError, match="empty"):
        propose_compact_config({}, {}, base_channels=16)
    assert math.isclose(propose_compact_config({"a": 0.5}, {}, base_channels=64).channels, 32)
