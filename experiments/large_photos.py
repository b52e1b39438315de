"""Large photos within 1 GiB: `memsr-bench upscale` on a 4000x3000 LR photo at x4 (FMEN-S, a 192-megapixel output)
and a 6000x4000 LR photo at x2 (CARN-M, a 96-megapixel output), peak RSS of the whole process, identity with whole-image
inference, and throughput against whole-image inference measured in the same run.

The inputs are real photographs: a mosaic of BSD100 HR images (sorted by name, portrait ones turned to
landscape, each cropped to 320x480, placed row by row and cycled), cut to the LR size. For each case:

1. ``memsr-bench upscale LR.png SR.png --model M --scale S --weights W --max-memory 1GiB --quiet`` runs in a
   child process; its peak RSS is the child's ``ru_maxrss`` (``os.wait4``: the whole process, Python, torch
   and all buffers), its wall time is measured around it, and its tile time is the time the command prints.
2. Identity, on a crop where whole-image inference fits this machine's memory (the full photo does not: the
   predicted whole-image peak is printed): the top-left crop of the LR photo is upscaled (a) whole, in this
   process, under the same native CPU kernels (`memsr_bench.tiling.size_independent_kernels`), and (b) by the same
   command with --max-memory 1GiB (tiled, streamed). (a) and (b) must be equal; and the full photo's output
   must equal (a) wherever an output pixel's receptive field lies inside the crop (rows and columns more
   than the receptive radius from the crop's bottom and right edges; the top and left borders are shared).
3. Throughput: output pixels per second of the tiled command on the full photo (tile time, and end to end)
   over that of the whole-image pass of step 2 (a), timed in this run.

Run: ``python experiments/large_photos.py`` (about 40 min on 2 cores); ``--only fmen-s-x4`` for one case.
Writes ``reports/tiling/large_photos.md`` and ``large_photos.json`` (``--out``), after each case.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402
from memsr_bench.data.image_io import read_image_rgb, write_image_rgb  # noqa: E402
from memsr_bench.measure.receptive_field import receptive_field  # noqa: E402
from memsr_bench.model import load_model  # noqa: E402
from memsr_bench.tiling import (  # noqa: E402
    RUNTIME_ALLOWANCE_BYTES,
    peak_with_conv_workspace,
    plan_tiling,
    size_independent_kernels,
)
from memsr_bench.units import parse_bytes  # noqa: E402

BUDGET = "1GiB"
# the children's environment: OMP_NUM_THREADS when --threads is given; with --hugetlb, transparent huge pages for
# glibc's blocks (1.4x faster on CARN-M 480x3000, but CARN-M's full photo then peaked at 2229 MiB: not the default)
THREADS_ENV: dict[str, str] = {}
CASES = {
    # key: model, scale, LR size (H, W), crop for the identity check (H, W)
    "fmen-s-x4": ("fmen-s-deploy", 4, (3000, 4000), (800, 1000)),
    "carn-m-x2": ("carn-m", 2, (4000, 6000), (450, 600)),  # 96 MP out (the 3000x2000 run of 2026-11-27 was 24 MP)
}
# Written under "Notes" of the report: what the script does not measure itself (exploratory runs, same machine)
NOTES = [
    "Before the current allocator setting (commit 83931d0: every block of 1 MiB or more its own mapping, the 8 MiB "
    "column buffers of chunked convolutions included, faulted in 4 KiB at a time) the same photos took 552 s "
    "(FMEN-S, peak RSS 720 MiB) and 1733 s (CARN-M, 988 MiB).",
    "The PNG: ISA-L's level 2 (the default since d052b2e) wrote FMEN-S's 192-megapixel PNG in 3.1 s, zlib's level 6 "
    "in 46 s (215 s in all at 3abb634, against 181 s at 3057b74).",
    "Bare passes vary on this machine by up to a third within minutes: in the fmen-s-x4 run at d37140e the crop's "
    "pass with huge pages took 8.3 s, 9.4 s (the two rounds) and 10.7 s (the details' pass), so the command's ratio "
    "against it spans 0.70 to 0.85; at 3057b74 (the row above) 9.6, 10.4 and 9.0 s, and the bold ratio was 0.82 "
    "where the run at d37140e gave 0.70. Earlier: a 180x4000 strip took 10.0 s, then 7.8 s twice; 512x4000, "
    "32.6 s then 24.8 s. Compare ratios only within one run of this script.",
    "Whole-image throughput depended on the image's shape as well as its size until the chunk loop ran without "
    "dispatch modes (53888ab: the 207x4000 strip 1.36 M SR px/s, the 800x1000 crop 1.37 M, huge pages, mean of two "
    "rounds): at 3057b74 the strip ran at 1.08 M SR "
    "px/s and the crop at 1.28 M (the command on the 4000-wide photo: "
    "1.06 M); at d37140e 1.33 M and 1.45 M; earlier, back to back, "
    "1.49 M on 180x4000 and 1.59 M on 720x1000. Per pixel it also slowed with the size: whole-image inference of "
    "1024x4000 took 70 and 77 s (4.3-4.8 s per 64 rows), 256x4000 11.5-13.6 s (2.9-3.4 s) in runs minutes before.",
    "Chunked convolutions in place (53888ab; products of 512 pixels since 5f2e010): each chunk's im2col (a strided "
    "copy) and matrix products run in two resident 8 MiB buffers and write into the output, with the dispatch "
    "modes off. Before, each chunk called the native kernel, whose column buffer came from glibc's heap and was "
    "returned after each convolution (385-485 k minor faults for FMEN-S on 256x4000 LR against 41 k for "
    "whole-image inference), and every op of the chunk loop went through the Python dispatch modes (3.7 s of "
    "14.2 s of CPU time under the profiler on 256x4000). FMEN-S on 256x4000 LR by rows: 15.5 and 17.0 s before, "
    "10.6 and 11.6 s after (runs minutes apart); the command on the photo: 181 s at 3057b74, 153 s at 53888ab.",
    "CARN-M at 4cc3085 (8-row bands, 1002 MiB planned) peaked at 1027 MiB, 3 MiB over the budget. On a 256x6000 "
    "strip RSS sampled every 10 ms peaked in the last 2 s of the image (958 MiB; about 640 MiB before), where the "
    "predicted tensor peak also lay (553 MiB, against 310 MiB in the steady state): once the last band was in, "
    "every layer computed all its remaining rows in one sweep. Since 490a544 a layer computes at most a band's "
    "worth of rows per sweep: the photo planned 16-row bands at 912 MiB and peaked at 946 MiB (490a544), 34 MiB "
    "(3.7 %) above the plan. With the chunked convolutions in place (53888ab) it peaked at 915 MiB for 910.5 MiB "
    "planned (0.5 % above), in 662 s (planning 10.1 s); its first bare round there took 7.2 s against 4.4 s after "
    "the command: the bold ratio (0.964, mean of the rounds) was 0.73 against the faster round alone. At e678b2b "
    "(the row above: products of 512 pixels, planning passes that cannot fit ended early) it peaked at 908 MiB, "
    "in 786 s (planning 4.0 s) with the machine slower (bare rounds 7.6 and 6.0 s): 0.84 against the faster round "
    "alone; its decoded pixels are those of the run at 53888ab.",
    "FMEN-S at 53888ab (one product per chunk) ran 153 s (planning 7.2 s, PNG 3.3 s) at 0.918 of the fastest bare "
    "pass (the crop with huge pages, 9.8 and 8.9 s; the passes alone 0.986). At 8b5df74 (products of 512 pixels), "
    "with the machine about 30 % slower (the same crop pass 11.5 and 13.9 s): 202.6 s (planning 4.5 s, PNG 3.6 s), "
    "0.897 of the fastest bare pass, the strip with huge pages (11.4 and 13.7 s), and 0.934 for the passes alone. "
    "Since f1c48ee a predicted band pass that cannot fit ends where its live tensors first exceed the budget (the "
    "262- and 128-row candidates after 54 and 1536 of about 3100 ops). At f1c48ee, the machine slow again (the crop "
    "pass 15.6 and 13.7 s): 193 s (planning 2.9 s, PNG 3.6 s), 1.005 of the fastest bare pass (the strip with huge "
    "pages, 13.2 and 13.6 s), the same decoded pixels. At f499df3 (the row above, with the full photo's "
    "whole-image reference): 188 s (planning 2.1 s), 1.057 of the fastest bare pass (the strip, native, 11.8 and "
    "15.6 s): 0.910 against its faster round alone. A run at 8b5df74 while a test run shared the machine (the "
    "crop's first bare pass 174 s) is not reported.",
    "BLAS sums depend on the product's size: MKL's sgemm (2 threads) gave other sums for some column counts (600-699 "
    "of 4000, and under 6) from about 1000 inputs per output with 8 or 48 outputs (never at 450, FMEN-S's). Rows of "
    "zoo edsr (256 channels, 2304 inputs) differed from its whole image in 1454-3945 values by up to 3e-5 (of 0..1) "
    "before 5f2e010; products of exactly 512 pixels made them equal (tests/test_row_stream.py).",
    "From f32c460 to 53888ab the chunked convolutions took their buffers from glibc's heap and cleared PyTorch's "
    "huge-page mark from it; without the clearing CARN-M peaked at 2230 MiB on this photo (khugepaged filled the "
    "marked heap ranges). Now no block of 1 MiB or more comes from the heap. The fmen-s-x4 row ran with "
    "--no-full-reference: its decoded pixels' sha256 equals that of the run at d7f061e (223 s, 756 MiB), whose "
    "full photo was identical to whole-image inference run separately (max abs diff 0; 9.5 GiB, 223 s).",
    "Where the streamed time goes (FMEN-S x4, 512x4000 LR, one process, aten ops timed by a dispatch mode), at "
    "commit 79d6084: of 42.3 s, planning 3.2 s, PNG filtering and compression 7.8 s, convolutions 24.6 s, the "
    "executor's copies 4.0 s (appending a band's rows to the rows a layer keeps 2.3 s, contiguous row ranges "
    "1.0 s, zero rows at the image border 0.7 s). With each layer's rows kept as pieces and convolutions "
    "writing into them (d7f061e): 40.1 s, appending 0.2 s, contiguous copies 0.6 s. Whole-image inference of "
    "the same image took 28.3 s under the same timing. Since d052b2e the convolution rows next to the image "
    "border come from a small zero-padded copy instead of a padded copy of the whole segment.",
]
CELL = (320, 480)  # BSD100 HR images are about 321x481 or 481x321 (some a pixel less)


def mosaic(hr_dir: Path, size: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """A ``size`` (H, W) uint8 photo assembled from the HR images of ``hr_dir``; returns it and the files used."""
    files = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in (".png", ".bmp"))
    rows, cols = -(-size[0] // CELL[0]), -(-size[1] // CELL[1])
    out = np.empty((rows * CELL[0], cols * CELL[1], 3), dtype=np.uint8)
    used = []
    for i in range(rows * cols):
        path = files[i % len(files)]
        image = read_image_rgb(path)
        if image.shape[0] > image.shape[1]:
            image = np.rot90(image)
        r, c = divmod(i, cols)
        out[r * CELL[0] : (r + 1) * CELL[0], c * CELL[1] : (c + 1) * CELL[1]] = image[: CELL[0], : CELL[1]]
        used.append(path.name)
    return np.ascontiguousarray(out[: size[0], : size[1]]), used


def run_upscale(src: Path, dst: Path, model: str, scale: int, weights: str) -> dict:
    """`memsr-bench upscale` in a child process: peak RSS (ru_maxrss), wall time, and the line it prints."""
    exe = Path(sys.executable).parent / "memsr-bench"
    argv = [str(exe), "upscale", str(src), str(dst), "--model", model, "--scale", str(scale), "--weights", weights,
            "--max-memory", BUDGET, "--quiet"]  # fmt: skip
    log_out, log_err = dst.with_suffix(".stdout"), dst.with_suffix(".stderr")
    start = time.perf_counter()
    with open(log_out, "w") as out, open(log_err, "w") as err:
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=os.environ | THREADS_ENV)
        _, status, usage = os.wait4(child.pid, 0)  # reaps the child: its own rusage, ru_maxrss in KiB
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = log_out.read_text(), log_err.read_text()
    if child.returncode != 0:
        raise SystemExit(f"memsr-bench upscale failed ({child.returncode}): {stderr.strip()}")
    line = stdout.strip().splitlines()[-1]
    return {
        "command": " ".join(["memsr-bench", *argv[1:]]),
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "wall_seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        **command_times(line),
        "load_average_after": os.getloadavg()[0],
        "line": line,
    }


def command_times(line: str) -> dict[str, float]:
    """The times in `memsr-bench upscale`'s summary line (empty if it has none): upscale, CPU, planning, PNG."""
    times = re.search(r", ([0-9.]+) s \(CPU ([0-9.]+) s; planning ([0-9.]+) s, PNG ([0-9.]+) s\)$", line)
    keys = ("upscale_seconds", "upscale_cpu_seconds", "planning_seconds", "png_seconds")
    return dict(zip(keys, map(float, times.groups()), strict=True)) if times else {}


