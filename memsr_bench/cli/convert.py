"""``memsr-bench convert ...`` and ``memsr-bench train ...``: the MemSR tools on the command line.

Wire them in with ``add_convert_parsers(subparsers)`` where ``subparsers`` is the object returned by
``parser.add_subparsers(...)``; every parser sets ``run`` (``args.run(args) -> int``) and bad input
raises :class:`memsr_bench.errors.MemsrInputError`.

    memsr-bench convert plain edsr-baseline --scale 2 --check --json
    memsr-bench convert plain edsr-baseline --config n_resblocks=5 n_feats=24 --check --out plain.pt
    memsr-bench convert plain my_models.py:build_edsr --check
    memsr-bench convert student runs/teacher/checkpoint.pt --theta 0.05 --calib ../shared/train/T91
    memsr-bench train teacher edsr-baseline --config n_resblocks=4 n_feats=32 --scale 2 \\
        --train-dir ../shared/train/T91 --val-dir ../shared/datasets/Set5 --out runs/teacher
    memsr-bench train student runs/teacher/checkpoint.pt --init memsr --theta 0.05 --distill \\
        --train-dir ../shared/train/T91 --val-dir ../shared/datasets/Set5 --out runs/memsr-kd
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memsr_bench.errors import MemsrInputError
from memsr_bench.units import parse_size

if TYPE_CHECKING:
    from torch import nn

__all__ = ["add_convert_parsers", "load_teacher"]

_TEACHER_HELP = (
    "the teacher: a model reference (a zoo name such as edsr-baseline or edsr, see `memsr-bench zoo`; "
    "FILE.py:factory; package.module:factory; an installed entry point) or a model file (.pt) written by "
    "`memsr-bench train` / `convert` (it carries its architecture). The MemSR tools convert EDSR-style models"
)
MEMSR_INPUT_RANGE = 255.0  # the MemSR tools feed RGB in 0..255 (EDSR's convention)
_MODEL_FILE_SUFFIXES = (".pt", ".pth")


# ------------------------------------------------------------------------------------ helpers


def _is_model_file(teacher: str) -> bool:
    """A memsr-bench model file rather than a model reference (``FILE.py:factory`` is a reference)."""
    path = Path(teacher)
    return path.suffix in _MODEL_FILE_SUFFIXES or (path.is_file() and path.suffix != ".py")


def _load_model_file(path: Path, scale: int | None, checkpoint: str | None, config: list[str] | None):
    from memsr_bench.memsr.modelio import load_model_file

    if not path.is_file():
        raise MemsrInputError(path, "teacher model file not found")
    if config:
        raise MemsrInputError("--config", "a model file carries its architecture: drop --config")
    if checkpoint:
        raise MemsrInputError("--checkpoint", "the model file already holds the weights: drop --checkpoint")
    model, _, _ = load_model_file(path)
    if scale is not None and int(scale) != int(model.scale):
        raise MemsrInputError(path, f"the model is x{model.scale}, not x{scale}")
    return model


def load_teacher(
    teacher: str,
    scale: int | None = None,
    checkpoint: str | None = None,
    config: list[str] | None = None,
    seed: int = 0,
) -> nn.Module:
    """The teacher module: a memsr-bench model file, or any model reference resolved by
    :func:`memsr_bench.model.load_model` (``config`` as ``KEY=VALUE`` strings; random weights seeded
    by ``seed`` unless ``checkpoint``)."""
    if _is_model_file(teacher):
        return _load_model_file(Path(teacher), scale, checkpoint, config)
    import torch

    from memsr_bench.model import load_model, parse_config, resolve_model

    cfg = parse_config(config)
    entry = resolve_model(teacher)
    if entry.metadata_from != "register_model":  # unregistered factory: it reads what the tools feed it
        entry = resolve_model(teacher, input_range=MEMSR_INPUT_RANGE)
    torch.manual_seed(seed)  # the random weights (a checkpoint replaces them)
    return load_model(entry, scale, config=cfg, weights=checkpoint).module


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


# ------------------------------------------------------------------------------------ convert


def _plainify(args: argparse.Namespace, teacher: nn.Module, **options: Any):
    """``plainify`` with an unsupported teacher named by the reference the user gave."""
    from memsr_bench.memsr.plainify import UnsupportedLayerError, plainify

    try:
        return plainify(teacher, carry=args.carry, skip_offset=args.skip_offset, **options)
    except UnsupportedLayerError as err:
        if err.where == "<model>":  # the whole model, not one of its layers
            raise MemsrInputError(args.teacher, err.problem) from None
        raise


def _plainify_from_args(args: argparse.Namespace):
    teacher = load_teacher(args.teacher, args.scale, args.checkpoint, args.config, args.seed)
    plain, report = _plainify(args, teacher, fold_input_shift=args.fold_mean_shift)
    return teacher, plain, report


def _print_plain_report(args: argparse.Namespace, report, size: tuple[int, int], ok: bool) -> None:
    print(f"teacher {args.teacher} x{report.scale}: {report.teacher_params:,} params, {report.n_skips} skips")
    print(f"plain model: {len(report.widths)} layers, widths {report.widths_text}, {report.plain_params:,} params")
    print(report.explanation())
    if report.max_abs_diff is not None:
        verdict = "OK" if ok else f"ABOVE the tolerance {args.tolerance:g}"
        print(
            f"check: max |teacher - plain| = {report.max_abs_diff:.3g} on a random {size[0]}x{size[1]} image "
            f"in 0..255 ({verdict})"
        )
    if args.out:
        print(f"wrote {args.out}")


def _cmd_convert_plain(args: argparse.Namespace) -> int:
    from memsr_bench.memsr.modelio import save_model_file
    from memsr_bench.memsr.plainify import max_abs_diff

    size = parse_size(args.check_size, "--check-size")
    teacher, plain, report = _plainify_from_args(args)
    if args.check:
        report.max_abs_diff = max_abs_diff(teacher, plain, size=size, seed=args.seed)
    if args.out:
        save_model_file(args.out, plain, report=report.as_dict())
    ok = report.max_abs_diff is None or report.max_abs_diff <= args.tolerance
    if args.json:
        out = report.as_dict()
        out.update(check_size=list(size) if args.check else None, tolerance=args.tolerance, out=args.out, ok=ok)
        _print_json(out)
    else:
        _print_plain_report(args, report, size, ok)
    return 0 if ok else 1


def _cmd_convert_student(args: argparse.Namespace) -> int:
    from memsr_bench.memsr.data import calibration_batch
    from memsr_bench.memsr.modelio import save_model_file
    from memsr_bench.memsr.student_init import efficiency, init_student, summary_lines

    hr_size = parse_size(args.hr_size, "--hr-size")
    if args.calib is None:
        raise MemsrInputError("--calib", "give a folder of HR images for calibration (e.g. ../shared/train/T91)")
    _, plain, report = _plainify_from_args(args)
    calib = calibration_batch(args.calib, plain.scale, n=args.n_calib, patch_size=args.calib_patch, seed=args.seed)
    init = init_student(
        plain,
        calib,
        theta=args.theta,
        fix_r=args.fix_r,
        method=args.decomposition,
        max_pixels=args.max_pixels,
        adjust=args.adjust,
        seed=args.seed,
        calibration=f"{args.n_calib} LR patches of {args.calib_patch}x{args.calib_patch} from {args.calib}",
    )
    if not args.no_efficiency:
        init.efficiency = efficiency(init.student, plain.scale, hr_size=hr_size)
    result = init.as_dict()
    result["plain_widths"] = report.widths
    if args.out:
        save_model_file(args.out, init.student, bridges=init.bridges, report=result)
    if args.json:
        result["out"] = args.out
        _print_json(result)
        return 0
    rule = f"fix_r = {args.fix_r}" if args.fix_r is not None else f"theta = {args.theta:g}"
    print(f"plain teacher widths {report.widths_text}; student ({rule}):")
    print("\n".join(summary_lines(init)))
    if args.out:
        print(f"wrote {args.out} (student + bridges)")
    return 0


# ------------------------------------------------------------------------------------ train


def _train_config(args: argparse.Namespace, scale: int, distill_coe: float = 0.0):
    from memsr_bench.memsr.train import TrainConfig

    return TrainConfig(
        train_dir=str(args.train_dir),
        scale=int(scale),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        schedule=args.schedule,
        distill_coe=distill_coe,
        distill_alpha=getattr(args, "distill_alpha", 1e-5),
        val_dir=str(args.val_dir) if args.val_dir else None,
        val_every=args.val_every,
        seed=args.seed,
        device=args.device,
    )


def _report_training(args: argparse.Namespace, result, extra: dict[str, Any]) -> int:
    last = result.history[-1] if result.history else {}
    summary = {
        **extra,
        "checkpoint": str(result.checkpoint),
        "steps_run": result.steps_run,
        "seconds": result.seconds,
        "final": last,
    }
    if args.json:
        _print_json(summary)
        return 0
    psnr = ""
    if "val_psnr" in last:
        psnr = f", validation PSNR {last['val_psnr']:.3f} dB (Y, crop = scale) on {args.val_dir}"
    print(f"trained {result.steps_run} steps in {result.seconds:.0f} s{psnr}; checkpoint {result.checkpoint}")
    return 0


def _cmd_train_teacher(args: argparse.Namespace) -> int:
    from memsr_bench.memsr.modelio import arch_of
    from memsr_bench.memsr.train import train

    model = load_teacher(args.model, args.scale, args.checkpoint, args.config, args.seed)
    arch = arch_of(model)  # fails early for models the trainer cannot save
    config = _train_config(args, model.scale)
    result = train(model, config, args.out, resume=args.resume, progress=not args.no_progress, name=args.model)
    return _report_training(args, result, {"model": args.model, "arch": arch})


def _student_and_bridges(args: argparse.Namespace, plain, init):
    """MemSR init (SVD student and bridges), or the same architecture with fresh weights."""
    from memsr_bench.memsr.student_init import random_bridges, random_student

    if args.init == "memsr":
        return init.student, init.bridges
    student = random_student(plain, init.widths, seed=args.seed)
    return student, random_bridges(init.widths, init.teacher_widths, seed=args.seed)


def _cmd_train_student(args: argparse.Namespace) -> int:
    from memsr_bench.memsr.data import calibration_batch
    from memsr_bench.memsr.student_init import init_student
    from memsr_bench.memsr.train import train

    teacher = load_teacher(args.teacher, args.scale, args.checkpoint, args.config, args.seed)
    plain, _ = _plainify(args, teacher)
    calib_dir = args.calib or args.train_dir
    calib = calibration_batch(calib_dir, plain.scale, n=args.n_calib, patch_size=args.calib_patch, seed=args.seed)
    init = init_student(plain, calib, theta=args.theta, fix_r=args.fix_r, method=args.decomposition, seed=args.seed)
    student, bridges = _student_and_bridges(args, plain, init)
    config = _train_config(args, plain.scale, distill_coe=args.distill_coe if args.distill else 0.0)
    result = train(
        student,
        config,
        args.out,
        teacher=plain if args.distill else None,
        bridges=bridges if args.distill else None,
        resume=args.resume,
        progress=not args.no_progress,
        name=f"student-{args.init}{'-kd' if args.distill else ''}",
        report={"init": args.init, "distill": bool(args.distill), "student": init.as_dict()},
    )
    return _report_training(args, result, {"init": args.init, "distill": bool(args.distill), "widths": init.widths})


# ------------------------------------------------------------------------------------ parsers


def _add_teacher_args(p: argparse.ArgumentParser, positional: str = "teacher") -> None:
    p.add_argument(positional, metavar=positional.upper(), help=_TEACHER_HELP)
    p.add_argument("--scale", type=int, default=None, help="upscaling factor (default: the model's first, e.g. 2)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="weights for a model reference (a checkpoint file or weights directory; default: random weights "
        "seeded by --seed)",
    )
    p.add_argument(
        "--config",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="arguments of the model's factory, e.g. --config n_resblocks=5 n_feats=24 res_scale=0.1",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for random weights, calibration and training (0)")


def _add_plainify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--carry",
        choices=("offset", "split"),
        default="offset",
        help="how skips cross a ReLU: offset (MemSR: carry x+B) or split (carry relu(x), relu(-x); exact for "
        "every input, wider)",
    )
    p.add_argument("--skip-offset", type=float, default=1000.0, metavar="B", help="the offset B (1000, as MemSR)")


def _add_width_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--theta",
        type=float,
        default=0.05,
        help="relative-residual threshold: each layer keeps the fewest SVD components that leave less than "
        "theta of its calibration features unexplained (0.05 = Plain-X_0.05; 0 keeps every channel)",
    )
    g.add_argument(
        "--fix-r",
        type=int,
        default=None,
        metavar="R",
        help="fixed student width (64 on EDSR-baseline = Plain-M)",
    )
    p.add_argument(
        "--decomposition",
        choices=("svd", "hybrid", "select"),
        default="svd",
        help="svd: MemSR (rotated features; its ReLU layers are only approximated until trained); hybrid (not in "
        "MemSR): SVD on the channels a ReLU leaves unchanged, greedy selection of the rest, usable before training; "
        "select (not in MemSR): keep actual teacher channels chosen greedily",
    )


def _add_calib_args(p: argparse.ArgumentParser, default_help: str) -> None:
    p.add_argument("--calib", default=None, metavar="DIR", help=f"folder of HR images for calibration ({default_help})")
    p.add_argument("--n-calib", type=int, default=16, help="number of calibration patches (16, as MemSR)")
    p.add_argument("--calib-patch", type=int, default=48, help="LR side of a calibration patch (48)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--train-dir", required=True, metavar="DIR", help="folder of HR training images, e.g. ../shared/train/T91"
    )
    p.add_argument(
        "--val-dir",
        default=None,
        metavar="DIR",
        help="test set validated after each epoch, e.g. ../shared/datasets/Set5",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run folder: checkpoint.pt and history.json")
    p.add_argument("--epochs", type=int, default=10, help="epochs (10)")
    p.add_argument("--steps-per-epoch", type=int, default=100, help="optimizer steps per epoch (100)")
    p.add_argument("--batch-size", type=int, default=16, help="patches per step (16)")
    p.add_argument("--patch-size", type=int, default=32, help="LR patch side; HR patches are scale times larger (32)")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate of Adam (2e-4)")
    p.add_argument(
        "--schedule",
        choices=("constant", "cosine", "onecycle", "step"),
        default="onecycle",
        help="learning-rate schedule (onecycle, as MemSR)",
    )
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto (CUDA when available)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def _add_convert_plain(csub: argparse._SubParsersAction) -> None:
    pl = csub.add_parser(
        "plain",
        help="teacher -> equivalent plain network (stage 1)",
        description="Convert a residual teacher (EDSR, EDSR-baseline, any width/depth/scale) into an exactly "
        "equivalent stack of convs + ReLU/identity without skips (constant-channel biases, carried skips). "
        "Without --checkpoint the teacher has random weights (seeded), which is enough to check the "
        "conversion. Example: memsr-bench convert plain edsr-baseline --scale 2 --check",
    )
    _add_teacher_args(pl)
    _add_plainify_args(pl)
    pl.add_argument(
        "--fold-mean-shift",
        action="store_true",
        help="fold the input mean shift into the first conv (MemSR's choice)",
    )
    pl.add_argument(
        "--check",
        action="store_true",
        help="run teacher and plain model on a random image and report max |difference|",
    )
    pl.add_argument("--check-size", default="37x29", metavar="HxW", help="LR size of the check image (37x29)")
    pl.add_argument("--tolerance", type=float, default=1e-3, help="--check fails (exit 1) above this difference (1e-3)")
    pl.add_argument("--out", default=None, metavar="FILE", help="save the plain model (a memsr-bench model file)")
    pl.add_argument("--json", action="store_true", help="print a JSON report (widths, params, max_abs_diff, layers)")
    pl.set_defaults(run=_cmd_convert_plain)


def _add_convert_student(csub: argparse._SubParsersAction) -> None:
    st = csub.add_parser(
        "student",
        help="teacher -> plain -> initialised narrow student (stages 1 and 2)",
        description="Initialise a plain student with MemSR: calibration patches (LR made with MATLAB bicubic) run "
        "through the plain model; each layer's features are decomposed by SVD and the layer keeps the "
        "fewest components within --theta (or --fix-r channels); student weights by least squares. "
        "Reports per-layer widths, params, MACs and predicted peak memory. Example: memsr-bench convert "
        "student runs/teacher/checkpoint.pt --theta 0.05 --calib ../shared/train/T91 --out student.pt",
    )
    _add_teacher_args(st)
    _add_plainify_args(st)
    _add_width_args(st)
    _add_calib_args(st, "required")
    st.add_argument(
        "--max-pixels", type=int, default=32768, help="feature pixels sampled per layer for the SVD (32768)"
    )
    st.add_argument("--adjust", type=float, default=3.0, help="non-negativity shift factor (3, as MemSR)")
    st.add_argument("--fold-mean-shift", action="store_true", help=argparse.SUPPRESS)
    st.add_argument(
        "--hr-size",
        default="1080x1920",
        metavar="HxW",
        help="HR output size for MACs and memory (1080x1920, MemSR's)",
    )
    st.add_argument("--no-efficiency", action="store_true", help="skip the MACs / memory report")
    st.add_argument("--out", default=None, metavar="FILE", help="save the student and its bridges (a model file)")
    st.add_argument("--json", action="store_true", help="print a JSON report")
    st.set_defaults(run=_cmd_convert_student)


def _add_train_teacher(tsub: argparse._SubParsersAction) -> None:
    tt = tsub.add_parser(
        "teacher",
        help="train a teacher from scratch (edsr-baseline, edsr, or any EDSR-style model reference)",
        description="Train a teacher. Example: memsr-bench train teacher edsr-baseline --scale 2 --config "
        "n_resblocks=4 n_feats=32 --train-dir ../shared/train/T91 --val-dir ../shared/datasets/Set5 "
        "--epochs 20 --lr 5e-4 --out runs/teacher",
    )
    _add_teacher_args(tt, "model")
    _add_train_args(tt)
    tt.set_defaults(run=_cmd_train_teacher)


def _add_train_student(tsub: argparse._SubParsersAction) -> None:
    ts = tsub.add_parser(
        "student",
        help="train a plain student of a teacher: direct (random init), MemSR init, and/or distillation",
        description="Train the plain student of TEACHER (its widths come from --theta / --fix-r). --init random: "
        "direct training; --init memsr: MemSR initialisation; --distill adds MemSR's feature distillation "
        "(trainable bridges, lambda = coe * alpha^(epoch/epochs)). Example: memsr-bench train student "
        "runs/teacher/checkpoint.pt --init memsr --distill --train-dir ../shared/train/T91 --out runs/kd",
    )
    _add_teacher_args(ts)
    _add_plainify_args(ts)
    _add_width_args(ts)
    _add_calib_args(ts, "default: --train-dir")
    ts.add_argument("--init", choices=("memsr", "random"), default="memsr", help="student initialisation (memsr)")
    ts.add_argument("--distill", action="store_true", help="add MemSR's initialisation-aware feature distillation")
    ts.add_argument("--distill-coe", type=float, default=0.3, help="distillation weight at epoch 0 (0.3)")
    ts.add_argument(
        "--distill-alpha", type=float, default=1e-5, help="decay: weight = coe * alpha^(epoch/epochs) (1e-5)"
    )
    _add_train_args(ts)
    ts.set_defaults(run=_cmd_train_student)


def add_convert_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``convert`` (``plain``, ``student``) and ``train`` (``teacher``, ``student``)."""
    conv = subparsers.add_parser(
        "convert",
        help="MemSR conversion: residual teacher -> equivalent plain model -> initialised narrow student",
        description="MemSR (Wu, Lee, Ma, ICML 2022) conversion tools. `convert plain` turns a residual teacher "
        "into an exactly equivalent plain network; `convert student` also initialises a narrow plain student "
        "from it (per-layer SVD of calibration features) and reports its widths, params, MACs and memory.",
    )
    csub = conv.add_subparsers(dest="convert_command", required=True, metavar="WHAT")
    _add_convert_plain(csub)
    _add_convert_student(csub)
    tr = subparsers.add_parser(
        "train",
        help="train a teacher, or a plain student (random or MemSR init, optional distillation)",
        description="A small deterministic trainer: random LR/HR patches from a folder of HR images (LR by "
        "MATLAB bicubic), flips/rotations, L1 on 0..255, Adam, learning-rate schedule, checkpoint + resume, "
        "validation after each epoch. Scaled-down runs on T91 are what this project can afford.",
    )
    tsub = tr.add_subparsers(dest="train_command", required=True, metavar="WHAT")
    _add_train_teacher(tsub)
    _add_train_student(tsub)
