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

Resuming a sweep is :func:`cached` in the loop::

    from memsr_bench.measure.profile import profile

    store = ResultsStore()
    for name in zoo.names():
        shape = (1, 3, 256, 256)
        key = ResultKey("counts", name, "random-init", scale=4, data=shape, conventions="ntire2022")
        model = zoo.create(name, scale=4)
        values = cached(store, key, lambda: profile(model, preset="ntire2022").to_json())

Cells already stored are read back, not recomputed (unless ``force=True``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from memsr_bench.errors import MemsrInputError

__all__ = [
    "ENV_VAR",
    "KEY_FIELDS",
    "ResultKey",
    "ResultsStore",
    "Row",
    "cached",
    "default_path",
    "input_size",
]

ENV_VAR = "MEMSR_RESULTS"
_APPLICATION_ID = 0x4D535242  # "MSRB": marks a memsr-bench results database
_SCHEMA_VERSION = 2  # v2: the fingerprint key field (v1 stores are migrated on open)
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

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    {", ".join(f"{name} {decl}" for name, decl in _COLUMNS.items())},
    values_json TEXT NOT NULL,
    measured_at TEXT NOT NULL,
    elapsed_s REAL
);
CREATE INDEX IF NOT EXISTS results_by_model ON results (kind, model, scale);
"""
_SELECT = f"SELECT {', '.join(KEY_FIELDS)}, values_json, measured_at, elapsed_s FROM results"


def _row(record: tuple) -> Row:
    n = len(KEY_FIELDS)
    key = ResultKey(**dict(zip(KEY_FIELDS, record[:n], strict=True)))
    return Row(key=key, values=json.loads(record[n]), measured_at=record[n + 1], elapsed_s=record[n + 2])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ----------------------------------------------------------------------------- the store


class ResultsStore:
    """A results database (one SQLite file); see the module docstring.

    ``path``: the file (created with its folders if missing); None: :func:`default_path`.
    ``timeout``: seconds a write waits for another process's write to finish.
    Usable as a context manager (closes the connection); safe to share between threads.
    """

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 30.0):
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._check_file()
        self._connect()

    # -- opening -------------------------------------------------------------------------------
    def _error(self, problem: str) -> MemsrInputError:
        return MemsrInputError(self.path, problem)

    def _check_file(self) -> None:
        """Refuse anything at the path that is not SQLite before SQLite opens (and could write) it."""
        if self.path.is_dir():
            raise self._error("is a directory, not a results database file")
        if not self.path.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise self._error(f"cannot create its folder ({err.strerror or err})") from None
            return
        try:
            with self.path.open("rb") as fh:
                header = fh.read(len(_SQLITE_HEADER))
        except OSError as err:
            raise self._error(f"cannot read file ({err.strerror or err})") from None
        if header and header != _SQLITE_HEADER:
            raise self._error("not an SQLite database (a memsr-bench results store); left untouched")

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise self._error(f"cannot open results database ({err})") from None
        try:
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
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            if app_id == _APPLICATION_ID and version == 1:
                # v1 rows have no fingerprint: they stay (fingerprint '') and never match a new key.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ALTER TABLE results ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''")
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
        except MemsrInputError:
            conn.close()
            raise
        except sqlite3.DatabaseError as err:
            conn.close()
            raise self._error(f"unreadable results database ({err}); left untouched") from None
        self._conn = conn
        self._pid = os.getpid()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise self._error("results store is closed")
        if self._pid != os.getpid():  # a forked child must not share the parent's connection
            self._conn = None
            self._connect()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

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
        for record in self._read("SELECT key, values_json, measured_at FROM results ORDER BY key"):
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
                clauses.append(f"({' OR '.join(parts) or '0'})")
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
        cols = ["key", *KEY_FIELDS, "values_json", "measured_at", "elapsed_s"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in ("values_json", "measured_at", "elapsed_s"))
        sql = (
            f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT(key) DO UPDATE SET {updates}"
        )
        params = [key.id, *(k[f] for f in KEY_FIELDS), text, measured_at, elapsed_s]
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(sql, params)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.DatabaseError as err:
                raise self._error(f"cannot write results database ({err})") from None
        return Row(key=key, values=json.loads(text), measured_at=measured_at, elapsed_s=elapsed_s)

    def delete(self, key: ResultKey) -> bool:
        """Remove the row of ``key``; True if there was one."""
        with self._lock:
            conn = self._connection()
            try:
                cur = conn.execute("DELETE FROM results WHERE key = ?", (key.id,))
            except sqlite3.DatabaseError as err:
                raise self._error(f"cannot write results database ({err})") from None
            return cur.rowcount > 0

    def put_many(self, items: Iterable[tuple[ResultKey, Mapping[str, Any]]]) -> int:
        """``put`` each ``(key, values)``; each is committed on its own. Returns how many."""
        n = 0
        for key, values in items:
            self.put(key, values)
            n += 1
        return n


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
    start = time.perf_counter()
    values = compute()
    elapsed = time.perf_counter() - start
    return store.put(key, values, elapsed_s=elapsed).values
