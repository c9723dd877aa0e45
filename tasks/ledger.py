"""The delivery ledger: a row per campaign x channel x recipient, so each borrower gets one message.

A row moves through these states (`DeliveryState`):

    pending ──claim──> sending ──mark──> sent | failed | unknown
       ^                  │
       └────release───────┘   (the request was definitely not accepted)

    sending ──resolve_interrupted──> unknown   (its run died; the provider may have accepted it)
    unknown ──requeue_unknown──> pending       (only when a person chooses at-least-once)
    unknown ──accept_unknown───> sent          (a person checked with the provider: delivered)
    failed  ──requeue_failed───> pending       (after a person fixed what the provider refused)

How a rerun tells a dead run's `sending` rows from a live parallel run's: every claim carries a
lease (`lease_until`, wall-clock seconds). The worker renews the lease before every new attempt at
a batch (`renew_claim`), so a live run's rows never sit past their lease, while a run killed by
SIGKILL or a crash leaves rows whose lease runs out. Each run also records who holds its claims
(`ledger_runs`: host, process id, heartbeat; one row per run): `resolve_interrupted` turns into
`unknown` the `sending` rows whose lease ran out, and at once those of a run whose process is gone
from this host or that has sent no heartbeat for two minutes. Rows of a live run are left alone
and show up as `sending` in `counts`. The lease (default 10 minutes) must be longer than one send
attempt plus one backoff sleep. Machines sharing a PostgreSQL ledger should keep their clocks in
sync (NTP), which is far finer than the lease.

The ledger never stores an address: `recipient_key` is an HMAC-SHA256 of the normalised address
under a secret key (env `FBSFLOW_LEDGER_KEY`, or a random key kept in a file beside the SQLite
database), and the ledger records a check value of that key, so a run with another key stops
before sending (`ledger_key`). Every operation is one statement per up to `_CHUNK` keys, never
one per recipient.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    any_,
    bindparam,
    cast,
    create_engine,
    event,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.sql import FromClause

from tasks import ledger_key, ledger_runs
from tasks.errors import ConfigError
from tasks.ledger_key import KEY_FILE_NAME as KEY_FILE_NAME  # where callers look for them
from tasks.ledger_key import LEDGER_KEY_ENV as LEDGER_KEY_ENV
from tasks.ledger_key import MIN_SECRET_BYTES
from tasks.ledger_runs import Interruption

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "FBSFLOW_DATABASE_URL"
DB_FILE_NAME = "ledger.db"
DEFAULT_LEASE_SECONDS = 600.0
# Keys per SQL statement: large enough that 1M keys take 20 statements, small enough that one
# statement's parameter (a JSON text or an array) stays a few MB.
_CHUNK = 50_000
# Rows added at once after which PostgreSQL's statistics are refreshed.
_ANALYZE_AFTER = 10_000
# PostgreSQL's "deadlock detected". A claim by row ids (id order) and another run's claim by
# keys (key order) can lock the same rows in different orders; PostgreSQL then rolls one back.
_DEADLOCK = "40P01"
_DEADLOCK_RETRIES = 3
# 128 bits of the HMAC: collisions among a few million borrowers are out of reach.
_KEY_HEX_CHARS = 32
# Joins keys into one PostgreSQL parameter; no key from recipient_key can contain it.
_SEPARATOR = "\x1f"
_SPACES = re.compile(r"\s+")
_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")
# What a JSON string must escape (RFC 8259: quote, backslash, controls), and lone surrogates,
# which have no UTF-8 form. json.dumps also escapes the rest of non-ASCII, which JSON does not
# require and SQLite's json_each reads either way.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')


class DeliveryState(StrEnum):
    """Where one recipient of one campaign and channel stands."""

    PENDING = "pending"  # not sent yet
    SENDING = "sending"  # claimed by a run that is sending it right now (or died doing so)
    SENT = "sent"  # accepted by the provider
    FAILED = "failed"  # refused for good; `detail` says why
    UNKNOWN = "unknown"  # may have been accepted: never re-sent unless a person says so


_metadata = MetaData()
# A campaign's channel, named once: ledger rows carry this small id instead of the two strings.
# A campaign id is ~60 characters, and a million rows held it twice each (in the row and in the
# key index): registering them took half again as long, and every claim and mark wrote it back.
streams = Table(
    "delivery_stream",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("campaign", String(200), nullable=False),
    Column("channel", String(40), nullable=False),
    UniqueConstraint("campaign", "channel", name="delivery_stream_name"),
)
deliveries = Table(
    "delivery_ledger",
    _metadata,
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
_c = deliveries.c
_s = streams.c
# A column only the ledger table of the layout before `delivery_stream` has (see `_migrate`).
_OLD_LAYOUT = "campaign"

# The SQLite statements of a batch's claim and mark, in the driver's own form (see _span_in_run).
_SQL_ENDS = (
    f"SELECT recipient_key, id FROM {deliveries.name} WHERE stream = ? AND recipient_key IN (?, ?)"
)
_SQL_CLAIM_SPAN = (
    f"UPDATE {deliveries.name} SET state = ?, attempts = attempts + 1, batch_id = ?, run_id = ?, "
    "provider_id = NULL, detail = NULL, updated_at = ?, lease_until = ? "
    "WHERE id BETWEEN ? AND ? AND state = ?"
)
_PLAIN_TYPES = frozenset({str, float, int, type(None)})
_T = TypeVar("_T")


def _sql_update_span(
    values: Mapping[str, Any],
    span: tuple[int, int],
    states: Sequence[DeliveryState],
    run_id: str | None,
) -> tuple[str, tuple[Any, ...]]:
    """`UPDATE ... SET values WHERE id BETWEEN span AND state IN states [AND run_id = ?]`."""
    for name in values:
        if name not in _c:  # names come from this module; a typo must not become SQL
            raise ValueError(f"no column {name!r} in {deliveries.name}")
    sql = (
        f"UPDATE {deliveries.name} SET {', '.join(f'{name} = ?' for name in values)} "
        f"WHERE id BETWEEN ? AND ? AND state IN ({', '.join('?' * len(states))})"
        + (" AND run_id = ?" if run_id is not None else "")
    )
    params = (*values.values(), *span, *(s.value for s in states))
    return sql, params + ((run_id,) if run_id is not None else ())


def normalise_address(address: str) -> str:
    """The form two spellings of an address share: e-mail lower-cased, phone without punctuation."""
    value = _SPACES.sub("", address.strip())
    if "@" in value:
        return value.casefold()
    value = _PHONE_PUNCTUATION.sub("", value)
    if value.startswith("00"):
        value = "+" + value[2:]
    return value


def _json_array(values: list[str]) -> str:
    """`json.dumps(values)` for a list of strings, joined in C when none needs escaping.

    Recipient keys are hex: on a million of them this takes ~20 ms instead of ~350 ms.
    """
    if _JSON_ESCAPED.search("".join(values)) is None:
        return '["' + '","'.join(values) + '"]' if values else "[]"
    return json.dumps(values)


def _chunks(keys: Iterable[_T], size: int = _CHUNK) -> Iterator[list[_T]]:
    it = iter(keys)
    while chunk := list(islice(it, size)):
        yield chunk


def _chunks_of_parts(
    parts: Iterable[Sequence[str]], seen: list[str], size: int = _CHUNK
) -> Iterator[list[str]]:
    """`_chunks` of each part in turn, as the parts arrive; `seen` collects every key."""
    for part in parts:
        seen.extend(part)
        yield from _chunks(part, size)


class Ledger:
    """The delivery ledger over SQLite (one machine) or PostgreSQL (`FBSFLOW_DATABASE_URL`).

    One instance may be shared by threads. It remembers the row ids of the keys it claimed until
    they are marked or released, so that the second update of a row skips the key look-up.
    """

    def __init__(
        self,
        url: str,
        *,
        key: bytes,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        key_origin: str = "the key given to Ledger()",
    ) -> None:
        """Open (creating or upgrading) the ledger at `url`; ConfigError if it has another key.

        `key_origin` says where the key was found, for the message a mismatch gets.
        """
        if len(key) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the ledger key is {len(key)} bytes; use at least {MIN_SECRET_BYTES} random bytes"
            )
        self._hmac_inner, self._hmac_outer = _hmac_states(key)
        self.lease_seconds = lease_seconds
        self._engine = _make_engine(url)
        self._postgres = self._engine.dialect.name == "postgresql"
        self._claimed_ids: dict[tuple[str, str], dict[str, int]] = {}
        # Row ids of every key `pending_keys` returned: a claim of those keys then goes straight
        # to the rows by id, one UPDATE, instead of first looking each key up in the index.
        self._known_ids: dict[tuple[str, str], dict[str, int]] = {}
        # A first registration's keys in order and the id of the first: the key at position i
        # has id first + i. A batch cut from that order is then one id range, found with one
        # look-up, without a million-entry dict (~100 MB) of key -> id.
        self._runs: dict[tuple[str, str], tuple[int, list[str]]] = {}
        # (campaign, channel) -> delivery_stream.id; ids never change once made (see `_stream`).
        self._streams: dict[tuple[str, str], int] = {}
        # run_id -> when this instance last wrote that run's heartbeat (see `_heartbeat`).
        self._holding: dict[str, float] = {}
        self._ids_lock = threading.Lock()
        self._write_lock = threading.RLock()
        try:
            self._create_table()
            with self._transaction() as conn:
                ledger_key.verify(
                    conn, postgres=self._postgres, secret=key, origin=key_origin, where=_where(url)
                )
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:  # the URL may carry a password
        return f"Ledger(dialect={self._engine.dialect.name!r})"

    @classmethod
    def open(cls, data_dir: Path, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Ledger:
        """The ledger at `FBSFLOW_DATABASE_URL`, else `ledger.db` in `data_dir` (made if missing).

        The key comes from `FBSFLOW_LEDGER_KEY`, else from `data_dir/ledger.key`, made at random
        the first time, but only for a ledger never used before (else ConfigError: a new key
        would send to everyone again). Every machine sharing one PostgreSQL ledger must use the
        same key (set the env variable there); a run with another key stops with a ConfigError.
        """
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        url = os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{data_dir / DB_FILE_NAME}"
        key = ledger_key.find_key(data_dir)
        if key is None:
            engine = _make_engine(url)
            try:
                with engine.connect() as conn:
                    ledger_key.refuse_a_new_key(conn, deliveries.name, _where(url), data_dir)
            except ConfigError:
                # A run started at the same moment may have made the key file and used the
                # ledger between our look for the file and this check: it links the file first.
                key = ledger_key.find_key(data_dir)
                if key is None:
                    raise
            finally:
                engine.dispose()
            key = key or ledger_key.make_key_file(data_dir)
        return cls(url, key=key.secret, lease_seconds=lease_seconds, key_origin=key.origin)

    @classmethod
    def scratch(cls, folder: Path, *, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Ledger:
        """A throw-away SQLite ledger in `folder` with a random key, whatever the environment says.

        For the outbox, which delivers to nobody: its rows must never reach the real ledger,
        where they would pass for deliveries (and, left `sending` by a kill, keep the channel
        open for good).
        """
        url = f"sqlite:///{Path(folder) / DB_FILE_NAME}"
        return cls(url, key=os.urandom(32), lease_seconds=lease_seconds, key_origin="a scratch key")

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        with self._ids_lock:
            self._known_ids.clear()
            self._runs.clear()
            holding, self._holding = list(self._holding), {}
        if holding:
            # Only spares the next rerun a look at these runs; failing it (a full disk, a lost
            # connection) must not hide whatever is ending this run.
            with suppress(SQLAlchemyError), self._transaction() as conn:
                ledger_runs.release(conn, holding)
        self._engine.dispose()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def recipient_key(self, address: str) -> str:
        """A stable, non-personal key for an address: truncated HMAC-SHA256 of its normal form."""
        return self.recipient_keys([address])[0]

    def recipient_keys(self, addresses: Iterable[str], *, normalised: bool = False) -> list[str]:
        """`recipient_key` of each address, in order (the loop a million-recipient run needs).

        HMAC-SHA256 computed from the two SHA-256 states the key determines, prepared once
        (RFC 2104): the same digests as `hmac.digest`, in half the time, since that re-derives
        them from the key on every call. `normalised=True` says the addresses are already in
        `normalise_address` form (the audience import's output: lower-case ASCII e-mail, E.164
        numbers), which saves its two regex passes per address (~0.6 s on 1M).
        """
        inner, outer = self._hmac_inner, self._hmac_outer
        if not normalised:
            addresses = map(normalise_address, addresses)
        keys = []
        for address in addresses:
            h = inner.copy()
            h.update(address.encode())
            o = outer.copy()
            o.update(h.digest())
            keys.append(o.hexdigest()[:_KEY_HEX_CHARS])
        return keys

    def register(self, campaign: str, channel: str, keys: Iterable[str]) -> int:
        """Add `keys` as pending; keys already in the ledger keep their state. Returns rows added.

        Rows are stored in the order given, which should be the order they will be sent in: a
        batch's claim and mark then touch neighbouring rows, one id range, instead of one random
        page per recipient (on 1M rows that is several times faster). Register a whole audience
        in one call. When every key is new, the ledger also learns their row ids here, so that
        claiming them needs no look-up (and no `pending_keys` read).
        """
        unique = list(keys)
        if len(set(unique)) != len(unique):
            unique = list(dict.fromkeys(unique))
        return self.register_parts(campaign, channel, [unique])

    def register_parts(self, campaign: str, channel: str, parts: Iterable[Sequence[str]]) -> int:
        """`register` of the keys of `parts` in order, each part inserted as it arrives.

        For a caller still computing the later parts (the flow keys and sorts a million
        recipients a part at a time): the inserts go on meanwhile, in one transaction. Keys must
        not repeat across parts (a repeated one is kept once, but then no run is recorded and
        claims look keys up). Each part sorted is enough for the key index: a few sorted runs
        insert as fast as one (1M keys in 4 parts: 1.06-1.07 s against 0.98-1.21 s).
        """
        now = time.time()
        added = 0
        ids: dict[str, int] = {}
        run: tuple[int, list[str]] | None = None
        unique: list[str] = []
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel, create=True)
            if self._postgres:
                cols = ["stream", "recipient_key", "state", "attempts", "updated_at"]
                for chunk in _chunks_of_parts(parts, unique):
                    source = self._values(chunk)
                    rows = select(
                        literal(stream, Integer),
                        source.c.value,
                        literal(DeliveryState.PENDING.value, String),
                        literal(0, Integer),
                        literal(now, Float),
                    )
                    stmt = (
                        pg_insert(deliveries)
                        .from_select(cols, rows)
                        .on_conflict_do_nothing()
                        .returning(_c.id, _c.recipient_key)
                    )
                    new = conn.execute(stmt).all()
                    added += len(new)
                    ids.update((key, row_id) for row_id, key in new)
            else:
                before = conn.exec_driver_sql(f"SELECT max(id) FROM {deliveries.name}").scalar()
                for chunk in _chunks_of_parts(parts, unique):
                    added += conn.exec_driver_sql(
                        f"INSERT OR IGNORE INTO {deliveries.name} (stream, recipient_key, state, "
                        "attempts, updated_at) SELECT ?, value, ?, 0, ? "
                        "FROM json_each(?) ORDER BY json_each.key",
                        (stream, DeliveryState.PENDING.value, now, _json_array(chunk)),
                    ).rowcount
                if unique and added == len(unique):
                    # All new, inserted in order under the write lock: SQLite gave them the ids
                    # after the previous largest, one by one. Checked at both ends all the same.
                    first = (before or 0) + 1
                    ends = self._ids_of(conn, stream, [unique[0], unique[-1]])
                    if ends == {unique[0]: first, unique[-1]: first + len(unique) - 1}:
                        run = (first, unique)
        with self._ids_lock:
            if ids:
                self._known_ids.setdefault((campaign, channel), {}).update(ids)
            if run is not None:
                self._runs[(campaign, channel)] = run
        if self._postgres and added >= _ANALYZE_AFTER:
            # Fresh statistics, so the planner knows this campaign has many rows (~0.2 s).
            with self._transaction() as conn:
                conn.exec_driver_sql(f"ANALYZE {deliveries.name}")
        return added

    def _ids_of(self, conn: Connection, stream: int, keys: list[str]) -> dict[str, int]:
        stmt = select(_c.recipient_key, _c.id).where(self._by_keys(stream, keys))
        return {key: row_id for key, row_id in conn.execute(stmt)}

    def claim(
        self, campaign: str, channel: str, keys: Sequence[str], *, batch_id: str, run_id: str
    ) -> list[str]:
        """Move pending `keys` to sending for this run; return only the keys this call claimed.

        Atomic: two runs claiming the same keys at once never both get one. On PostgreSQL the
        second UPDATE waits for the first's row locks and re-checks `state = 'pending'`; on SQLite
        the transaction holds the write lock from its start (BEGIN IMMEDIATE), so the pending rows
        it reads are still pending when it updates them. A claim that PostgreSQL rolls back to
        break a deadlock is made again.
        """
        self._heartbeat(run_id)
        now = time.time()
        values = {
            "state": DeliveryState.SENDING.value,
            "attempts": _c.attempts + 1,
            "batch_id": batch_id,
            "run_id": run_id,
            "provider_id": None,
            "detail": None,
            "updated_at": now,
            "lease_until": now + self.lease_seconds,
        }
        for attempt in range(_DEADLOCK_RETRIES + 1):
            try:
                return self._claim(campaign, channel, keys, values, batch_id)
            except OperationalError as exc:
                # PostgreSQL broke a lock cycle by rolling this claim's transaction back:
                # nothing of it happened, so claiming again is safe.
                deadlock = getattr(exc.orig, "sqlstate", None) == _DEADLOCK
                if not deadlock or attempt == _DEADLOCK_RETRIES:
                    raise
                log.info("claim of %d rows met a deadlock; claiming again", len(keys))
        raise AssertionError("unreachable")

    def _claim(
        self,
        campaign: str,
        channel: str,
        keys: Sequence[str],
        values: dict[str, Any],
        batch_id: str,
    ) -> list[str]:
        found: list[tuple[int, str]] | None = None
        with self._transaction() as conn:
            # A stretch of a first registration: one id range, claimed in one statement. Its
            # ids are not remembered: marking the same stretch finds the range the same way.
            span = self._span_in_run(conn, campaign, channel, keys)
            if span is not None:
                return self._claim_span(conn, campaign, channel, span, keys, values, batch_id)
            with self._ids_lock:
                known = self._known_ids.get((campaign, channel), {})
                by_id = {known[k]: k for k in keys if k in known}
            if by_id and len(by_id) == len(set(keys)):
                found = self._claim_by_ids(conn, by_id, values, batch_id)
        if found is None:
            found = self._claim_by_keys(campaign, channel, keys, values)
        with self._ids_lock:
            self._claimed_ids.setdefault((campaign, channel), {}).update(
                (key, row_id) for row_id, key in found
            )
        return [key for _, key in found]

    def _span_in_run(
        self, conn: Connection, campaign: str, channel: str, keys: Sequence[str]
    ) -> tuple[int, int] | None:
        """(first id, last id) when `keys` are a stretch of a first registration, in its order.

        One index look-up (the first and last key) and a list comparison (in C): no per-key
        work in Python, which on a million recipients is what claiming and marking would cost
        most.
        """
        with self._ids_lock:
            run = self._runs.get((campaign, channel))
        if run is None or not keys:
            return None
        first, order = run
        # Only SQLite records runs (`register`). Its driver's own SQL, not a SQLAlchemy select:
        # building and compiling one costs ~0.4 ms, twice a batch (claim and mark).
        stream = self._stream(conn, campaign, channel)
        cursor = conn.exec_driver_sql(_SQL_ENDS, (stream, keys[0], keys[-1]))
        ends = {key: row_id for key, row_id in cursor}
        start = ends.get(keys[0])
        if start is None:
            return None
        i = start - first
        if i < 0 or order[i : i + len(keys)] != list(keys):
            return None
        # Both ends, checked in the table: rows deleted and registered anew by another ledger
        # instance (delete_campaign) must not leave this one updating someone else's ids.
        if ends.get(keys[-1]) != start + len(keys) - 1:
            return None
        return start, start + len(keys) - 1

    def _claim_span(
        self,
        conn: Connection,
        campaign: str,
        channel: str,
        span: tuple[int, int],
        keys: Sequence[str],
        values: dict[str, Any],
        batch_id: str,
    ) -> list[str]:
        """Claim a stretch of a first registration by its id range: every key, or, when another
        run got to some of them first, exactly the rows this claim took.

        SQLite only: PostgreSQL hands out ids from a sequence that other processes share, so
        only a SQLite registration records a stretch (`_runs`).
        """
        low, high = span
        # The driver's SQL, as in `_span_in_run`: these are `values` as `claim` makes them.
        params = (
            values["state"],
            values["batch_id"],
            values["run_id"],
            values["updated_at"],
            values["lease_until"],
            low,
            high,
            DeliveryState.PENDING.value,
        )
        if conn.exec_driver_sql(_SQL_CLAIM_SPAN, params).rowcount == len(keys):
            return list(keys)
        mine = (_c.batch_id == batch_id) & (_c.run_id == values["run_id"])
        rows = conn.execute(
            select(_c.id, _c.recipient_key).where(_c.id.between(low, high) & mine)
        ).all()
        # Only some: remember their ids, since a mark of part of a stretch goes by key or id.
        with self._ids_lock:
            self._claimed_ids.setdefault((campaign, channel), {}).update(
                (key, row_id) for row_id, key in rows
            )
        return [key for _, key in sorted(rows)]

    def _claim_by_ids(
        self, conn: Connection, by_id: dict[int, str], values: dict[str, Any], batch_id: str
    ) -> list[tuple[int, str]]:
        """Claim rows whose ids `pending_keys` read: one UPDATE, usually over one id range.

        Deliberately no `campaign`/`channel` condition (the ids already belong to them): SQLite
        would then walk the campaign's part of the unique index instead of the id range.
        """
        ids = sorted(by_id)
        pending = _c.state == DeliveryState.PENDING.value
        stmt = update(deliveries).where(self._by_ids(ids) & pending).values(values)
        if self._postgres:
            # Sorted ids: concurrent claims lock PostgreSQL rows in one order (no deadlock).
            return list(conn.execute(stmt.returning(_c.id, _c.recipient_key)).all())
        claimed = conn.execute(stmt).rowcount
        if claimed == len(ids):  # the usual case: nobody else had any of them
            return [(row_id, by_id[row_id]) for row_id in ids]
        # Some were taken or done already: read back which rows this claim took.
        mine = select(_c.id).where(
            self._by_ids(ids) & (_c.batch_id == batch_id) & (_c.run_id == values["run_id"])
        )
        return [(row_id, by_id[row_id]) for row_id in conn.execute(mine).scalars()]

    def _claim_by_keys(
        self, campaign: str, channel: str, keys: Sequence[str], values: dict[str, Any]
    ) -> list[tuple[int, str]]:
        """Claim keys whose row ids this instance does not know: look them up in the index."""
        found: list[tuple[int, str]] = []
        # Sorted, so that concurrent claims lock PostgreSQL rows in one order and cannot deadlock.
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel)
            for chunk in _chunks(sorted(set(keys))):
                pending = self._by_keys(stream, chunk) & (_c.state == DeliveryState.PENDING.value)
                if self._postgres:
                    stmt = (
                        update(deliveries)
                        .where(pending)
                        .values(values)
                        .returning(_c.id, _c.recipient_key)
                    )
                    found.extend(conn.execute(stmt).all())
                else:
                    # RETURNING costs SQLite more than this read, which the write lock makes safe.
                    rows = self._pending_in_key_range(conn, stream, chunk)
                    if rows is None:
                        rows = conn.execute(select(_c.id, _c.recipient_key).where(pending)).all()
                    if rows:
                        ids = [row_id for row_id, _ in rows]
                        conn.execute(update(deliveries).where(self._by_ids(ids)).values(values))
                    found.extend(rows)
        return found

    def renew_claim(self, campaign: str, channel: str, keys: Sequence[str], *, run_id: str) -> int:
        """Before another attempt at claimed keys: count the attempt and extend their lease."""
        self._heartbeat(run_id)
        now = time.time()
        return self._update(
            campaign,
            channel,
            keys,
            states=(DeliveryState.SENDING,),
            run_id=run_id,
            values={
                "attempts": _c.attempts + 1,
                "updated_at": now,
                "lease_until": now + self.lease_seconds,
            },
        )

    def mark(
        self,
        campaign: str,
        channel: str,
        statuses: Mapping[str, str],
        *,
        provider_ids: Sequence[str] = (),
        detail: str = "",
        run_id: str | None = None,
    ) -> int:
        """Record the outcome (a DeliveryState or its value) of sent keys; returns rows changed.

        Only rows in `sending` or `unknown` change (a run may learn the truth about its own rows
        after a parallel rerun judged them interrupted); `sent`, `failed` and `pending` rows are
        never overwritten. With `run_id`, only that run's rows change. `provider_ids` are the ids
        of the request(s) that carried these keys; `detail` is a non-personal reason.
        """
        grouped: dict[str, list[str]] = {}
        distinct = set(statuses.values())
        if len(distinct) == 1:  # the usual case: one outcome for a whole batch, no per-key loop
            grouped[distinct.pop()] = list(statuses)
        else:
            for key, state in statuses.items():
                grouped.setdefault(state, []).append(key)
        by_state = {DeliveryState(state): keys for state, keys in grouped.items()}
        for outcome in by_state.keys() & {DeliveryState.PENDING, DeliveryState.SENDING}:
            raise ValueError(f"mark records an outcome; {outcome.value!r} is not one")
        values = {
            "provider_id": " ".join(provider_ids) or None,
            "detail": detail or None,
            "updated_at": time.time(),
            "lease_until": None,
        }
        changed = 0
        with self._transaction() as conn:
            for outcome, keys in by_state.items():
                changed += self._update(
                    campaign,
                    channel,
                    keys,
                    states=(DeliveryState.SENDING, DeliveryState.UNKNOWN),
                    run_id=run_id,
                    values={**values, "state": outcome.value},
                    conn=conn,
                )
        self._forget(campaign, channel, statuses)
        return changed

    def release(
        self, campaign: str, channel: str, keys: Sequence[str], *, run_id: str | None = None
    ) -> int:
        """Put claimed keys back to pending: their request was definitely not accepted."""
        changed = self._update(
            campaign,
            channel,
            keys,
            states=(DeliveryState.SENDING,),
            run_id=run_id,
            values={
                "state": DeliveryState.PENDING.value,
                "updated_at": time.time(),
                "lease_until": None,
            },
        )
        self._forget(campaign, channel, keys)
        return changed

    def resolve_interrupted(self, campaign: str, channel: str) -> list[Interruption]:
        """Turn `sending` rows of dead runs into `unknown`, for reruns; one Interruption per run.

        Dead: the run's process is gone from this host, or it has sent no heartbeat for two
        minutes (`ledger_runs.gone`), or the rows' lease ran out. One UPDATE per dead run
        (there is rarely more than one) and one for expired leases.
        """
        now = time.time()
        found: list[Interruption] = []
        sending = _c.state == DeliveryState.SENDING.value
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel)
            candidates = list(ledger_runs.gone(conn, now))
            expired = Interruption(0)
            for run in [*candidates, expired]:
                which = _c.run_id == run.run_id if run is not expired else _c.lease_until < now
                values = {
                    "state": DeliveryState.UNKNOWN.value,
                    "detail": run.detail,
                    "updated_at": now,
                    "lease_until": None,
                }
                stmt = update(deliveries).where(_c.stream == stream, sending, which).values(values)
                if count := conn.execute(stmt).rowcount:
                    found.append(dataclasses.replace(run, count=count))
        for run in found:
            log.warning("%s/%s: %s", campaign, channel, run)
        return found

    def requeue_unknown(self, campaign: str, channel: str) -> int:
        """unknown -> pending, so a rerun sends them: only if a person accepts duplicates."""
        return self._requeue(campaign, channel, DeliveryState.UNKNOWN)

    def accept_unknown(
        self, campaign: str, channel: str, *, by: str, expect: int | None = None
    ) -> int:
        """unknown -> sent, when a person has checked with the provider that they were delivered.

        `by` is the staff member who decided; it goes in each row's `detail`, before the reason the
        row was unknown, so the ledger says whose word turned "may have been delivered" into
        "sent" and why it had been in doubt. Every unknown row of the channel is accepted; with
        `expect`, only if that is exactly how many there are (else ConfigError, nothing changed):
        the number the person checked, so that rows another run left unknown since are not
        accepted unseen.
        """
        note = literal(f"accepted as delivered by {by[:200]}; was: ", Text)
        values = {
            "state": DeliveryState.SENT.value,
            "detail": note + func.coalesce(_c.detail, "unknown"),
            "updated_at": time.time(),
        }
        try:
            return self._move(campaign, channel, DeliveryState.UNKNOWN, values, expect=expect)
        except _CountChanged as changed:
            raise ConfigError(
                f"{changed.count} {channel} recipients are unknown, not {expect}: nothing was "
                "accepted. Another run may have changed them since you checked; look at "
                "`fbsflow ledger CONFIG` and the provider's log again, then accept with "
                f"--expect {changed.count} if they were all delivered"
            ) from None

    def requeue_failed(self, campaign: str, channel: str) -> int:
        """failed -> pending, after a person fixed what the provider refused (e.g. the sender)."""
        return self._requeue(campaign, channel, DeliveryState.FAILED)

    # --- reading --------------------------------------------------------------------------------

    def pending_keys(self, campaign: str, channel: str) -> list[str]:
        """Keys still to send, in storage order (the order `register` was given them).

        Remembers their row ids, so that claiming them later skips the key index.
        """
        mark = "%s" if self._postgres else "?"
        sql = (
            f"SELECT id, recipient_key FROM {deliveries.name} WHERE stream = {mark} "
            f"AND state = {mark} ORDER BY id"
        )
        with self._engine.connect() as conn:
            stream = self._stream(conn, campaign, channel)
            # The DB-API cursor directly: SQLAlchemy's Row objects cost ~1 us each on 1M rows.
            cursor = conn.exec_driver_sql(sql, (stream, DeliveryState.PENDING.value))
            ids = {key: row_id for row_id, key in cursor}
        with self._ids_lock:
            self._known_ids.setdefault((campaign, channel), {}).update(ids)
        return list(ids)

    def counts(self, campaign: str, channel: str | None = None) -> dict[str, int]:
        """Rows per state (every state present, zeros included), for one channel or all."""
        named = select(_s.id).where(_s.campaign == campaign)
        if channel is not None:
            named = named.where(_s.channel == channel)
        stmt = select(_c.state, func.count()).where(_c.stream.in_(named)).group_by(_c.state)
        result = {state.value: 0 for state in DeliveryState}
        with self._engine.connect() as conn:
            for state, count in conn.execute(stmt):
                result[state] = count
        return result

    def states(self, campaign: str, channel: str, keys: Iterable[str]) -> dict[str, DeliveryState]:
        """The state of each given key that is in the ledger (keys not registered are absent)."""
        result: dict[str, DeliveryState] = {}
        with self._engine.connect() as conn:
            stream = self._stream(conn, campaign, channel)
            for chunk in _chunks(keys):
                stmt = select(_c.recipient_key, _c.state).where(self._by_keys(stream, chunk))
                result.update((key, DeliveryState(state)) for key, state in conn.execute(stmt))
        return result

    def rows(self, campaign: str, channel: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Every column of the given keys' rows, e.g. to tell a person why a delivery failed.

        With the campaign and channel the row's `stream` stands for.
        """
        result: dict[str, dict[str, Any]] = {}
        named = {"campaign": campaign, "channel": channel}
        with self._engine.connect() as conn:
            stream = self._stream(conn, campaign, channel)
            for chunk in _chunks(keys):
                stmt = select(deliveries).where(self._by_keys(stream, chunk))
                result.update(
                    (row.recipient_key, {**row._mapping, **named}) for row in conn.execute(stmt)
                )
        return result

    # --- repairs (`fbsflow ledger --repair`, see ledger_repair): never part of a run ----------

    def channel_rows(self, campaign: str, channel: str) -> list[tuple[int, str, str, str | None]]:
        """(id, recipient_key, state, run_id) of every row of a channel, in id order."""
        with self._engine.connect() as conn:
            stream = self._stream(conn, campaign, channel)
            stmt = select(_c.id, _c.recipient_key, _c.state, _c.run_id).where(_c.stream == stream)
            return [
                (i, key, state, run) for i, key, state, run in conn.execute(stmt.order_by(_c.id))
            ]

    def provider_ids(
        self, campaign: str, channel: str, *, like: str
    ) -> set[tuple[str | None, str]]:
        """The distinct (run_id, provider_id) of a channel's rows whose provider_id is LIKE `like`."""
        with self._engine.connect() as conn:
            stream = self._stream(conn, campaign, channel)
            stmt = select(_c.run_id, _c.provider_id).where(
                _c.stream == stream, _c.provider_id.like(like)
            )
            return {(run_id, ids) for run_id, ids in conn.execute(stmt.distinct())}

    def change_rows(
        self,
        campaign: str,
        channel: str,
        ids: Sequence[int],
        guard: ColumnElement[bool],
        values: Mapping[str, Any] | None,
    ) -> int:
        """Give a channel's rows `values` (None: delete them) by id, where `guard` still holds."""
        with self._ids_lock:  # remembered ids and stretches may name rows that change here
            for remembered in (self._claimed_ids, self._known_ids, self._runs):
                remembered.pop((campaign, channel), None)
        changed = 0
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel)
            for chunk in _chunks(sorted(ids)):
                where = (_c.stream == stream, self._by_ids(chunk), guard)
                stmt = (
                    deliveries.delete().where(*where)
                    if values is None
                    else update(deliveries).where(*where).values(values)
                )
                changed += conn.execute(stmt).rowcount
        return changed

    def delete_campaign(self, campaign: str) -> int:
        """Remove every row of a campaign (tests and deliberate clean-ups only)."""
        with self._ids_lock:
            for ids in (self._claimed_ids, self._known_ids, self._runs):
                for stream in [s for s in ids if s[0] == campaign]:
                    del ids[stream]
        # Its streams stay (one small row each): a stream id must never come to mean another
        # campaign while some other ledger instance still remembers it.
        named = select(_s.id).where(_s.campaign == campaign)
        with self._transaction() as conn:
            return conn.execute(deliveries.delete().where(_c.stream.in_(named))).rowcount

    # --- internals ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """`engine.begin()`; on SQLite, one thread of this process at a time.

        SQLite lets one writer in at a time (BEGIN IMMEDIATE), and a thread that finds the lock
        taken sleeps in the busy handler's steps of 1, 2, 5, 10 ms and more: with two threads
        claiming and marking a batch each, those sleeps cost more than the writes. A Python lock
        hands over at once. Other processes still meet the busy handler (rarely: parallel runs).
        """
        if self._postgres:
            with self._engine.begin() as conn:
                yield conn
        else:
            with self._write_lock, self._engine.begin() as conn:
                yield conn

    @staticmethod
    def _pending_in_key_range(
        conn: Connection, stream: int, keys: list[str]
    ) -> list[tuple[int, str]] | None:
        """Pending rows of sorted `keys` by one index range scan, if the range is dense enough.

        A batch cut from a key-ordered audience covers a narrow key range holding little else:
        reading that range is several times cheaper than one index look-up per key. None if the
        range holds more than twice as many rows (a sparse batch): then look keys up one by one.
        """
        limit = 2 * len(keys)
        stmt = (
            select(_c.id, _c.recipient_key, _c.state)
            .where(_c.stream == stream, _c.recipient_key.between(keys[0], keys[-1]))
            .limit(limit + 1)
        )
        rows = conn.execute(stmt).all()
        if len(rows) > limit:
            return None
        wanted = set(keys)
        pending = DeliveryState.PENDING.value
        return [(row_id, key) for row_id, key, state in rows if state == pending and key in wanted]

    def _requeue(self, campaign: str, channel: str, state: DeliveryState) -> int:
        values = {"state": DeliveryState.PENDING.value, "updated_at": time.time()}
        return self._move(campaign, channel, state, values)

    def _move(
        self,
        campaign: str,
        channel: str,
        state: DeliveryState,
        values: Mapping[str, Any],
        *also: ColumnElement[bool],
        expect: int | None = None,
    ) -> int:
        """Every row of a campaign's channel in `state` (and `also`) gets `values`: one UPDATE.

        With `expect`, a different number of rows raises _CountChanged and changes nothing.
        """
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel)
            where = (_c.stream == stream, _c.state == state.value, *also)
            changed = int(conn.execute(update(deliveries).where(*where).values(values)).rowcount)
            if expect is not None and changed != expect:
                raise _CountChanged(changed)  # leaving the transaction rolls the UPDATE back
            return changed

    def _update(
        self,
        campaign: str,
        channel: str,
        keys: Iterable[str],
        *,
        states: Sequence[DeliveryState],
        run_id: str | None,
        values: Mapping[str, Any],
        conn: Connection | None = None,
    ) -> int:
        """One UPDATE per chunk: by row id for keys this instance claimed, by key for the rest."""
        if conn is None:
            with self._transaction() as own:
                return self._update(
                    campaign, channel, keys, states=states, run_id=run_id, values=values, conn=own
                )
        keys = list(keys)
        span = self._span_in_run(conn, campaign, channel, keys)
        if span is not None and all(type(v) in _PLAIN_TYPES for v in values.values()):
            # A whole claimed stretch (the usual mark) on SQLite: one range, no per-key work, and
            # the driver's own SQL (a SQLAlchemy update costs ~0.25 ms more to build).
            sql, params = _sql_update_span(values, span, states, run_id)
            return int(conn.exec_driver_sql(sql, params).rowcount)
        guard = _c.state.in_([s.value for s in states])
        if run_id is not None:
            guard &= _c.run_id == run_id
        if span is not None:
            stmt = update(deliveries).where(_c.id.between(*span) & guard).values(values)
            return int(conn.execute(stmt).rowcount)
        with self._ids_lock:
            known = self._claimed_ids.get((campaign, channel), {})
            ids = sorted({known[k] for k in keys if k in known})
            others = sorted({k for k in keys if k not in known})
        changed = 0
        # Ids before keys, each sorted: every writer takes PostgreSQL row locks in one order.
        for id_chunk in _chunks(ids):
            stmt = update(deliveries).where(self._by_ids(id_chunk) & guard).values(values)
            changed += conn.execute(stmt).rowcount
        stream = self._stream(conn, campaign, channel) if others else -1
        for key_chunk in _chunks(others):
            where = self._by_keys(stream, key_chunk) & guard
            changed += conn.execute(update(deliveries).where(where).values(values)).rowcount
        return changed

    def _forget(self, campaign: str, channel: str, keys: Iterable[str]) -> None:
        with self._ids_lock:
            known = self._claimed_ids.get((campaign, channel))
            if known:
                for key in keys:
                    known.pop(key, None)

    def _by_keys(self, stream: int, keys: list[str]) -> ColumnElement[bool]:
        """Rows of these keys, found through the unique index, with one bound parameter."""
        if self._postgres:
            # `= ANY(array)` is an index condition whatever the statistics say; a fresh table
            # without them would otherwise get a plan that scans the campaign once per key.
            in_keys = _c.recipient_key == any_(self._pg_array(keys, Text))
        else:
            in_keys = _c.recipient_key.in_(select(self._values(keys).c.value))
        return (_c.stream == stream) & in_keys

    def _by_ids(self, ids: list[int]) -> ColumnElement[bool]:
        low, high = min(ids), max(ids)
        if high - low + 1 == len(set(ids)):
            # The usual case (a batch of a key-ordered audience): one range scan, no id list.
            return _c.id.between(low, high)
        if self._postgres:
            return _c.id == any_(self._pg_array(ids, BigInteger))
        return _c.id.in_(select(self._values(ids).c.value))

    def _values(self, values: list[str]) -> FromClause:
        """`values` as a one-column table `value`, sent as one parameter (not one per value)."""
        if self._postgres:
            return func.unnest(self._pg_array(values, Text)).table_valued("value").render_derived()
        text = _json_array(values) if values and isinstance(values[0], str) else json.dumps(values)
        return func.json_each(bindparam("values_json", text)).table_valued("value")

    @staticmethod
    def _pg_array(values: list[str] | list[int], item: type[Text] | type[BigInteger]) -> Any:
        """A PostgreSQL array from one text parameter, split by the server.

        psycopg's encoding of a Python list costs more than the UPDATE it feeds (~8 us a key).
        """
        joined = _SEPARATOR.join(map(str, values))
        if values and joined.count(_SEPARATOR) != len(values) - 1:
            raise ValueError("a recipient key contains the ASCII unit separator (0x1f)")
        array = func.string_to_array(bindparam("values_text", joined, type_=Text), _SEPARATOR)
        return cast(array, ARRAY(item()))

    def _stream(
        self, conn: Connection, campaign: str, channel: str, *, create: bool = False
    ) -> int:
        """The `delivery_stream` id of a campaign's channel; -1 (which no row has) if none yet.

        `create` adds it, in `conn`'s transaction. Ids are remembered: a stream row is never
        deleted or changed, so an id stays right for as long as this instance lives.
        """
        with self._ids_lock:
            known = self._streams.get((campaign, channel))
        if known is not None:
            return known
        named = (_s.campaign == campaign) & (_s.channel == channel)
        if create:
            values = {"campaign": campaign, "channel": channel}
            if self._postgres:
                conn.execute(pg_insert(streams).values(values).on_conflict_do_nothing())
            else:
                conn.execute(streams.insert().prefix_with("OR IGNORE").values(values))
        found = conn.execute(select(_s.id).where(named)).scalar()
        if found is None:
            return -1
        with self._ids_lock:
            self._streams[(campaign, channel)] = found
        return int(found)

    def _heartbeat(self, run_id: str) -> None:
        """Record that this process holds `run_id`'s claims and is alive: at most every 20 s."""
        now = time.time()
        with self._ids_lock:
            if now - self._holding.get(run_id, 0.0) < ledger_runs.HEARTBEAT_SECONDS:
                return
            self._holding[run_id] = now
        with self._transaction() as conn:
            ledger_runs.record(
                conn, run_id, now=now, lease_seconds=self.lease_seconds, postgres=self._postgres
            )

    def _create_table(self) -> None:
        """Create what is missing: a ledger of an earlier layout is upgraded here, on open."""
        try:
            with self._transaction() as conn:
                if self._postgres:
                    # One process migrates; another opening the ledger meanwhile waits here.
                    conn.exec_driver_sql("SELECT pg_advisory_xact_lock(4242017)")
                if _OLD_LAYOUT in _columns(conn, deliveries.name):
                    self._migrate(conn)
                # Tables added since (the key's check value, the runs' holders) come with it.
                for metadata in _ALL_METADATA:
                    metadata.create_all(conn, checkfirst=True)
        except SQLAlchemyError:
            # Two processes creating a fresh PostgreSQL ledger at once: the loser's CREATE fails.
            with self._engine.connect() as conn:
                tables = [t.name for metadata in _ALL_METADATA for t in metadata.sorted_tables]
                if not all(self._engine.dialect.has_table(conn, name) for name in tables):
                    raise

    def _migrate(self, conn: Connection) -> None:
        """Move a ledger from the layout before `delivery_stream` into this one, rows unchanged.

        The same ids, keys, states and leases: a rerun after upgrading sends nothing twice.
        """
        old = f"{deliveries.name}_before_streams"
        conn.exec_driver_sql(f"ALTER TABLE {deliveries.name} RENAME TO {old}")
        _metadata.create_all(conn, checkfirst=True)
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
        if self._postgres:
            # Rows came with their ids: new ones must start after the largest.
            conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{deliveries.name}', 'id'), "
                f"(SELECT COALESCE(max(id), 0) + 1 FROM {deliveries.name}), false)"
            )
        log.info("ledger moved to one delivery_stream row per campaign and channel")