def whole_image_reference(lr_path: Path, out_path: Path, model: str, scale: int, weights: str) -> dict:
    """Whole-image inference of the full photo in a child process (native CPU kernels, as the reference of the
    tests), its uint8 output saved raw to ``out_path`` (.npy); returns its peak RSS and time."""
    argv = [sys.executable, __file__, "--reference-child", str(lr_path), str(out_path), model, str(scale), weights]
    start = time.perf_counter()
    child = subprocess.Popen(argv, env=os.environ | THREADS_ENV)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"whole-image reference failed ({os.waitstatus_to_exitcode(status)})")
    return {"peak_rss_bytes": usage.ru_maxrss * 1024, "wall_seconds": time.perf_counter() - start}


def reference_child(lr_path: str, out_path: str, model: str, scale: str, weights: str) -> None:
    loaded = load_model(model, int(scale), weights=weights)
    lr = read_image_rgb(Path(lr_path))
    with size_independent_kernels():
        sr = zoo.upscaler(loaded.module)(lr)
    np.save(out_path, sr)


BARE_PASSES = {
    # name: (kernels, environment): whole-image inference of the crop in a plain child process (glibc's default
    # allocator), timed after a warm-up; the throughput ratio is taken against the fastest bit-identical one
    "native": ("native", {"THP_MEM_ALLOC_ENABLE": "0"}),
    "native, huge pages": ("native", {"THP_MEM_ALLOC_ENABLE": "1"}),
    "oneDNN (not bit-identical)": ("onednn", {"THP_MEM_ALLOC_ENABLE": "0"}),
    "oneDNN, huge pages (not bit-identical)": ("onednn", {"THP_MEM_ALLOC_ENABLE": "1"}),
}


