"""Where do the MultiLap students of the CDISM reproduction lose? Pyramid levels of their error, and the
share of each level in MultiLap's gradient (issue 13, item 6: the disagreement investigated).

Reads the runs of ``experiments/cdism_reproduce.py`` (``--runs-dir``, default ``reports/compression/cpu``)
and writes ``levels.md`` / ``levels.json`` there:

1. For each finished student (trained weights) and the teacher: mean |L_i(SR) - L_i(HR)| per Laplacian
   level i (0 = finest band, 4 = coarse residual; RGB in 0..1) on Set5 and Set14 x2, images cropped to
   multiples of 16 (the pyramid's size rule). A student that fits coarse levels well and fine levels
   badly has been pulled towards low frequencies.
2. At the initial student (seed 0, the one every run starts from), on 8 training batches as the runs draw
   them: the norm of the gradient of each weighted MultiLap level term (both pyramids together, weight
   2**i as released) and of the 0.1 · L1-to-HR term, as a share of their sum.

    python experiments/cdism_levels.py --train-dir ../shared/train/T91 --data-root ../shared/datasets \
        --weights ../shared/weights
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from memsr_bench.losses import PYRAMID_LEVELS, RELEASED_LEVEL_WEIGHTS, binomial_blur, laplacian_pyramid

SETS = ("Set5", "Set14")


def _student(folder: Path) -> torch.nn.Module | None:
    from memsr_bench.model import load_model
    from memsr_bench.torch_files import load_weights_only

    path = folder / "checkpoint.pt"
    if not path.exists():
        return None
    state = load_weights_only(path, "training state")
    model = load_model("edsr-mini", 2).module
    model.load_state_dict(state.get("train_model", state["model"]))
    return model.eval()


def _level_errors(model: torch.nn.Module, input_range: float, data_root: Path) -> dict[str, list[float]]:
    """Mean |L_i(SR) - L_i(HR)| per level over the images of each set (0..1 RGB, float outputs)."""
    from memsr_bench.data.datasets import discover_test_set

    out = {}
    for name in SETS:
        per_image = []
        test_set = discover_test_set(data_root / name, 2)
        for pair in test_set:
            lr, hr = test_set.load(pair)
            h, w = (hr.shape[0] // 16) * 16, (hr.shape[1] // 16) * 16
            lr_t = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))).float()[None]
            with torch.no_grad():
                sr = (model(lr_t * (input_range / 255.0)) / input_range).clamp(0, 1)[..., :h, :w]
            hr_t = torch.from_numpy(np.ascontiguousarray(hr[:h, :w].transpose(2, 0, 1))).float()[None] / 255.0
            levels = zip(laplacian_pyramid(sr), laplacian_pyramid(hr_t), strict=True)
            per_image.append([float((a - b).abs().mean()) for a, b in levels])
        out[name] = [float(v) for v in np.mean(per_image, axis=0)]
    return out


def _gradient_shares(teacher, t_range: float, args) -> dict[str, float]:
    """Norm of the gradient (w.r.t. the initial student's weights) of each loss term, as a share of their sum."""
    from memsr_bench.memsr.data import PatchSampler
    from memsr_bench.model import load_model

    torch.manual_seed(0)
    student = load_model("edsr-mini", 2).module
    sampler = PatchSampler(args.train_dir, 2, args.patch_size, seed=0)
    names = [f"level {i} (x{w:g})" for i, w in enumerate(RELEASED_LEVEL_WEIGHTS)] + ["0.1 L1 to HR"]
    norms = np.zeros(len(names))
    for _ in range(args.batches):
        lr, hr = sampler.sample(16)
        with torch.no_grad():
            target = teacher(lr * (t_range / 255.0)) / t_range
        sr = student(lr) / 255.0
        # MultiLap's two pyramids (the images, and their high-pass residues), each built once
        pairs = (sr, target), (sr - binomial_blur(sr), target - binomial_blur(target))
        pyramids = [(laplacian_pyramid(a), laplacian_pyramid(b)) for a, b in pairs]
        terms = [
            sum(weight * (pa[i] - pb[i]).abs().mean() for pa, pb in pyramids)
            for i, weight in enumerate(RELEASED_LEVEL_WEIGHTS)
        ]
        terms.append(0.1 * (sr - hr / 255.0).abs().mean())
        for k, term in enumerate(terms):
            grads = torch.autograd.grad(term, list(student.parameters()), retain_graph=True)
            norms[k] += float(torch.sqrt(sum((g**2).sum() for g in grads)))
    shares = norms / norms.sum()
    return {name: round(float(s), 4) for name, s in zip(names, shares, strict=True)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-dir", type=Path, required=True)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True, help="folder holding IMDN_x2.pth")
    parser.add_argument("--runs-dir", type=Path, default=Path("reports/compression/cpu"))
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()

    from memsr_bench.model import load_model

    teacher = load_model("imdn", 2, weights=args.weights).module.eval()
    t_range = float(teacher.zoo_spec.input_range)
    rows = {"teacher-imdn": _level_errors(teacher, t_range, args.data_root)}
    # eval.json is written when a run has finished (a checkpoint alone may be a run still training)
    for folder in sorted(p for p in args.runs_dir.iterdir() if (p / "eval.json").exists()):
        if folder.name.startswith("teacher"):
            continue
        model = _student(folder)
        if model is not None:
            rows[folder.name] = _level_errors(model, 255.0, args.data_root)
            print(folder.name, rows[folder.name], flush=True)
    shares = _gradient_shares(teacher, t_range, args)
    result = {"level_errors": rows, "gradient_shares_at_init_imdn_teacher": shares, "args": vars(args)}
    (args.runs_dir / "levels.json").write_text(json.dumps(result, indent=1, default=str) + "\n")

    lines = [
        "# Where the MultiLap students lose: Laplacian levels of the error (generated)",
        "",
        "By `python experiments/cdism_levels.py` from the runs in this folder (trained weights, not the EMA).",
        "",
        "Mean |L_i(SR) − L_i(HR)| × 1000 per pyramid level (RGB in 0..1, images cropped to multiples of 16; "
        "level 0 is the finest band, 4 the coarse residual):",
        "",
    ]
    for name in SETS:
        lines += [
            f"**{name}**",
            "",
            "| model | " + " | ".join(f"level {i}" for i in range(PYRAMID_LEVELS)) + " |",
            "|---|" + "---:|" * PYRAMID_LEVELS,
        ]
        for model, errors in rows.items():
            lines.append(f"| {model} | " + " | ".join(f"{1000 * v:.3f}" for v in errors[name]) + " |")
        lines.append("")
    lines += [
        f"Share of each term in the gradient norm at the initial student (IMDN teacher, {args.batches} training "
        f"batches of 16 LR {args.patch_size}-px patches, MultiLap level terms weighted as released):",
        "",
        "| term | share |",
        "|---|---:|",
        *[f"| {k} | {v:.3f} |" for k, v in shares.items()],
    ]
    (args.runs_dir / "levels.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.runs_dir / 'levels.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