# Every table of a ledger: the deliveries here, the key and the runs in their own modules.
_ALL_METADATA = (_metadata, ledger_key.metadata, ledger_runs.metadata)


def _where(url: str) -> str:
    """A ledger's place for a message: the SQLite file, or the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


class _CountChanged(Exception):
    """An update met another number of rows than the caller expected (and was rolled back)."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


def _columns(conn: Connection, table: str) -> set[str]:
    """The column names of `table` (empty if there is no such table)."""
    from sqlalchemy import inspect

    inspector = inspect(conn)
    if not inspector.has_table(table):
        return set()
    return {column["name"] for column in inspector.get_columns(table)}


def _hmac_states(key: bytes) -> tuple[Any, Any]:
    """SHA-256 after absorbing key XOR ipad, and after key XOR opad (RFC 2104, section 2)."""
    block = hashlib.sha256().block_size
    if len(key) > block:
        key = hashlib.sha256(key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(
        url,
        # The driver must not open transactions itself: we issue BEGIN IMMEDIATE (below).
        connect_args={"isolation_level": None, "check_same_thread": False, "timeout": 60},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # 32 KiB pages (takes effect only on a new database, before the WAL switch below): a
        # batch's claim or mark writes ~240 KB of rows, and SQLite appends each page to the WAL
        # with its own write. Measured on 1M claims and marks: 2.5 s instead of 7.2 s at 4 KiB.
        dbapi_conn.execute("PRAGMA page_size=32768")
        with suppress(Exception):  # in-memory databases cannot use WAL
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the last one.
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")
        dbapi_conn.execute("PRAGMA busy_timeout=60000")
        # 64 MiB per connection. Claims and marks walk id ranges and registration fills the key
        # index in order, so a bigger cache bought nothing: at 256 MiB a 1M run peaked ~230 MiB
        # higher and was no faster (two runs each side by side).
        dbapi_conn.execute("PRAGMA cache_size=-65536")
        # Checkpoint every 2,048 pages (64 MiB of WAL), not SQLite's default 1,000.
        dbapi_conn.execute("PRAGMA wal_autocheckpoint=2048")

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        # Take the write lock when the transaction starts, so a claim's check of `state` and its
        # update cannot interleave with another process's claim.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
