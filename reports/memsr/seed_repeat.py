"""One-off noise check for reports/memsr/findings.md: retrain the two MemSR-initialised students of the
reproduction (same teacher checkpoint, same calibration, same student init) with another training seed
(patch order and augmentation), and evaluate them on Set5/Set14/BSD100.

    python reports/memsr/seed_repeat.py WORK_DIR OUT_JSON [SEED]

WORK_DIR is the reproduction's --work folder (its teacher/checkpoint.pt is reused); about 18 min on 2 cores.
"""

import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

from memsr_bench.memsr import reproduce as rp
from memsr_bench.memsr.data import calibration_batch, load_training_images
from memsr_bench.memsr.modelio import load_model_file
from memsr_bench.memsr.plainify import plainify
from memsr_bench.memsr.student_init import init_student
from memsr_bench.memsr.train import evaluate_model, train

work, out_json = Path(sys.argv[1]), Path(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
plan = rp.Plan()
teacher, _, _ = load_model_file(work / "teacher" / "checkpoint.pt")
plain, _ = plainify(teacher)
images, _ = load_training_images(plan.train_dir, plan.scale, min_lr_size=plan.calib_patch)
calib = calibration_batch(None, plan.scale, n=plan.n_calib, patch_size=plan.calib_patch, seed=plan.seed, images=images)
init = init_student(plain, calib, theta=plan.theta, method="svd", seed=plan.seed)
results = {"seed": seed, "widths": init.widths, "runs": {}}
for name, distill in (("memsr-init-l1", False), ("memsr-init-kd", True)):
    config = replace(rp._train_config(plan, plan.student_lr, distill), seed=seed)
    res = train(
        copy.deepcopy(init.student),
        config,
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
out_json.write_text(json.dumps(results, indent=1))
