"""Sweeps as keyed jobs: every cell is computed once, here or on a Dask cluster, and stored as it finishes.

A :class:`Cell` is one job: the store keys it fills (one, or one per convention of a quality cell),
the measure function of :mod:`memsr_bench.results.cells` that computes their values, its arguments,
and a :class:`ModelRecipe` from which any process rebuilds the model. :func:`run_cells` runs a list
of cells against a store:

- a cell whose keys are all stored is skipped (read back later), unless ``force``;
- the others run locally, one after the other, or, with ``cluster`` (a ``distributed.Client`` or the
  ``tcp://host:port`` of a ``dask scheduler``), on the cluster's workers, all submitted at once;
- each result is written to the store by this process as soon as its cell finishes
  (``distributed.as_completed``), so an interrupted sweep keeps every finished cell and a rerun
  computes only what is missing; one progress bar counts the cells;
- a cell that raises is recorded in the store (:meth:`~memsr_bench.results.ResultsStore.record_failure`)
  with its one-line reason and does not stop the others; the same run does not try it again
  (:class:`~memsr_bench.results.store.CellFailedError` when a table reads it), a rerun does.

Where a cell runs on a cluster (Dask resources, declared by each worker with ``--resources``):
a cell on a CUDA device needs ``GPU=1``; a CPU runtime or measured-memory cell needs ``RUNTIME=1``, so
that a worker started with ``--nthreads 1 --resources RUNTIME=1`` runs one timing at a time; counts
and CPU quality cells run on any worker. A cell whose resource no worker declares fails at once with
the reason (it would wait forever otherwise). A worker rebuilds the model from its recipe (reference,
scale, config, weights file) and checks the architecture fingerprint against the key's, so a worker
with other code or model files never stores a result under the wrong key. Paths (model files,
weights, test sets) must be the same on every worker (a shared file system); dask is optional
(``pip install 'memsr-bench[cluster]'``).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memsr_bench.errors import MemsrInputError
from memsr_bench.model.recipe import ModelRecipe
from memsr_bench.results import cells as measures
from memsr_bench.results.store import ResultKey, ResultsStore

__all__ = [
    "Cell",
    "ModelRecipe",
    "SweepSummary",
    "connect",
    "counts_cell",
    "memory_cell",
    "quality_cell",
    "run_cells",
    "runtime_cell",
]

CLUSTER_EXTRA = "pip install 'memsr-bench[cluster]'"


@dataclass(frozen=True)
class Cell:
    """One job: ``measure(model, *args)`` gives the values of ``keys`` (a dict, or a list of one per key).

    ``model``: the live model or upscaler (used when the cell runs here; never shipped);
    ``recipe``: how a worker rebuilds it; ``resources``: the Dask resources it needs on a cluster;
    ``device``: for a key that names a device (runtime, memory), where it runs: a worker whose device
    is another model (another CPU or GPU) refuses the cell rather than store its timing under that name.
    """

    keys: tuple[ResultKey, ...]
    measure: Callable[..., Any]
    args: tuple = ()
    recipe: ModelRecipe | None = None
    model: Any = field(default=None, compare=False, repr=False)
    resources: tuple[tuple[str, float], ...] = ()
    device: str | None = None  # runtime and memory cells: their key names this device's model (checked)

    @property
    def label(self) -> str:
        key = self.keys[0]
        scale = f" x{key.scale}" if key.scale is not None else ""
        return f"{key.kind} {key.model}{scale} {key.data}".rstrip()

    def run(self) -> list[dict[str, Any]]:
        """Compute the values here (the model built from the recipe if this process has none)."""
        if self.device is not None and measures.device_label(self.device) != self.keys[0].device:
            raise MemsrInputError(
                self.label,
                f"this host's device is {measures.device_label(self.device)}, not the key's {self.keys[0].device}: "
                "timings are stored per device model (run them on workers of the client's device model)",
            )
        model = self.model if self.model is not None else self.recipe.build()
        values = self.measure(model, *self.args)
        values = values if isinstance(values, list) else [values]
        if len(values) != len(self.keys):
            raise RuntimeError(f"{self.label}: {len(values)} values for {len(self.keys)} keys")
        return values


def resources_for(kind: str, device: str) -> tuple[tuple[str, float], ...]:
    """The Dask resources of a cell: ``GPU`` on CUDA; ``RUNTIME`` for CPU timings and measured memory."""
    if device.startswith("cuda"):
        return (("GPU", 1),)
    if kind in ("runtime", "memory"):
        return (("RUNTIME", 1),)
    return ()


def counts_cell(loaded, shape: Sequence[int], max_memory: int | None = None) -> Cell:
    """The counts cell of :func:`memsr_bench.results.cells.stored_counts`."""
    key = measures.counts_key(loaded, shape)
    return Cell((key,), measures.measure_counts, (tuple(shape), max_memory), ModelRecipe.of(loaded), loaded)


def runtime_cell(
    loaded, shape: Sequence[int], device: str = "cpu", options=None, max_memory: int | None = None
) -> Cell:
    """The runtime cell of :func:`memsr_bench.results.cells.stored_runtime` (threads fixed by the key)."""
    options = measures.runtime_options(options, device)
    key = measures.runtime_key(loaded, shape, device, options)
    args = (tuple(shape), device, options, max_memory)
    recipe = dataclasses.replace(ModelRecipe.of(loaded), device=device)
    return Cell((key,), measures.measure_runtime, args, recipe, loaded, resources_for("runtime", device), device)


def memory_cell(loaded, shape: Sequence[int], device: str = "cpu", max_memory: int | None = None) -> Cell:
    """The measured-memory cell of :func:`memsr_bench.results.cells.stored_memory`."""
    key = measures.memory_key(loaded, shape, device)
    args = (tuple(shape), device, max_memory)
    recipe = dataclasses.replace(ModelRecipe.of(loaded), device=device)
    return Cell((key,), measures.measure_memory, args, recipe, loaded, resources_for("memory", device), device)


def quality_cell(upscaler, test_set, conventions: Sequence) -> Cell:
    """The quality cell of :func:`memsr_bench.results.cells.stored_quality`: one key per convention."""
    keys = tuple(measures.quality_keys(upscaler, test_set, conventions))
    device = str(getattr(upscaler, "device", "cpu"))
    recipe = getattr(upscaler, "recipe", None)
    return Cell(
        keys,
        measures.measure_quality,
        (test_set, tuple(conventions), False),
        recipe,
        upscaler,
        resources_for("quality", device),
    )


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


_ONE_CELL_AT_A_TIME = threading.Lock()


def _run_on_worker(cell: Cell) -> tuple[list[dict[str, Any]], float, str]:
    """What a worker runs: the values, the seconds it took, and the worker's host.

    One cell at a time per worker process, whatever its ``--nthreads`` (the measurements hook modules and
    time passes: not for concurrent threads), and without automatic garbage collection meanwhile: the
    worker's other threads (its event loop) allocate too and would otherwise start a collection in the
    middle of a pass, at another moment than in a local run.

    The cell runs in a thread of its own, not in the task's thread: the worker's statistical profiler
    samples the task threads' frames every 10 ms, and a sampled frame keeps its local variables alive
    until the profiler lets go, so tensors would die later than in a local run and the measured and
    predicted peaks (eager lifetimes) would change from run to run."""
    with _ONE_CELL_AT_A_TIME:
        automatic = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter()
            values = _in_own_thread(cell.run)
            return values, time.perf_counter() - start, socket.gethostname()
        finally:
            if automatic:
                gc.enable()


def _in_own_thread(function: Callable[[], Any]) -> Any:
    """``function()`` run in a new thread (its result returned, its exception raised here)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=target, name="memsr-bench cell")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@dataclass
