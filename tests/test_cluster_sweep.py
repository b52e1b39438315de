"""Sweeps on real services: a PostgreSQL server and a Dask scheduler with two worker processes.

Nothing is mocked: :mod:`tests.services` starts the machine's PostgreSQL (initdb in a temporary folder,
a free localhost port) and ``dask scheduler``/``dask worker`` subprocesses. Where one of them cannot
start, the test is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memsr_bench.errors import MemsrInputError
from memsr_bench.results import ResultKey, ResultsStore
from memsr_bench.results.jobs import counts_cell, run_cells
from tests.services import dask_cluster, postgres_server, psql

REPO = Path(__file__).resolve().parents[1]
MODELS = ("fsrcnn", "srcnn", "imdn", "rfdn", "rlfn-s", "carn-m", "edsr-mini", "fmen-s-deploy")
SHAPE = (1, 3, 48, 48)


def _cells():
    from memsr_bench.measure.profile import input_channels
    from memsr_bench.model import load_model

    models = [load_model(name, scale) for name in MODELS for scale in (2, 3, 4)]
    return [counts_cell(m, (1, input_channels(m.module), *SHAPE[2:])) for m in models]


@pytest.fixture(scope="module")
def postgres():
    """One PostgreSQL server for the module (each test makes its own database: :func:`_database`)."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="module")
def cluster():
    """One Dask scheduler and two worker processes (1 thread, RUNTIME=1 each) for the module; the last
    test kills one."""
    with dask_cluster(n_workers=2) as running:
        yield running


def _database(url: str, name: str) -> str:
    base = url.rsplit("/", 1)[0]
    psql(f"{base}/postgres", f"CREATE DATABASE {name}")
    return f"{base}/{name}"


def _values(store: ResultsStore) -> dict[str, dict]:
    return {row.key.id: row.values for row in store.rows()}


def _differences(got, expected, path: str = "") -> list[str]:
    """Where two JSON values differ (paths), for a readable failure."""
    if isinstance(got, dict) and isinstance(expected, dict):
        return [
            d
            for k in sorted(set(got) | set(expected))
            for d in _differences(got.get(k), expected.get(k), f"{path}.{k}")
        ]
    return [] if got == expected else [f"{path}: {got!r:.200} != {expected!r:.200}"]


class _ProfilerLikeSampler:
    """What dask's statistical profiler does to the thread running a task: every ``interval`` seconds it
    takes that thread's current frame and holds it for a moment (``hold`` seconds here, so that the
    effect is certain). A held frame keeps its local variables, and so their tensors, alive."""

    def __init__(self, thread_id: int, interval: float = 0.001, hold: float = 0.002):
        self.thread_id, self.interval, self.hold = thread_id, interval, hold
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.is_set():
            frame = sys._current_frames().get(self.thread_id)
            self.samples += frame is not None
            time.sleep(self.hold)
            del frame
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def test_a_worker_measures_as_a_local_run_while_its_profiler_samples_the_task_thread():
    """The worker's entry point runs the cell in its own thread, so the profiler's sampling of the task
    thread cannot keep tensors alive: the predicted peaks equal a local run's. Control: the same sampling
    on the thread that runs the cell itself does change them (eager lifetimes follow real deaths)."""
    from memsr_bench.model import load_model
    from memsr_bench.results.jobs import _run_on_worker

    cell = counts_cell(load_model("carn-m", 3), SHAPE)
    expected = cell.run()
    with _ProfilerLikeSampler(threading.get_ident()) as sampler:
        on_worker = [_run_on_worker(cell)[0] for _ in range(3)]
        # the control: a sample must land while a tensor dies, usually within a run or two (0.1 s each); in
        # a full test run 10 runs once went undisturbed, so it runs until disturbed, up to 300 runs
        disturbed = next((n for n in range(1, 301) if _differences(cell.run(), expected) != []), None)
    assert sampler.samples > 0
    assert all(_differences(values, expected) == [] for values in on_worker)
    assert disturbed is not None, "the control did not disturb in 300 runs"