def bare_pass(lr_path: Path, model: str, scale: int, weights: str, kernels: str, env: dict[str, str]) -> dict:
    """Seconds (wall, CPU) of whole-image inference of ``lr_path`` in a child process with ``env``."""
    argv = [sys.executable, __file__, "--bare-child", str(lr_path), model, str(scale), weights, kernels]
    done = subprocess.run(argv, env=os.environ | THREADS_ENV | env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def bare_child(lr_path: str, model: str, scale: str, weights: str, kernels: str) -> None:
    loaded = load_model(model, int(scale), weights=weights)
    lr = read_image_rgb(Path(lr_path))
    run = zoo.upscaler(loaded.module)
    with size_independent_kernels(kernels == "native"):
        run(lr[:64, :64])  # warm-up
        start, cpu_start = time.perf_counter(), time.process_time()
        run(lr)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}))


STRIP_ROWS = 256  # the full-width strip baseline: at most this many LR rows, fewer until the command runs it whole


def baseline_round(baselines: dict, key: str, model: str, scale: int, weights: str) -> None:
    """One round of the bit-identical bare passes (native kernels, with and without huge pages) on the crop and the
    full-width strip, appended to ``baselines[shape][variant]`` (seconds)."""
    for shape, entry in baselines.items():
        for name, (kernels, env) in BARE_PASSES.items():
            if kernels == "native":
                seconds = bare_pass(Path(entry["lr_path"]), model, scale, weights, kernels, env)["seconds"]
                entry.setdefault("seconds", {}).setdefault(name, []).append(seconds)
                print(f"[{key}] bare pass, {shape} {entry['lr_size']}, {name}: {seconds:.1f} s", flush=True)