class SweepSummary:
    """What :func:`run_cells` did: cells computed, found stored, and failed (label -> reason)."""

    computed: int = 0
    stored: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = f"{self.computed} cells computed, {self.stored} already stored, {len(self.failed)} failed"
        return text + "".join(f"\n  failed: {label}: {reason}" for label, reason in self.failed.items())


def connect(address: str, timeout: float = 10.0):
    """A ``distributed.Client`` of the scheduler at ``address``; one-line errors without dask or a scheduler."""
    try:
        from distributed import Client
    except ImportError:
        raise MemsrInputError("--cluster", f"needs dask's distributed scheduler: {CLUSTER_EXTRA}") from None
    if "://" not in address:
        address = f"tcp://{address}"
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise MemsrInputError("--cluster", f"no Dask scheduler answers at {address} ({_reason(err)})") from None


def run_cells(
    cells: Sequence[Cell],
    store: ResultsStore | None,
    *,
    cluster: Any = None,
    force: bool = False,
    progress: bool | None = None,
    desc: str = "cells",
) -> SweepSummary:
    """Compute every cell not stored yet (all with ``force``) and store the results as they finish.

    ``cluster``: None (here), a ``distributed.Client`` or a scheduler address. Cells with the same keys
    are run once. A failed cell is recorded with its reason and listed in the summary; the others go on.
    """
    from tqdm import tqdm

    summary = SweepSummary()
    todo: dict[tuple[ResultKey, ...], Cell] = {}
    for cell in cells:
        if cell.keys in todo:
            continue
        if not force and store is not None and all(k in store for k in cell.keys):
            summary.stored += 1
            continue
        todo[cell.keys] = cell
    if not todo:
        return summary
    bar = tqdm(total=len(todo), desc=desc, unit="cell", disable=None if progress is None else not progress)
    try:
        if cluster is None:
            for cell in todo.values():
                start = time.perf_counter()
                try:
                    values = _in_own_thread(cell.run)
                except Exception as err:  # a failing cell does not stop the sweep
                    _failed(store, cell, _reason(err), summary, socket.gethostname())
                else:
                    _store(store, cell, values, time.perf_counter() - start, summary)
                bar.update()
        else:
            _run_on_cluster(list(todo.values()), store, cluster, summary, bar)
    finally:
        bar.close()
    return summary


