"""`memsr-bench upscale` on CUDA: is the streamed or tiled output bit-identical to whole-image inference on the
GPU, under which cuDNN settings; and the large photos within 1 GiB (GPU peak, whole-process peak RSS, time).

1. Exactness. For local zoo models with public checkpoints, on Set14 LR images, :func:`memsr_bench.tiling.
   upscale_image` on ``cuda`` with rows and with tiles, at the budget where the planner picks 48 px tiles
   (:func:`memsr_bench.tiling.tile_budget`), against whole-image inference on ``cuda`` under the same setting:
   max |diff|, the share of differing pixels, PSNR of tiled against whole. Each setting is a
   ``torch.backends.cudnn.flags`` context (``SETTINGS``; ``native_kernels=False``, so that the command's own
   setting does not override it); cuBLAS TF32 stays at PyTorch's default (off).
2. Large photos. The photos of ``experiments/large_photos.py`` (BSD100 mosaics: FMEN-S x4 4000x3000, CARN-M x2
   6000x4000), through the CLI ``upscale --device cuda --max-memory 1GiB`` as it is, in a child process that
   prints ``torch.cuda.max_memory_allocated`` after. Its peak RSS is the child's ``ru_maxrss``. Whole-image
   inference of the full photo runs here on the GPU when it fits, is timed, and is compared pixel for pixel
   with the PNG.
3. RSS. CARN-M on a 512x6000 strip through the same command under variants of the environment
   (``RSS_VARIANTS``), to find what the process holds on CUDA.

Run on a GPU machine (no internet needed):
    python experiments/cuda_upscale.py --data DATASETS --weights WEIGHTS --out OUT  # -> OUT/cuda_upscale.json
    python experiments/cuda_upscale.py --report runs.json  # {"runs": [cuda_upscale.json, ...]} -> the .md
DATASETS holds ``Set14/LR_bicubic_rcan/X2``, ``.../X4`` and ``BSD100/HR``. ``--budget-s`` stops starting work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from large_photos import CASES, command_times, mosaic, read_png_rows  # noqa: E402

import zoo  # noqa: E402
from memsr_bench.data.image_io import read_image_rgb, write_image_rgb  # noqa: E402
from memsr_bench.measure.receptive_field import receptive_field  # noqa: E402
from memsr_bench.metrics import psnr  # noqa: E402
from memsr_bench.model import load_model  # noqa: E402
from memsr_bench.tiling import (  # noqa: E402
    peak_with_conv_workspace,
    size_independent_kernels,
    tile_budget,
    upscale_image,
)

# name: torch.backends.cudnn.flags arguments (benchmark off throughout: autotuning picks per shape and run)
SETTINGS = {
    "cuDNN, TF32 (PyTorch's default)": {
        "enabled": True,
        "benchmark": False,
        "deterministic": False,
        "allow_tf32": True,
    },
    "cuDNN, FP32": {"enabled": True, "benchmark": False, "deterministic": False, "allow_tf32": False},
    "cuDNN deterministic, FP32": {"enabled": True, "benchmark": False, "deterministic": True, "allow_tf32": False},
    "no cuDNN (native CUDA kernels), FP32": {
        "enabled": False,
        "benchmark": False,
        "deterministic": False,
        "allow_tf32": False,
    },
}
MODELS = [  # zoo name, scale, Set14 LR folder, methods
    ("fmen-s-deploy", 4, "X4", ("rows", "tiles")),
    ("carn-m", 2, "X2", ("rows", "tiles")),
    ("fsrcnn", 4, "X4", ("tiles",)),  # Y-only: tiles with the bicubic chroma
]
IMAGES = ("baboon", "bridge")
TILE = 48
BUDGET = "1GiB"
# `memsr-bench` (the CLI's main) with torch.backends.cudnn attributes set first (JSON in argv[1]), then its GPU peaks
CHILD = """
import json, sys, torch
for name, value in json.loads(sys.argv[1]).items():
    setattr(torch.backends.cudnn, name, value)
from memsr_bench.cli import main
rc = main(sys.argv[2:])
gpu = torch.cuda.is_available()
print(json.dumps({"cuda_max_allocated": torch.cuda.max_memory_allocated() if gpu else None,
                  "cuda_max_reserved": torch.cuda.max_memory_reserved() if gpu else None}))
