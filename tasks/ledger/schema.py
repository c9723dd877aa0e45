"""The ledger's tables and states, its database engine, and the upgrade of an earlier layout."""

from __future__ import annotations

import logging
import stat
from contextlib import suppress
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import make_url

from tasks.ledger import outcome_tables, runs, secret_key
from tasks.speed.sqlite_pages import tune_new_database
from tasks.translation import read_only_database

log = logging.getLogger(__name__)


class DeliveryState(StrEnum):
    """Where one recipient of one campaign and channel stands.

    pending ──claim──> sending ──mark──> sent | failed | unknown
       ^                  │
       └────release───────┘   (the request was definitely not accepted)

    sending ──resolve_interrupted──> unknown   (its run died; the provider may have accepted it)
    unknown ──requeue_unknown──> pending       (only when a person chooses at-least-once)
    unknown ──accept_unknown───> sent          (a person checked with the provider: delivered)
    failed  ──requeue_failed───> pending       (after a person fixed what the provider refused)
    """

    PENDING = "pending"  # not sent yet
    SENDING = "sending"  # claimed by a run that is sending it right now (or died doing so)
    SENT = "sent"  # accepted by the provider
    FAILED = "failed"  # refused for good; `detail` says why
    UNKNOWN = "unknown"  # may have been accepted: never re-sent unless a person says so


metadata = MetaData()
# A campaign's channel, named once: ledger rows carry this small id instead of the two strings.
# A campaign id is ~60 characters, and a million rows held it twice each (in the row and in the
# key index): registering them took half again as long, and every claim and mark wrote it back.
streams = Table(
    "delivery_stream",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign", String(200), nullable=False),
    Column("channel", String(40), nullable=False),
    UniqueConstraint("campaign", "channel", name="delivery_stream_name"),
)
deliveries = Table(
    "delivery_ledger",
    metadata,
    # Rows are stored in the order they were registered, and updates after the first look-up go
    # by this id: a batch of an audience then touches a few neighbouring pages instead of one
    # page per recipient, which is what makes 1M rows affordable.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    # delivery_stream.id (not a foreign key: PostgreSQL would check it on every insert).
    Column("stream", Integer, nullable=False),
    Column("recipient_key", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("batch_id", String(200)),
    Column("run_id", String(200)),
    Column("provider_id", Text),
    Column("detail", Text),
    # Seconds since the epoch (UTC); a float keeps bulk writes cheap on both databases.
    Column("updated_at", Float, nullable=False),
    Column("lease_until", Float),
    # The only other index: no index on `state`, which every update would have to maintain.
    UniqueConstraint("stream", "recipient_key", name="delivery_ledger_stream_recipient"),
    # Free room in each page lets PostgreSQL update a row in place (HOT) without index writes.
    postgresql_with={"fillfactor": 60},
)
# A column only the ledger table of the layout before `delivery_stream` has (see `_migrate`).
_OLD_LAYOUT = "campaign"
# Every table of a ledger: the deliveries here; the key, the runs and the providers' outcomes
# in their own modules.
ALL_METADATA = (metadata, secret_key.metadata, runs.metadata, outcome_tables.metadata)


def create_tables(conn: Connection, *, postgres: bool) -> None:
    """Create what is missing, in `conn`'s transaction: a ledger of an earlier layout is
    upgraded here, on open."""
    if postgres:
        # One process migrates; another opening the ledger meanwhile waits here.
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242017)")
    if _OLD_LAYOUT in _columns(conn, deliveries.name):
        _migrate(conn, postgres=postgres)
    # Tables added since (the key's check value, the runs' holders) come with it.
    for each in ALL_METADATA:
        each.create_all(conn, checkfirst=True)


def all_tables_exist(engine: Engine) -> bool:
    """Whether every table of a ledger is there (another process may just have made them)."""
    with engine.connect() as conn:
        tables = [t.name for each in ALL_METADATA for t in each.sorted_tables]
        return all(engine.dialect.has_table(conn, name) for name in tables)


def _migrate(conn: Connection, *, postgres: bool) -> None:
    """Move a ledger from the layout before `delivery_stream` into this one, rows unchanged.

    The same ids, keys, states and leases: a rerun after upgrading sends nothing twice.
    """
    old = f"{deliveries.name}_before_streams"
    conn.exec_driver_sql(f"ALTER TABLE {deliveries.name} RENAME TO {old}")
    metadata.create_all(conn, checkfirst=True)
    conn.exec_driver_sql(
        f"INSERT INTO {streams.name} (campaign, channel) "
        f"SELECT DISTINCT campaign, channel FROM {old}"
    )
    columns = [c.name for c in deliveries.columns if c.name != "stream"]
    listed = ", ".join(columns)
    conn.exec_driver_sql(
        f"INSERT INTO {deliveries.name} (stream, {listed}) "
        f"SELECT s.id, {', '.join(f'o.{c}' for c in columns)} FROM {old} o "
        f"JOIN {streams.name} s ON s.campaign = o.campaign AND s.channel = o.channel "
        "ORDER BY o.id"
    )
    conn.exec_driver_sql(f"DROP TABLE {old}")
    if postgres:
        # Rows came with their ids: new ones must start after the largest.
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{deliveries.name}', 'id'), "
            f"(SELECT COALESCE(max(id), 0) + 1 FROM {deliveries.name}), false)"
        )
    log.info("ledger moved to one delivery_stream row per campaign and channel")


def where(url: str) -> str:
    """A ledger's place for a message: the SQLite file, or the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


def _columns(conn: Connection, table: str) -> set[str]:
    """The column names of `table` (empty if there is no such table)."""
    inspector = inspect(conn)
    if not inspector.has_table(table):
        return set()
    return {column["name"] for column in inspector.get_columns(table)}


def make_engine(url: str) -> Engine:
    """The engine of a ledger at `url`; on SQLite with WAL and BEGIN IMMEDIATE transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        _refuse_a_read_only_file(Path(parsed.database))
    engine = create_engine(
        url,
        # The driver must not open transactions itself: we issue BEGIN IMMEDIATE (below).
        connect_args={"isolation_level": None, "check_same_thread": False, "timeout": 60},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Before the WAL switch: a page size takes effect only on a new database.
        tune_new_database(dbapi_conn)
        with suppress(Exception):  # in-memory databases cannot use WAL
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the last one.
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute("PRAGMA busy_timeout=60000")

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        # Take the write lock when the transaction starts, so a claim's check of `state` and its
        # update cannot interleave with another process's claim.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _refuse_a_read_only_file(path: Path) -> None:
    """StorageError for a ledger file someone marked read-only (no write bit for anyone).

    SQLite would say so at the first write, but not to root, who may write any file: a run as
    root would then send from a ledger its operator meant to freeze.
    """
    with suppress(FileNotFoundError):
        if not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise read_only_database(str(path))
