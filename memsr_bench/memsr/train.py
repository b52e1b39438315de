"""A small, deterministic trainer for SR teachers and plain students (with MemSR's distillation).

One training step: a batch of random aligned LR/HR patches from a folder of HR images (LR made with
the MATLAB-exact bicubic ``imresize``; random flips and 90-degree rotations), the L1 loss on 0..255
outputs, plus, for distillation, ``lambda(epoch) * BridgeDistillLoss`` against the plain teacher's
features (:mod:`memsr_bench.memsr.distill`); Adam; the learning rate is a pure function of the step
(``constant``, ``cosine``, ``onecycle`` as MemSR's OneCycleLR defaults, or ``step``: halved at 50 % and
75 %), so resuming needs no scheduler state.

Training is organised in ``epochs`` of ``steps_per_epoch`` steps. After every epoch the model is
validated (PSNR/SSIM on the Y channel, crop = scale, with ``memsr_bench.evaluate``) when a validation
folder is given, the history is written to ``history.json`` and a checkpoint (model, bridges, Adam,
every RNG state, history) replaces ``checkpoint.pt``; ``resume=True`` continues from it and gives the
same weights as an uninterrupted run. Seeds are fixed; CPU by default, CUDA with ``device="auto"`` when
available (cuDNN in deterministic mode).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from memsr_bench.errors import MemsrInputError
from memsr_bench.memsr.data import PatchSampler
from memsr_bench.memsr.distill import BridgeDistillLoss, kd_weight
from memsr_bench.memsr.modelio import TRAIN_FORMAT, save_model_file
from memsr_bench.memsr.student_init import forward_features
from memsr_bench.torch_files import load_weights_only
from zoo.plain import PlainSR

__all__ = [
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "evaluate_model",
    "lr_at",
    "resolve_device",
    "train",
]

SCHEDULES = ("constant", "cosine", "onecycle", "step")
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
# config fields that may change when resuming (they do not affect the weights)
_RESUMABLE = {"val_dir", "val_every", "device"}


def _cos_anneal(a: float, b: float, pct: float) -> float:
    return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1)


def lr_at(step: int, total: int, base_lr: float, schedule: str) -> float:
    """Learning rate of step ``step`` (0-based) of ``total``."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * t))
    if schedule == "step":
        return base_lr * (0.5 if t >= 0.5 else 1.0) * (0.5 if t >= 0.75 else 1.0)
    if schedule == "onecycle":  # exactly torch's OneCycleLR(total_steps=total): pct_start 0.3, div 25, final 1e4
        start, end = base_lr / 25.0, base_lr / 25.0 / 1e4
        up = 0.3 * total - 1.0
        s = min(max(step, 0), total - 1)
        if s <= up:
            return _cos_anneal(start, base_lr, s / up if up > 0 else 1.0)
        return _cos_anneal(base_lr, end, (s - up) / max(total - 1 - up, 1e-12))
    raise MemsrInputError("--schedule", f"must be one of {SCHEDULES}, not {schedule!r}")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise MemsrInputError("--device", str(err)) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MemsrInputError("--device", "CUDA is not available on this machine")
    return dev


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint; checked on resume)."""

    train_dir: str
    scale: int = 2
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 16
    patch_size: int = 32  # LR patch side; HR patches are scale times larger
    lr: float = 2e-4
    schedule: str = "onecycle"
    distill_coe: float = 0.0  # MemSR: 0.3 (0 = L1 only)
    distill_alpha: float = 1e-5
    val_dir: str | None = None
    val_every: int = 1  # epochs
    seed: int = 0
    device: str = "cpu"

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def check(self) -> None:
        positive = ("scale", "epochs", "steps_per_epoch", "batch_size", "patch_size", "val_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise MemsrInputError(
                    f"--{name.replace('_', '-')}", f"must be a positive integer, not {getattr(self, name)}"
                )
        if not self.lr > 0:
            raise MemsrInputError("--lr", f"must be positive, not {self.lr}")
        if self.schedule not in SCHEDULES:
            raise MemsrInputError("--schedule", f"must be one of {SCHEDULES}, not {self.schedule!r}")
        if self.distill_coe < 0 or not (0 < self.distill_alpha <= 1):
            raise MemsrInputError("--distill-coe", "needs coe >= 0 and 0 < alpha <= 1")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_model(
    model: nn.Module,
    data_dir: str | Path,
    scale: int,
    device: torch.device | str = "cpu",
    name: str = "model",
) -> tuple[float, float]:
    """Mean (PSNR, SSIM) on the test set at ``data_dir`` (Y channel, crop = scale, memsr_bench.evaluate)."""
    from memsr_bench.data.datasets import discover_test_set
    from memsr_bench.evaluate import evaluate
    from zoo.registry import get_spec
    from zoo.upscaler import ModelUpscaler

    was_training = model.training
    spec = getattr(model, "zoo_spec", None) or get_spec("plain")  # memsr-bench models: RGB in 0..255
    try:
        upscaler = ModelUpscaler(model, spec, scale, device)
        upscaler.name = name
        result = evaluate(upscaler, discover_test_set(data_dir, scale), progress=False)
    finally:
        model.train(was_training)
    return result.psnr, result.ssim


@dataclass
class TrainResult:
    model: nn.Module
    bridges: nn.ModuleList | None
    history: list[dict[str, Any]]
    checkpoint: Path
    seconds: float  # wall time of this call's training (not counting a resumed part)
    steps_run: int  # steps run by this call


def rng_state(sampler: PatchSampler, device: torch.device) -> dict[str, Any]:
    """The random state a resumed run needs: torch (and CUDA) generators and the patch sampler."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "sampler": sampler.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], sampler: PatchSampler, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    sampler.set_state(state["sampler"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def check_resume(saved: dict[str, Any], config: Any, path: Path) -> None:
    """A run resumes only with the settings it started with (validation and device may change)."""
    now = config.as_dict()
    diff = [k for k in now if k not in _RESUMABLE and saved.get(k) != now[k]]
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise MemsrInputError(path, f"cannot resume: the run was started with other settings ({detail})")


