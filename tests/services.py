"""Real services for tests: a PostgreSQL server and a Dask cluster, started and stopped by the test.

No mocks. :func:`postgres_server` runs the machine's PostgreSQL binaries (``initdb``, ``pg_ctl``) in a
temporary folder on a free localhost port; as root (CI here runs as root, and ``initdb`` refuses root)
the server runs as the unprivileged ``postgres`` user, or ``nobody``. :func:`dask_cluster` starts a
``dask scheduler`` and worker processes as subprocesses, so that a test can kill a worker by its pid.
Where a service cannot start, :func:`pytest.skip` says why: never a silent pass.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["DaskCluster", "dask_cluster", "free_port", "postgres_bin", "postgres_server"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``: on PATH, else Debian's /usr/lib/postgresql/N/bin (newest)."""
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).resolve().parent / "pg_ctl").exists():
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _service_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    pytest.skip("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _run(cmd: list[str], user: tuple[int, int] | None, **kwargs) -> subprocess.CompletedProcess:
    if user is not None:
        kwargs.update(user=user[0], group=user[1], extra_groups=[])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


@contextlib.contextmanager
def postgres_server(db: str = "memsr") -> Iterator[str]:
    """A fresh PostgreSQL server on 127.0.0.1 with an empty database ``db``: yields its URL."""
    pytest.importorskip("psycopg", reason="psycopg 3 not installed: pip install 'memsr-bench[cluster]'")
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    user = _service_user()
    root = Path(tempfile.mkdtemp(prefix="memsr-pg-"))  # under /tmp: reachable by the service user
    data = root / "data"
    if user is not None:
        os.chown(root, *user)
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    init = _run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "memsr", "--auth=trust", "-E", "UTF8", "--no-sync"],
        user,
        env=env,
    )
    if init.returncode:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed, no PostgreSQL server: {init.stderr.strip().splitlines()[-1:]}")
    port = free_port()
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=50"
    start = _run(
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w", "-t", "60", "start"],
        user,
        env=env,
    )
    try:
        if start.returncode:
            log = (root / "log").read_text() if (root / "log").exists() else start.stderr
            pytest.skip(f"PostgreSQL did not start: {log.strip().splitlines()[-1:]}")
        psql(f"postgresql://memsr@127.0.0.1:{port}/postgres", f"CREATE DATABASE {db}")
        yield f"postgresql://memsr@127.0.0.1:{port}/{db}"
    finally:
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user, env=env)
        shutil.rmtree(root, ignore_errors=True)


def psql(url: str, sql: str) -> str:
    """Run ``sql`` through psycopg (autocommit); the rows as text (for tests that set up databases)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)
        return repr(cur.fetchall()) if cur.description else ""


class DaskCluster:
    """A ``dask scheduler`` and worker subprocesses; ``address`` is the scheduler's ``tcp://`` URL."""

    def __init__(self, address: str, scheduler: subprocess.Popen, workers: list[subprocess.Popen]):
        self.address = address
        self.scheduler = scheduler
        self.workers = workers

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes (the Nanny's child, which runs the tasks), from the scheduler."""
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            return sorted(client.run(os.getpid).values())


@contextlib.contextmanager
def dask_cluster(n_workers: int = 2, resources: str = "RUNTIME=1", env: dict | None = None) -> Iterator[DaskCluster]:
    """A real Dask scheduler and ``n_workers`` worker processes (1 thread each) on 127.0.0.1."""
    pytest.importorskip("distributed", reason="dask[distributed] not installed: pip install 'memsr-bench[cluster]'")
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.setdefault("OMP_NUM_THREADS", "1")
    tmp = tempfile.mkdtemp(prefix="memsr-dask-")
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen(
        [*dask, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address", ":0", "--no-show"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp,
    )
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "1",
                "--resources",
                resources,
                "--dashboard-address",
                ":0",
                "--local-directory",
                tmp,
                "--no-nanny",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
        for _ in range(n_workers)
    ]
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=60)
        yield DaskCluster(address, scheduler, workers)
    finally:
        for proc in [*workers, scheduler]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in [*workers, scheduler]:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
