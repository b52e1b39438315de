"""`memsr-bench upscale` on CUDA: is the streamed or tiled output bit-identical to whole-image inference on the
GPU, under which cuDNN settings; and the large photos within 1 GiB (GPU peak, whole-process peak RSS, time).

1. Exactness. For local zoo models with public checkpoints, on Set14 LR images, :func:`memsr_bench.tiling.
   upscale_image` on ``cuda`` with rows and with tiles, at the budget where the planner picks 48 px tiles
   (:func:`memsr_bench.tiling.tile_budget`), against whole-image inference on ``cuda`` under the same setting:
   max |diff|, the share of differing pixels, PSNR of tiled against whole. Each setting is a
   ``torch.backends.cudnn.flags`` context (``SETTINGS``); cuBLAS TF32 stays at PyTorch's default (off).
2. Large photos. The photos of ``experiments/large_photos.py`` (BSD100 mosaics: FMEN-S x4 4000x3000, CARN-M x2
   6000x4000), through the CLI ``upscale --device cuda --max-memory 1GiB`` in a child process that sets the
   cuDNN setting first and prints ``torch.cuda.max_memory_allocated`` after. Its peak RSS is the child's
   ``ru_maxrss``. Whole-image inference of the full photo runs here on the GPU when it fits, is timed, and
   is compared pixel for pixel with the PNG.

Run on a GPU machine (no internet needed):
    python experiments/cuda_upscale.py --data DATASETS --weights WEIGHTS --out OUT  # -> OUT/cuda_upscale.json
    python experiments/cuda_upscale.py --report OUT/cuda_upscale.json  # -> reports/tiling/cuda_upscale.md
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

from large_photos import CASES, mosaic, read_png_rows  # noqa: E402

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
                            sr, plan = upscale_image(loaded, lr, budget, args.device, rf=rf, method=method)
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
                    "rss_samples": samples[:: max(1, len(samples) // 60)],
                    "stderr_tail": log_err.read_text()[-2000:]}  # fmt: skip
    lines = log_out.read_text().strip().splitlines()
    if proc.returncode != 0 or len(lines) < 2:
        return result
    result |= json.loads(lines[-1])
    result["line"] = lines[-2]
    times = re.search(r", ([0-9.]+) s \(CPU ([0-9.]+) s; planning ([0-9.]+) s, PNG ([0-9.]+) s\)$", lines[-2])
    if times:
        result |= dict(zip(("upscale_seconds", "upscale_cpu_seconds", "planning_seconds", "png_seconds"),
                           map(float, times.groups()), strict=True))  # fmt: skip
    return result


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
    if args.report:
        write_report(json.loads(Path(args.report).read_text()), ROOT / "reports" / "tiling" / "cuda_upscale.md")
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


def write_report(results: dict, path: Path) -> None:
    raise NotImplementedError  # written once the measured JSON is back


if __name__ == "__main__":
    main()
