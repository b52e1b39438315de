"""``memsr-bench compress prune|distill``: the two training stages of Jiang et al. (2024) on the command line.

    memsr-bench compress prune edsr-baseline --scale 2 --weights EDSR_Mx2.pt --train-dir ../shared/train/T91 \\
        --out runs/prune --lambda 1e-4 --eps 1e-4 --np 5 --epochs 10 --steps-per-epoch 100
    memsr-bench compress distill edsr-baseline edsr-mini --scale 2 --teacher-weights EDSR_Mx2.pt \\
        --train-dir ../shared/train/T91 --val-dir ../shared/datasets/Set5 --out runs/kd --ema 0.999

Models are loaded like the teachers of ``memsr-bench train`` (any model reference, or a memsr-bench model
file such as a previous run's checkpoint.pt). Values are checked at parse time where argparse can; bad
input is one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from memsr_bench.cli import options
from memsr_bench.cli.options import non_negative_float, non_negative_int, positive_float, positive_int

__all__ = ["add_parsers"]

_MODEL_HELP = (
    "a model reference (a zoo name such as edsr-baseline, see `memsr-bench zoo`; FILE.py:factory; "
    "package.module:factory; an installed entry point) or a memsr-bench model file (.pt, e.g. a checkpoint.pt "
    "of `memsr-bench train` or of a previous compress run)"
)


def _decay(text: str) -> float:
    value = options.finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1 (e.g. 0.999), not {text}")
    return value


def _fraction(text: str) -> float:
    value = options.finite_float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), not {text}")
    return value


def _device(text: str) -> str:
    return text if text == "auto" else options.device(text)


def _common(args: argparse.Namespace, scale: int) -> dict[str, Any]:
    return {
        "train_dir": str(args.train_dir),
        "scale": int(scale),
        "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "lr": args.lr,
        "schedule": args.schedule,
        "log_every": args.log_every,
        "val_dir": str(args.val_dir) if args.val_dir else None,
        "val_every": args.val_every,
        "seed": args.seed,
        "device": args.device,
    }


def _load(ref: str, scale: int | None, weights: str | None, config: list[str] | None, seed: int, what: str):
    from memsr_bench.cli.convert import _is_model_file, load_teacher
    from memsr_bench.errors import MemsrInputError

    if _is_model_file(ref) and config:
        raise MemsrInputError(f"--{what}config", "a model file carries its architecture: drop it")
    return load_teacher(ref, scale, weights, config, seed)


def _short_row(row: dict[str, Any]) -> dict[str, Any]:
    """A history row without its per-layer / per-block maps (the summary stays short)."""
    return {k: v for k, v in row.items() if not isinstance(v, dict)}


def _cmd_prune(args: argparse.Namespace) -> int:
    from memsr_bench.compress.train import PruneConfig, prune

    model = _load(args.model, args.scale, args.weights, args.config, args.seed, "")
    lr = args.lr if args.lr is not None else 5e-3
    config = PruneConfig(
        **{**_common(args, model.scale), "lr": lr},
        loss=args.loss,
        charbonnier_eps=args.charbonnier_eps,
        lambda_=args.lambda_,
        eps=args.eps,
        n_p=args.np,
        epoch_size=args.epoch_size,
        block_threshold=args.block_threshold,
        channel_multiple=args.channel_multiple,
    )
    result = prune(model, config, args.out, resume=args.resume, progress=not args.no_progress, name=args.model)
    last = result.history[-1] if result.history else {}
    config_text = " ".join(f"{k}={v}" for k, v in result.proposed_config.items())
    if args.json:
        options.print_json(
            {
                "model": args.model,
                "checkpoint": str(result.checkpoint),
                "steps_run": result.steps_run,
                "seconds": result.seconds,
                "final": _short_row(last),
                "proposed_config": result.proposed_config,
                "kept_blocks": list(result.proposal.kept_blocks),
                "max_channel_fraction": result.proposal.max_channel_fraction,
                "block_density": result.block_density,
                "layer_density": result.layer_density,
                "channel_density": result.channel_density,
                "files": {k: str(v) for k, v in result.files.items()},
            }
        )
        return 0
    psnr = f", validation PSNR {last['val_psnr']:.3f} dB" if "val_psnr" in last else ""
    density = f"{last['density']:.1%}" if "density" in last else "-"
    print(f"pruned {result.steps_run} steps in {result.seconds:.0f} s{psnr}; weight density {density}")
    print(f"proposed compact configuration: --config {config_text} (rule and tables in {result.files['density_md']})")
    print(f"checkpoint {result.checkpoint}; densities {result.files['density_csv']}, {result.files['density_png']}")
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    from memsr_bench.cli.convert import _is_model_file
    from memsr_bench.compress.train import DistillConfig, distill
    from memsr_bench.errors import MemsrInputError

    if args.teacher_weights is None and not _is_model_file(args.teacher) and not args.random_teacher:
        raise MemsrInputError(
            args.teacher,
            "the teacher has no weights: give --teacher-weights (a random teacher teaches nothing; "
            "--random-teacher for a smoke test)",
        )
    teacher = _load(args.teacher, args.scale, args.teacher_weights, args.teacher_config, args.seed, "teacher-")
    student = _load(args.student, teacher.scale, args.student_weights, args.student_config, args.seed, "student-")
    lr = args.lr if args.lr is not None else 2e-4
    config = DistillConfig(
        **{**_common(args, teacher.scale), "lr": lr},
        l1_weight=args.l1_weight,
        lap_weight=args.lap_weight,
        teacher_loss=args.teacher_loss,
        teacher_targets=args.teacher_targets,
        lap_level_weights=tuple(args.lap_level_weights) if args.lap_level_weights else None,
    )
    result = distill(
        teacher,
        student,
        config,
        args.out,
        resume=args.resume,
        ema=args.ema,
        progress=not args.no_progress,
        name=f"{args.student}-kd",
    )
    last = result.history[-1] if result.history else {}
    if args.json:
        options.print_json(
            {
                "teacher": args.teacher,
                "student": args.student,
                "ema": result.ema,
                "checkpoint": str(result.checkpoint),
                "steps_run": result.steps_run,
                "seconds": result.seconds,
                "final": last,
            }
        )
        return 0
    psnr = ""
    if "val_psnr" in last:
        psnr = f", validation PSNR {last['val_psnr']:.3f} dB (Y, crop = scale) on {args.val_dir}"
    which = f"EMA {result.ema:g} of the student" if result.ema is not None else "the student"
    print(
        f"distilled {result.steps_run} steps in {result.seconds:.0f} s{psnr}; checkpoint {result.checkpoint} ({which})"
    )
    return 0


def _add_run_args(p: argparse.ArgumentParser, lr_help: str, patch_default: int) -> None:
    p.add_argument("--scale", type=positive_int, default=None, help="upscaling factor (default: the model's first)")
    p.add_argument(
        "--train-dir", required=True, metavar="DIR", help="folder of HR training images, e.g. ../shared/train/T91"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run folder: checkpoint.pt, history.json, ...")
    p.add_argument("--val-dir", default=None, metavar="DIR", help="test set validated after each epoch (e.g. Set5)")
    p.add_argument("--val-every", type=positive_int, default=1, help="validate every N epochs (1)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs (10)")
    p.add_argument("--steps-per-epoch", type=positive_int, default=100, help="optimizer steps per epoch (100)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="patches per step (16, as released)")
    p.add_argument(
        "--patch-size",
        type=positive_int,
        default=patch_default,
        help=f"LR patch side; HR patches are scale times larger ({patch_default}: HR 96 at x2, as released)",
    )
    p.add_argument("--lr", type=positive_float, default=None, help=lr_help)
    p.add_argument(
        "--schedule",
        choices=("constant", "cosine", "onecycle", "step"),
        default="constant",
        help="learning-rate schedule (constant; step halves it at 50 %% and 75 %%)",
    )
    p.add_argument("--log-every", type=positive_int, default=10, help="steps between history rows (10)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights, patches and training (0)")
    p.add_argument("--device", type=_device, default="cpu", help="cpu (default), cuda, or auto (CUDA when available)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def _add_prune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prune",
        help="sparse training with OBProxSG; proposes a compact student size from the densities",
        description="Train MODEL (normally pretrained: --weights) with OBProxSG on an L1-regularised data term: "
        "--np optimiser epochs of proximal-SGD steps, then orthant steps that set any weight crossing zero to "
        "exactly zero. The history records per-layer and per-block weight density; at the end density.csv, "
        "density.md (with the proposed configuration and its rule) and density.png are written. Example: "
        "memsr-bench compress prune edsr-baseline --scale 2 --weights W.pt --train-dir ../shared/train/T91 "
        "--out runs/prune",
    )
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--weights", default=None, help="weights of MODEL (default: random, seeded by --seed)")
    p.add_argument(
        "--config", nargs="+", default=None, metavar="KEY=VALUE", help="factory arguments, e.g. n_resblocks=4"
    )
    p.add_argument(
        "--loss", choices=("l1", "charbonnier"), default="charbonnier", help="data term (charbonnier, as released)"
    )
    p.add_argument(
        "--charbonnier-eps",
        type=positive_float,
        default=1e-12,
        help="eps of mean sqrt((x - y)^2 + eps) on 0..1 images (1e-12: BasicSR's CharbonnierLoss default)",
    )
    p.add_argument(
        "--lambda",
        dest="lambda_",
        metavar="LAMBDA",
        type=non_negative_float,
        default=1e-4,
        help="L1 weight lambda (1e-4, released)",
    )
    p.add_argument(
        "--eps",
        type=non_negative_float,
        default=1e-4,
        help="orthant projection tolerance: a weight within eps of zero after an orthant step becomes 0 (1e-4)",
    )
    p.add_argument(
        "--np",
        type=non_negative_int,
        default=5,
        help="optimiser epochs of proximal-SGD steps before orthant steps (5)",
    )
    p.add_argument(
        "--epoch-size",
        type=positive_int,
        default=None,
        help="steps per optimiser epoch for --np (default: --steps-per-epoch)",
    )
    p.add_argument(
        "--block-threshold",
        type=_fraction,
        default=0.05,
        help="a block is kept in the proposal when its weight density exceeds this (0.05)",
    )
    p.add_argument("--channel-multiple", type=positive_int, default=4, help="round the proposed width up to this (4)")
    _add_run_args(p, "OBProxSG learning rate (5e-3, released)", 48)
    p.set_defaults(run=_cmd_prune)


def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill",
        help="train a compact student from a teacher's outputs (MultiLap + 0.1 L1 to HR)",
        description="Output distillation of Jiang et al.: loss = MultiLap(student(LR), teacher(LR)) + "
        "--l1-weight * L1(student(LR), HR) on 0..1 images, teacher frozen, Adam on the student, optional EMA of "
        "the student (--ema; then the EMA weights are validated and saved). The HR patch (--patch-size x scale) "
        "must be a multiple of 16, at least 32. Example: memsr-bench compress distill edsr-baseline edsr-mini "
        "--scale 2 --teacher-weights W.pt --train-dir ../shared/train/T91 --out runs/kd --ema 0.999",
    )
    p.add_argument("teacher", metavar="TEACHER", help=_MODEL_HELP)
    p.add_argument("student", metavar="STUDENT", help=_MODEL_HELP + "; a reference starts from random weights")
    p.add_argument("--teacher-weights", default=None, help="weights of TEACHER (a checkpoint or weights folder)")
    p.add_argument(
        "--random-teacher", action="store_true", help="allow a teacher without weights (random, seeded): smoke tests"
    )
    p.add_argument(
        "--teacher-config", nargs="+", default=None, metavar="KEY=VALUE", help="factory arguments of TEACHER"
    )
    p.add_argument("--student-weights", default=None, help="initial weights of STUDENT (default: random, seeded)")
    p.add_argument(
        "--student-config",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="factory arguments of STUDENT, e.g. the proposal of `compress prune`: n_resblocks=8 n_feats=16",
    )
    p.add_argument(
        "--ema", type=_decay, default=None, metavar="DECAY", help="keep an EMA of the student (0.999 as released)"
    )
    p.add_argument("--l1-weight", type=non_negative_float, default=0.1, help="weight of L1 to HR (0.1)")
    p.add_argument("--lap-weight", type=non_negative_float, default=1.0, help="weight of MultiLap to teacher (1)")
    p.add_argument(
        "--teacher-loss",
        choices=("multilap", "l1"),
        default="multilap",
        help="term matching the teacher: multilap (released) or l1 (plain output distillation)",
    )
    p.add_argument(
        "--lap-level-weights",
        type=non_negative_float,
        nargs=5,
        default=None,
        metavar="W",
        help="MultiLap pyramid level weights, finest first (released: 1 2 4 8 16); for ablations",
    )
    p.add_argument(
        "--teacher-targets",
        choices=("online", "cached"),
        default="online",
        help="online: the teacher runs on every patch (released); cached: once on each whole training image "
        "before training, its output cut like the HR patches (no teacher pass per step; small training sets)",
    )
    _add_run_args(p, "Adam learning rate (2e-4)", 48)
    p.set_defaults(run=_cmd_distill)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``compress`` (``prune``, ``distill``)."""
    comp = subparsers.add_parser(
        "compress",
        help="Jiang et al. compression: OBProxSG sparse training to size a student, then output distillation",
        description="The training stages of 'Compressing Deep Image Super-resolution Models' (Jiang et al., 2024): "
        "`compress prune` trains with OBProxSG and proposes a compact configuration from the weight densities; "
        "`compress distill` trains that student against the teacher's outputs (MultiLap + L1 to HR).",
    )
    csub = comp.add_subparsers(dest="compress_command", required=True, metavar="WHAT")
    _add_prune(csub)
    _add_distill(csub)
