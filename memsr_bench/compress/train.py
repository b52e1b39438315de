"""The two training stages of "Compressing Deep Image SR Models" (Jiang et al., 2024): sparse pruning and
output distillation, on the patches and validation of :mod:`memsr_bench.memsr`.

- :func:`prune` trains a (pretrained) network with :class:`~memsr_bench.compress.obproxsg.OBProxSG` on a
  data term (``l1`` or ``charbonnier``) against HR patches. Every ``log_every`` steps the history records
  the per-layer and per-block weight density; at the end :func:`propose_compact_config` turns the final
  densities into a student size, written with the densities to ``density.csv`` / ``density.md`` /
  ``density.png``.
- :func:`distill` trains a compact student with ``MultiLap(student, teacher) + l1_weight · L1(student, HR)``
  (teacher frozen), Adam, and optionally an exponential moving average (EMA) of the student, whose
  weights are then what is validated and saved.

Losses are computed on images in 0..1 (model outputs divided by their input range), as BasicSR does:
the released learning rates and the L1 weight λ of OBProxSG are tuned against losses of that size, and
λ's balance with the data term would shift 255-fold on 0..255 images.

Both trainers work like :func:`memsr_bench.memsr.train.train`: ``epochs`` of ``steps_per_epoch`` steps of
random LR/HR patches (:class:`~memsr_bench.memsr.data.PatchSampler`), seeded; after every epoch an optional
validation (:func:`~memsr_bench.memsr.train.evaluate_model`), ``history.json`` and a checkpoint written
atomically (model, optimiser, RNG states, history); ``resume=True`` continues it and gives the same
weights as an uninterrupted run. The checkpoint of an EDSR or PlainSR is a memsr-bench model file
(``memsr_bench.memsr.modelio.load_model_file`` reads it); for other models it holds the state dict only.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from memsr_bench.compress.density import (
    CompactConfig,
    block_density,
    channel_density,
    default_block_name,
    layer_density,
    propose_compact_config,
    repeated_blocks,
)
from memsr_bench.compress.obproxsg import OBProxSG
from memsr_bench.errors import MemsrInputError
from memsr_bench.losses import MIN_SIZE, SIZE_MULTIPLE, MultiLapLoss
from memsr_bench.measure.guard import available_memory_bytes, ensure_fits
from memsr_bench.memsr.data import PatchSampler
from memsr_bench.memsr.modelio import TRAIN_FORMAT, arch_of
from memsr_bench.memsr.train import (
    SCHEDULES,
    check_resume,
    evaluate_model,
    lr_at,
    resolve_device,
    rng_state,
    set_rng_state,
    to_cpu,
)
from memsr_bench.torch_files import load_weights_only
from memsr_bench.units import format_bytes

__all__ = [
    "DATA_LOSSES",
    "DistillConfig",
    "DistillResult",
    "PruneConfig",
    "PruneResult",
    "distill",
    "min_distill_patch",
    "prune",
]

DATA_LOSSES = ("l1", "charbonnier")
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
# A checkpoint of a model that modelio cannot describe (no "arch"): only these trainers read it back.
COMPRESS_FORMAT = "memsr-bench/compress-train-v1"
# Config fields that may change when resuming (they do not affect the weights).


# ------------------------------------------------------------------------------------ configs


@dataclass
class _RunConfig:
    train_dir: str
    scale: int = 2
    epochs: int = 10
    steps_per_epoch: int = 100
    batch_size: int = 16
    patch_size: int = 48  # LR patch side (the released runs: HR 96 at x2)
    lr: float = 2e-4
    schedule: str = "constant"
    log_every: int = 10  # steps between history rows (every epoch end is logged too)
    val_dir: str | None = None
    val_every: int = 1  # epochs
    seed: int = 0
    device: str = "cpu"

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    def check(self) -> None:
        for name in ("scale", "epochs", "steps_per_epoch", "batch_size", "patch_size", "log_every", "val_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MemsrInputError(f"--{name.replace('_', '-')}", f"must be a positive integer, not {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise MemsrInputError("--lr", f"must be positive, not {self.lr}")
        if self.schedule not in SCHEDULES:
            raise MemsrInputError("--schedule", f"must be one of {SCHEDULES}, not {self.schedule!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PruneConfig(_RunConfig):
    """A pruning run: OBProxSG on ``loss`` (saved in the checkpoint; checked on resume).

    Released EDSR settings (``prune_EDSR_Mx2.yml``): lr 5e-3, λ 1e-4, ε 1e-4, Charbonnier, batch 16,
    HR 96. ``n_p`` counts optimiser epochs of ``epoch_size`` steps (default: ``steps_per_epoch``, so
    ``n_p`` trainer epochs of prox-SG, then orthant steps that zero any weight crossing zero).
    """

    lr: float = 5e-3
    loss: str = "charbonnier"
    # BasicSR's CharbonnierLoss: mean sqrt((x - y)^2 + eps), default eps 1e-12 (released prune config).
    charbonnier_eps: float = 1e-12
    lambda_: float = 1e-4
    eps: float = 1e-4
    n_p: int = 5
    epoch_size: int | None = None
    block_threshold: float = 0.05
    channel_multiple: int = 4

    @property
    def optimizer_epoch_size(self) -> int:
        return self.epoch_size if self.epoch_size is not None else self.steps_per_epoch

    def check(self) -> None:
        super().check()
        if self.loss not in DATA_LOSSES:
            raise MemsrInputError("--loss", f"must be one of {DATA_LOSSES}, not {self.loss!r}")
        if not self.charbonnier_eps > 0:
            raise MemsrInputError("--charbonnier-eps", f"must be positive, not {self.charbonnier_eps}")
        if not (self.lambda_ >= 0 and math.isfinite(self.lambda_)):
            raise MemsrInputError("--lambda", f"must be 0 or more, not {self.lambda_}")
        if not (self.eps >= 0 and math.isfinite(self.eps)):
            raise MemsrInputError("--eps", f"must be 0 or more, not {self.eps}")
        if not isinstance(self.n_p, int) or self.n_p < 0:
            raise MemsrInputError("--np", f"must be an integer >= 0, not {self.n_p!r}")
        if self.epoch_size is not None and (not isinstance(self.epoch_size, int) or self.epoch_size < 1):
            raise MemsrInputError("--epoch-size", f"must be a positive integer, not {self.epoch_size!r}")
        if not 0 <= self.block_threshold < 1:
            raise MemsrInputError("--block-threshold", f"must lie in [0, 1), not {self.block_threshold}")
        if not isinstance(self.channel_multiple, int) or self.channel_multiple < 1:
            raise MemsrInputError("--channel-multiple", f"must be a positive integer, not {self.channel_multiple!r}")


TEACHER_LOSSES = ("multilap", "l1")
# "online": the teacher runs on every training patch, as released; "cached": it runs once on every whole
# training LR image before training and its outputs are cut like the HR patches (no teacher cost per step).
TEACHER_TARGETS = ("online", "cached")


@dataclass
class DistillConfig(_RunConfig):
    """A distillation run: Adam on ``lap_weight · MultiLap(student, teacher) + l1_weight · L1(student, HR)``
    (released ``distill_EDSR_Minix2_KD.yml``: MultiLap weight 1, L1 weight 0.1, EMA 0.999, HR 96)."""

    lr: float = 2e-4
    l1_weight: float = 0.1
    lap_weight: float = 1.0
    teacher_loss: str = "multilap"  # or "l1": plain L1 to the teacher's output (the ablation's baseline)
    teacher_targets: str = "online"  # or "cached" (see TEACHER_TARGETS)
    lap_level_weights: tuple[float, ...] | None = None  # MultiLap's pyramid weights; None: released 2**i

    def check(self) -> None:
        super().check()
        if self.teacher_loss not in TEACHER_LOSSES:
            raise MemsrInputError("--teacher-loss", f"must be one of {TEACHER_LOSSES}, not {self.teacher_loss!r}")
        if self.lap_level_weights is not None:
            try:
                MultiLapLoss(level_weights=self.lap_level_weights)
            except ValueError as err:
                raise MemsrInputError("--lap-level-weights", str(err)) from None
        if self.teacher_targets not in TEACHER_TARGETS:
            raise MemsrInputError(
                "--teacher-targets", f"must be one of {TEACHER_TARGETS}, not {self.teacher_targets!r}"
            )
        for name in ("l1_weight", "lap_weight"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise MemsrInputError(f"--{name.replace('_', '-')}", f"must be 0 or more, not {value}")
        if self.l1_weight == 0 and self.lap_weight == 0:
            raise MemsrInputError("--l1-weight", "the L1 and MultiLap weights cannot both be 0")
        hr = self.patch_size * self.scale
        suggest = min_distill_patch(self.scale, self.patch_size)
        if hr % SIZE_MULTIPLE or hr < MIN_SIZE:
            raise MemsrInputError(
                "--patch-size",
                f"{self.patch_size} gives {hr}-px HR patches at x{self.scale}; the MultiLap loss needs a multiple of "
                f"{SIZE_MULTIPLE}, at least {MIN_SIZE} (e.g. --patch-size {suggest})",
            )


def min_distill_patch(scale: int, at_least: int = 1) -> int:
    """The smallest LR patch side >= ``at_least`` whose HR patch suits the MultiLap loss at ``scale``."""
    p = max(int(at_least), 1)
    while (p * scale) % SIZE_MULTIPLE or p * scale < MIN_SIZE:
        p += 1
    return p


# ------------------------------------------------------------------------------------ results


@dataclass
class PruneResult:
    model: nn.Module
    history: list[dict[str, Any]]
    checkpoint: Path
    seconds: float  # wall time of this call's training (not counting a resumed part)
    steps_run: int  # steps run by this call
    layer_density: dict[str, float]  # final, fraction of nonzero weights per conv/linear layer
    channel_density: dict[str, float]  # final, fraction of output channels with a nonzero weight
    block_density: dict[str, float]  # final, per block of the structure below
    proposal: CompactConfig
    proposed_config: dict[str, int]  # factory arguments of the compact student (n_resblocks/n_feats for EDSR)
    files: dict[str, Path]  # history, density_csv, density_md, density_png


@dataclass
class DistillResult:
    model: nn.Module  # the student that is validated and saved: the EMA copy when ema is given
    history: list[dict[str, Any]]
    checkpoint: Path
    seconds: float
    steps_run: int
    ema: float | None


# ------------------------------------------------------------------------------------ shared machinery


def _range_of(model: nn.Module, what: str) -> float:
    """The input range of a model (zoo spec; memsr-bench model files are 0..255); RGB models only."""
    spec = getattr(model, "zoo_spec", None)
    if spec is not None and getattr(spec, "channels", "rgb") != "rgb":
        raise MemsrInputError(what, f"{spec.name} reads the Y channel; the trainers feed RGB patches")
    return float(getattr(spec, "input_range", 255.0))


def _forward01(model: nn.Module, lr255: Tensor, input_range: float) -> Tensor:
    """The model's output on 0..255 patches, in 0..1 (see the module docstring for why 0..1)."""
    return model(lr255 * (input_range / 255.0)) / input_range


