"""Noise check for reports/memsr/findings.md: retrain the two MemSR-initialised students of the
reproduction (same teacher checkpoint, same calibration, same student init) with another training seed
(patch order and augmentation), and evaluate them on Set5/Set14/BSD100.

Run from the repository root after ``python experiments/memsr_reproduce.py`` (the default paths are
relative to the current directory):

    python experiments/memsr_seed_repeat.py                  # seed 1 -> reports/memsr/seed_repeat_seed1.json
    python experiments/memsr_seed_repeat.py --seed 2 --work results/memsr-reproduce --out /tmp/seed2.json

The reproduction's ``--work`` folder provides the teacher (``teacher/checkpoint.pt``); the two runs are
written beside it (``memsr-init-l1-seedN``, ``memsr-init-kd-seedN``, resumable). About 18 min on 2 cores.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

# the sibling script: Python puts this script's folder first on sys.path
from memsr_reproduce import DEFAULT_DATA_ROOT, DEFAULT_TRAIN_DIR, DEFAULT_WORK, Plan, train_config

from memsr_bench.errors import MemsrInputError


def seed_repeat(plan: Plan, work: Path, seed: int) -> dict[str, Any]:
    """Train the MemSR-init students of ``plan`` with training seed ``seed``; PSNR/SSIM per test set."""
    from memsr_bench.memsr.data import calibration_batch, load_training_images
    from memsr_bench.memsr.modelio import load_model_file
    from memsr_bench.memsr.plainify import plainify
    from memsr_bench.memsr.student_init import init_student
    from memsr_bench.memsr.train import evaluate_model, train

    teacher, _, _ = load_model_file(work / "teacher" / "checkpoint.pt")
    plain, _ = plainify(teacher)
    images, _ = load_training_images(plan.train_dir, plan.scale, min_lr_size=plan.calib_patch)
    calib = calibration_batch(
        None, plan.scale, n=plan.n_calib, patch_size=plan.calib_patch, seed=plan.seed, images=images
    )
    init = init_student(plain, calib, theta=plan.theta, method="svd", seed=plan.seed)  # the plan's init seed
    results: dict[str, Any] = {"seed": seed, "widths": init.widths, "runs": {}}
    for name, distill in (("memsr-init-l1", False), ("memsr-init-kd", True)):
        res = train(
            copy.deepcopy(init.student),
            replace(train_config(plan, plan.student_lr, distill), seed=seed),
            work / f"{name}-seed{seed}",
            teacher=plain if distill else None,
            bridges=copy.deepcopy(init.bridges) if distill else None,
            resume=True,
            progress=False,
            name=name,
        )
        row = {}
        for s in plan.sets:
            row[f"{s}_psnr"], row[f"{s}_ssim"] = evaluate_model(res.model, Path(plan.data_root) / s, plan.scale)
        results["runs"][name] = row
        print(name, row, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python experiments/memsr_seed_repeat.py",
        description="Retrain the MemSR-initialised students of the reproduction with another training seed. "
        "Run it from the repository root: the default paths are relative to the current directory.",
    )
    parser.add_argument("--seed", type=int, default=1, help="training seed (1)")
    parser.add_argument("--work", default=DEFAULT_WORK, help=f"the reproduction's --work folder ({DEFAULT_WORK})")
    parser.add_argument("--out", default=None, help="JSON file (default reports/memsr/seed_repeat_seed<SEED>.json)")
    parser.add_argument("--train-dir", default=DEFAULT_TRAIN_DIR, help=f"HR training images ({DEFAULT_TRAIN_DIR})")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help=f"folder of the test sets ({DEFAULT_DATA_ROOT})")
    args = parser.parse_args(argv)
    out = Path(args.out or f"reports/memsr/seed_repeat_seed{args.seed}.json")
    plan = Plan(train_dir=args.train_dir, data_root=args.data_root)
    try:
        results = seed_repeat(plan, Path(args.work), args.seed)
    except MemsrInputError as err:
        print(f"memsr_seed_repeat: error: {err}", file=sys.stderr)
        return 2
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
