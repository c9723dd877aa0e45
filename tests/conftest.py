"""Shared fixtures: one Prefect test harness per session, zero backoff, paths to the example files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config" / "municipalities" / "eksempel-kommune.yaml"
EXAMPLE_AUDIENCE = ROOT / "config" / "municipalities" / "eksempel-laanere.csv"

# Every retry delay is zero in tests (apprise's habit): set before any fbsflow module reads it.
os.environ.setdefault("FBSFLOW_BACKOFF_SCALE", "0")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test harness (a temporary database and server) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def example_config() -> Path:
    return EXAMPLE_CONFIG


@pytest.fixture
def example_audience() -> Path:
    return EXAMPLE_AUDIENCE
