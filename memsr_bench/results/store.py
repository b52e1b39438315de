"""The results store: every measurement is one row, found again by its full key.

A row is a :class:`ResultKey` (what was measured, with which weights, on which input, under which
conventions, on which device, with which torch and memsr-bench versions) and its ``values`` (a JSON
object: PSNR/SSIM, counts, timings, peak bytes, ...), plus when it was measured (``measured_at``, UTC
ISO 8601) and how long the measurement took (``elapsed_s``). The time is recorded, not part of the
key: measuring the same key again replaces the row.

Storage: one SQLite file (stdlib :mod:`sqlite3`) in WAL journal mode with ``synchronous=FULL``.
Every :meth:`ResultsStore.put` is its own transaction, committed before it returns, so a sweep that
is stopped at any moment (Ctrl-C, ``kill -9``, a crash, a lost machine) keeps every row it had
stored, and a row is either there whole or not at all. Readers never block the writer nor see a
half-written row, so a report can be built from a store that a sweep is still filling, and several
processes may write one store (each write waits up to ``timeout`` seconds for the others).

Where the file is (:func:`default_path`), first that applies:

1. the ``path`` argument of :class:`ResultsStore`;
2. the environment variable ``MEMSR_RESULTS`` (a file path);
3. ``$XDG_CACHE_HOME/memsr-bench/results.sqlite``, i.e. ``~/.cache/memsr-bench/results.sqlite`` by
   default: measurements are a cache of expensive, reproducible computations, shared by every
   checkout on the machine (the key holds the versions, so different installs do not mix).

A file at the path that is not a memsr-bench results database (not SQLite, corrupt, or another
application's database) raises :class:`~memsr_bench.errors.MemsrInputError` naming the file; it is
never modified.

The database file alone is complete: every commit is followed by a (passive, never waiting)
checkpoint that copies it from ``results.sqlite-wal`` into ``results.sqlite``, and closing the store
checkpoints and empties the WAL. So copying just the ``.sqlite`` file, even while a sweep runs or
after one was killed, copies every row (a row can be missing from it only while a concurrent reader
holds an older snapshot; the next commit or the close copies it).

Read-only stores: a store whose file, folder (where SQLite keeps ``-wal`` and ``-shm``) or file
system is not writable (``os.access``), or one opened with ``read_only=True``, is opened read-only:
its rows are never changed (and where it is not writable nothing at all is created). Reading
(:meth:`~ResultsStore.get`, :meth:`~ResultsStore.rows`, :meth:`~ResultsStore.query`, :func:`cached`
of stored cells) works; writing raises :class:`~memsr_bench.errors.MemsrInputError`
``<file>: is read-only: cannot store results (<why>)`` when a write is actually attempted. A store
that is not writable and has no ``-wal`` file beside it is read as an immutable file (SQLite's
``immutable=1``: no lock, no side file; nobody may write it meanwhile).

Resuming a sweep is :func:`cached` in the loop::

    from memsr_bench.measure.profile import profile

    store = ResultsStore()
    for name in zoo.names():
        shape = (1, 3, 256, 256)
        key = ResultKey("counts", name, "random-init", scale=4, data=shape, conventions="ntire2022")
        model = zoo.create(name, scale=4)
        values = cached(store, key, lambda: profile(model, preset="ntire2022").to_json())

Cells already stored are read back, not recomputed (unless ``force=True``).

A shared store on a PostgreSQL server: ``ResultsStore("postgresql://user@host:5432/db")`` (driver
psycopg 3, the optional extra ``memsr-bench[cluster]``) is the same store: the same tables, columns,
keys and schema version, the same SQL (``?`` placeholders become ``%s``), every ``put`` one
transaction (``INSERT ... ON CONFLICT (key) DO UPDATE``), so any number of hosts may write it at once.
The database must be empty (memsr-bench creates its tables, under an advisory lock) or hold a
memsr-bench store (the table ``memsr_bench_schema`` names the application and the schema version);
any other database, a newer schema or a ``results`` table of another layout is refused without
being modified. ``read_only=True``, or a database user without INSERT privilege on ``results``, opens
it read-only. An unreachable server or a bad URL is one line (:class:`MemsrInputError`), never a
traceback, and nothing is measured before the store is open.

Failed cells: :meth:`ResultsStore.record_failure` keeps a cell's one-line reason in the table
``failures`` (:meth:`ResultsStore.failures` lists them); storing the cell later removes it. A failure
is a record, not a result: a rerun tries the cell again.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from memsr_bench.errors import MemsrInputError

__all__ = [
    "ENV_VAR",
    "KEY_FIELDS",
    "CellFailedError",
    "Failure",
    "PostgresResultsStore",
    "ResultKey",
    "ResultsStore",
    "Row",
    "cached",
    "default_path",
    "input_size",
    "is_postgres_url",
]

ENV_VAR = "MEMSR_RESULTS"
_APPLICATION_ID = 0x4D535242  # "MSRB": marks a memsr-bench results database
_SCHEMA_VERSION = 3  # v2: the fingerprint key field; v3: the failures table (older stores are migrated on open)
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_POSTGRES_MARKER = "memsr_bench_schema"  # PostgreSQL's application_id + user_version: (application, version)
_APPLICATION = "memsr-bench results"
_SQLITE_HEADER = b"SQLite format 3\x00"


def default_path() -> Path:
    """``$MEMSR_RESULTS``, else ``$XDG_CACHE_HOME/memsr-bench/results.sqlite`` (``~/.cache/...``)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "memsr-bench" / "results.sqlite"