def fastest_baseline(r: dict) -> tuple[float, str]:
    """The highest throughput (SR px/s) among the bit-identical bare passes of the crop and the strip, each the
    mean of its rounds, and which one it is."""
    best = (0.0, "")
    for shape, entry in r["baselines"].items():
        pixels = entry["lr_size"][0] * entry["lr_size"][1] * r["scale"] ** 2
        for name, seconds in entry["seconds"].items():
            rate = pixels / (sum(seconds) / len(seconds))
            best = max(best, (rate, f"{shape} {entry['lr_size'][0]}x{entry['lr_size'][1]}, {name}"))
    return best


def fastest_exact_seconds(bare: dict) -> float:
    """The fastest bit-identical (native kernels) bare pass of the crop, in seconds."""
    return min(v["seconds"] for k, v in bare.items() if BARE_PASSES[k][0] == "native")


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return done.stdout.strip()


def whole_image_crop(loaded, crop: tuple[int, int], rf) -> tuple[int, int]:
    """``crop`` made shorter (10 % at a time) until the command's plan at the budget is one band or tile: the
    command on it is whole-image inference, with the same planning and PNG writing as on the full photo."""
    height, width = crop
    while height > 2 * rf.radius:
        if plan_tiling(loaded, (height, width), parse_bytes(BUDGET, "--max-memory"), rf, stream=True).n_tiles == 1:
            return height, width
        height = int(height * 0.9)
    raise SystemExit(f"no crop of width {width} is upscaled whole within {BUDGET}")