def _charbonnier(pred: Tensor, target: Tensor, eps: float) -> Tensor:
    return torch.sqrt((pred - target) ** 2 + eps).mean()


class _Run:
    """What both trainers share: device, patches, resume, checkpoints, history rows, progress, validation."""

    def __init__(self, config: _RunConfig, out_dir: str | Path, resume: bool, kind: str):
        config.check()
        self.config = config
        self.kind = kind
        self.out = Path(out_dir)
        self.ckpt_path = self.out / CHECKPOINT
        if self.ckpt_path.exists() and not resume:
            raise MemsrInputError(
                self.ckpt_path, "a checkpoint exists: pass --resume to continue it, or choose another --out"
            )
        if config.val_dir:  # checked now, not after the first epoch has trained
            from memsr_bench.data.datasets import discover_test_set

            discover_test_set(config.val_dir, config.scale)
        self.device = resolve_device(config.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        self.sampler = PatchSampler(config.train_dir, config.scale, config.patch_size, seed=config.seed)
        torch.manual_seed(config.seed)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 0
        self.state: dict[str, Any] | None = None
        if resume and self.ckpt_path.exists():
            self.state = self._load(config)

    def _load(self, config: _RunConfig) -> dict[str, Any]:
        state = load_weights_only(self.ckpt_path, "training state")
        if (
            not isinstance(state, dict)
            or state.get("format") not in (TRAIN_FORMAT, COMPRESS_FORMAT)
            or state.get("kind") != self.kind
        ):
            raise MemsrInputError(self.ckpt_path, f"not a memsr-bench {self.kind} checkpoint")
        check_resume(state["config"], config, self.ckpt_path)
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"])
        return state

    def restore_rng(self) -> None:
        assert self.state is not None
        set_rng_state(self.state["rng"], self.sampler, self.device)

    def rng_state(self) -> dict[str, Any]:
        return rng_state(self.sampler, self.device)

    def progress_bar(self, name: str, progress: bool | None) -> tqdm:
        return tqdm(
            total=self.config.total_steps,
            initial=self.start_epoch * self.config.steps_per_epoch,
            desc=name,
            unit="step",
            disable=None if progress is None else not progress,
            dynamic_ncols=True,
        )

    def set_lr(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        c = self.config
        lr_now = lr_at(step, c.total_steps, c.lr, c.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr_now
        return lr_now

    def batch(self) -> tuple[Tensor, Tensor]:
        lr, hr = self.sampler.sample(self.config.batch_size)
        return lr.to(self.device), hr.to(self.device) / 255.0

    def batch_with_targets(self) -> tuple[Tensor, Tensor, Tensor]:
        """Like :meth:`batch`, with the patches of the targets attached to the sampler (0..1)."""
        lr, hr, target = self.sampler.sample(self.config.batch_size, with_targets=True)
        return lr.to(self.device), hr.to(self.device) / 255.0, target.to(self.device)

    def validate(self, model: nn.Module, epoch: int, name: str, key: str = "val") -> dict[str, float]:
        """``{key}_psnr``, ``{key}_ssim``, ``{key}_seconds`` after the epochs that validate, else ``{}``."""
        c = self.config
        if not c.val_dir or ((epoch + 1) % c.val_every and epoch + 1 != c.epochs):
            return {}
        t_val = time.perf_counter()
        psnr, ssim = evaluate_model(model, c.val_dir, c.scale, self.device, name)
        return {f"{key}_psnr": psnr, f"{key}_ssim": ssim, f"{key}_seconds": time.perf_counter() - t_val}

    def write_history(self, name: str, extra: dict[str, Any] | None = None) -> Path:
        path = self.out / HISTORY
        payload = {"name": name, "kind": self.kind, "config": self.config.as_dict(), **(extra or {})}
        payload["history"] = self.history
        _atomic_write_text(path, json.dumps(payload, indent=1))
        return path


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _save_checkpoint(path: Path, model: nn.Module, extra: dict[str, Any], report: dict[str, Any]) -> Path:
    """Write the training state atomically (a temporary file renamed into place).

    ``model`` holds the result's weights; when modelio can describe the architecture (EDSR, PlainSR)
    the file is a memsr-bench model file that the other tools read as a model.
    """
    try:
        arch: dict[str, Any] | None = arch_of(model)
    except MemsrInputError:
        arch = None
    payload: dict[str, Any] = {
        "format": TRAIN_FORMAT if arch is not None else COMPRESS_FORMAT,
        "arch": arch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "report": report,
        **to_cpu(extra),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _mean_row(sums: dict[str, float], n: int) -> dict[str, float]:
    return {k: v / n for k, v in sums.items()}


def _train_loop(
    run: _Run,
    name: str,
    progress: bool | None,
    optimizer: torch.optim.Optimizer,
    step_fn: Callable[[int], dict[str, Tensor]],
    row_extra: Callable[[], dict[str, Any]],
    on_epoch_end: Callable[[int], tuple[dict[str, Any], dict[str, Any]]],
) -> tuple[int, float]:
    """Run the remaining epochs; ``step_fn(step)`` does one optimiser step and returns its loss terms,
    ``row_extra()`` adds to every history row, ``on_epoch_end(epoch)`` returns (validation fields,
    checkpoint extras) after an epoch. Returns (steps run, seconds)."""
    c = run.config
    bar = run.progress_bar(name, progress)
    t_start = time.perf_counter()
    steps_run = 0
    restore = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if run.device.type == "cuda":
        # cuDNN's deterministic mode is not enough on CUDA: the backward of the MultiLap loss's reflect padding
        # accumulates with atomics unless torch's deterministic algorithms are on (restored afterwards).
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        for epoch in range(run.start_epoch, c.epochs):
            sums: dict[str, float] = {}
            since = 0
            t_epoch = time.perf_counter()
            for it in range(c.steps_per_epoch):
                step = epoch * c.steps_per_epoch + it
                lr_now = run.set_lr(optimizer, step)
                terms = step_fn(step)
                values = {k: float(v.detach()) for k, v in terms.items()}
                if not math.isfinite(values["loss"]):
                    raise FloatingPointError(f"{name}: the loss became {values['loss']} at step {step}")
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                since += 1
                steps_run += 1
                bar.update(1)
                if it % 10 == 0:
                    bar.set_postfix(loss=f"{values['loss']:.4g}", lr=f"{lr_now:.2e}")
                last_of_epoch = it + 1 == c.steps_per_epoch
                if (step + 1) % c.log_every == 0 or last_of_epoch:
                    row: dict[str, Any] = {"step": step + 1, "epoch": epoch + (it + 1) / c.steps_per_epoch}
                    row.update(_mean_row(sums, since), lr=lr_now, **row_extra())
                    if last_of_epoch:
                        val, ckpt_extra = on_epoch_end(epoch)
                        row.update(val, epoch_seconds=time.perf_counter() - t_epoch)
                        if "val_psnr" in val:
                            bar.set_postfix(loss=f"{row['loss']:.4g}", val_psnr=f"{val['val_psnr']:.2f}")
                    run.history.append(row)
                    sums, since = {}, 0
                    if last_of_epoch:
                        _save_checkpoint(
                            run.ckpt_path,
                            ckpt_extra.pop("model"),
                            {
                                "kind": run.kind,
                                "optimizer": optimizer.state_dict(),
                                "rng": run.rng_state(),
                                "config": c.as_dict(),
                                "history": run.history,
                                "epoch": epoch + 1,
                                **ckpt_extra,
                            },
                            {"kind": run.kind, "name": name},
                        )
                        run.write_history(name)
    finally:
        bar.close()
        torch.use_deterministic_algorithms(restore[0], warn_only=restore[1])
    return steps_run, time.perf_counter() - t_start


# ------------------------------------------------------------------------------------ pruning


@dataclass(frozen=True)
class _Structure:
    blocks: tuple[str, ...]  # block prefixes for block_density
    width_layers: tuple[str, ...]  # layers carrying the shared feature width
    base_channels: int
    keys: tuple[str, str]  # factory arguments of (blocks, channels)


def _structure(model: nn.Module) -> _Structure:
    """Blocks and width-carrying layers: EDSR's residual blocks ``body.i`` and its ``body.*`` convs; for
    other models their outermost repeated blocks (:func:`repeated_blocks`) and the layers in them."""
    from zoo.edsr import EDSR

    names = list(layer_density(model))
    if not names:
        raise MemsrInputError("model", "has no conv or linear layer to prune")
    if isinstance(model, EDSR):
        blocks = tuple(f"body.{i}" for i in range(len(model.body) - 1))
        width = tuple(n for n in names if n.startswith("body."))
        return _Structure(blocks, width, int(model.head[0].out_channels), ("n_resblocks", "n_feats"))
    blocks = repeated_blocks(model)
    if blocks:
        width = tuple(n for n in names if any(n.startswith(b + ".") for b in blocks))
    else:  # nothing repeats (e.g. FSRCNN): every top-level group is a block
        blocks = tuple(dict.fromkeys(default_block_name(n) for n in names))
        width = tuple(names)
    modules = dict(model.named_modules())
    # The width blocks pass on is what each block's first layer reads (inner expansions, such as the 2x
    # width of FMEN's re-parameterisable ERB convs, are more numerous but not shared between blocks).
    firsts = [next(n for n in width if n.startswith(b + ".") or n == b) for b in blocks]
    counts = Counter(int(modules[n].weight.shape[1] * getattr(modules[n], "groups", 1)) for n in firsts)
    base = max(counts, key=lambda k: (counts[k], k))  # the most common width (ties: the wider)
    return _Structure(blocks, width, base, ("blocks", "channels"))


def _densities(model: nn.Module, structure: _Structure) -> dict[str, Any]:
    layers = layer_density(model)
    weights = [p.detach() for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "weight"]
    overall = sum(int(torch.count_nonzero(w)) for w in weights) / max(sum(w.numel() for w in weights), 1)
    return {
        "density": overall,
        "layer_density": layers,
        "block_density": block_density(model, structure.blocks) if structure.blocks else {},
    }


def prune(
    model: nn.Module,
    config: PruneConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    name: str = "prune",
) -> PruneResult:
    """Sparse training of ``model`` (in place) with OBProxSG; see the module docstring.

    ``out_dir`` receives ``checkpoint.pt``, ``history.json`` (a row every ``log_every`` steps and at every
    epoch end: loss, lr, OBProxSG phase, overall/per-layer/per-block density, validation), and at the end
    ``density.csv`` (step x layer), ``density.md`` and ``density.png``. An existing checkpoint is an error
    unless ``resume``.
    """
    run = _Run(config, out_dir, resume, "prune")
    structure = _structure(model)
    input_range = _range_of(model, "model")
    device = run.device
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = OBProxSG(
        params,
        lr=config.lr,
        lambda_=config.lambda_,
        epoch_size=config.optimizer_epoch_size,
        n_p=config.n_p,
        eps=config.eps,
    )
    if run.state is not None:
        model.load_state_dict(run.state["model"])
        optimizer.load_state_dict(run.state["optimizer"])
        run.restore_rng()

    def step_fn(step: int) -> dict[str, Tensor]:
        lr_batch, hr01 = run.batch()
        sr = _forward01(model, lr_batch, input_range)
        if config.loss == "l1":
            data = F.l1_loss(sr, hr01)
        else:
            data = _charbonnier(sr, hr01, config.charbonnier_eps)
        phase = 1.0 if optimizer.in_prox_phase else 0.0  # the phase this step uses
        optimizer.zero_grad(set_to_none=True)
        data.backward()
        optimizer.step()
        with torch.no_grad():
            l1_norm = sum(p.abs().sum() for p in params)
        # prox_fraction: averaged over a history row, the share of its steps that were prox-SG (not orthant).
        # "loss" is the objective OBProxSG minimises, before the step (data) plus λ||x||_1 after it.
        return {
            "loss": data + config.lambda_ * l1_norm,
            "data": data,
            "l1_norm": l1_norm,
            "prox_fraction": torch.tensor(phase),
        }

    def row_extra() -> dict[str, Any]:
        return _densities(model, structure)

    def on_epoch_end(epoch: int) -> tuple[dict[str, Any], dict[str, Any]]:
        return run.validate(model, epoch, name), {"model": model}

    steps_run, seconds = _train_loop(run, name, progress, optimizer, step_fn, row_extra, on_epoch_end)
    model.eval()

    final_layers = layer_density(model)
    channels = channel_density(model)
    blocks = block_density(model, structure.blocks) if structure.blocks else {}
    proposal = propose_compact_config(
        {k: channels[k] for k in structure.width_layers},
        blocks,
        structure.base_channels,
        channel_multiple=config.channel_multiple,
        block_threshold=config.block_threshold,
    )
    proposed = {structure.keys[0]: proposal.blocks, structure.keys[1]: proposal.channels}
    files = _write_density_files(run, name, structure, final_layers, channels, blocks, proposal, proposed)
    return PruneResult(
        model=model,
        history=run.history,
        checkpoint=run.ckpt_path,
        seconds=seconds,
        steps_run=steps_run,
        layer_density=final_layers,
        channel_density=channels,
        block_density=blocks,
        proposal=proposal,
        proposed_config=proposed,
        files=files,
    )


def _rule_text(config: PruneConfig, structure: _Structure) -> str:
    return (
        f"channels = ceil(max channel density over the {len(structure.width_layers)} width-carrying layers x "
        f"{structure.base_channels}), rounded up to a multiple of {config.channel_multiple} (at least "
        f"{config.channel_multiple}, at most {structure.base_channels}); a channel is alive when any of its "
        f"weights is nonzero. blocks = the blocks whose weight density exceeds {config.block_threshold:g} (a block "
        "that is almost all zeros passes little more than its skip connection). The paper chose by hand; this "
        "rule (memsr_bench.compress.density.propose_compact_config) is our reproducible stand-in."
    )


def _write_density_files(
    run: _Run,
    name: str,
    structure: _Structure,
    layers: dict[str, float],
    channels: dict[str, float],
    blocks: dict[str, float],
    proposal: CompactConfig,
    proposed: dict[str, int],
) -> dict[str, Path]:
    config = run.config
    assert isinstance(config, PruneConfig)
    out = run.out
    rows = [r for r in run.history if "layer_density" in r]
    csv_path = out / "density.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "density", *layers])
        for r in rows:
            writer.writerow(
                [r["step"], f"{r['density']:.6f}", *(f"{r['layer_density'].get(k, 0.0):.6f}" for k in layers)]
            )

    rule = _rule_text(config, structure)
    config_text = " ".join(f"{k}={v}" for k, v in proposed.items())
    lines = [
        f"# Pruning densities: {name}",
        "",
        f"After {run.history[-1]['step'] if run.history else 0} OBProxSG steps (lambda {config.lambda_:g}, "
        f"eps {config.eps:g}, Np {config.n_p}, epoch size {config.optimizer_epoch_size}, lr {config.lr:g}, "
        f"{config.loss} loss).",
        "",
        "## Proposed compact configuration",
        "",
        f"`--config {config_text}` (from {structure.base_channels} channels and {len(structure.blocks)} blocks; "
        f"widest surviving layer keeps {proposal.max_channel_fraction:.1%} of its channels; kept blocks: "
        f"{', '.join(proposal.kept_blocks) or 'none'}).",
        "",
        f"Rule: {rule}",
        "",
        "## Blocks",
        "",
        "| block | weight density |",
        "|---|---:|",
        *(f"| {b} | {d:.4f} |" for b, d in blocks.items()),
        "",
        "## Layers",
        "",
        "| layer | weight density | channel density |",
        "|---|---:|---:|",
        *(f"| {k} | {layers[k]:.4f} | {channels[k]:.4f} |" for k in layers),
        "",
    ]
    md_path = out / "density.md"
    _atomic_write_text(md_path, "\n".join(lines))
    png_path = _density_figure(out / "density.png", rows, list(blocks), name)
    hist_path = run.write_history(
        name,
        {
            "proposal": {**proposed, "kept_blocks": list(proposal.kept_blocks), "rule": rule},
            "final_layer_density": layers,
            "final_channel_density": channels,
            "final_block_density": blocks,
        },
    )
    return {"history": hist_path, "density_csv": csv_path, "density_md": md_path, "density_png": png_path}


def _density_figure(path: Path, rows: list[dict[str, Any]], blocks: list[str], name: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)  # no pyplot: no global state, no display backend
    ax = fig.add_subplot()
    steps = [r["step"] for r in rows]
    for b in blocks:
        ax.plot(steps, [r["block_density"].get(b, float("nan")) for r in rows], marker=".", label=b)
    ax.plot(steps, [r["density"] for r in rows], color="black", linestyle="--", label="all weights")
    ax.set_xlabel("step")
    ax.set_ylabel("weight density (nonzero fraction)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{name}: density per block during OBProxSG training")
    ax.legend(fontsize="small", ncols=2 if len(blocks) > 8 else 1, loc="lower left")
    fig.savefig(path, metadata={"Software": None})
    return path


# ------------------------------------------------------------------------------------ distillation


def _cache_teacher_targets(teacher: nn.Module, run: _Run, input_range: float) -> list[np.ndarray]:
    """The teacher's output (0..1, float32, HR-sized) on every whole training LR image, in the sampler's order.

    Refused in one line when the cache would take more than half of the memory available now (it is
    meant for small training sets such as T91: about 12 bytes per HR pixel); each image's forward pass
    goes through :func:`ensure_fits` first.
    """
    images = run.sampler.images
    cache_bytes = sum(im.hr.size * 4 for im in images)
    available = available_memory_bytes()
    if cache_bytes > available // 2:
        raise MemsrInputError(
            "--teacher-targets",
            f"cached teacher outputs of {len(images)} training images need {format_bytes(cache_bytes)}, more "
            f"than half of the {format_bytes(available)} available now: use --teacher-targets online",
        )
    targets = []
    with torch.no_grad():
        for im in tqdm(images, desc="teacher outputs", unit="image", disable=None, leave=False):
            lr = torch.from_numpy(np.ascontiguousarray(im.lr.transpose(2, 0, 1))).to(torch.float32)[None]
            ensure_fits(teacher, lr.shape, run.device.type, what=f"the teacher on training image {im.name}")
            out = _forward01(teacher, lr.to(run.device), input_range)[0]
            if out.shape[1:] != im.hr.shape[:2]:
                raise MemsrInputError(
                    "TEACHER", f"output {tuple(out.shape[1:])} for {im.name}, expected {im.hr.shape[:2]} (HR size)"
                )
            targets.append(out.permute(1, 2, 0).contiguous().cpu().numpy())
    return targets


def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.mul_(decay).add_(p.detach(), alpha=1.0 - decay)
        for e, b in zip(ema.buffers(), model.buffers(), strict=True):
            e.copy_(b)


def distill(
    teacher: nn.Module,
    student: nn.Module,
    config: DistillConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    ema: float | None = None,
    progress: bool | None = None,
    name: str = "distill",
) -> DistillResult:
    """Train ``student`` (in place) to match the frozen ``teacher``'s outputs and the HR patches.

    Loss per step: ``lap_weight · MultiLap(S(LR), T(LR)) + l1_weight · L1(S(LR), HR)``, in 0..1
    (``teacher_loss="l1"``: ``L1(S(LR), T(LR))`` in place of MultiLap, logged under the same key). With
    ``teacher_targets="cached"``, ``T(LR)`` is the patch of the teacher's output on the whole training image
    (computed once, flipped like the patch) instead of the teacher's output on the patch: the same patches
    and random draws, no teacher pass per step, and targets without the patch-border effects of the teacher
    (not identical to the released online targets; for networks that are not flip-equivariant or not local
    the two differ slightly more). With ``ema`` (a decay in (0, 1), e.g. 0.999) an exponential moving average
    of the student is kept after every step; it is what is validated (``val_*``), saved as the checkpoint's
    model and returned, and the trained weights are validated too (``val_raw_*``). ``out_dir`` receives
    ``checkpoint.pt`` and ``history.json`` (loss terms every ``log_every`` steps and at each epoch end).
    """
    if ema is not None and not 0.0 < ema < 1.0:
        raise MemsrInputError("--ema", f"the decay must lie in (0, 1), not {ema}")
    run = _Run(config, out_dir, resume, "distill")
    if run.state is not None and run.state.get("ema_decay") != ema:
        raise MemsrInputError(
            run.ckpt_path, f"cannot resume: the run was started with ema {run.state.get('ema_decay')!r}, not {ema!r}"
        )
    t_range, s_range = _range_of(teacher, "teacher"), _range_of(student, "student")
    device = run.device
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student.to(device).train()
    ema_model = copy.deepcopy(student).eval() if ema is not None else None
    if ema_model is not None:
        for p in ema_model.parameters():
            p.requires_grad_(False)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    multilap = MultiLapLoss(level_weights=config.lap_level_weights).to(device)
    if run.state is not None:
        student.load_state_dict(run.state["train_model"] if ema_model is not None else run.state["model"])
        if ema_model is not None:
            ema_model.load_state_dict(run.state["model"])
        optimizer.load_state_dict(run.state["optimizer"])
        run.restore_rng()
    # lap_weight 0 (training from scratch beside distilled runs) reads no teacher output: none is computed,
    # and the patches are the same (the sampler's draws do not depend on the targets).
    uses_teacher = config.lap_weight > 0
    finished = run.start_epoch >= config.epochs  # read back: no step runs, so no target is needed
    cached = uses_teacher and config.teacher_targets == "cached" and not finished
    if cached:
        run.sampler.set_targets(_cache_teacher_targets(teacher, run, t_range))

    def step_fn(step: int) -> dict[str, Tensor]:
        if cached:
            lr_batch, hr01, target = run.batch_with_targets()
        else:
            lr_batch, hr01 = run.batch()
            if uses_teacher:
                with torch.no_grad():
                    target = _forward01(teacher, lr_batch, t_range)
        sr = _forward01(student, lr_batch, s_range)
        if not uses_teacher:
            lap = sr.new_zeros(())
        elif config.teacher_loss == "multilap":
            lap = multilap(sr, target)
        else:
            lap = F.l1_loss(sr, target)
        l1 = F.l1_loss(sr, hr01)
        loss = config.lap_weight * lap + config.l1_weight * l1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema_model is not None:
            _ema_update(ema_model, student, ema)
        return {"loss": loss, "multilap": lap, "l1": l1}

    result_model = ema_model if ema_model is not None else student

    def on_epoch_end(epoch: int) -> tuple[dict[str, Any], dict[str, Any]]:
        val = run.validate(result_model, epoch, name)
        extra: dict[str, Any] = {"model": result_model, "ema_decay": ema}
        if ema_model is not None:
            val.update(run.validate(student, epoch, f"{name} (raw)", key="val_raw"))
            extra["train_model"] = {k: v.detach().cpu() for k, v in student.state_dict().items()}
        return val, extra

    steps_run, seconds = _train_loop(run, name, progress, optimizer, step_fn, dict, on_epoch_end)
    student.eval()
    result_model.eval()
    return DistillResult(
        model=result_model,
        history=run.history,
        checkpoint=run.ckpt_path,
        seconds=seconds,
        steps_run=steps_run,
        ema=ema,
    )
