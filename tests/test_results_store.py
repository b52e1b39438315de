"""The results store: keyed rows in one SQLite file, crash-safe resumable sweeps, refusing bad files."""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from memsr_bench.errors import MemsrInputError
from memsr_bench.results import ResultKey, ResultsStore, cached, default_path

N_CELLS = 30

SWEEP = textwrap.dedent(
    """
    import signal, sys, time
    from memsr_bench.results import ResultKey, ResultsStore, cached

    # A shell's background jobs start with SIGINT ignored; a user's Ctrl-C is what we model here.
    signal.signal(signal.SIGINT, signal.default_int_handler)


    def compute(i, log, delay):
        with open(log, "a") as fh:  # one line per computation actually run
            fh.write(f"{i}\\n")
        time.sleep(delay)
        return {"i": i, "square": i * i, "payload": [i] * 200, "name": f"cell {i}"}


    def sweep(path, log, n, delay, force):
        store = ResultsStore(path)
        for i in range(n):
            key = ResultKey("synthetic", f"cell{i:02d}", "none", scale=2, data="1x3x8x8",
                            torch_version="t", package_version="p")
            cached(store, key, lambda i=i: compute(i, log, delay), force=force)
        store.close()


    if __name__ == "__main__":
        sweep(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1")
        print("complete", flush=True)
    """
)


def _key(i: int, **kw) -> ResultKey:
    return ResultKey(
        "synthetic",
        f"cell{i:02d}",
        "none",
        scale=2,
        data="1x3x8x8",
        torch_version="t",
        package_version="p",
        **kw,
    )


def _expected(i: int) -> dict:
    return {"i": i, "square": i * i, "payload": [i] * 200, "name": f"cell {i}"}