def train(
    model: nn.Module,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    teacher: PlainSR | None = None,
    bridges: nn.ModuleList | None = None,
    resume: bool = False,
    progress: bool | None = None,
    name: str = "model",
    report: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place (L1, plus distillation when ``config.distill_coe > 0``).

    Distillation needs ``teacher`` (the plain model of stage 1, frozen) and ``bridges`` (one per body
    layer plus one for the output); the student must be a :class:`~zoo.plain.PlainSR` with as many
    layers as the teacher. ``out_dir`` receives ``checkpoint.pt`` (a memsr-bench model file with the
    training state) and ``history.json``. An existing checkpoint is an error unless ``resume``.
    """
    config.check()
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT
    distill = config.distill_coe > 0
    if distill:
        if teacher is None or bridges is None:
            raise MemsrInputError("--distill", "distillation needs the plain teacher and the bridges")
        if not isinstance(model, PlainSR) or len(model.convs) != len(teacher.convs):
            raise MemsrInputError("--distill", "the student must be a PlainSR with as many layers as the plain teacher")
        if len(bridges) != len(teacher.convs) + 1:
            raise MemsrInputError("--distill", f"need {len(teacher.convs) + 1} bridges, got {len(bridges)}")
    if ckpt_path.exists() and not resume:
        raise MemsrInputError(ckpt_path, "a checkpoint exists: pass --resume to continue it, or choose another --out")

    if config.val_dir:  # checked now, not after the first epoch has trained
        from memsr_bench.data.datasets import discover_test_set

        discover_test_set(config.val_dir, config.scale)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    sampler = PatchSampler(config.train_dir, config.scale, config.patch_size, seed=config.seed)
    torch.manual_seed(config.seed)
    model.to(device).train()
    criterion = BridgeDistillLoss(bridges).to(device) if distill else None
    params = list(model.parameters()) + (list(criterion.parameters()) if criterion is not None else [])
    if teacher is not None and distill:
        teacher = teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    optimizer = torch.optim.Adam(params, lr=config.lr)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume and ckpt_path.exists():
        state = load_weights_only(ckpt_path, "training state")
        if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
            raise MemsrInputError(ckpt_path, "not a memsr-bench training checkpoint")
        check_resume(state["config"], config, ckpt_path)
        model.load_state_dict(state["model"])
        if criterion is not None:
            criterion.bridges.load_state_dict(state["bridges"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"], sampler, device)
        history = list(state["history"])
        start_epoch = int(state["epoch"])

    total = config.total_steps
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=total,
        initial=start_epoch * config.steps_per_epoch,
        desc=name,
        unit="step",
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    t_start = time.perf_counter()
    steps_run = 0
    try:
        for epoch in range(start_epoch, config.epochs):
            lam = kd_weight(epoch, config.epochs, config.distill_coe, config.distill_alpha) if distill else 0.0
            sums = {"loss": 0.0, "l1": 0.0, "kd": 0.0}
            t_epoch = time.perf_counter()
            for it in range(config.steps_per_epoch):
                step = epoch * config.steps_per_epoch + it
                lr_now = lr_at(step, total, config.lr, config.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = lr_now
                lr_batch, hr_batch = (t.to(device) for t in sampler.sample(config.batch_size))
                if distill:
                    feats, sr = forward_features(model, lr_batch)
                    with torch.no_grad():
                        t_feats, t_sr = forward_features(teacher, lr_batch)
                    l1 = F.l1_loss(sr, hr_batch)
                    kd = criterion([*feats, sr], [*t_feats, t_sr])
                    loss = l1 + lam * kd
                else:
                    sr = model(lr_batch)
                    l1 = F.l1_loss(sr, hr_batch)
                    kd = torch.zeros((), device=device)
                    loss = l1
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if not torch.isfinite(loss.detach()):
                    raise FloatingPointError(f"{name}: the loss became {float(loss.detach())} at step {step}")
                sums["loss"] += float(loss.detach())
                sums["l1"] += float(l1.detach())
                sums["kd"] += float(kd.detach())
                steps_run += 1
                bar.update(1)
                if it % 10 == 0:
                    bar.set_postfix(
                        l1=f"{float(l1.detach()):.3f}",
                        lr=f"{lr_now:.2e}",
                        **({"kd": f"{float(kd.detach()):.3g}"} if distill else {}),
                    )
            n = config.steps_per_epoch
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": (epoch + 1) * n,
                "loss": sums["loss"] / n,
                "l1": sums["l1"] / n,
                "kd": sums["kd"] / n,
                "lambda": lam,
                "lr": lr_now,
                "epoch_seconds": time.perf_counter() - t_epoch,
            }
            if config.val_dir and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
                t_val = time.perf_counter()
                psnr, ssim = evaluate_model(model, config.val_dir, config.scale, device, name)
                row.update(val_psnr=psnr, val_ssim=ssim, val_seconds=time.perf_counter() - t_val)
                bar.set_postfix(l1=f"{row['l1']:.3f}", val_psnr=f"{psnr:.2f}")
            history.append(row)
            _save(ckpt_path, model, criterion, optimizer, sampler, device, config, history, epoch + 1, report)
            (out / HISTORY).write_text(
                json.dumps({"name": name, "config": config.as_dict(), "history": history}, indent=1)
            )
    finally:
        bar.close()
    model.eval()
    return TrainResult(
        model=model,
        bridges=criterion.bridges if criterion is not None else bridges,
        history=history,
        checkpoint=ckpt_path,
        seconds=time.perf_counter() - t_start,
        steps_run=steps_run,
    )


def to_cpu(obj: Any) -> Any:
    """Tensors in nested dicts, lists and tuples moved to the CPU (checkpoints load anywhere)."""
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def _save(
    path: Path,
    model: nn.Module,
    criterion: BridgeDistillLoss | None,
    optimizer: torch.optim.Optimizer,
    sampler: PatchSampler,
    device: torch.device,
    config: TrainConfig,
    history: list[dict[str, Any]],
    epoch: int,
    report: dict[str, Any] | None,
) -> None:
    save_model_file(
        path,
        model,
        bridges=criterion.bridges if criterion is not None else None,
        report=report,
        fmt=TRAIN_FORMAT,
        extra={
            "optimizer": to_cpu(optimizer.state_dict()),
            "rng": to_cpu(rng_state(sampler, device)),
            "config": config.as_dict(),
            "history": history,
            "epoch": epoch,
        },
    )
