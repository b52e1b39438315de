#!/usr/bin/env bash
# CUDA runtime and peak memory of every zoo model, through the suite's own CLI (`memsr-bench profile`).
#
# Run from the repository root on a GPU machine without internet:
#   OUT=/some/dir bash experiments/cuda_measure.sh
# Needs, beside the work tree (both git-ignored, see .git/info/exclude):
#   .whl/         pure-Python wheels of what memsr-bench imports and a bare torch machine lacks
#                 (fvcore, iopath, yacs, termcolor, tqdm); installed into /tmp/site, nothing else touched
#   .gpu_weights/ the public checkpoints of the zoo (x4, imdn-rtc x2) and rlfn_ntire2024_baseline.pth
# Writes to $OUT: log.txt (everything), cuda_profiles.jsonl (one `profile --json` object a line, plus the
# command line, wall time and CUDA/cuDNN versions; failed runs as {"error": ...} lines), zoo.json and
# cuda_table.md (experiments/cuda_table.py on the jsonl). The results store is $STORE (/tmp): the repo is
# not changed.
#
# What runs, for each zoo model at x4 (its only scale where it has no x4: imdn-rtc x2), preset ntire2022
# (LR 256x256): `profile --protocol default` (warm-up, median) and `profile --protocol ntire2022` (no warm-up,
# mean); both also give measured peak memory (torch.cuda.max_memory_allocated) and the predicted peak.
# Then the same two runs at preset ntire2024 for $NTIRE2024_MODELS (the same input: a repeat measurement,
# and the fvcore FLOPs of that preset). Heavy models ($HEAVY) run last. No run starts after $BUDGET_S.
#
# The profile commands run in ONE Python process (memsr_bench.cli.main(argv), the function behind
# `python3 -m memsr_bench`), to save ~5 s of import + CUDA start-up per run; ISOLATE=1 runs each as
# `python3 -m memsr_bench ...` instead. Either way each run loads the model afresh and runs one
# measured-memory pass before the timed passes (so even the ntire2022 protocol's first pass is not cold).
#
# Switches (environment): PYTHON (python3), DEVICE (cuda), INPUT (LR HxW instead of the presets' 256x256),
# MODELS ("name:scale ..." instead of the whole zoo), NTIRE2024_MODELS, HEAVY, WARMUP (10), REPEATS (100),
# BUDGET_S (200), STORE (/tmp/r.sqlite), WEIGHTS (.gpu_weights), ISOLATE (0).
# CPU check of the flow:  OUT=/tmp/o PYTHON=.venv/bin/python DEVICE=cpu INPUT=32x32 WARMUP=1 REPEATS=2 \
#                         MODELS="imdn:4 imdn-rtc:2 span:4" NTIRE2024_MODELS=span bash experiments/cuda_measure.sh
set -uo pipefail
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHON=${PYTHON:-python3} DEVICE=${DEVICE:-cuda} INPUT=${INPUT:-} MODELS=${MODELS:-}
export NTIRE2024_MODELS=${NTIRE2024_MODELS:-"imdn-ntire2022 e-rfdn rlfn-ntire fmen-s-deploy efdn span"}
export HEAVY=${HEAVY:-"edsr"} WARMUP=${WARMUP:-10} REPEATS=${REPEATS:-100} BUDGET_S=${BUDGET_S:-200}
export STORE=${STORE:-/tmp/r.sqlite} WEIGHTS=${WEIGHTS:-.gpu_weights} ISOLATE=${ISOLATE:-0} OUT
export T0=$(date +%s)
echo "== $(date -u +%FT%TZ) cuda_measure.sh in $PWD; git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

# 1. the wheels (no index, no deps: all of them are in .whl) into /tmp/site, ahead of everything on the path
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "pip failed: unzipping the (pure-Python) wheels instead"; "$PYTHON" -c \
    'import glob, zipfile; [zipfile.ZipFile(w).extractall("/tmp/site") for w in glob.glob(".whl/*.whl")]'; }
fi
export PYTHONPATH=/tmp/site:$PWD

# 2. the machine
nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi)"
"$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda,
"| cudnn", torch.backends.cudnn.version(), "| available", torch.cuda.is_available(),
"|", torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")'
"$PYTHON" -m memsr_bench zoo --json > "$OUT/zoo.json" || { echo "FATAL: memsr-bench zoo failed"; exit 1; }

# 3. the runs
: > "$OUT/cuda_profiles.jsonl"
"$PYTHON" - <<'PY'
import contextlib, gc, io, json, os, shlex, subprocess, sys, time, traceback
from pathlib import Path

import torch

env = os.environ
out = Path(env["OUT"])
t_start = float(env["T0"])  # the script's start: the budget counts install and start-up too
budget = float(env["BUDGET_S"])
weights_dir = Path(env["WEIGHTS"])
zoo = json.loads((out / "zoo.json").read_text())
scales, ckpts = {}, {}
for row in zoo:
    if isinstance(row["scale"], int):
        scales.setdefault(row["model"], []).append(row["scale"])
        ckpts[row["model"], row["scale"]] = row["checkpoint"]
if env["MODELS"]:
    cells = [(m, int(s)) for m, s in (item.split(":") for item in env["MODELS"].split())]