sys.exit(rc)
"""
PRODUCT = "the command's own (cuDNN in FP32, not autotuned)"  # upscale's size_independent_kernels on CUDA
# CARN-M x2 on a 512x6000 strip (64 bands of 8 rows): the whole process's RSS under variants of the environment
RSS_STRIP = ("carn-m", 2, (512, 6000))
RSS_VARIANTS = {  # name: (environment, cuDNN attributes)
    "the command as it is": ({}, {}),
    "THP_MEM_ALLOC_ENABLE=0": ({"THP_MEM_ALLOC_ENABLE": "0"}, {}),
    "OMP_NUM_THREADS=2": ({"OMP_NUM_THREADS": "2"}, {}),
    "MALLOC_ARENA_MAX=2": ({"MALLOC_ARENA_MAX": "2"}, {}),
    "TORCH_CUDNN_V8_API_LRU_CACHE_LIMIT=16": ({"TORCH_CUDNN_V8_API_LRU_CACHE_LIMIT": "16"}, {}),
    "cuDNN off (native CUDA kernels)": ({}, {"enabled": False}),
}


def _case(key: str, args: argparse.Namespace) -> tuple[str, int, tuple[int, int]]:
    model, scale, lr_size, _ = CASES[key]
    return model, scale, (lr_size[0] // 10, lr_size[1] // 10) if args.smoke else lr_size


def _diff(sr: np.ndarray, ref: np.ndarray) -> dict:
    d = np.abs(sr.astype(np.int16) - ref.astype(np.int16))
    return {
        "max_abs_diff": int(d.max()),
        "differing_pixels": float(np.mean(d.max(axis=2) > 0)),
        "psnr_rgb_vs_whole_db": float(psnr(sr, ref, channel="rgb")) if d.any() else None,
    }


def exactness(args: argparse.Namespace, deadline: float) -> list[dict]:
    rows = []
    for name, scale, folder, methods in MODELS:
        try:
            loaded = load_model(name, scale, weights=args.weights)
        except Exception as err:  # noqa: BLE001 - recorded, the others go on
            rows.append({"model": name, "scale": scale, "error": f"{type(err).__name__}: {err}"})
            continue
        rf = receptive_field(
            loaded.module, scale, name=loaded.name, channels=1 if loaded.entry.spec.channels == "y" else 3
        )
        for image in IMAGES:
            lr = read_image_rgb(Path(args.data) / "Set14" / "LR_bicubic_rcan" / folder / f"{image}x{scale}.png")
            budget = tile_budget(loaded, lr.shape[:2], TILE, rf)
            for setting, flags in SETTINGS.items():
                if time.monotonic() > deadline:
                    return rows
                with torch.backends.cudnn.flags(**flags):
                    whole = zoo.upscaler(loaded.module, args.device)(lr)
                    for method in methods:
                        row = {"model": name, "scale": scale, "image": image, "lr_size": list(lr.shape[:2]),
                               "setting": setting, "method": method, "budget_bytes": budget}  # fmt: skip
                        try:
                            sr, plan = upscale_image(
                                loaded, lr, budget, args.device, rf=rf, method=method, native_kernels=False
                            )  # not size_independent_kernels: the setting of the column, as for the whole image
                            row |= {"pieces": plan.n_tiles, "tile": list(plan.tile), "exact_plan": plan.exact}
                            row |= _diff(sr, whole)
                        except Exception as err:  # noqa: BLE001
                            row["error"] = f"{type(err).__name__}: {err}"
                        print(json.dumps(row), flush=True)
                        rows.append(row)
    return rows


def run_command(argv: list[str], cudnn: dict, env: dict[str, str], work: Path) -> dict:
    """The CLI in a child process: wall time, its peak RSS (``ru_maxrss``), its RSS sampled every 0.25 s, its GPU
    peaks, and the times its summary line gives."""
    import threading

    argv = [sys.executable, "-c", CHILD, json.dumps(cudnn), *argv]
    log_out, log_err = work / "stdout.txt", work / "stderr.txt"
    samples: list[tuple[float, int]] = []
    start = time.perf_counter()
    with open(log_out, "w") as out, open(log_err, "w") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT, env=os.environ | env)

        def sample() -> None:
            status = Path(f"/proc/{proc.pid}/status")
            while proc.returncode is None:
                try:
                    kib = next(int(v.split()[1]) for v in status.read_text().splitlines() if v.startswith("VmRSS"))
                    samples.append((round(time.perf_counter() - start, 2), kib * 1024))
                except (OSError, StopIteration, ValueError):
                    pass
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child: its own rusage, ru_maxrss in KiB
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.join()
    result: dict = {"wall_seconds": time.perf_counter() - start, "peak_rss_bytes": usage.ru_maxrss * 1024,
                    "cpu_seconds": usage.ru_utime + usage.ru_stime, "returncode": proc.returncode,
                    "rss_sampled_max_bytes": max((b for _, b in samples), default=None),
                    "rss_samples": samples[:: max(1, len(samples) // 60)],
                    "stderr_tail": log_err.read_text()[-2000:]}  # fmt: skip
    lines = log_out.read_text().strip().splitlines()
    if proc.returncode != 0 or len(lines) < 2:
        return result
    result |= json.loads(lines[-1])
    result["line"] = lines[-2]
    return result | command_times(lines[-2])


def _upscale_argv(lr_path: Path, sr_path: Path, model: str, scale: int, args: argparse.Namespace) -> list[str]:
    return ["upscale", str(lr_path), str(sr_path), "--model", model, "--scale", str(scale), "--weights",
            args.weights, "--max-memory", BUDGET, "--device", args.device, "--quiet"]  # fmt: skip


def large_photo(key: str, args: argparse.Namespace) -> dict:
    """The photo ``key`` of large_photos.py through ``memsr-bench upscale --device cuda`` as it is."""
    model, scale, lr_size = _case(key, args)
    work = Path(args.work) / key
    work.mkdir(parents=True, exist_ok=True)
    lr, used = mosaic(Path(args.data) / "BSD100" / "HR", lr_size)
    lr_path, sr_path = work / "lr.png", work / "sr.png"
    write_image_rgb(lr_path, lr)
    result = {"case": key, "model": model, "scale": scale, "lr_size": list(lr_size), "setting": PRODUCT,
              "input": f"mosaic of {len(used)} BSD100 HR images"}  # fmt: skip
    result |= run_command(_upscale_argv(lr_path, sr_path, model, scale, args), {}, {}, work)
    if sr_path.exists():
        result["sr_png_bytes"] = sr_path.stat().st_size
    return result


def rss_variants(args: argparse.Namespace, deadline: float) -> dict:
    """RSS of the command on CUDA for ``RSS_STRIP`` under each of ``RSS_VARIANTS``."""
    model, scale, lr_size = RSS_STRIP
    lr_size = (lr_size[0] // 8, lr_size[1] // 10) if args.smoke else lr_size
    work = Path(args.work) / "rss"
    work.mkdir(parents=True, exist_ok=True)
    lr_path, sr_path = work / "lr.png", work / "sr.png"
    write_image_rgb(lr_path, mosaic(Path(args.data) / "BSD100" / "HR", lr_size)[0])
    found = {}
    for name, (env, cudnn) in RSS_VARIANTS.items():
        if time.monotonic() > deadline:
            break
        found[name] = run_command(_upscale_argv(lr_path, sr_path, model, scale, args), cudnn, env, work)
        print(name, json.dumps({k: v for k, v in found[name].items() if k not in ("rss_samples", "stderr_tail")}))
    return {"model": model, "scale": scale, "lr_size": list(lr_size), "variants": found}


def whole_reference(result: dict, args: argparse.Namespace) -> None:
    """Whole-image inference of the full photo on the GPU (timed after a warm-up), compared with the PNG."""
    key = result["case"]
    model, scale, lr_size = _case(key, args)
    loaded = load_model(model, scale, weights=args.weights)
    predicted = peak_with_conv_workspace(loaded.module, (1, 3, *lr_size))
    free = torch.cuda.mem_get_info()[0] if args.device.startswith("cuda") else 2**30
    result["whole_predicted_peak_bytes"] = predicted
    if predicted > 0.8 * free:
        result["whole"] = f"not run: predicted peak {predicted / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
        return
    lr = read_image_rgb(Path(args.work) / key / "lr.png")
    run = zoo.upscaler(loaded.module, args.device)
    with size_independent_kernels():  # as the command runs
        run(lr[:256, :256])  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        whole = run(lr)  # uint8 on the host: the GPU work is synchronised by the copy
        seconds = time.perf_counter() - start
    result["whole_seconds"] = seconds
    if args.device.startswith("cuda"):
        result["whole_cuda_max_allocated"] = torch.cuda.max_memory_allocated()
    sr = read_png_rows(Path(args.work) / key / "sr.png")
    result |= {f"whole_{k}": v for k, v in _diff(sr, whole).items() if k != "psnr_rgb_vs_whole_db"}
    del sr, whole


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--weights", default="../shared/weights")
    ap.add_argument("--work", default="/tmp/memsr-cuda-upscale")
    ap.add_argument("--out", default="/tmp/memsr-cuda-upscale")
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no new part after this many seconds")
    ap.add_argument("--device", default="cuda", help="cpu checks the script itself (with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="photos of a tenth of each side")
    ap.add_argument("--parts", default="exactness,rss,photos", help="comma-separated: exactness, rss, photos")
    ap.add_argument("--report", help="render reports/tiling/cuda_upscale.md from this cuda_upscale.json")
    args = ap.parse_args()
    if args.report:  # {"runs": [cuda_upscale.json, ...]}
        write_report(json.loads(Path(args.report).read_text())["runs"], ROOT / "reports" / "tiling" / "cuda_upscale.md")
        return
    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        # the device's copy of the tree may carry an older .git: the caller names the commit
        "git_commit": os.environ.get("GIT_COMMIT")
        or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout,
    }
    path = out / "cuda_upscale.json"

    def save() -> None:
        path.write_text(json.dumps(results, indent=1))

    if "exactness" in args.parts:
        results["exactness"] = exactness(args, t0 + 0.4 * args.budget_s)
        save()
    if "rss" in args.parts:
        results["rss"] = rss_variants(args, t0 + 0.5 * args.budget_s)
        save()
    results["photos"] = []
    for key in CASES if "photos" in args.parts else ():
        if time.monotonic() - t0 > args.budget_s:
            break
        print(f"[{key}]", flush=True)
        result = large_photo(key, args)
        results["photos"].append(result)
        save()
        if result.get("returncode") == 0 and time.monotonic() - t0 < args.budget_s:
            try:
                whole_reference(result, args)
            except Exception as err:  # noqa: BLE001
                result["whole"] = f"{type(err).__name__}: {err}"
        print(json.dumps({k: v for k, v in result.items() if k not in ("stderr_tail", "rss_samples")}), flush=True)
        save()
    results["seconds"] = time.monotonic() - t0
    save()


MIB = 2**20
# Written under "Notes" of the report: what the tables do not show
NOTES = [
    "Run 1 (eb2dccf) timed the photos under PyTorch's default cuDNN setting (TF32): the command did not yet set "
    "FP32 on CUDA, and FMEN-S's photo then differed from whole-image inference by one level in 2.9 % of its "
    "pixels. Run 2 (1cde406) is the command as it is now: size_independent_kernels sets cuDNN to FP32 without "
    "autotuning, and the 192-megapixel photo is identical to whole-image inference under the same setting.",
    "Peak RSS on CUDA is above the 1 GiB budget. The budget's runtime allowance (337 MiB) was measured on CPU; "
    "on this machine the process held about 430 MiB after importing torch and 1.0-1.2 GiB once CUDA, cuDNN and "
    "cuBLAS were loaded (the sampled RSS of run 2). The tensors on the GPU stayed within the plan "
    "(torch.cuda.max_memory_allocated, 354-561 MiB), but the caching allocator reserved 1.3-2.0 GiB.",
    "CARN-M's 96-megapixel photo: ru_maxrss 16.3 GiB in run 1 and 7.0 GiB in run 2, while RSS sampled every "
    "0.25 s (every 4th sample kept) stayed at or below 1.17 GiB. The spike is transient and its cause is not "
    "established: it did not appear on the 512x6000 strip (64 bands) under any variant, nor in FMEN-S's photo (47 "
    "bands). The device time of this session ran out before it could be traced.",
    "The command's time on CUDA is dominated by the PNG (zlib level 6 on one CPU core: 55.5 s of 67.6 s for FMEN-S) "
    "and by planning (6.4 s, fake-tensor passes on the CPU). The network passes took about 5.7 s against 3.5 s "
    "for whole-image inference of the whole photo on the GPU (9.1 GiB allocated).",
]


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.4f} %"


def write_report(runs: list[dict], path: Path) -> None:
    lines = ["# `memsr-bench upscale` on CUDA", ""]
    lines += [f"Measured by `experiments/cuda_upscale.py`; data: [{path.stem}_h200.json]({path.stem}_h200.json).", ""]
    for i, run in enumerate(runs, 1):
        lines.append(f"- run {i}: {run['device']}, torch {run['torch']}, CUDA {run['cuda']}, cuDNN {run['cudnn']}, "
                     f"{run['cpu_count']} CPU cores, commit {run['git_commit']}, {run['seconds']:.0f} s")  # fmt: skip
    exact = [r for run in runs for r in run.get("exactness", [])]
    if exact:
        settings = list(dict.fromkeys(r["setting"] for r in exact))
        lines += ["", "## Rows and tiles against whole-image inference on the GPU", "",
                  f"`upscale_image(..., 'cuda', method=...)` at the budget where the planner picks {TILE} px tiles "
                  "(`tile_budget`), against `zoo.upscaler(model, 'cuda')` on the whole image, both under the setting "
                  "of the column (`torch.backends.cudnn` flags; cuBLAS TF32 off, PyTorch's default). Cells: max "
                  "|diff| of the uint8 output / share of pixels that differ. Set14 LR (MATLAB bicubic).", "",
                  "| model | x | image (LR) | method | bands or tiles | " + " | ".join(settings) + " |",
                  "|---|---:|---|---|---:|" + "---|" * len(settings)]  # fmt: skip
        keys = list(dict.fromkeys((r["model"], r["scale"], r["image"], r["method"]) for r in exact))
        for key in keys:
            cells = {r["setting"]: r for r in exact if (r["model"], r["scale"], r["image"], r["method"]) == key}
            first = next(iter(cells.values()))
            image = f"{first['image']} ({first['lr_size'][0]}x{first['lr_size'][1]})"
            row = [first["model"], str(first["scale"]), image, first["method"], str(first.get("pieces", "-"))]
            for setting in settings:
                c = cells.get(setting)
                diff = "-" if c is None else f"{c.get('max_abs_diff')} / {_pct(c.get('differing_pixels'))}"
                row.append(c["error"] if c is not None and "error" in c else diff)
            lines.append("| " + " | ".join(row) + " |")
    photos = [(i, p) for i, run in enumerate(runs, 1) for p in run.get("photos", [])]
    if photos:
        lines += ["", f"## Large photos: `memsr-bench upscale --device cuda --max-memory {BUDGET}`", "",
                  "The photos of `experiments/large_photos.py` (BSD100 mosaics). The command runs in a child process; "
                  "peak RSS is its `ru_maxrss`, 'sampled' the largest RSS read from /proc (every 0.25 s; run 2 "
                  "kept every 4th sample, run 1 none); GPU: "
                  "`torch.cuda.max_memory_allocated` / `max_memory_reserved`. Whole: whole-image inference of the "
                  "full photo on the GPU under the same setting, timed after a warm-up.", "",
                  "| run | photo | cuDNN setting | bands | command [s] | planning [s] | PNG [s] | passes [s] | "
                  "whole-image [s] | GPU allocated / reserved [MiB] | peak RSS [MiB] | RSS sampled [MiB] | "
                  "identical to whole |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for i, p in photos:
            bands = re.search(r"in (\d+) band", p.get("line", ""))
            passes = p["upscale_seconds"] - p["planning_seconds"] - p["png_seconds"] if "upscale_seconds" in p else None
            sampled = p.get("rss_sampled_max_bytes") or max((b for _, b in p.get("rss_samples", [])), default=None)
            if "whole_max_abs_diff" in p:
                same = (
                    "yes"
                    if p["whole_max_abs_diff"] == 0
                    else "no: max {}, {}".format(p["whole_max_abs_diff"], _pct(p["whole_differing_pixels"]))
                )
            else:
                same = p.get("whole", "-")
            cells = [
                str(i),
                f"{p['case']} ({p['lr_size'][0]}x{p['lr_size'][1]} LR)",
                p["setting"],
                bands.group(1) if bands else "-",
                f"{p['wall_seconds']:.1f}",
                str(p.get("planning_seconds", "-")),
                str(p.get("png_seconds", "-")),
                "-" if passes is None else f"{passes:.1f}",
                f"{p['whole_seconds']:.2f}" if "whole_seconds" in p else "-",
                f"{p['cuda_max_allocated'] / MIB:,.0f} / {p['cuda_max_reserved'] / MIB:,.0f}",
                f"{p['peak_rss_bytes'] / MIB:,.0f}",
                "-" if sampled is None else f"{sampled / MIB:,.0f}",
                same,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    rss = [(i, run["rss"]) for i, run in enumerate(runs, 1) if run.get("rss")]
    for i, found in rss:
        h, w = found["lr_size"]
        lines += ["", f"## Peak RSS under variants of the environment (run {i})", "",
                  f"{found['model']} x{found['scale']} on a {h}x{w} LR strip of the same mosaic, the command as it "
                  "is with one change each.", "",
                  "| variant | peak RSS [MiB] | GPU allocated / reserved [MiB] | command [s] |",
                  "|---|---:|---:|---:|"]  # fmt: skip
        for name, v in found["variants"].items():
            lines.append(f"| {name} | {v['peak_rss_bytes'] / MIB:,.0f} | {v['cuda_max_allocated'] / MIB:,.0f} / "
                         f"{v['cuda_max_reserved'] / MIB:,.0f} | {v['wall_seconds']:.1f} |")  # fmt: skip
        missing = [name for name in RSS_VARIANTS if name not in found["variants"]]
        if missing:
            lines.append(f"\nNot run (the script's time budget): {', '.join(missing)}.")
    lines += ["", "## Notes", "", *(f"* {note}" for note in NOTES), ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
