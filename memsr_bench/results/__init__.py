"""Results store: every measurement is a keyed row in one SQLite file (see :mod:`.store`)."""

from memsr_bench.results.store import (
    ENV_VAR,
    KEY_FIELDS,
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
    "ResultKey",
    "ResultsStore",
    "Row",
    "cached",
    "default_path",
    "input_size",
]
