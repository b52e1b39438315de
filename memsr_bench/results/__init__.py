"""Results store: every measurement is a keyed row in one SQLite file or a shared PostgreSQL database
(see :mod:`.store`); sweeps run their missing cells as keyed jobs, here or on a Dask cluster (:mod:`.jobs`)."""

from memsr_bench.results.store import (
    ENV_VAR,
    KEY_FIELDS,
    CellFailedError,
    Failure,
    ResultKey,
    ResultsStore,
    Row,
    cached,
    default_path,
    input_size,
)

__all__ = [
    "ENV_VAR",
    "KEY_FIELDS",
    "CellFailedError",
    "Failure",
    "ResultKey",
    "ResultsStore",
    "Row",
    "cached",
    "default_path",
    "input_size",
]