# ----------------------------------------------------------------------------- keys


def _torch_version() -> str:
    import torch

    return torch.__version__


def _package_version() -> str:
    from memsr_bench import __version__

    return __version__


def input_size(shape: Sequence[int]) -> str:
    """``(1, 3, 64, 64) -> "1x3x64x64"``, the ``data`` of a key measured on a random input."""
    return "x".join(str(int(s)) for s in shape)


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


@dataclass(frozen=True)
class ResultKey:
    """Everything that identifies one measurement (see the module docstring).

    ``kind``: what was measured (``"quality"``, ``"counters"``, ``"runtime"``, ``"memory"``, ...);
    ``model``: the model's name (zoo name, entry point, ``file:factory``, or an upscaler's name);
    ``checkpoint``: the weights' sha256, ``"random-init"``, ``"any"`` (a measurement that does not
    depend on the weights: counts, runtime, memory) or ``"none"`` (a method without weights, e.g.
    bicubic); ``scale``: the SR factor (None where it does not apply); ``data``: the test set's name
    or the input size (a shape is written ``"1x3x256x256"``); ``conventions``: the preset or the
    conventions (a mapping is stored as canonical JSON); ``device``: ``"cpu"``, ``"cuda:0"``, or a
    more precise description; ``fingerprint``: the architecture fingerprint of the measured module
    (:func:`memsr_bench.model.architecture_fingerprint`; ``"none"`` for methods without one, e.g.
    bicubic), so that an edited model is never served a row of its previous version.
    ``torch_version`` and ``package_version`` default to the running ones.
    """

    kind: str
    model: str
    checkpoint: str
    scale: int | None = None
    data: str = ""
    conventions: str = ""
    device: str = "cpu"
    fingerprint: str = ""
    torch_version: str = field(default_factory=_torch_version)
    package_version: str = field(default_factory=_package_version)

    def __post_init__(self):
        if not isinstance(self.data, str):
            object.__setattr__(self, "data", input_size(self.data))
        if not isinstance(self.conventions, str):
            object.__setattr__(self, "conventions", _canonical_json(self.conventions))
        if self.scale is not None:
            object.__setattr__(self, "scale", int(self.scale))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "scale" and not isinstance(value, str):
                object.__setattr__(self, f.name, str(value))
        for name in ("kind", "model", "checkpoint"):
            if not getattr(self, name):
                raise MemsrInputError("ResultKey", f"{name} must not be empty")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def id(self) -> str:
        """The key as canonical JSON: the row's primary key."""
        return _canonical_json(self.as_dict())


KEY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(ResultKey))


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Row:
    """One stored measurement."""

    key: ResultKey
    values: dict[str, Any]
    measured_at: str  # UTC, ISO 8601
    elapsed_s: float | None


_COLUMNS = {
    "kind": "TEXT NOT NULL",
    "model": "TEXT NOT NULL",
    "checkpoint": "TEXT NOT NULL",
    "scale": "INTEGER",
    "data": "TEXT NOT NULL",
    "conventions": "TEXT NOT NULL",
    "device": "TEXT NOT NULL",
    "fingerprint": "TEXT NOT NULL DEFAULT ''",
    "torch_version": "TEXT NOT NULL",
    "package_version": "TEXT NOT NULL",
}
assert tuple(_COLUMNS) == KEY_FIELDS