def test_failing_cell_is_recorded_and_the_others_finish(postgres, cluster):
    """A cell that raises is recorded with its one-line reason; the others are stored; a rerun retries it."""
    from dataclasses import replace

    cells = _cells()[:4]
    broken = replace(cells[1], measure=_broken_measure)
    with ResultsStore(_database(postgres, "failing")) as store:
        summary = run_cells([cells[0], broken, *cells[2:]], store, cluster=cluster.address, progress=False)
        assert summary.computed == 3 and list(summary.failed.values()) == ["ValueError: broken on purpose"]
        assert [f.reason for f in store.failures()] == ["ValueError: broken on purpose"]
        assert broken.keys[0] not in store and all(c.keys[0] in store for c in cells if c is not cells[1])
        # a rerun finishes only what is missing, and the stored cell clears its failure record
        summary = run_cells(cells, store, cluster=cluster.address, progress=False)
        assert (summary.computed, summary.stored, summary.failed) == (1, 3, {})
        assert store.failures() == []


def _broken_measure(*args):
    raise ValueError("broken\non purpose")


def test_cells_go_only_to_workers_with_their_resource(cluster):
    """Timings need RUNTIME (one per worker), CUDA cells need GPU: a cell whose resource no worker
    declares fails at once with the reason instead of waiting forever."""
    from dataclasses import replace

    from memsr_bench.measure.profile import RuntimeOptions
    from memsr_bench.model import load_model
    from memsr_bench.results.jobs import resources_for, runtime_cell

    timing = runtime_cell(load_model("fsrcnn", 2), (1, 1, 48, 48), "cpu", RuntimeOptions(warmup=0, repeats=1))
    assert dict(timing.resources) == {"RUNTIME": 1} and resources_for("quality", "cuda:0") == (("GPU", 1),)
    on_gpu = replace(_cells()[0], resources=(("GPU", 1),))
    summary = run_cells([timing, on_gpu], None, cluster=cluster.address, progress=False)
    assert list(summary.failed) == [on_gpu.label] and summary.computed == 1
    assert "no worker of the cluster declares the resource GPU" in summary.failed[on_gpu.label]


def test_cli_table_on_the_cluster_into_postgres_equals_the_local_table(tmp_path, postgres, cluster):
    """`memsr-bench table fmen-table3 --models ... --cluster ADDRESS --store postgresql://...` prints the
    table of a local run into SQLite; bad --store and --cluster are one line, exit 2."""
    args = ["table", "fmen-table3", "--models", "fsrcnn", "--format", "csv"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # the workers' thread count

    def cli(*extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "memsr_bench", *args, *extra]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)

    local = cli("--store", str(tmp_path / "local.sqlite"))
    assert local.returncode == 0, local.stderr
    url = _database(postgres, "cli")
    remote = cli("--store", url, "--cluster", cluster.address)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout
    with ResultsStore(url) as store, ResultsStore(tmp_path / "local.sqlite") as mine:
        assert {r.key.kind for r in store.rows()} == {"counts"}
        assert _values(store) == _values(mine) and len(store) == 3  # x2, x3, x4
    bad = cli("--store", url.rsplit(":", 1)[0] + ":1/memsr", "--cluster", cluster.address)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "cannot connect to the results database" in bad.stderr
    gone = cli("--store", str(tmp_path / "local.sqlite"), "--cluster", "tcp://127.0.0.1:1")
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1 and "no Dask scheduler answers" in gone.stderr


