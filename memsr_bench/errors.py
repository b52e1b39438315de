"""Errors about user input: each one names the file (or argument) and the problem, on one line.

The CLI turns them into ``error: <message>`` on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class MemsrInputError(Exception):
    """Bad input (a file, folder, checkpoint or argument). ``str(err)`` is one line."""

    def __init__(self, where: str | Path, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class CheckpointError(MemsrInputError):
    """A checkpoint that does not fit the model: wrong file, scale, keys, checksum or truncated."""