_RESULTS_TABLE = f"""CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    {", ".join(f"{name} {decl}" for name, decl in _COLUMNS.items())},
    values_json TEXT NOT NULL,
    measured_at TEXT NOT NULL,
    elapsed_s REAL
)"""
_FAILURES_TABLE = """CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    failed_at TEXT NOT NULL,
    host TEXT NOT NULL DEFAULT ''
)"""
_RESULTS_INDEX = "CREATE INDEX IF NOT EXISTS results_by_model ON results (kind, model, scale)"
_SCHEMA = f"{_RESULTS_TABLE};\n{_FAILURES_TABLE};\n{_RESULTS_INDEX};\n"  # SQLite's; PostgreSQL's: _postgres_schema
_SELECT = f"SELECT {', '.join(KEY_FIELDS)}, values_json, measured_at, elapsed_s FROM results"
_UPSERT = (
    f"INSERT INTO results (key, {', '.join(KEY_FIELDS)}, values_json, measured_at, elapsed_s) "
    f"VALUES ({', '.join('?' * (len(KEY_FIELDS) + 4))}) ON CONFLICT (key) DO UPDATE SET "
    "values_json = excluded.values_json, measured_at = excluded.measured_at, elapsed_s = excluded.elapsed_s"
)
_RECORD_FAILURE = (
    "INSERT INTO failures (key, reason, failed_at, host) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "reason = excluded.reason, failed_at = excluded.failed_at, host = excluded.host"
)