def _start(tmp_path: Path, db: Path, log: Path, delay: float, force: bool = False) -> subprocess.Popen:
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, str(script), str(db), str(log), str(N_CELLS), str(delay), "1" if force else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _computed(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def _check_rows(store: ResultsStore) -> list[int]:
    """Every stored row is whole and right; returns the cells stored."""
    cells = []
    for row in store.rows(kind="synthetic"):
        i = int(row.key.model[4:])
        assert row.values == _expected(i)
        assert row.key == _key(i)
        cells.append(i)
    return cells


def _wait_rows(proc: subprocess.Popen, reader: ResultsStore, at_least: int, timeout: float = 120) -> int:
    """Poll (a concurrent reader) until ``at_least`` rows are stored; each read is checked."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        cells = _check_rows(reader)
        if len(cells) >= at_least:
            return len(cells)
        time.sleep(0.02)
    raise AssertionError("the sweep stored too few rows in time")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_interrupted_sweep_loses_nothing_and_resumes(tmp_path, sig):
    db, log = tmp_path / "results.sqlite", tmp_path / "computed.log"
    proc = _start(tmp_path, db, log, delay=0.15)
    with ResultsStore(db) as reader:
        _wait_rows(proc, reader, at_least=6)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"complete" not in out
    if sig == signal.SIGINT:
        assert b"KeyboardInterrupt" in err

    # every committed row is intact: the file checks out and every row reads back whole
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with ResultsStore(db) as store:
        stored = _check_rows(store)
    assert 6 <= len(stored) < N_CELLS
    assert stored == list(range(len(stored)))  # in sweep order, no gaps
    first_run = _computed(log)
    assert first_run[: len(stored)] == stored and len(first_run) - len(stored) <= 1  # at most one lost cell

    # the rerun (a fresh process after kill -9: it recovers the WAL) skips what is stored and completes
    log.unlink()
    sweep = runpy.run_path(str(tmp_path / "sweep.py"))["sweep"]
    if sig == signal.SIGKILL:
        proc = _start(tmp_path, db, log, delay=0.0)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and b"complete" in out, err.decode()
    else:
        sweep(db, log, N_CELLS, 0.0, False)
    assert _computed(log) == list(range(len(stored), N_CELLS))
    with ResultsStore(db) as store:
        assert _check_rows(store) == list(range(N_CELLS))
        before = {r.key.model: r.measured_at for r in store.rows()}

    # another run computes nothing; force recomputes everything
    log.unlink()
    sweep(db, log, N_CELLS, 0.0, False)
    assert _computed(log) == []
    sweep(db, log, N_CELLS, 0.0, True)
    assert _computed(log) == list(range(N_CELLS))
    with ResultsStore(db) as store:
        assert _check_rows(store) == list(range(N_CELLS))
        after = {r.key.model: r.measured_at for r in store.rows()}
    assert all(after[m] > before[m] for m in before)


def test_get_put_upsert_and_cached(tmp_path):
    store = ResultsStore(tmp_path / "sub" / "dir" / "r.sqlite")  # folders are created
    key = _key(1)
    assert store.get(key) is None and key not in store and len(store) == 0
    row = store.put(key, {"psnr": 30.5, "shape": (1, 3), "inf": float("inf")}, elapsed_s=1.5)
    assert row.values == {"psnr": 30.5, "shape": [1, 3], "inf": float("inf")}
    got = store.get(key)
    assert got.values == row.values and got.key == key and got.elapsed_s == 1.5
    assert got.measured_at.endswith("+00:00")
    store.put(key, {"psnr": 31.0})  # upsert: same key, one row
    assert len(store) == 1 and store.get(key).values == {"psnr": 31.0}

    calls = []

    def compute():
        calls.append(1)
        return {"n": len(calls)}

    other = _key(2)
    assert cached(store, other, compute) == {"n": 1}
    assert cached(store, other, compute) == {"n": 1} and len(calls) == 1
    assert cached(store, other, compute, force=True) == {"n": 2} and len(calls) == 2
    assert store.get(other).values == {"n": 2}
    assert cached(None, other, compute) == {"n": 3}  # no store: just computes
    assert store.delete(other) and not store.delete(other)

    with pytest.raises(MemsrInputError, match="values"):
        store.put(key, [1, 2])
    with pytest.raises(MemsrInputError, match="not JSON"):
        store.put(key, {"x": object()})
    assert store.get(key).values == {"psnr": 31.0}
    store.close()
    with pytest.raises(MemsrInputError, match="closed"):
        store.get(key)


def test_key_normalisation_and_defaults():
    import torch

    import memsr_bench

    key = ResultKey("counters", "IMDN", "random-init", scale="4", data=[1, 3, 64, 64], conventions={"b": 1, "a": 2})
    assert key.scale == 4 and key.data == "1x3x64x64" and key.conventions == '{"a":2,"b":1}'
    assert key.torch_version == torch.__version__ and key.package_version == memsr_bench.__version__
    assert key == ResultKey("counters", "IMDN", "random-init", 4, "1x3x64x64", '{"a":2,"b":1}')
    assert key.id == ResultKey(**json.loads(key.id)).id
    with pytest.raises(MemsrInputError):
        ResultKey("counters", "", "none")


def test_query_filters_and_dataframe(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    for model in ("a", "b"):
        for scale in (2, 4):
            key = ResultKey(
                "counters",
                model,
                "none",
                scale=scale,
                data=(1, 3, 8, 8),
                torch_version="t",
                package_version="p",
            )
            store.put(key, {"params": scale * 10, "nested": {"x": 1}, "model": "clash"})
    store.put(
        ResultKey("quality", "a", "none", scale=None, data="Set5", torch_version="t", package_version="p"),
        {"psnr": 1.0},
    )

    df = store.query(kind="counters")
    assert len(df) == 4 and list(df["params"]) == [20, 40, 20, 40]
    assert {"nested.x", "values.model", "measured_at", "elapsed_s"} <= set(df.columns)
    assert list(df["model"]) == ["a", "a", "b", "b"]  # key column kept; the value renamed
    assert len(store.query(model="a", scale=[4])) == 1
    assert len(store.query(data=(1, 3, 8, 8), scale=2)) == 2
    assert len(store.query(scale=None)) == 1 and len(store.query(scale=[None, 2])) == 3
    assert store.query(model="zzz").empty
    raw = store.query(expand=False, kind="quality")
    assert raw.loc[0, "values"] == {"psnr": 1.0} and raw["scale"].isna().all()
    with pytest.raises(MemsrInputError, match="unknown key field"):
        store.query(nope=1)


def test_concurrent_readers_and_writer_threads(tmp_path):
    path = tmp_path / "r.sqlite"
    writer = ResultsStore(path)
    errors: list[BaseException] = []
    done = threading.Event()

    def read():
        try:
            with ResultsStore(path) as reader:
                while not done.is_set():
                    for row in reader.rows():
                        assert row.values == _expected(int(row.key.model[4:]))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(40):
        writer.put(_key(i), _expected(i))
    done.set()
    for t in readers:
        t.join()
    assert not errors
    assert len(writer) == 40


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_refuses_and_never_touches_a_bad_file(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("these are my notes, not a database\n" * 10)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE mine (x)")
        conn.execute("INSERT INTO mine VALUES (1)")
    conn.close()

    corrupt = tmp_path / "corrupt.sqlite"
    with ResultsStore(corrupt) as store:
        for i in range(200):
            store.put(_key(i), _expected(i))
    data = bytearray(corrupt.read_bytes())
    assert len(data) > 8 * 4096
    data[4096 * 2 : 4096 * 6] = b"\xa5" * (4096 * 4)  # wreck pages 3-6 (b-tree pages)
    corrupt.write_bytes(bytes(data))

    for path in (text, other, corrupt):
        before = _sha(path)
        with pytest.raises(MemsrInputError) as info:
            ResultsStore(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        assert _sha(path) == before, f"{path.name} was modified"
    with pytest.raises(MemsrInputError, match="directory"):
        ResultsStore(tmp_path)
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    ResultsStore(empty).put(_key(0), {"ok": 1})  # an empty file is a new store


def test_default_path_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMSR_RESULTS", str(tmp_path / "env.sqlite"))
    assert default_path() == tmp_path / "env.sqlite"
    assert ResultsStore().path == tmp_path / "env.sqlite"
    monkeypatch.delenv("MEMSR_RESULTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_path() == tmp_path / "cache" / "memsr-bench" / "results.sqlite"


def test_fingerprint_is_part_of_the_key(tmp_path):
    store = ResultsStore(tmp_path / "s.sqlite")
    old = ResultKey("counts", "mynet", "any", scale=4, data=(1, 3, 8, 8), fingerprint="aaaa")
    store.put(old, {"params": 1})
    edited = ResultKey("counts", "mynet", "any", scale=4, data=(1, 3, 8, 8), fingerprint="bbbb")
    assert store.get(edited) is None  # an edited model is never served the old row
    assert cached(store, edited, lambda: {"params": 2}) == {"params": 2}
    assert sorted(r.values["params"] for r in store.rows(model="mynet")) == [1, 2]
    assert [r.values["params"] for r in store.rows(fingerprint="bbbb")] == [2]


def test_v1_store_is_migrated_and_old_rows_never_match(tmp_path):
    import sqlite3

    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE results (key TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, checkpoint TEXT NOT "
        "NULL, scale INTEGER, data TEXT NOT NULL, conventions TEXT NOT NULL, device TEXT NOT NULL, torch_version "
        "TEXT NOT NULL, package_version TEXT NOT NULL, values_json TEXT NOT NULL, measured_at TEXT NOT NULL, "
        "elapsed_s REAL)"
    )
    conn.execute(
        "INSERT INTO results VALUES ('k1', 'efficiency', 'imdn', 'random-init', 4, '1x3x8x8', 'ntire2022', 'cpu', "
        "'t', 'p', '{\"params\": 7}', '2026-01-01T00:00:00+00:00', 1.0)"
    )
    conn.execute("PRAGMA application_id = 1297306178")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = ResultsStore(path)
    (old,) = store.rows(model="imdn")
    assert old.values == {"params": 7} and old.key.fingerprint == ""
    key = ResultKey(
        "efficiency",
        "imdn",
        "random-init",
        scale=4,
        data="1x3x8x8",
        conventions="ntire2022",
        torch_version="t",
        package_version="p",
        fingerprint="f",
    )
    assert store.get(key) is None
    store.put(key, {"params": 8})
    assert len(store) == 2