def read_png_rows(path: Path, rows: int | None = None) -> np.ndarray:
    Image.MAX_IMAGE_PIXELS = None  # our own 192-megapixel output
    with Image.open(path) as image:
        array = np.asarray(image)
    return array if rows is None else array[:rows]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_case(key: str, args: argparse.Namespace) -> dict:
    model, scale, lr_size, crop = CASES[key]
    if args.smoke:  # a quick check of the script itself: a tenth of each side
        lr_size, crop = (lr_size[0] // 10, lr_size[1] // 10), (crop[0] // 10 + 40, crop[1] // 10 + 40)
    work = Path(args.work) / key
    work.mkdir(parents=True, exist_ok=True)
    lr, used = mosaic(Path(args.data_root) / "BSD100" / "HR", lr_size)
    lr_path, sr_path = work / "lr.png", work / "sr.png"
    write_image_rgb(lr_path, lr)
    loaded = load_model(model, scale, weights=args.weights)
    rf = receptive_field(loaded.module, scale, name=loaded.name, channels=3)
    with size_independent_kernels():  # as the whole-image reference runs
        whole_peak = peak_with_conv_workspace(loaded.module, (1, 3, *lr_size))
    print(f"[{key}] LR {lr_size}, predicted whole-image peak {whole_peak / 2**30:.1f} GiB; upscaling...", flush=True)

    crop = whole_image_crop(loaded, crop, rf)
    shapes = {"crop": crop}
    try:  # none where a band of the minimum height is all the budget holds (CARN-M, 6000 wide)
        shapes["strip"] = whole_image_crop(loaded, (min(STRIP_ROWS, lr_size[0]), lr_size[1]), rf)
    except SystemExit as err:
        print(f"[{key}] no full-width strip baseline: {err}", flush=True)
    baselines = {}
    for shape, size in shapes.items():
        path = work / f"{shape}_lr.png"
        write_image_rgb(path, np.ascontiguousarray(lr[: size[0], : size[1]]))
        baselines[shape] = {"lr_size": list(size), "lr_path": str(path)}
    baseline_round(baselines, key, model, scale, args.weights)  # before the command, and once more after it

    full = run_upscale(lr_path, sr_path, model, scale, args.weights)
    print(f"[{key}] {full['line']}; peak RSS {full['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)
    baseline_round(baselines, key, model, scale, args.weights)

    print(f"[{key}] crop {crop}: whole-image inference within {BUDGET} (one band)", flush=True)
    crop_lr = np.ascontiguousarray(lr[: crop[0], : crop[1]])
    crop_lr_path, crop_sr_path = work / "crop_lr.png", work / "crop_sr.png"
    write_image_rgb(crop_lr_path, crop_lr)
    tiled_crop = run_upscale(crop_lr_path, crop_sr_path, model, scale, args.weights)
    run = zoo.upscaler(loaded.module)
    with size_independent_kernels():
        run(crop_lr[:64, :64])  # warm-up
        start, cpu_start = time.perf_counter(), time.process_time()
        reference = run(crop_lr)
        whole_seconds, whole_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        crop_peak = peak_with_conv_workspace(loaded.module, (1, 3, *crop))
    print(f"[{key}] whole-image crop {crop}: {whole_seconds:.1f} s", flush=True)
    bare = {}
    for name, (kernels, env) in BARE_PASSES.items():
        bare[name] = bare_pass(crop_lr_path, model, scale, args.weights, kernels, env)
        print(f"[{key}] bare whole-image pass of the crop, {name}: {bare[name]['seconds']:.1f} s", flush=True)
    fastest_exact = fastest_exact_seconds(bare)
    crop_identical = bool(np.array_equal(read_image_rgb(crop_sr_path), reference))
    inner = ((crop[0] - rf.radius) * scale, (crop[1] - rf.radius) * scale)
    full_rows = read_png_rows(sr_path)
    full_identical = bool(np.array_equal(full_rows[: inner[0], : inner[1]], reference[: inner[0], : inner[1]]))
    pixels_sha256 = hashlib.sha256(full_rows.data).hexdigest()
    out_shape = full_rows.shape
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    full_reference = None
    if whole_peak + 2 * full_rows.nbytes < 0.6 * memory and not args.no_full_reference:
        del full_rows
        print(f"[{key}] whole-image inference of the full photo (reference, child process)...", flush=True)
        ref_path = work / "whole_sr.npy"
        full_reference = whole_image_reference(lr_path, ref_path, model, scale, args.weights)
        whole_sr = np.load(ref_path, mmap_mode="r")
        full_rows = read_png_rows(sr_path)
        full_reference["identical"] = bool(np.array_equal(full_rows, whole_sr))
        full_reference["max_abs_diff"] = int(
            max(
                np.abs(full_rows[i : i + 512].astype(np.int16) - whole_sr[i : i + 512]).max()
                for i in range(0, out_shape[0], 512)
            )
        )
        del whole_sr
        ref_path.unlink()
        print(f"[{key}] full photo identical to whole-image inference: {full_reference['identical']}", flush=True)
    del full_rows

    out_pixels = lr_size[0] * lr_size[1] * scale**2
    whole_rate = crop[0] * crop[1] * scale**2 / whole_seconds
    whole_cpu_rate = crop[0] * crop[1] * scale**2 / whole_cpu
    weights_file = Path(loaded.weights.path) if getattr(loaded.weights, "path", None) else None
    result = {
        "case": key,
        "git_commit": git_commit(),
        "model": model,
        "scale": scale,
        "weights_sha256": loaded.checkpoint_id,
        "weights_file": weights_file.name if weights_file else None,
        "lr_size": list(lr_size),
        "sr_size": list(out_shape[:2]),
        "sr_megapixels": out_pixels / 1e6,
        "input": f"mosaic of {len(used)} BSD100 HR images ({used[0]}..., sorted by name, cycled), cut to "
        f"{lr_size[0]}x{lr_size[1]}",
        "lr_png_sha256": sha256_file(lr_path),
        "sr_png_bytes": sr_path.stat().st_size,
        "sr_pixels_sha256": pixels_sha256,
        "receptive_radius": rf.radius,
        "predicted_whole_image_peak_bytes": whole_peak,
        "budget": BUDGET,
        "full": full,
        "full_reference": full_reference,
        "crop": {
            "lr_size": list(crop),
            "predicted_whole_image_peak_bytes": crop_peak,
            "whole_image_seconds": whole_seconds,
            "whole_image_cpu_seconds": whole_cpu,
            "load_average_after_whole": os.getloadavg()[0],
            "tiled": tiled_crop,
            "tiled_identical_to_whole": crop_identical,
            "full_output_identical_inside": [inner[0], inner[1]],
            "full_output_identical_to_whole": full_identical,
        },
        "bare_passes": {k: v | {"sr_px_per_s": crop[0] * crop[1] * scale**2 / v["seconds"]} for k, v in bare.items()},
        "baselines": {shape: {k: v for k, v in entry.items() if k != "lr_path"} for shape, entry in baselines.items()},
        "throughput": {
            # against the fastest bit-identical whole-image pass of the crop in a plain child process
            "ratio_fastest_bare": out_pixels / full["upscale_seconds"] / (crop[0] * crop[1] * scale**2 / fastest_exact),
            "whole_image_sr_px_per_s": whole_rate,
            "tiled_sr_px_per_s": out_pixels / full["upscale_seconds"],
            "tiled_end_to_end_sr_px_per_s": out_pixels / full["wall_seconds"],
            "ratio": out_pixels / full["upscale_seconds"] / whole_rate,
            "ratio_end_to_end": out_pixels / full["wall_seconds"] / whole_rate,
            "ratio_cpu_time": out_pixels / full["upscale_cpu_seconds"] / whole_cpu_rate,
            # the same command on the crop, which it upscales whole (one band): planning and PNG writing on both sides
            "whole_command_sr_px_per_s": crop[0] * crop[1] * scale**2 / tiled_crop["upscale_seconds"],
            "ratio_same_command": out_pixels
            / full["upscale_seconds"]
            / (crop[0] * crop[1] * scale**2 / tiled_crop["upscale_seconds"]),
            # the network's passes only: the command's time less planning and PNG writing, against the whole pass
            "ratio_inference": out_pixels
            / (full["upscale_seconds"] - full["planning_seconds"] - full["png_seconds"])
            / whole_rate,
        },
    }
    rate, which = fastest_baseline(result)
    passes = full["upscale_seconds"] - full["planning_seconds"] - full["png_seconds"]
    result["throughput"] |= {
        "fastest_baseline": which,
        "fastest_baseline_sr_px_per_s": rate,
        "ratio_fastest_baseline": out_pixels / full["upscale_seconds"] / rate,
        "ratio_fastest_baseline_passes": out_pixels / passes / rate,
    }
    return result


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "runtime_allowance_bytes": RUNTIME_ALLOWANCE_BYTES,
        "children_environment": dict(THREADS_ENV),
    }


def passes_ratio(r: dict) -> float:
    """The network's passes only (the command's time less planning and PNG writing) against the fastest
    bit-identical bare pass of the crop."""
    f, c = r["full"], r["crop"]
    fastest = fastest_exact_seconds(r["bare_passes"])
    passes = f["upscale_seconds"] - f["planning_seconds"] - f["png_seconds"]
    return r["sr_megapixels"] * 1e6 / passes / (c["lr_size"][0] * c["lr_size"][1] * r["scale"] ** 2 / fastest)


def write_report(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "large_photos.json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# Large photos within 1 GiB (`memsr-bench upscale`, streamed PNG output)",
        "",
        f"Generated by `python experiments/large_photos.py`. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']:.0f} GiB, torch {m['torch']} ({m['torch_threads']} threads), Python {m['python']}, "
        f"numpy {m['numpy']}, Pillow {m['pillow']}; commit {m['git_commit']}. Environment of the commands: "
        f"{' '.join(f'{k}={v}' for k, v in m.get('children_environment', {}).items()) or 'as inherited'}.",
        "",
        "| case | SR size | weights (sha256) | plan | peak RSS (whole process) | wall time | upscale time | "
        "throughput streamed / whole-image: the fastest bit-identical bare pass (plain child process, mean of the "
        "rounds before and after the command, of a crop or a full-width strip; in brackets the network's passes "
        "only, without planning and PNG writing); the same command on the crop; the bare pass in this process "
        "(wall; CPU time) | identical to whole-image inference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["cases"].values():
        t, c, f = r["throughput"], r["crop"], r["full"]
        plan = re.sub(r", [0-9.]+ s \(CPU .*\)$", "", f["line"].split(": ", 1)[1])
        reference = r.get("full_reference")
        whole_photo = (
            f"full photo: {'yes' if reference['identical'] else 'NO'} (max abs diff {reference['max_abs_diff']}); "
            if reference
            else ""
        )
        identical = whole_photo + (
            f"crop {c['lr_size'][0]}x{c['lr_size'][1]} LR: {'yes' if c['tiled_identical_to_whole'] else 'NO'}; "
            f"full photo's top-left {c['full_output_identical_inside'][0]}x{c['full_output_identical_inside'][1]} "
            f"SR: {'yes' if c['full_output_identical_to_whole'] else 'NO'}"
        )
        same = f"{t['ratio_same_command']:.3f}; " if "ratio_same_command" in t else ""
        if "ratio_fastest_baseline" in t:
            same = (
                f"**{t['ratio_fastest_baseline']:.3f}** ({t['ratio_fastest_baseline_passes']:.3f}) against "
                f"{t['fastest_baseline']}; " + same
            )
        elif "ratio_fastest_bare" in t:
            same = f"**{t['ratio_fastest_bare']:.3f}** ({passes_ratio(r):.3f}); " + same
        lines.append(
            f"| {r['case']} | {r['sr_size'][1]}x{r['sr_size'][0]} ({r['sr_megapixels']:.0f} MP) | "
            f"{r['weights_file']} ({r['weights_sha256'][:12]}) | {plan} | "
            f"{f['peak_rss_bytes'] / 2**20:.0f} MiB | {f['wall_seconds']:.0f} s | {f['upscale_seconds']:.0f} s | "
            f"{same}{t['ratio']:.3f} ({t['ratio_cpu_time']:.3f}) | {identical} |"
        )
    lines += [
        "",
        "## Reading",
        "",
        "* Memory: each row gives the plan's total (runtime allowance, uint8 input, the rows one step finishes and "
        "the PNG writer, the predicted peak of one step +5 %) and the measured peak RSS of the whole process.",
        "* Throughput baselines, all whole-image inference of part of the same photo where it fits: (1, in bold) "
        "the fastest bit-identical one, the bare model pass (`zoo.upscaler` under `size_independent_kernels`) in "
        "a plain child process, glibc's default allocator, with and without PyTorch's huge pages "
        "(`THP_MEM_ALLOC_ENABLE`), on a crop and on a full-width strip (the tallest the command upscales whole "
        "within the budget; none for CARN-M's 6000-wide photo), each the mean of a round before and a round after "
        "the command (older rows: one pass of the crop after it); "
        "(2) the same command on the crop, which it upscales whole (one band): the same process settings, planning "
        "and PNG writing; (3) the bare pass in this script's process. oneDNN passes (PyTorch's default CPU "
        "convolutions, whose sums depend on the image size, so not bit-identical) are listed in the details for "
        "reference. The command sets its allocator for the budget (`memsr_bench.tiling.configure_allocator`: "
        "blocks of 1 MiB or more mapped on their own and returned when freed, huge pages for tensors of 2 MiB or "
        "more, the column buffers of chunked convolutions reused from the heap).",
    ]
    lines += ["", "## Notes", "", *(f"* {note}" for note in NOTES)]
    lines += ["", "## Details", ""]
    for r in results["cases"].values():
        t, c, f = r["throughput"], r["crop"], r["full"]
        lines += [
            f"### {r['case']}",
            "",
            f"* Input: {r['input']}; LR PNG sha256 `{r['lr_png_sha256'][:16]}...`."
            + (f" Measured at commit {r['git_commit']}." if "git_commit" in r else ""),
            f"* Command: `{f['command']}`",
            f"* Output: {r['sr_png_bytes'] / 1e6:.0f} MB PNG; sha256 of the decoded pixels `{r['sr_pixels_sha256']}`.",
            f"* Peak RSS {f['peak_rss_bytes'] / 2**20:.0f} MiB (`ru_maxrss` of the child process) for a budget of "
            f"{r['budget']}; wall {f['wall_seconds']:.1f} s, of which upscaling (plan, bands or tiles, PNG) "
            f"{f['upscale_seconds']:.1f} s.",
            (
                "* Whole-image inference of the full photo (predicted "
                f"{r['predicted_whole_image_peak_bytes'] / 2**30:.1f} GiB; run separately in a child process, "
                f"peak RSS {r['full_reference']['peak_rss_bytes'] / 2**30:.1f} GiB, "
                f"{r['full_reference']['wall_seconds']:.0f} s) against the streamed PNG: "
                f"{'identical' if r['full_reference']['identical'] else 'NOT identical'} (max abs diff "
                f"{r['full_reference']['max_abs_diff']})."
                if r.get("full_reference")
                else f"* Whole-image inference of the full photo is predicted at "
                f"{r['predicted_whole_image_peak_bytes'] / 2**30:.1f} GiB (tensor peak and native conv workspace): "
                "too much for this machine beside the check; identity was checked on crops only."
            ),
            f"* Identity was also checked on the top-left {c['lr_size'][0]}x{c['lr_size'][1]} LR crop "
            f"(predicted {c['predicted_whole_image_peak_bytes'] / 2**30:.1f} GiB, {c['whole_image_seconds']:.1f} s "
            f"whole): the command on the crop (peak RSS {c['tiled']['peak_rss_bytes'] / 2**20:.0f} MiB) is "
            f"{'identical' if c['tiled_identical_to_whole'] else 'NOT identical'}; the full photo's output equals it "
            f"on the first {c['full_output_identical_inside'][0]} rows x {c['full_output_identical_inside'][1]} "
            f"columns (receptive radius {r['receptive_radius']} LR px): "
            f"{'identical' if c['full_output_identical_to_whole'] else 'NOT identical'}.",
            f"* Throughput (SR px/s): streamed {t['tiled_sr_px_per_s']:.0f} "
            f"(end to end {t['tiled_end_to_end_sr_px_per_s']:.0f}),"
            f" whole-image {t['whole_image_sr_px_per_s']:.0f} -> ratio {t['ratio']:.3f} "
            f"(end to end {t['ratio_end_to_end']:.3f}"
            + (
                f"; the network's passes only, without planning {f['planning_seconds']:.0f} s and PNG writing "
                f"{f['png_seconds']:.0f} s: {t['ratio_inference']:.3f}"
                if "ratio_inference" in t
                else ""
            )
            + f"); the same command on the {c['lr_size'][0]}x{c['lr_size'][1]} crop, which it upscales whole (one "
            f"band): {t.get('whole_command_sr_px_per_s', float('nan')):.0f} SR px/s -> ratio "
            f"{t.get('ratio_same_command', float('nan')):.3f}"
            + "".join(
                f"; bare pass of the crop in a plain child process, {k}: {v['seconds']:.1f} s, {v['sr_px_per_s']:.0f} "
                f"SR px/s -> ratio {t['tiled_sr_px_per_s'] / v['sr_px_per_s']:.3f}"
                for k, v in r.get("bare_passes", {}).items()
            )
            + "".join(
                f"; bare pass of the {shape} {e['lr_size'][0]}x{e['lr_size'][1]} LR, {name}: "
                + ", ".join(f"{v:.1f}" for v in seconds)
                + " s (rounds before and after the command)"
                for shape, e in r.get("baselines", {}).items()
                for name, seconds in e["seconds"].items()
            )
            + f"; in CPU time (all threads: robust to other jobs on the "
            f"machine; 1-minute load average {f['load_average_after']:.1f} after the streamed run, "
            f"{c['load_average_after_whole']:.1f} after the whole-image pass): {t['ratio_cpu_time']:.3f}.",
            "",
        ]
    (out / "large_photos.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'large_photos.md'} and large_photos.json", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="../shared/datasets", help="folder with BSD100/HR")
    parser.add_argument("--weights", default="../shared/weights", help="weights folder")
    parser.add_argument("--work", default="/tmp/memsr-large-photos", help="where the large PNGs go (GBs)")
    parser.add_argument("--out", default="reports/tiling", help="report folder")
    parser.add_argument("--only", choices=sorted(CASES), nargs="+", help="run these cases (others kept from the json)")
    parser.add_argument("--smoke", action="store_true", help="a tenth of each side (checks the script; ~1 min)")
    parser.add_argument(
        "--no-full-reference",
        action="store_true",
        help="skip whole-image inference of the full photo (run when it fits in 60%% of this machine's memory)",
    )
    parser.add_argument(
        "--hugetlb",
        action="store_true",
        help="GLIBC_TUNABLES=glibc.malloc.hugetlb=1 in the children (faster; RSS grows)",
    )
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from large_photos.json")
    parser.add_argument("--reference-child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--bare-child", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads here and in the child (default: torch's). On a machine shared with other jobs, 1 "
        "gives comparable CPU times: idle OpenMP threads spin while a sibling waits for a core, and that counts.",
    )
    args = parser.parse_args()
    if args.reference_child:
        reference_child(*args.reference_child)
        return
    if args.bare_child:
        bare_child(*args.bare_child)
        return
    if args.hugetlb:
        THREADS_ENV["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1"
    if args.threads:
        torch.set_num_threads(args.threads)
        THREADS_ENV.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out = Path(args.out)
    previous = out / "large_photos.json"
    if args.report_only:
        write_report(out, json.loads(previous.read_text()))
        return
    results = json.loads(previous.read_text()) if previous.exists() and args.only else {"cases": {}}
    results["machine"] = machine()
    for key in args.only or CASES:
        results["cases"][key] = run_case(key, args)
        write_report(out, results)


if __name__ == "__main__":
    main()
