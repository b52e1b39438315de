"""Scaled-down reproduction of the distillation claim of "Compressing Deep Image SR Models" (issue 13, item 6).

One command, resumable (every run keeps its checkpoint; a finished run is read back, not retrained):

    python experiments/cdism_reproduce.py --train-dir ../shared/train/T91 --data-root ../shared/datasets \
        --weights ../shared/weights --out runs/cdism [--device cpu|cuda] [--teacher-steps 2000 --student-steps 1500]

x2 on T91. Teachers: the public IMDN x2 checkpoint, and an EDSR-baseline trained here (L1, the suite's MemSR
trainer). Student: EDSRmini (16 features, 8 blocks, res_scale 2 as released), trained with the same seed,
patches, Adam, learning rate, EMA (0.999) and step budget in five ways:

- ``scratch``: L1 to HR only (lap_weight 0, l1_weight 1);
- ``multilap-<teacher>``: MultiLap(student, teacher) + 0.1 · L1(student, HR), the released recipe;
- ``l1kd-<teacher>``: L1(student, teacher) + 0.1 · L1(student, HR), plain output distillation.

Then PSNR/SSIM (Y, crop = scale) on the data sets, params, MACs at HR 1280x720 and the predicted peak of every
student and teacher, written as ``results.json`` and ``reproduction.md`` under ``--out`` with the training
curves (``curves.png``). Rerunning with more ``--sets`` re-evaluates finished runs without retraining them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

TEACHER_KINDS = ("edsr", "imdn")
SETS = ("Set5", "Set14", "BSD100")


def _runs(teachers: list[str]) -> list[tuple[str, str, dict]]:
    runs = [("scratch", teachers[0], {"lap_weight": 0.0, "l1_weight": 1.0})]
    for t in teachers:
        runs.append((f"multilap-{t}", t, {}))
        runs.append((f"l1kd-{t}", t, {"teacher_loss": "l1"}))
    return runs


def _val_dir(args) -> str | None:
    """Set5 for the training curves (validated at every epoch end), when present."""
    folder = Path(args.data_root) / "Set5"
    return str(folder) if folder.is_dir() else None


def _run_fields(args, steps: int) -> dict:
    """What every run shares: data, x2, the step budget in epochs, batch, patch, seed, device, validation."""
    return {
        "train_dir": str(args.train_dir),
        "scale": 2,
        "epochs": max(1, steps // args.steps_per_epoch),
        "steps_per_epoch": min(steps, args.steps_per_epoch),
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "seed": args.seed,
        "device": args.device,
        "val_dir": _val_dir(args),
    }


def _teacher_edsr(args, out: Path):
    from memsr_bench.memsr.train import TrainConfig, train
    from memsr_bench.model import load_model

    torch.manual_seed(args.seed)
    model = load_model("edsr-baseline", 2).module
    steps = args.teacher_steps
    config = TrainConfig(**_run_fields(args, steps))
    folder = out / "teacher-edsr"
    resume = (folder / "checkpoint.pt").exists()
    result = train(model, config, folder, resume=resume, name="teacher edsr-baseline", progress=False)
    return result.model.eval(), result.history


def _student(args, name: str, teacher, overrides: dict, out: Path):
    from memsr_bench.compress.train import DistillConfig, distill
    from memsr_bench.model import load_model

    torch.manual_seed(args.seed)  # the same initial student for every run
    student = load_model("edsr-mini", 2).module
    steps = args.student_steps
    config = DistillConfig(**_run_fields(args, steps), **overrides)
    folder = out / name
    resume = (folder / "checkpoint.pt").exists()
    result = distill(teacher, student, config, folder, resume=resume, ema=0.999, name=name, progress=False)
    return result.model.eval(), result.history


def _measure(model, name: str, args) -> dict:
    from memsr_bench.measure.profile import profile
    from memsr_bench.memsr.train import evaluate_model

    row: dict = {"model": name}
    counts = profile(model, preset="cdism", scale=2, quantities=("params", "macs", "peak_memory_bytes_predicted"))
    row.update(params=counts["params"], macs=counts["macs"], peak_predicted=counts["peak_memory_bytes_predicted"])
    for dataset in args.sets:
        folder = Path(args.data_root) / dataset
        if folder.is_dir():
            row[f"{dataset}_psnr"], row[f"{dataset}_ssim"] = evaluate_model(model, folder, 2, args.device, name)
    return row


def _curves(histories: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, history in histories.items():
        rows = [r for r in history if "val_psnr" in r]
        if rows:
            ax.plot([r["step"] for r in rows], [r["val_psnr"] for r in rows], marker="o", label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation PSNR (dB, Y, Set5)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dir", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True, help="folder holding IMDN_x2.pth")
    parser.add_argument("--out", type=Path, default=Path("runs/cdism"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--teacher-steps", type=int, default=2000)
    parser.add_argument("--student-steps", type=int, default=1500)
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--teachers", nargs="+", default=list(TEACHER_KINDS), choices=TEACHER_KINDS)
    args = parser.parse_args()

    from memsr_bench.model import load_model

    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    histories: dict[str, list] = {}
    teachers = {}
    if "edsr" in args.teachers:
        teachers["edsr"], histories["teacher-edsr"] = _teacher_edsr(args, args.out)
    if "imdn" in args.teachers:
        teachers["imdn"] = load_model("imdn", 2, weights=args.weights).module.eval()
    timings = {}
    students = {}
    for name, teacher, overrides in _runs(list(teachers)):
        t0 = time.perf_counter()
        students[name], histories[name] = _student(args, name, teachers[teacher], overrides, args.out)
        timings[name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {timings[name]} s", flush=True)
    rows = [_measure(m, f"teacher-{k}", args) for k, m in teachers.items()]
    rows += [_measure(m, k, args) for k, m in students.items()]
    for row in rows:
        print(json.dumps(row), flush=True)
    _curves(histories, args.out / "curves.png")
    summary = {
        "rows": rows,
        "timings_s": timings,
        "total_s": round(time.perf_counter() - start, 1),
        "args": {k: str(v) for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out / 'results.json'} in {summary['total_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
