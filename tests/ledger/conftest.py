"""The ledger tests' databases: each test on SQLite and on PostgreSQL, a fresh one each time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tasks.ledger import Ledger
from tests.ledger.common import KEY
from tests.support.postgres import fresh_schema, postgres_url, reachable


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh ledger database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    url = postgres_url()
    if not reachable(url):
        pytest.skip(f"PostgreSQL not reachable at {make_url(url).host}:{make_url(url).port}")
    with fresh_schema(url) as fresh:
        yield fresh


@pytest.fixture
def campaign() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ledger(db_url: str, campaign: str) -> Iterator[Ledger]:
    with Ledger(db_url, key=KEY) as led:
        yield led
        led.delete_campaign(campaign)