class CellFailedError(MemsrInputError):
    """A cell that failed in this run's sweep: not tried again by the same run (a rerun tries it)."""

    def __init__(self, key: ResultKey, reason: str):
        scale = f" x{key.scale}" if key.scale is not None else ""
        super().__init__(f"{key.model}{scale} {key.kind} {key.data}".rstrip(), f"failed: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Failure:
    """A cell that failed: its key, the one-line reason, when (UTC ISO 8601) and on which host."""

    key: ResultKey
    reason: str
    failed_at: str
    host: str


def _row(record: tuple) -> Row:
    n = len(KEY_FIELDS)
    key = ResultKey(**dict(zip(KEY_FIELDS, record[:n], strict=True)))
    return Row(key=key, values=json.loads(record[n]), measured_at=record[n + 1], elapsed_s=record[n + 2])


def _error_code(err: sqlite3.Error) -> int:
    return (getattr(err, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code of an extended one


def _is_read_only_error(err: sqlite3.Error) -> bool:
    """SQLITE_READONLY and its extended codes (read-only file, folder, mount, -shm ...)."""
    return _error_code(err) == sqlite3.SQLITE_READONLY or "readonly database" in str(err)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ----------------------------------------------------------------------------- the store


class ResultsStore:
    """A results database: one SQLite file, or a PostgreSQL database; see the module docstring.

    ``path``: the file (created with its folders if missing), ``sqlite:///path``, or a
    ``postgresql://`` URL (then a :class:`PostgresResultsStore` is returned); None: :func:`default_path`.
    ``timeout``: seconds a write waits for another process's write to finish.
    ``read_only``: True opens the store read-only (its rows are never changed; a missing file is an
    error; in a writable folder SQLite may leave its ``-wal``/``-shm`` files); None (default) opens it
    read-only, creating and changing nothing, when the file, its folder, its ``-wal``/``-shm`` or its
    file system is not writable for this process (``os.access``; root can write a 0444 file); False
    skips that check. Either way a store SQLite refuses to write is opened read-only.
    :attr:`read_only_reason` says why; writes then raise ``... is read-only: cannot store results``.
    Usable as a context manager (closes the connection); safe to share between threads.
    """

    def __new__(cls, path: str | os.PathLike | None = None, *args: Any, **kwargs: Any) -> ResultsStore:
        if cls is ResultsStore and is_postgres_url(path):
            cls = PostgresResultsStore
        return super().__new__(cls)

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 30.0, read_only: bool | None = None):
        if isinstance(path, str) and path.startswith("sqlite://"):
            path = _sqlite_url_path(path)
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.timeout = float(timeout)
        self._auto_read_only = read_only is None
        self.read_only_reason: str | None = "opened with read_only=True" if read_only else None
        self._lock = threading.RLock()
        self.failed_this_run: dict[str, str] = {}  # key id -> reason: cells a sweep of this process gave up on
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._check_file()
        self._connect()

    @property
    def read_only(self) -> bool:
        """True if this store was opened read-only (then :attr:`read_only_reason` says why)."""
        return self.read_only_reason is not None

    @property
    def location(self) -> str:
        """Where the rows are: the file path, or the URL without its password."""
        return str(self.path)

    # -- opening -------------------------------------------------------------------------------
    def _error(self, problem: str) -> MemsrInputError:
        return MemsrInputError(self.path, problem)

    def _read_only_error(self, reason: str, what: str = "store") -> MemsrInputError:
        return self._error(f"is read-only: cannot {what} results ({reason})")

    def _side(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _not_writable(self) -> str | None:
        """Why this process cannot write the (existing) store, or None if it can."""
        try:
            if os.statvfs(self.path).f_flag & os.ST_RDONLY:
                return "it is on a read-only file system"
        except (OSError, AttributeError):
            pass
        if not os.access(self.path, os.W_OK):
            return "the file is not writable"
        folder = self.path.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            return (
                f"its folder {folder} is not writable, and SQLite keeps {self.path.name}-wal and "
                f"{self.path.name}-shm there"
            )
        for suffix in ("-wal", "-shm"):
            side = self._side(suffix)
            if side.exists() and not os.access(side, os.W_OK):
                return f"{side.name} is not writable"
        return None

    def _check_file(self) -> None:
        """Refuse anything at the path that is not SQLite before SQLite opens (and could write) it."""
        if self.path.is_dir():
            raise self._error("is a directory, not a results database file")
        if not self.path.exists():
            if self.read_only:
                raise self._error("no results store here (opened read-only, so none is created)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise self._error(f"cannot create its folder ({err.strerror or err})") from None
            if not os.access(self.path.parent, os.W_OK | os.X_OK):
                raise self._error(
                    f"no results store here, and none can be created: folder {self.path.parent} is not writable"
                )
            return
        try:
            with self.path.open("rb") as fh:
                header = fh.read(len(_SQLITE_HEADER))
        except OSError as err:
            raise self._error(f"cannot read file ({err.strerror or err})") from None
        if header and header != _SQLITE_HEADER:
            raise self._error("not an SQLite database (a memsr-bench results store); left untouched")
        if self._auto_read_only:
            self.read_only_reason = self._not_writable()

    def _connect(self) -> None:
        if not self.read_only:
            try:
                self._conn = self._open(read_only=False)
            except sqlite3.OperationalError as err:  # only SQLITE_READONLY errors come here
                self.read_only_reason = f"SQLite cannot write it: {err}"  # e.g. root squash, odd mounts
        if self.read_only:
            self._conn = self._open(read_only=True)
        self._pid = os.getpid()

    def _open(self, read_only: bool) -> sqlite3.Connection:
        """A checked connection; read-only errors of a read-write open are raised as they are."""
        wal = self._side("-wal")
        immutable = False
        if read_only:
            # Without a -wal file, mode=ro would create -wal and -shm beside the file: impossible in a
            # read-only folder, and left behind unwritable (blocking later writers) beside a read-only
            # file. Read such a store as the immutable file it is; with a -wal file, SQLite reads it.
            immutable = not wal.exists() and self._not_writable() is not None
        try:
            return self._open_checked(read_only, immutable)
        except sqlite3.OperationalError as err:
            cannot_open = _is_read_only_error(err) or _error_code(err) == sqlite3.SQLITE_CANTOPEN
            if read_only and not immutable and cannot_open and (not wal.exists() or wal.stat().st_size == 0):
                try:  # SQLite cannot create -wal/-shm here, and no WAL content can be missed
                    return self._open_checked(read_only, True)
                except sqlite3.OperationalError:
                    pass
            if read_only or not _is_read_only_error(err):
                raise self._error(f"unreadable results database ({err}); left untouched") from None
            raise

    def _open_checked(self, read_only: bool, immutable: bool) -> sqlite3.Connection:
        try:
            if read_only:
                uri = self.path.absolute().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
                conn = sqlite3.connect(
                    uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False
                )
            else:
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.OperationalError:
            raise
        except sqlite3.Error as err:
            raise self._error(f"cannot open results database ({err})") from None
        try:
            self._check_schema(conn, read_only)
        except MemsrInputError:
            conn.close()
            raise
        except sqlite3.OperationalError:
            conn.close()
            raise
        except sqlite3.DatabaseError as err:
            conn.close()
            raise self._error(f"unreadable results database ({err}); left untouched") from None
        return conn

    def _check_schema(self, conn: sqlite3.Connection, read_only: bool) -> None:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app_id != _APPLICATION_ID and (tables or app_id != 0):
            listed = ", ".join(sorted(tables)) or "none"
            raise self._error(
                f"an SQLite database of another application (tables: {listed}, application_id {app_id}),"
                " not a memsr-bench results store; left untouched"
            )
        if app_id == _APPLICATION_ID and version > _SCHEMA_VERSION:
            raise self._error(
                f"results store schema v{version} is newer than this memsr-bench understands "
                f"(v{_SCHEMA_VERSION}); upgrade memsr-bench"
            )
        if tables:
            check = conn.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                detail = "; ".join(str(r[0]) for r in check[:3])
                raise self._error(f"corrupt results database ({detail}); left untouched")
        conn.execute("PRAGMA synchronous = FULL")
        if read_only:
            # Nothing is written: an older or a new (empty) store is read through temporary objects.
            if app_id == _APPLICATION_ID and version == 1:
                conn.execute(
                    "CREATE TEMP VIEW results AS SELECT rowid AS rowid, *, '' AS fingerprint FROM main.results"
                )
            elif app_id != _APPLICATION_ID:
                conn.execute(_RESULTS_TABLE.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
            if app_id != _APPLICATION_ID or version < 3:
                conn.execute(_FAILURES_TABLE.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
            return
        conn.execute("PRAGMA journal_mode = WAL")
        if app_id == _APPLICATION_ID and version < _SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            if version == 1:  # v1 rows have no fingerprint: they stay (fingerprint '') and never match a new key
                conn.execute("ALTER TABLE results ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''")
            conn.execute(_FAILURES_TABLE)  # v3
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        if app_id != _APPLICATION_ID:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")

    def _connection(self):  # a sqlite3 connection here, a psycopg one in PostgresResultsStore
        if self._conn is None:
            raise self._error("results store is closed")
        if self._pid != os.getpid():  # a forked child must not share the parent's connection
            self._conn = None
            self._connect()
        return self._conn

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> None:
        """Copy the WAL's committed rows into the database file (best effort: they are committed)."""
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.DatabaseError:
            pass  # the rows are safe in the WAL; the next checkpoint (or SQLite's) copies them

    def close(self) -> None:
        """Close the connection; a writable store is checkpointed first (its WAL emptied)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                if not self.read_only:
                    try:  # do not wait long for readers of older snapshots: the rows are committed
                        self._conn.execute(f"PRAGMA busy_timeout = {int(min(self.timeout, 1.0) * 1000)}")
                    except sqlite3.DatabaseError:
                        pass
                    self._checkpoint(self._conn, "TRUNCATE")
                self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r}{', read_only=True' if self.read_only else ''})"

    # -- reading -------------------------------------------------------------------------------
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.DatabaseError as err:
                raise self._error(f"cannot read results database ({err})") from None

    def get(self, key: ResultKey) -> Row | None:
        """The stored row of ``key``, or None."""
        records = self._read(f"{_SELECT} WHERE key = ?", (key.id,))
        return _row(records[0]) if records else None

    def __contains__(self, key: ResultKey) -> bool:
        return bool(self._read("SELECT 1 FROM results WHERE key = ?", (key.id,)))

    def __len__(self) -> int:
        return self._read("SELECT COUNT(*) FROM results")[0][0]

    def content_digest(self) -> str:
        """sha256 of every stored row (key, values, time): changes whenever anything is put or deleted."""
        digest = hashlib.sha256()
        for record in sorted(self._read("SELECT key, values_json, measured_at FROM results")):
            digest.update("\x1f".join(map(str, record)).encode() + b"\x1e")
        return digest.hexdigest()

    def _where(self, filters: Mapping[str, Any]) -> tuple[str, list[Any]]:
        clauses, params = [], []
        for name, wanted in filters.items():
            if name not in KEY_FIELDS:
                raise MemsrInputError("query", f"unknown key field {name!r}; known: {', '.join(KEY_FIELDS)}")
            if name == "data" and isinstance(wanted, tuple) and all(isinstance(s, int) for s in wanted):
                wanted = input_size(wanted)
            if isinstance(wanted, (list, tuple, set, frozenset)):
                options = [input_size(w) if name == "data" and isinstance(w, tuple) else w for w in wanted]
                nulls = any(w is None for w in options)
                options = [w for w in options if w is not None]
                parts = []
                if options:
                    parts.append(f"{name} IN ({', '.join('?' * len(options))})")
                    params.extend(options)
                if nulls:
                    parts.append(f"{name} IS NULL")
                clauses.append(f"({' OR '.join(parts) or 'FALSE'})")
            elif wanted is None:
                clauses.append(f"{name} IS NULL")
            else:
                clauses.append(f"{name} = ?")
                params.append(wanted)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def rows(self, **filters: Any) -> list[Row]:
        """Stored rows whose key fields equal ``filters`` (a list/tuple/set of values: any of them)."""
        where, params = self._where(filters)
        return [_row(r) for r in self._read(f"{_SELECT}{where} ORDER BY rowid", params)]

    def query(self, *, expand: bool = True, **filters: Any):
        """A ``pandas.DataFrame`` of the matching rows (filters as :meth:`rows`), in storage order.

        Columns: the key fields, ``measured_at``, ``elapsed_s``, then the values: with ``expand``
        one column per value (nested objects flattened as ``"a.b"``), otherwise one ``values``
        column of dicts.
        """
        import pandas as pd

        rows = self.rows(**filters)
        meta = pd.DataFrame(
            [{**r.key.as_dict(), "measured_at": r.measured_at, "elapsed_s": r.elapsed_s} for r in rows],
            columns=[*KEY_FIELDS, "measured_at", "elapsed_s"],
        )
        meta["scale"] = meta["scale"].astype("Int64")
        if not expand:
            meta["values"] = [r.values for r in rows]
            return meta
        if not rows:
            return meta
        values = pd.json_normalize([r.values for r in rows], sep=".")
        clash = [c for c in values.columns if c in meta.columns]
        values = values.rename(columns={c: f"values.{c}" for c in clash})
        return pd.concat([meta, values.set_axis(meta.index)], axis=1)

    # -- writing -------------------------------------------------------------------------------
    def _writable_connection(self, what: str) -> sqlite3.Connection:
        if self.read_only_reason is not None:
            raise self._read_only_error(self.read_only_reason, what)
        return self._connection()

    def _write_error(self, err: sqlite3.DatabaseError, what: str) -> MemsrInputError:
        if _is_read_only_error(err):
            return self._read_only_error(str(err), what)
        return self._error(f"cannot write results database ({err})")

    def put(self, key: ResultKey, values: Mapping[str, Any], elapsed_s: float | None = None) -> Row:
        """Store ``values`` (a JSON-serialisable mapping) under ``key``, replacing any older row.

        One transaction, committed (and synced to disk) before this returns. Returns the row as
        it will be read back (values after a JSON round trip).
        """
        if not isinstance(values, Mapping):
            raise MemsrInputError("values", f"expected a mapping of measured values, got {type(values).__name__}")
        try:
            text = json.dumps(values, sort_keys=True, ensure_ascii=False, default=_json_default)
        except (TypeError, ValueError) as err:
            raise MemsrInputError("values", f"not JSON-serialisable: {err}") from None
        if elapsed_s is not None and not math.isfinite(elapsed_s):
            elapsed_s = None
        measured_at = _now()
        k = key.as_dict()
        params = [key.id, *(k[f] for f in KEY_FIELDS), text, measured_at, elapsed_s]
        # the row and, in the same transaction, any failure recorded for its cell
        self._write([(_UPSERT, params), ("DELETE FROM failures WHERE key = ?", (key.id,))], "store")
        return Row(key=key, values=json.loads(text), measured_at=measured_at, elapsed_s=elapsed_s)

    def delete(self, key: ResultKey) -> bool:
        """Remove the row of ``key``; True if there was one."""
        return self._write([("DELETE FROM results WHERE key = ?", (key.id,))], "delete")[0] > 0

    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]], what: str) -> list[int]:
        """Run ``statements`` in one transaction, committed (and checkpointed) before this returns;
        their row counts."""
        with self._lock:
            conn = self._writable_connection(what)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    counts = [conn.execute(sql, params).rowcount for sql, params in statements]
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as err:
                raise self._write_error(err, what) from None
            self._checkpoint(conn, "PASSIVE")  # the database file alone holds every committed row
        return counts

    def record_failure(self, key: ResultKey, reason: str, host: str | None = None) -> Failure:
        """Record that the cell ``key`` failed, with its one-line ``reason`` (replacing an older record)."""
        reason = " ".join(str(reason).split()) or "failed (no reason given)"
        failure = Failure(key, reason, _now(), host if host is not None else socket.gethostname())
        self._write([(_RECORD_FAILURE, (key.id, failure.reason, failure.failed_at, failure.host))], "record")
        return failure

    def check_not_failed(self, key: ResultKey) -> None:
        """Raise :class:`CellFailedError` if a sweep of this process recorded ``key`` as failed, so that a
        table built after the sweep shows the reason instead of computing the failing cell again."""
        reason = self.failed_this_run.get(key.id)
        if reason is not None:
            raise CellFailedError(key, reason)

    def failures(self) -> list[Failure]:
        """The failed cells recorded and not stored since, oldest first."""
        records = self._read("SELECT key, reason, failed_at, host FROM failures")
        return sorted(
            (Failure(ResultKey(**json.loads(k)), r, t, h) for k, r, t, h in records), key=lambda f: f.failed_at
        )

    def put_many(self, items: Iterable[tuple[ResultKey, Mapping[str, Any]]]) -> int:
        """``put`` each ``(key, values)``; each is committed on its own. Returns how many."""
        n = 0
        for key, values in items:
            self.put(key, values)
            n += 1
        return n


# ----------------------------------------------------------------------------- PostgreSQL


def is_postgres_url(location: object) -> bool:
    """True for ``postgresql://...`` and ``postgres://...`` (a store on a PostgreSQL server)."""
    return isinstance(location, str) and location.split("://", 1)[0].lower() in _POSTGRES_SCHEMES and "://" in location


def _sqlite_url_path(url: str) -> str:
    """``sqlite:///abs/path`` -> ``/abs/path``; ``sqlite:///rel`` (SQLAlchemy's relative form) -> ``rel``."""
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or len(rest) < 2:
        raise MemsrInputError("--store", f"expected sqlite:///path/to/results.sqlite, got {url!r}")
    return rest[1:] if not rest.startswith("//") else rest[1:]


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _postgres_schema() -> list[str]:
    """The SQLite schema in PostgreSQL's types (REAL is 8 bytes in SQLite, 4 in PostgreSQL), with the
    ``rowid`` that SQLite gives every table (storage order), and the marker table."""
    results = _RESULTS_TABLE.replace("REAL", "DOUBLE PRECISION").replace(
        "key TEXT PRIMARY KEY,", "rowid BIGINT GENERATED ALWAYS AS IDENTITY,\n    key TEXT PRIMARY KEY,", 1
    )
    marker = f"CREATE TABLE {_POSTGRES_MARKER} (application TEXT NOT NULL, version INTEGER NOT NULL)"
    return [results, _FAILURES_TABLE, _RESULTS_INDEX, marker]


_EXPECTED_COLUMNS = {"rowid", "key", *KEY_FIELDS, "values_json", "measured_at", "elapsed_s"}


class PostgresResultsStore(ResultsStore):
    """The results store in a PostgreSQL database (``postgresql://user[:password]@host:port/dbname``).

    Same interface, tables, keys and schema version as the SQLite store; see the module docstring.
    ``timeout``: seconds to wait for the server to answer a connection. Needs psycopg 3
    (``pip install 'memsr-bench[cluster]'``).
    """

    def __init__(self, path: str, timeout: float = 30.0, read_only: bool | None = None):
        self.url = str(path)
        self.path = _redacted(self.url)  # what messages name (never the password)
        self.timeout = float(timeout)
        self._auto_read_only = read_only is None
        self.read_only_reason = "opened with read_only=True" if read_only else None
        self._lock = threading.RLock()
        self.failed_this_run: dict[str, str] = {}
        self._conn = None
        self._pid = -1
        try:
            import psycopg
        except ImportError:
            raise self._error(
                "a PostgreSQL store needs psycopg 3: pip install 'memsr-bench[cluster]' (or 'psycopg[binary]')"
            ) from None
        self._psycopg = psycopg
        self._connect()

    @property
    def location(self) -> str:
        return self.path

    def __repr__(self) -> str:
        return f"ResultsStore({self.path!r}{', read_only=True' if self.read_only else ''})"

    def _connect(self) -> None:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=max(1, int(self.timeout)))
        except psycopg.Error as err:
            detail = " ".join(str(err).split()) or type(err).__name__
            raise self._error(f"cannot connect to the results database ({detail})") from None
        except Exception as err:  # a malformed URL (psycopg.conninfo raises ProgrammingError or ValueError)
            raise self._error(f"not a usable PostgreSQL URL ({' '.join(str(err).split())})") from None
        try:
            self._check_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = os.getpid()

    def _check_schema(self, conn) -> None:
        """Refuse a foreign or newer database untouched; create the schema in an empty one (under an
        advisory lock, so that hosts opening it at once create it once); read-only: temporary tables."""
        psycopg = self._psycopg
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_APPLICATION_ID,))
                tables = {
                    r[0]
                    for r in conn.execute(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
                    )
                }
                if _POSTGRES_MARKER in tables:
                    self._check_marked(conn, tables)
                elif tables:
                    raise self._error(
                        f"a database of another application (tables: {', '.join(sorted(tables))}), not a memsr-bench "
                        "results store; left untouched (give memsr-bench a database of its own: createdb memsr)"
                    )
                elif self.read_only:
                    for statement in _postgres_schema()[:2]:  # an empty database reads as an empty store
                        conn.execute(statement.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE"))
                else:
                    for statement in _postgres_schema():
                        conn.execute(statement)
                    conn.execute(
                        f"INSERT INTO {_POSTGRES_MARKER} (application, version) VALUES (%s, %s)",
                        (_APPLICATION, _SCHEMA_VERSION),
                    )
            if self._auto_read_only and not self.read_only:
                self.read_only_reason = self._not_writable_pg(conn)
            if self.read_only:
                conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        except psycopg.Error as err:
            raise self._error(f"cannot open results database ({' '.join(str(err).split())}); left untouched") from None

    def _check_marked(self, conn, tables: set[str]) -> None:
        marks = conn.execute(f"SELECT application, version FROM {_POSTGRES_MARKER}").fetchall()
        if len(marks) != 1 or marks[0][0] != _APPLICATION:
            raise self._error(
                f"{_POSTGRES_MARKER} does not mark a memsr-bench results store ({marks!r}); left untouched"
            )
        version = marks[0][1]
        if version > _SCHEMA_VERSION:
            raise self._error(
                f"results store schema v{version} is newer than this memsr-bench understands "
                f"(v{_SCHEMA_VERSION}); upgrade memsr-bench"
            )
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'results'"
            )
        }
        missing = sorted(_EXPECTED_COLUMNS - columns)
        if missing or "failures" not in tables:
            what = f"results lacks {', '.join(missing)}" if missing else "no failures table"
            raise self._error(f"not the layout of a memsr-bench results store ({what}); left untouched")

    def _not_writable_pg(self, conn) -> str | None:
        if conn.execute("SHOW transaction_read_only").fetchone()[0] == "on":
            return "the server only allows reading (a standby, or default_transaction_read_only)"
        user, may_insert = conn.execute(
            "SELECT current_user, "
            "has_table_privilege('results', 'INSERT') AND has_table_privilege('failures', 'INSERT')"
        ).fetchone()
        return None if may_insert else f"database user {user} may not insert into results"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._connection().execute(sql.replace("?", "%s"), params).fetchall()
            except self._psycopg.Error as err:
                raise self._error(f"cannot read results database ({' '.join(str(err).split())})") from None

    def _write(self, statements: Sequence[tuple[str, Sequence[Any]]], what: str) -> list[int]:
        errors = self._psycopg.errors
        with self._lock:
            conn = self._writable_connection(what)
            try:
                with conn.transaction():
                    return [conn.execute(sql.replace("?", "%s"), params).rowcount for sql, params in statements]
            except (errors.ReadOnlySqlTransaction, errors.InsufficientPrivilege) as err:
                raise self._read_only_error(" ".join(str(err).split()), what) from None
            except self._psycopg.Error as err:
                raise self._error(f"cannot write results database ({' '.join(str(err).split())})") from None


def cached(
    store: ResultsStore | None,
    key: ResultKey,
    compute: Callable[[], Mapping[str, Any]],
    force: bool = False,
) -> dict[str, Any]:
    """The stored values of ``key``, or ``compute()``'s, stored before they are returned.

    ``force`` recomputes and replaces a stored row. ``store=None`` just computes (no caching).
    Either way the caller gets the values after a JSON round trip, so a cached and a fresh
    result look the same (tuples come back as lists).
    """
    if store is None:
        values = compute()
        return json.loads(json.dumps(values, default=_json_default))
    if not force:
        row = store.get(key)
        if row is not None:
            return row.values
    store.check_not_failed(key)
    start = time.perf_counter()
    values = compute()
    elapsed = time.perf_counter() - start
    return store.put(key, values, elapsed_s=elapsed).values
