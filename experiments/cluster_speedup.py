"""Speed-up of a quality sweep on a Dask cluster over the same sweep run locally (one run each).

The same cells (PSNR/SSIM of models x scales x test sets, public checkpoints) are computed twice from
empty stores: once here, in this process (torch's default threads), and once on a Dask cluster of
``--workers`` local worker processes with one thread each (``distributed.LocalCluster``; a lab would
point ``--cluster`` at its scheduler instead). The script checks that both runs stored the same PSNR/SSIM
and writes ``reports/cluster/speedup.md`` with the machine, threads, versions and times.

    python experiments/cluster_speedup.py                     # ../shared/datasets, ../shared/weights
    python experiments/cluster_speedup.py --sets Set5 --models bicubic imdn
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import memsr_bench
from memsr_bench.reporting.quality import sweep_quality, sweep_upscalers
from memsr_bench.results import ResultsStore

REPO = Path(__file__).resolve().parents[1]


def _sweep(args, store: ResultsStore, cluster=None) -> tuple[float, object]:
    start = time.perf_counter()
    table, skipped = sweep_quality(
        sweep_upscalers(args.weights),
        args.models,
        args.scales,
        [Path(args.data_root) / s for s in args.sets],
        y_variants=("float",),
        store=store,
        cluster=cluster,
        progress=False,
    )
    assert not skipped, skipped
    return time.perf_counter() - start, table


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    p.add_argument("--weights", default=str(REPO.parent / "shared" / "weights"))
    p.add_argument("--models", nargs="+", default=["bicubic", "imdn", "latticenet", "carn-m", "fsrcnn"])
    p.add_argument("--scales", nargs="+", type=int, default=[2, 3, 4])
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14"])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "reports" / "cluster" / "speedup.md"))
    args = p.parse_args()

    import dask
    import distributed
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        local_threads = torch.get_num_threads()
        with ResultsStore(Path(tmp) / "local.sqlite") as store:
            local_s, local_table = _sweep(args, store)
            n_cells = len(local_table)
        start = time.perf_counter()
        with (
            LocalCluster(
                n_workers=args.workers,
                threads_per_worker=1,
                processes=True,
                resources={"RUNTIME": 1},
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            startup_s = time.perf_counter() - start
            worker_threads = ", ".join(map(str, sorted(set(client.run(torch.get_num_threads).values()))))
            with ResultsStore(Path(tmp) / "cluster.sqlite") as store:
                cluster_s, cluster_table = _sweep(args, store, client)
    columns = ["model", "scale", "dataset", "psnr", "ssim"]
    a, b = (t[columns].sort_values(columns[:3]).reset_index(drop=True) for t in (local_table, cluster_table))
    assert a[columns[:3]].equals(b[columns[:3]])
    dpsnr, dssim = (float((a[c] - b[c]).abs().max()) for c in ("psnr", "ssim"))
    same = "yes" if (dpsnr, dssim) == (0.0, 0.0) else f"no: max |difference| {dpsnr:.2g} dB PSNR, {dssim:.2g} SSIM"
    load = os.getloadavg()
    text = f"""# Quality sweep: Dask cluster vs local run (one run each)

Cells: PSNR/SSIM (BT.601 Y, float) of {", ".join(args.models)} x{"/x".join(map(str, args.scales))} on
{", ".join(args.sets)}: {n_cells} cells, each from an empty store.
Command: `python experiments/cluster_speedup.py {" ".join(sys.argv[1:])}`.

| run | where | torch threads | wall time |
|---|---|---|---|
| local | this process | {local_threads} | {local_s:.1f} s |
| cluster | {args.workers} Dask worker processes (LocalCluster) | {worker_threads} per worker | {cluster_s:.1f} s |

Speed-up: **{local_s / cluster_s:.2f}x** (cluster start, not counted: {startup_s:.1f} s).
PSNR/SSIM identical in both runs: {same} (torch's CPU convolutions sum in another order with
another thread count, which can move an SR pixel across a uint8 rounding boundary; the counts are thread-independent).

Caveat: one run each, on a machine with {os.cpu_count()} cores ({_cpu()}) shared with other work
(load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} over 1 / 5 / 15 min at the end), so the number
is indicative only. Two single-threaded workers against one process running torch with {local_threads} threads
on {os.cpu_count()} cores measures how much of the sweep is not parallel inside torch (image I/O, the bicubic
LR generation, PSNR/SSIM in numpy); it is no estimate of a lab's cluster, where each worker has its own cores
or GPU and the speed-up grows with the number of workers.

Versions: memsr-bench {memsr_bench.__version__}, torch {torch.__version__}, dask {dask.__version__},
distributed {distributed.__version__}, Python {platform.python_version()}.
"""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