def _store(store: ResultsStore | None, cell: Cell, values: list[dict], elapsed: float, summary: SweepSummary) -> None:
    if store is not None:
        for key, value in zip(cell.keys, values, strict=True):
            store.put(key, value, elapsed_s=elapsed / len(cell.keys))
            store.failed_this_run.pop(key.id, None)
    summary.computed += 1


def _failed(store: ResultsStore | None, cell: Cell, reason: str, summary: SweepSummary, host: str) -> None:
    summary.failed[cell.label] = reason
    if store is not None:
        for key in cell.keys:
            store.record_failure(key, reason, host)
            store.failed_this_run[key.id] = reason


def _run_on_cluster(cells: list[Cell], store, cluster, summary: SweepSummary, bar) -> None:
    from distributed import as_completed

    client = connect(cluster) if isinstance(cluster, str) else cluster
    try:
        declared: dict[str, float] = {}
        for worker in client.scheduler_info(n_workers=-1)["workers"].values():
            for name, amount in (worker.get("resources") or {}).items():
                declared[name] = max(declared.get(name, 0), amount)
        futures = {}
        for cell in cells:
            missing = [name for name, amount in cell.resources if declared.get(name, 0) < amount]
            if missing:
                reason = (
                    f"no worker of the cluster declares the resource {', '.join(missing)} "
                    f'(start workers with --resources "{missing[0]}=1")'
                )
                _failed(store, cell, reason, summary, "")
                bar.update()
                continue
            shipped = dataclasses.replace(cell, model=None)
            future = client.submit(
                _run_on_worker, shipped, resources=dict(cell.resources) or None, pure=False, key=_task_key(cell)
            )
            futures[future] = cell
        for future in as_completed(futures, loop=client.loop):
            cell = futures[future]
            try:
                values, elapsed, _host = future.result()
                _store(store, cell, values, elapsed, summary)
            except MemsrInputError:  # the store refused the write: stop, never lose it silently
                raise
            except Exception as err:  # the cell raised on its worker, or its workers kept dying (KilledWorker)
                _failed(store, cell, _reason(err), summary, "")
            bar.update()
    finally:
        if isinstance(cluster, str):
            client.close()


def _task_key(cell: Cell) -> str:
    import hashlib

    digest = hashlib.sha256("\x1e".join(k.id for k in cell.keys).encode()).hexdigest()[:16]
    return f"memsr-{cell.keys[0].kind}-{digest}-{os.getpid()}-{time.monotonic_ns()}"
