"""A fresh ledger per test, on SQLite and (when it answers) PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.ledger import Ledger
from tests.support.postgres import fresh_schema, postgres_url, reachable


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", key=os.urandom(32)) as opened:
            yield opened
        return
    url = postgres_url()
    if not reachable(url):
        pytest.skip("PostgreSQL not reachable")
    with fresh_schema(url, "rcpt") as fresh, Ledger(fresh, key=os.urandom(32)) as opened:
        yield opened
