"""PostgreSQL for tests: the server's URL, whether it answers, and a fresh schema per use.

A ledger records its key's check value, so tests with different keys (and test runs of parallel
workers) must not share one schema's ledger tables: each gets a schema of its own, dropped after.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    """FBSFLOW_TEST_POSTGRES_URL, else a PostgreSQL FBSFLOW_DATABASE_URL, else the local server."""
    env = os.environ.get("FBSFLOW_TEST_POSTGRES_URL") or os.environ.get("FBSFLOW_DATABASE_URL", "")
    return env if env.startswith("postgresql") else DEFAULT_URL


def reachable(url: str) -> bool:
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432), 1):
            return True
    except OSError:
        return False


@contextmanager
def fresh_schema(url: str, prefix: str = "t") -> Iterator[str]:
    """`url` with a new, empty schema as its search path; the schema is dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        fresh = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield fresh.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
