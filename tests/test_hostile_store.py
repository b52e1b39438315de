"""The results store under hostile conditions: read-only files, folders and users; killed writers; copies of
only the main file. Every case checks that the stored rows are unchanged afterwards.

Root ignores file permissions, so the permission cases run twice: here, through ``read_only=True`` or a
denied ``os.access`` (what the automatic detection asks), and for real in a child process that drops to
the ``nobody`` user (skipped where that is impossible; run directly when the tests are not run as root).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from memsr_bench.errors import MemsrInputError
from memsr_bench.results import ResultKey, ResultsStore, cached

REPO = Path(__file__).resolve().parents[1]


def _key(i: int) -> ResultKey:
    return ResultKey(
        "synthetic", f"cell{i:02d}", "none", scale=2, data="1x3x8x8", torch_version="t", package_version="p"
    )


def _values(i: int) -> dict:
    return {"i": i, "payload": [i] * 50}


def _fill(path: Path, n: int = 5) -> None:
    with ResultsStore(path) as store:
        for i in range(n):
            store.put(_key(i), _values(i))


def _snapshot(path: Path) -> list[tuple]:
    """Every stored row (key, values, time), read without writing (and leaving no side file) anything."""
    sides = [path.with_name(path.name + s) for s in ("-wal", "-shm")]
    existed = [side.exists() for side in sides]
    with ResultsStore(path, read_only=True) as store:
        rows = [(r.key, r.values, r.measured_at, r.elapsed_s) for r in store.rows()]
    for side, was in zip(sides, existed, strict=True):
        if not was and side.exists():  # SQLite's own, empty and unused now
            side.unlink()
    return rows


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listing(folder: Path) -> dict[str, str]:
    return {p.name: _sha(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- read_only=True (any user)


def test_read_only_flag_reads_everything_and_refuses_every_write(tmp_path):
    path = tmp_path / "results.sqlite"
    _fill(path)
    before, sha = _snapshot(path), _sha(path)

    store = ResultsStore(path, read_only=True)
    assert store.read_only and store.read_only_reason == "opened with read_only=True"
    assert "read_only=True" in repr(store)
    assert len(store) == 5 and _key(1) in store and store.get(_key(1)).values == _values(1)
    assert [r.values for r in store.rows()] == [_values(i) for i in range(5)]
    assert list(store.query()["i"]) == list(range(5))
    assert cached(store, _key(2), lambda: pytest.fail("a stored cell is not recomputed")) == _values(2)
    assert store.content_digest()

    refused = f"{path}: is read-only: cannot store results (opened with read_only=True)"
    with pytest.raises(MemsrInputError) as err:
        store.put(_key(9), {"x": 1})
    assert _one_line(err) == refused
    with pytest.raises(MemsrInputError) as err:
        cached(store, _key(9), lambda: {"x": 1})  # computed, then refused when it is stored
    assert _one_line(err) == refused
    with pytest.raises(MemsrInputError) as err:
        store.put(_key(1), {"x": "overwrite"})
    with pytest.raises(MemsrInputError) as err:
        store.delete(_key(1))
    assert _one_line(err) == f"{path}: is read-only: cannot delete results (opened with read_only=True)"
    store.close()

    assert _snapshot(path) == before and _sha(path) == sha
    with ResultsStore(path) as store:  # still an ordinary writable store afterwards
        assert not store.read_only
        store.put(_key(9), {"x": 1})
        assert len(store) == 6


def test_read_only_never_creates_a_store(tmp_path):
    path = tmp_path / "missing" / "results.sqlite"
    with pytest.raises(MemsrInputError) as err:
        ResultsStore(path, read_only=True)
    assert _one_line(err) == f"{path}: no results store here (opened read-only, so none is created)"
    assert not path.parent.exists()


def test_read_only_v1_store_is_read_not_migrated(tmp_path):
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
    sha = _sha(path)
    with ResultsStore(path, read_only=True) as store:
        (row,) = store.rows(model="imdn", fingerprint="")
        assert row.values == {"params": 7} and row.key.fingerprint == "" and len(store) == 1
        assert list(store.query()["params"]) == [7]
        with pytest.raises(MemsrInputError, match="is read-only: cannot store results"):
            store.put(_key(0), {"x": 1})
    assert _sha(path) == sha
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)  # not migrated
    conn.close()


def test_read_only_empty_file_is_an_empty_store(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.touch()
    with ResultsStore(path, read_only=True) as store:
        assert len(store) == 0 and store.rows() == [] and store.query().empty and store.get(_key(0)) is None
        with pytest.raises(MemsrInputError, match="is read-only"):
            store.put(_key(0), {"x": 1})
    assert path.stat().st_size == 0


def test_read_only_still_refuses_bad_files(tmp_path):
    corrupt = tmp_path / "corrupt.sqlite"
    _fill(corrupt, 200)
    data = bytearray(corrupt.read_bytes())
    data[4096 * 2 : 4096 * 6] = b"\xa5" * (4096 * 4)
    corrupt.write_bytes(bytes(data))
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database\n")
    for path in (corrupt, text):
        sha = _sha(path)
        with pytest.raises(MemsrInputError) as err:
            ResultsStore(path, read_only=True)
        assert str(path) in _one_line(err) and "left untouched" in str(err.value)
        assert _sha(path) == sha


# ----------------------------------------------------------------------------- automatic detection (os.access)


def _deny_writes(monkeypatch, *denied: Path) -> None:
    """``os.access`` as an unprivileged user sees it: no write permission on ``denied``."""
    real = os.access
    denied_paths = {os.path.abspath(p) for p in denied}

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.abspath(path) in denied_paths:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("what", ["file", "folder", "wal"])
def test_not_writable_store_opens_read_only_without_touching_the_folder(tmp_path, monkeypatch, what):
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "results.sqlite"
    _fill(path)
    writer = None
    if what == "wal":  # a live writer's WAL, not writable for this user
        writer = ResultsStore(path)
        writer.put(_key(7), _values(7))
    before = _snapshot(path)
    files = _listing(folder)
    assert ("results.sqlite-wal" in files) == (what == "wal")
    _deny_writes(monkeypatch, {"file": path, "folder": folder, "wal": folder / "results.sqlite-wal"}[what])

    store = ResultsStore(path)
    reason = {
        "file": "the file is not writable",
        "folder": f"its folder {folder} is not writable, and SQLite keeps results.sqlite-wal and "
        "results.sqlite-shm there",
        "wal": "results.sqlite-wal is not writable",
    }[what]
    assert store.read_only and store.read_only_reason == reason
    assert [(r.key, r.values, r.measured_at, r.elapsed_s) for r in store.rows()] == before
    assert len(store.query()) == len(before)
    with pytest.raises(MemsrInputError) as err:
        store.put(_key(8), {"x": 1})
    assert _one_line(err) == f"{path}: is read-only: cannot store results ({reason})"
    store.close()
    if writer is None:
        assert _listing(folder) == files  # no -wal/-shm created, nothing changed
    else:
        writer.close()
    monkeypatch.undo()
    assert _snapshot(path) == before


def test_store_cannot_be_created_in_a_read_only_folder(tmp_path, monkeypatch):
    _deny_writes(monkeypatch, tmp_path)
    path = tmp_path / "results.sqlite"
    with pytest.raises(MemsrInputError) as err:
        ResultsStore(path)
    assert (
        _one_line(err) == f"{path}: no results store here, and none can be created: folder {tmp_path} is not writable"
    )
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- the main file alone is complete


def test_main_file_alone_holds_every_row_while_open(tmp_path):
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    reader = ResultsStore(path)  # another connection reading meanwhile
    for i in range(20):
        store.put(_key(i), _values(i))
        assert reader.get(_key(i)).values == _values(i)
    store.delete(_key(19))
    copy = tmp_path / "copy" / "results.sqlite"
    copy.parent.mkdir()
    shutil.copyfile(path, copy)  # only the main file, the store still open
    assert not copy.with_name("results.sqlite-wal").exists()
    with ResultsStore(copy, read_only=True) as copied:
        assert [r.values for r in copied.rows()] == [_values(i) for i in range(19)]

    store.close()  # the reader is still open: the WAL is checkpointed and emptied, not deleted
    wal = path.with_name("results.sqlite-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    reader.close()
    assert not wal.exists() or wal.stat().st_size == 0
    assert [v for _, v, _, _ in _snapshot(path)] == [_values(i) for i in range(19)]


KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from memsr_bench.results import ResultKey, ResultsStore, store as module

    path, n, checkpoints = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    if not checkpoints:  # what memsr-bench did before: rows stay in the WAL until SQLite's auto-checkpoint
        module.ResultsStore._checkpoint = lambda self, conn, mode: None
    store = ResultsStore(path)
    for i in range(n):
        key = ResultKey("synthetic", f"cell{i:02d}", "none", scale=2, data="1x3x8x8", torch_version="t",
                        package_version="p")
        store.put(key, {"i": i, "payload": [i] * 50})
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _killed_writer(path: Path, n: int, checkpoints: bool) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(path), str(n), "1" if checkpoints else "0"], env=env, capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()


def test_main_file_alone_is_complete_after_kill_9(tmp_path):
    path = tmp_path / "results.sqlite"
    _killed_writer(path, 12, checkpoints=True)
    assert path.with_name("results.sqlite-wal").exists()  # the writer never closed
    copy = tmp_path / "copy.sqlite"
    shutil.copyfile(path, copy)
    with ResultsStore(copy, read_only=True) as copied:
        assert [r.values for r in copied.rows()] == [_values(i) for i in range(12)]

    # without the per-commit checkpoint (earlier versions) the copy missed every row
    old = tmp_path / "old" / "results.sqlite"
    old.parent.mkdir()
    _killed_writer(old, 12, checkpoints=False)
    shutil.copyfile(old, tmp_path / "old-copy.sqlite")
    with ResultsStore(tmp_path / "old-copy.sqlite", read_only=True) as copied:
        assert len(copied) == 0
    with ResultsStore(old, read_only=True) as store:  # read through its WAL, nothing written
        assert [r.values for r in store.rows()] == [_values(i) for i in range(12)]
    ResultsStore(old).close()  # a writable open and close folds the WAL into the main file
    shutil.copyfile(old, tmp_path / "old-copy2.sqlite")
    with ResultsStore(tmp_path / "old-copy2.sqlite", read_only=True) as copied:
        assert [r.values for r in copied.rows()] == [_values(i) for i in range(12)]


# ----------------------------------------------------------------------------- as an unprivileged user, for real

CHILD = textwrap.dedent(
    """
    import json, os, sys
    from memsr_bench.errors import MemsrInputError
    from memsr_bench.results import ResultKey, ResultsStore

    def key(i):
        return ResultKey("synthetic", f"cell{i:02d}", "none", scale=2, data="1x3x8x8", torch_version="t",
                         package_version="p")

    if sys.argv[2:] == ["access-says-writable"]:  # where os.access is wrong (e.g. root squash on NFS)
        os.access = lambda *args, **kwargs: True
    out = {}
    try:
        store = ResultsStore(sys.argv[1])
    except MemsrInputError as err:
        print(json.dumps({"open_error": str(err)}))
        sys.exit(0)
    out["read_only_reason"] = store.read_only_reason
    out["len"] = len(store)
    out["values"] = [r.values for r in store.rows()]
    out["query"] = len(store.query())
    out["get"] = store.get(key(0)).values if store.get(key(0)) else None
    for name, write in (("put", lambda: store.put(key(99), {"new": 1})), ("delete", lambda: store.delete(key(0)))):
        try:
            write()
            out[name] = "ok"
        except MemsrInputError as err:
            out[name] = str(err)
    store.close()
    print(json.dumps(out))
    """
)


def _unprivileged():
    """(uid, gid) to drop to, None when already unprivileged; skips where neither works."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to test file permissions honestly")
    return user.pw_uid, user.pw_gid