else:
    cells = [(m, 4 if 4 in s else s[0]) for m, s in scales.items()]
heavy = env["HEAVY"].split()
light = [c for c in cells if c[0] not in heavy]
ntire2024 = [c for c in cells if c[0] in env["NTIRE2024_MODELS"].split()]
plan = [(c, "ntire2022") for c in light] + [(c, "ntire2024") for c in ntire2024]
plan += [(c, "ntire2022") for c in cells if c[0] in heavy]

versions = {
    "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version(),
    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,  # torch's defaults, left as they are: convs may use TF32
    "cudnn_benchmark": torch.backends.cudnn.benchmark,
}


def weights_for(model, scale, preset):
    if model == "rlfn-ntire" and preset == "ntire2024" and (weights_dir / "rlfn_ntire2024_baseline.pth").is_file():
        return str(weights_dir / "rlfn_ntire2024_baseline.pth")  # the NTIRE 2024 baseline's own file
    name = ckpts.get((model, scale))
    return str(weights_dir) if name and (weights_dir / name).is_file() else None


def run(argv):
    """(rc, stdout, stderr tail) of `memsr-bench ARGV`, in this process or (ISOLATE=1) a fresh one."""
    if env["ISOLATE"] == "1":
        p = subprocess.run([env["PYTHON"], "-m", "memsr_bench", *argv], capture_output=True, text=True)
        sys.stderr.write(p.stderr)
        return p.returncode, p.stdout, p.stderr[-2000:]
    from memsr_bench.cli import main

    buf, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
            rc = main(argv)
    except SystemExit as e:  # argparse errors
        rc = e.code if isinstance(e.code, int) else 2
    except Exception:
        err.write(traceback.format_exc())
        rc = 1
    sys.stderr.write(err.getvalue())
    return rc, buf.getvalue(), err.getvalue()[-2000:]


with open(out / "cuda_profiles.jsonl", "a") as jsonl:
    for i, ((model, scale), preset) in enumerate(plan):
        if time.time() - t_start > budget:  # leave the rest: listed in the log and, as not run, in the jsonl
            print(f"SKIPPED (BUDGET_S={budget:g} s spent): {[f'{m} x{s} {p}' for (m, s), p in plan[i:]]}", flush=True)
            for (m, s), p in plan[i:]:
                for protocol in ("default", "ntire2022"):
                    skipped = {"cli": "", "rc": None, "protocol": protocol, **versions}
                    line = {"model": m, "scale": s, "preset": p, "error": "not run: BUDGET_S spent", "run": skipped}
                    jsonl.write(json.dumps(line) + "\n")
            break
        for protocol in ("default", "ntire2022"):
            argv = ["profile", model, "--scale", str(scale), "--preset", preset, "--device", env["DEVICE"],
                    "--protocol", protocol, "--warmup", env["WARMUP"], "--repeats", env["REPEATS"],
                    "--store", env["STORE"], "--json"]
            argv += ["--input", env["INPUT"]] if env["INPUT"] else []
            w = weights_for(model, scale, preset)
            tries = [argv + ["--weights", w], argv] if w else [argv]  # without weights if loading them fails
            for attempt in tries:
                gc.collect()  # the previous run's model, off the GPU before this one starts
                t = time.time()
                rc, stdout, stderr = run(attempt)
                wall = time.time() - t
                cmd = "python3 -m memsr_bench " + shlex.join(attempt)
                print(f"[{time.time() - t_start:6.1f} s] rc={rc} {wall:5.1f} s  {cmd}", flush=True)
                meta = {"cli": cmd, "rc": rc, "wall_s": round(wall, 2), "protocol": protocol, **versions}
                if rc == 0:
                    try:
                        record = {**json.loads(stdout), "run": meta}
                    except ValueError:
                        rc, stderr = -1, "unparsable output: " + stdout[-500:]
                if rc != 0:
                    record = {"model": model, "scale": scale, "preset": preset, "error": stderr.strip()[-1500:],
                              "run": {**meta, "rc": rc}}
                jsonl.write(json.dumps(record, default=str) + "\n")
                jsonl.flush()
                if rc == 0:
                    r = record
                    print(f"    {r['details'].get('device_name')}: {r.get('runtime_ms', float('nan')):.3f} ms; peak "
                          f"measured {r.get('peak_memory_bytes_measured', 0) / 2**20:.1f} MiB, predicted "
                          f"{r.get('peak_memory_bytes_predicted', 0) / 2**20:.1f} MiB", flush=True)
                    break
print(f"== runs done after {time.time() - t_start:.0f} s", flush=True)
PY
echo "== measurement exit $?; $(wc -l < "$OUT/cuda_profiles.jsonl") lines in cuda_profiles.jsonl"

# 4. the table (also rebuildable anywhere: python3 experiments/cuda_table.py cuda_profiles.jsonl -o FILE.md)
"$PYTHON" experiments/cuda_table.py "$OUT/cuda_profiles.jsonl" -o "$OUT/cuda_table.md" || echo "WARNING: table failed"
echo "== $(date -u +%FT%TZ) done in $(( $(date +%s) - T0 )) s"