def test_postgres_store_refuses_foreign_and_newer_databases_untouched(postgres):
    """The PostgreSQL equivalents of the SQLite store's refusals: another application's tables, a results
    table of another layout, a newer schema; read-only opens; concurrent writers of one key."""
    url = _database(postgres, "refusals")
    base = url.rsplit("/", 1)[0]
    for name, setup, message in (
        ("foreignapp", "CREATE TABLE orders (id int)", "a database of another application (tables: orders)"),
        ("lookalike", "CREATE TABLE results (key text)", "a database of another application (tables: results)"),
    ):
        psql(base + "/postgres", f"CREATE DATABASE {name}")
        psql(f"{base}/{name}", setup)
        before = psql(f"{base}/{name}", "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")
        with pytest.raises(MemsrInputError, match=re.escape(message)):
            ResultsStore(f"{base}/{name}")
        after = psql(f"{base}/{name}", "SELECT table_name FROM information_schema.tables WHERE table_schema='public'")
        assert before == after
    with ResultsStore(url) as store:
        key = ResultKey("counts", "m", "any", scale=2)
        store.put(key, {"v": 1})
    psql(url, "UPDATE memsr_bench_schema SET version = 99")
    with pytest.raises(MemsrInputError, match="schema v99 is newer"):
        ResultsStore(url)
    psql(url, "UPDATE memsr_bench_schema SET version = 3")
    with ResultsStore(url, read_only=True) as reader:
        assert reader.get(key).values == {"v": 1}
        with pytest.raises(MemsrInputError, match="is read-only: cannot store results"):
            reader.put(key, {"v": 2})
    # two processes writing the same keys at once: every put commits, one row per key
    code = (
        "import sys; from memsr_bench.results import ResultKey, ResultsStore\n"
        "s = ResultsStore(sys.argv[1])\n"
        "for i in range(40): s.put(ResultKey('counts', f'm{i % 10}', 'any', scale=2), {'w': sys.argv[2], 'i': i})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, url, w], env=env) for w in "ab"]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert psql(url, "SELECT count(*), count(DISTINCT key) FROM results") == repr([(11, 11)])
    with ResultsStore(url) as store:
        assert all(json.loads(json.dumps(r.values))["i"] >= 30 for r in store.rows() if r.key.model != "m")


def test_sweep_on_dask_into_postgres_survives_a_killed_worker(tmp_path, postgres, cluster):
    """24 count cells (8 models x 3 scales) on two Dask workers into PostgreSQL, one worker killed with
    SIGKILL once some cells are stored: every cell is stored exactly once, with the values of a local
    run into SQLite; a rerun computes nothing."""
    import torch

    cells = _cells()
    assert len(cells) >= 20
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker (--nthreads 1): the values record the torch threads they ran with
    try:
        with ResultsStore(tmp_path / "local.sqlite") as local:
            summary = run_cells(cells, local, progress=False)
            expected = _values(local)
    finally:
        torch.set_num_threads(threads)
    assert (summary.computed, summary.failed) == (len(cells), {})
    assert len(expected) == len(cells)

    url = _database(postgres, "killed")
    store = ResultsStore(url)
    killed: list[int] = []

    def kill_one_worker_mid_run() -> None:
        deadline = time.monotonic() + 60
        with ResultsStore(url) as watcher:
            while len(watcher) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            if len(watcher) < len(cells):
                victim = cluster.workers[0]
                os.kill(victim.pid, signal.SIGKILL)
                killed.append(victim.pid)

    killer = threading.Thread(target=kill_one_worker_mid_run)
    killer.start()
    summary = run_cells(cells, store, cluster=cluster.address, progress=False)
    killer.join()

    assert killed, "the sweep ended before a worker could be killed: make the cells heavier"
    assert cluster.workers[0].wait(timeout=10) == -signal.SIGKILL
    assert summary.failed == {}, summary
    assert summary.computed == len(cells)
    # exactly once: one row per key (the primary key), no duplicates, no failure records
    rows = psql(url, "SELECT count(*), count(DISTINCT key) FROM results")
    assert rows == repr([(len(cells), len(cells))])
    assert store.failures() == []
    assert _differences(_values(store), expected) == []  # the same values as the local run, cell by cell
    assert run_cells(cells, store, cluster=cluster.address, progress=False).stored == len(cells)
    store.close()


def test_without_the_cluster_extra_everything_else_works_and_the_options_say_what_to_install(tmp_path):
    """dask, distributed and psycopg made unimportable (as without the extra): memsr_bench imports;
    --cluster and a postgresql:// --store are one line each, exit code 2, before anything is measured."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for name in ("dask", "distributed", "psycopg"):
        (hidden / f"{name}.py").write_text(f"raise ImportError({'No module named ' + name!r})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hidden), str(REPO)])}
    imports = "import memsr_bench, memsr_bench.cli, memsr_bench.results.jobs, memsr_bench.reporting.report"
    assert subprocess.run([sys.executable, "-c", imports], env=env, capture_output=True).returncode == 0
    table = [sys.executable, "-m", "memsr_bench", "table", "fmen-table3", "--models", "fsrcnn"]
    for extra, message in (
        (["--store", str(tmp_path / "r.sqlite"), "--cluster", "tcp://127.0.0.1:1"], "needs dask's distributed"),
        (["--store", "postgresql://me@127.0.0.1:1/memsr"], "a PostgreSQL store needs psycopg 3"),
    ):
        done = subprocess.run([*table, *extra], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
        assert "pip install 'memsr-bench[cluster]'" in done.stderr
