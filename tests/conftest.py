"""Shared fixtures. Tests that read ../shared skip with a clear reason where it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


def require_shared(*parts: str) -> Path:
    """Path under ../shared, or skip the test when it is missing (a user's machine without it)."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (reference data in ../shared, present in CI); not found here")
    return path


@pytest.fixture
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture
def datasets_dir() -> Path:
    return require_shared("datasets")


@pytest.fixture
def weights_dir() -> Path:
    return require_shared("weights")


@pytest.fixture(autouse=True)
def _private_results_store(tmp_path_factory, monkeypatch):
    """Commands that store results write to a per-test store, never to the user's ~/.cache."""
    monkeypatch.setenv("MEMSR_RESULTS", str(tmp_path_factory.mktemp("store") / "results.sqlite"))