@pytest.fixture
def user_dir():
    """A folder the unprivileged user owns (a child of it is where stores go)."""
    ids = _unprivileged()
    folder = Path(tempfile.mkdtemp(prefix="memsr-hostile-"))
    folder.chmod(0o755)
    if ids:
        os.chown(folder, *ids)
    yield folder
    for root, dirs, _ in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
    shutil.rmtree(folder, ignore_errors=True)


def _run_as_user(
    folder: Path, *args: str, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    ids = _unprivileged()
    command, demote = [sys.executable, *args], None
    if ids:
        for p in [folder, *folder.rglob("*")]:
            os.chown(p, *ids)
        setpriv = shutil.which("setpriv")
        if setpriv:  # execs even where the interpreter lies in a folder the user cannot read (/root)
            command = [setpriv, f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups", *command]
        else:

            def demote():
                os.setgroups([])
                os.setgid(ids[1])
                os.setuid(ids[0])

    env = {k: v for k, v in os.environ.items() if k != "MEMSR_RESULTS"}
    env.update(PYTHONPATH=str(REPO), HOME=str(folder), XDG_CACHE_HOME=str(folder / ".cache"))
    try:
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, preexec_fn=demote, timeout=timeout, cwd=cwd or folder
        )
    except PermissionError as err:
        pytest.skip(f"cannot run Python as an unprivileged user here: {err}")
    if ids and proc.returncode != 0 and "memsr_bench" not in proc.stderr and "Permission denied" in proc.stderr:
        pytest.skip(f"cannot run Python as an unprivileged user here: {proc.stderr.strip()[-200:]}")
    return proc


def _child(folder: Path, path: Path, *options: str) -> dict:
    proc = _run_as_user(folder, "-c", CHILD, str(path), *options)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _expect_read_only(out: dict, path: Path, reason: str, n: int) -> None:
    assert out["read_only_reason"] == reason
    assert out["len"] == n and out["query"] == n and out["values"] == [_values(i) for i in range(n)]
    assert out["get"] == _values(0)
    assert out["put"] == f"{path}: is read-only: cannot store results ({reason})"
    assert out["delete"] == f"{path}: is read-only: cannot delete results ({reason})"


def test_unprivileged_0444_file_in_writable_folder(user_dir):
    folder = user_dir / "store"
    folder.mkdir()
    path = folder / "results.sqlite"
    _fill(path)
    before = _snapshot(path)
    assert not list(folder.glob("results.sqlite-*"))  # closed: no -wal, no -shm
    path.chmod(0o444)
    files = _listing(folder)

    _expect_read_only(_child(user_dir, path), path, "the file is not writable", 5)
    assert _listing(folder) == files  # nothing created (no -wal/-shm left behind), nothing changed
    assert _snapshot(path) == before

    # made writable again, the same user writes it: the read left nothing that blocks a writer
    path.chmod(0o644)
    out = _child(user_dir, path)
    assert out["read_only_reason"] is None and out["put"] == "ok" and out["delete"] == "ok"


def test_unprivileged_store_in_0555_folder(user_dir):
    folder = user_dir / "store"
    folder.mkdir()
    path = folder / "results.sqlite"
    _fill(path)
    before = _snapshot(path)
    files = _listing(folder)
    assert list(files) == ["results.sqlite"]
    folder.chmod(0o555)

    reason = f"its folder {folder} is not writable, and SQLite keeps results.sqlite-wal and results.sqlite-shm there"
    _expect_read_only(_child(user_dir, path), path, reason, 5)
    assert _listing(folder) == files
    # where os.access wrongly says writable, SQLite's refusal makes the store read-only all the same
    refused = "SQLite cannot write it: attempt to write a readonly database"
    _expect_read_only(_child(user_dir, path, "access-says-writable"), path, refused, 5)
    assert _listing(folder) == files
    folder.chmod(0o755)
    assert _snapshot(path) == before

    # a store that does not exist cannot be created there: one clear line, nothing created
    folder.chmod(0o555)
    out = _child(user_dir, folder / "new.sqlite")
    assert out == {
        "open_error": f"{folder / 'new.sqlite'}: no results store here, and none can be created: "
        f"folder {folder} is not writable"
    }
    assert _listing(folder) == files


def test_unprivileged_killed_writer_wal_in_0555_folder(user_dir):
    """A killed (older) writer left its rows only in the -wal; the folder is read-only now."""
    folder = user_dir / "store"
    folder.mkdir()
    path = folder / "results.sqlite"
    _killed_writer(path, 6, checkpoints=False)
    wal = folder / "results.sqlite-wal"
    assert wal.stat().st_size > 0
    main_sha, wal_sha = _sha(path), _sha(wal)
    folder.chmod(0o555)

    reason = f"its folder {folder} is not writable, and SQLite keeps results.sqlite-wal and results.sqlite-shm there"
    _expect_read_only(_child(user_dir, path), path, reason, 6)  # the rows in the WAL are read
    assert _sha(path) == main_sha and _sha(wal) == wal_sha
    folder.chmod(0o755)
    assert [v for _, v, _, _ in _snapshot(path)] == [_values(i) for i in range(6)]


def test_unprivileged_cli_table_reads_a_read_only_store(user_dir):
    folder = user_dir / "store"
    folder.mkdir()
    path = folder / "results.sqlite"
    cli = "import sys; from memsr_bench.cli import main; sys.exit(main())"
    args = ("-c", cli, "table", "fmen-table3", "--models", "fsrcnn", "--store", str(path))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MEMSR_RESULTS", None)
    filled = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert filled.returncode == 0, filled.stderr
    before = _snapshot(path)
    assert before and list(_listing(folder)) == ["results.sqlite"]
    path.chmod(0o444)
    files = _listing(folder)

    read = _run_as_user(user_dir, *args, cwd=REPO)
    assert read.returncode == 0, read.stderr
    assert read.stdout == filled.stdout  # every cell read back from the read-only store
    assert _listing(folder) == files

    forced = _run_as_user(user_dir, *args, "--force", cwd=REPO)
    assert forced.returncode == 2
    assert forced.stderr.strip().splitlines()[-1] == (
        f"memsr-bench: error: {path}: is read-only: cannot store results (the file is not writable)"
    )
    assert _listing(folder) == files
    assert _snapshot(path) == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
