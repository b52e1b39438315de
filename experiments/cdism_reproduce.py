"""Scaled-down reproduction of the distillation claim of "Compressing Deep Image SR Models" (issue 13, item 6).

One command, resumable (every run keeps its checkpoint and its evaluation; finished work is read back):

    python experiments/cdism_reproduce.py --train-dir ../shared/train/T91 --data-root ../shared/datasets \
        --weights ../shared/weights --out reports/compression/cpu

x2 on T91. Teachers: the public IMDN x2 checkpoint, and an EDSR-baseline trained here (L1, the suite's MemSR
trainer). Student: EDSRmini (16 features, 8 blocks, res_scale 2 as released), trained with the same seed,
initial weights, patches, Adam, learning rate, EMA (0.999) and step budget in five ways:

- ``scratch``: L1 to HR only (lap_weight 0, l1_weight 1);
- ``multilap-<teacher>``: MultiLap(student, teacher) + 0.1 · L1(student, HR), the released recipe;
- ``l1kd-<teacher>``: L1(student, teacher) + 0.1 · L1(student, HR), plain output distillation;
- ``multilap-flat-<first teacher>``: MultiLap with every pyramid level weighted 1 instead of 2**i, to test
  whether the coarse levels' weight is what slows MultiLap distillation down.

The defaults fit the 2-core CPU budget of the issue (≤ 2 h): LR patches of 32 (HR 64) in batches of 16 and
teacher targets cached once per training image (``--teacher-targets cached``; ``online`` is the released
per-patch teacher pass, about 3x the step cost with IMDN). The IMDN runs go first, so an interrupted run
has its strongest-teacher comparison complete. After every run the report (``reproduction.md``,
``results.json``, ``curves.png``, ``budget.csv``) is rewritten under ``--out``: PSNR/SSIM (Y, crop = scale)
of the raw and the EMA weights, params, MACs at HR 1280x720 and the predicted peak, validation curves of
Set5 every ``--steps-per-epoch`` steps and the gap to ``scratch`` at every budget on the way (the learning
rate is constant, so the state after N steps is what an N-step run ends with).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import torch

TEACHER_KINDS = ("imdn", "edsr")
SETS = ("Set5", "Set14", "BSD100")
TEACHER_SETS = ("Set5", "Set14")  # teachers are 14-27x the student's cost; BSD100 would double the eval time


def _runs(teachers: list[str]) -> list[tuple[str, str | None, dict]]:
    runs: list[tuple[str, str | None, dict]] = [("scratch", None, {"lap_weight": 0.0, "l1_weight": 1.0})]
    for t in teachers:
        runs.append((f"multilap-{t}", t, {}))
        runs.append((f"l1kd-{t}", t, {"teacher_loss": "l1"}))
        if t == teachers[0]:  # the investigation: are the coarse levels' weights (up to 16) what slows it?
            runs.append((f"multilap-flat-{t}", t, {"lap_level_weights": (1.0,) * 5}))
    return runs


def _run_fields(args, steps: int) -> dict:
    """What every run shares: data, x2, the step budget in epochs, batch, patch, seed, device, validation."""
    val = Path(args.data_root) / "Set5"
    return {
        "train_dir": str(args.train_dir),
        "scale": 2,
        "epochs": max(1, steps // args.steps_per_epoch),
        "steps_per_epoch": min(steps, args.steps_per_epoch),
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "seed": args.seed,
        "device": args.device,
        "val_dir": str(val) if val.is_dir() else None,
    }


def _teacher_edsr(args, out: Path) -> tuple[torch.nn.Module, list, float]:
    from memsr_bench.memsr.train import TrainConfig, train
    from memsr_bench.model import load_model

    torch.manual_seed(args.seed)
    model = load_model("edsr-baseline", 2).module
    config = TrainConfig(**_run_fields(args, args.teacher_steps))
    folder = out / "teacher-edsr"
    resume = (folder / "checkpoint.pt").exists()
    result = train(model, config, folder, resume=resume, name="teacher edsr-baseline", progress=False)
    return result.model.eval(), result.history, result.seconds


def _student(args, name: str, teacher, overrides: dict, out: Path):
    """Train (or read back) one student; returns (raw student, EMA student, history, seconds of this call)."""
    from memsr_bench.compress.train import DistillConfig, distill
    from memsr_bench.model import load_model

    torch.manual_seed(args.seed)  # the same initial student for every run
    student = load_model("edsr-mini", 2).module
    steps = args.flat_steps if name.startswith("multilap-flat") and args.flat_steps else args.student_steps
    config = DistillConfig(**_run_fields(args, steps), teacher_targets=args.teacher_targets, **overrides)
    folder = out / name
    resume = (folder / "checkpoint.pt").exists()
    result = distill(teacher, student, config, folder, resume=resume, ema=0.999, name=name, progress=False)
    return student.eval(), result.model.eval(), result.history, result.seconds


def _evaluate(model, name: str, sets, args) -> dict:
    from memsr_bench.memsr.train import evaluate_model

    scores = {}
    for dataset in sets:
        folder = Path(args.data_root) / dataset
        if folder.is_dir():
            psnr, ssim = evaluate_model(model, folder, 2, args.device, name)
            scores[dataset] = {"psnr": psnr, "ssim": ssim}
    return scores


def _costs(model) -> dict:
    from memsr_bench.measure.profile import profile

    counts = profile(model, preset="cdism", scale=2, quantities=("params", "macs", "peak_memory_bytes_predicted"))
    return {"params": counts["params"], "macs": counts["macs"], "peak_predicted": counts["peak_memory_bytes_predicted"]}


def _cached_eval(folder: Path, models: dict, sets, args) -> dict:
    """``{variant: scores}`` for ``models`` (``{variant: model}``), read back from ``eval.json`` when present."""
    path = folder / "eval.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("sets") != list(sets) or set(saved.get("scores", {})) != set(models):
        saved = {
            "sets": list(sets),
            "scores": {k: _evaluate(m, f"{folder.name} {k}", sets, args) for k, m in models.items()},
        }
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, indent=1) + "\n")
    return saved["scores"]


def _train_seconds(history: list[dict]) -> float:
    """Training time of a run, validation included, summed over its epochs (survives resuming)."""
    return round(sum(r.get("epoch_seconds", 0.0) for r in history), 1)


def _val_curve(history: list[dict], key: str) -> dict[int, float]:
    return {r["step"]: r[key] for r in history if key in r}


def _budget_rows(histories: dict[str, list]) -> list[dict]:
    """Set5 PSNR (raw and EMA weights) of every student at every validated step, and its gap to scratch."""
    if "scratch" not in histories:
        return []
    rows = []
    for key, weights in (("val_raw_psnr", "raw"), ("val_psnr", "ema")):
        base = _val_curve(histories["scratch"], key)
        for name, history in histories.items():
            if name.startswith("teacher"):
                continue
            for step, psnr in _val_curve(history, key).items():
                if step in base:
                    rows.append(
                        {
                            "run": name,
                            "weights": weights,
                            "step": step,
                            "set5_psnr": round(psnr, 4),
                            "gap_to_scratch_db": round(psnr - base[step], 4),
                        }
                    )
    return rows


def _curves(histories: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "val_raw_psnr", "trained (raw) weights"), (axes[1], "val_psnr", "EMA 0.999")):
        for name, history in histories.items():
            curve = _val_curve(history, "val_psnr" if name.startswith("teacher") else key)
            if curve:
                style = "--" if name.startswith("teacher") else "-"
                ax.plot(list(curve), list(curve.values()), style, marker="o", ms=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation PSNR (dB, Y, crop 2, Set5)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def _fmt_scores(scores: dict, sets) -> str:
    return " / ".join(f"{scores[s]['psnr']:.2f}" if s in scores else "—" for s in sets)


def _write_report(out: Path, summary: dict) -> None:
    sets = summary["sets"]
    a = summary["args"]
    lines = [
        "# EDSRmini distillation on CPU (CDISM scaled down, x2, T91): generated",
        "",
        "Generated by `python experiments/cdism_reproduce.py "
        f"--train-dir {a['train_dir']} --data-root {a['data_root']} --weights {a['weights']} --out {a['out']}`"
        f" (defaults otherwise). Machine: {summary['machine']}. Done: {len(summary['timings_s'])} of "
        f"{summary['planned_runs']} training runs; their training time (validation included, summed over epochs, "
        f"resumed parts too) {summary['train_seconds']:.0f} s; this invocation {summary['total_s']:.0f} s (teacher "
        "outputs, evaluation and reading back finished runs included).",
        "",
        f"Setup: batch {a['batch_size']}, LR patch {a['patch_size']} (HR {2 * int(a['patch_size'])}), Adam lr 2e-4 "
        f"constant, seed {a['seed']}, EMA 0.999, student steps {a['student_steps']}, EDSR-baseline teacher steps "
        f"{a['teacher_steps']} (L1), teacher targets `{a['teacher_targets']}`.",
        "",
        "| model | params | MACs at HR 1280x720 (G) | predicted peak (MiB) | PSNR " + " / ".join(TEACHER_SETS) + " |",
        "|---|---:|---:|---:|---|",
    ]
    for name, row in summary["teachers"].items():
        lines.append(
            f"| {name} | {row['params']:,} | {row['macs'] / 1e9:.1f} | {row['peak_predicted'] / 2**20:.1f} | "
            f"{_fmt_scores(row['scores'], TEACHER_SETS)} |"
        )
    s = summary["student_costs"]
    lines += [
        f"| EDSRmini (every student) | {s['params']:,} | {s['macs'] / 1e9:.1f} | "
        f"{s['peak_predicted'] / 2**20:.1f} | — |",
        "",
        f"Students, PSNR (dB, Y, crop 2) on {' / '.join(sets)}; bicubic: {_fmt_scores(summary['bicubic'], sets)}.",
        "",
        "| run | raw weights | EMA 0.999 weights | SSIM raw (" + " / ".join(sets) + ") | training time (s) |",
        "|---|---|---|---|---:|",
    ]
    for name, row in summary["students"].items():
        ssim = " / ".join(f"{row['raw'][d]['ssim']:.4f}" for d in sets if d in row["raw"])
        lines.append(
            f"| {name} | {_fmt_scores(row['raw'], sets)} | {_fmt_scores(row['ema'], sets)} | {ssim} | "
            f"{summary['timings_s'].get(name, float('nan')):.0f} |"
        )
    raw = [r for r in summary["budget"] if r["weights"] == "raw" and r["run"] != "scratch"]
    if raw:
        steps = sorted({r["step"] for r in raw})
        names = list(dict.fromkeys(r["run"] for r in raw))
        lines += [
            "",
            "Gap to `scratch` on Set5 (dB, raw weights) as the budget grows:",
            "",
            "| run | " + " | ".join(str(s) for s in steps) + " |",
            "|---|" + "---:|" * len(steps),
        ]
        for name in names:
            by_step = {r["step"]: r["gap_to_scratch_db"] for r in raw if r["run"] == name}
            lines.append(
                f"| {name} | " + " | ".join(f"{by_step[s]:+.2f}" if s in by_step else "" for s in steps) + " |"
            )
    lines += ["", "Files: `results.json`, `budget.csv`, `curves.png`, and per run `history.json`, `eval.json`."]
    (out / "reproduction.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dir", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True, help="folder holding IMDN_x2.pth")
    parser.add_argument("--out", type=Path, default=Path("reports/compression/cpu"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--teacher-steps", type=int, default=2000)
    parser.add_argument("--student-steps", type=int, default=3000)
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--flat-steps", type=int, default=None, help="steps of the multilap-flat run (default: --student-steps)"
    )
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--teacher-targets", choices=("cached", "online"), default="cached")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--teachers", nargs="+", default=list(TEACHER_KINDS), choices=TEACHER_KINDS)
    args = parser.parse_args()

    from memsr_bench.model import load_model

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    if args.device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name()}"
    summary: dict = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": machine,
        "sets": [s for s in args.sets if (Path(args.data_root) / s).is_dir()],
        "planned_runs": len(_runs(list(args.teachers))) + ("edsr" in args.teachers),
        "timings_s": {},
        "teachers": {},
        "students": {},
        "budget": [],
    }
    summary["bicubic"] = _bicubic_scores(args, summary["sets"])
    histories: dict[str, list] = {}
    student_costs = None
    for teacher_kind in args.teachers:
        if teacher_kind == "imdn":
            teacher = load_model("imdn", 2, weights=args.weights).module.eval()
        else:
            teacher, histories["teacher-edsr"], _ = _teacher_edsr(args, out)
            summary["timings_s"]["teacher-edsr"] = _train_seconds(histories["teacher-edsr"])
        row = _costs(teacher)
        scores = _cached_eval(out / f"teacher-{teacher_kind}", {"model": teacher}, TEACHER_SETS, args)
        summary["teachers"][f"teacher-{teacher_kind}"] = {**row, "scores": scores["model"]}
        for name, kind, overrides in _runs(list(args.teachers)):
            if kind != teacher_kind and not (kind is None and teacher_kind == args.teachers[0]):
                continue  # scratch runs beside the first teacher's runs (it reads no teacher output)
            raw, ema, histories[name], seconds = _student(args, name, teacher, overrides, out)
            summary["timings_s"][name] = _train_seconds(histories[name])
            scores = _cached_eval(out / name, {"raw": raw, "ema": ema}, summary["sets"], args)
            summary["students"][name] = scores
            student_costs = student_costs or _costs(raw)
            summary["student_costs"] = student_costs
            summary["budget"] = _budget_rows(histories)
            summary["train_seconds"] = sum(summary["timings_s"].values())
            summary["total_s"] = round(time.perf_counter() - start, 1)
            _write_outputs(out, summary, histories)
            print(f"{name}: {seconds:.0f} s; raw {_fmt_scores(scores['raw'], summary['sets'])}", flush=True)
    print(f"wrote {out / 'reproduction.md'} in {time.perf_counter() - start:.0f} s")
    return 0


def _bicubic_scores(args, sets) -> dict:
    from memsr_bench.data.datasets import discover_test_set
    from memsr_bench.evaluate import evaluate
    from memsr_bench.upscalers import BicubicUpscaler

    scores = {}
    for dataset in sets:
        result = evaluate(BicubicUpscaler(2), discover_test_set(Path(args.data_root) / dataset, 2), progress=False)
        scores[dataset] = {"psnr": result.psnr, "ssim": result.ssim}
    return scores


def _write_outputs(out: Path, summary: dict, histories: dict[str, list]) -> None:
    (out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    with open(out / "budget.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["run", "weights", "step", "set5_psnr", "gap_to_scratch_db"])
        writer.writeheader()
        writer.writerows(summary["budget"])
    _curves(histories, out / "curves.png")
    _write_report(out, summary)


if __name__ == "__main__":
    raise SystemExit(main())
