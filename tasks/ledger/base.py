"""The ledger's connection, what it remembers between statements, its reads and its repairs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import ColumnElement, Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import SQLAlchemyError

from tasks.errors import ConfigError
from tasks.ledger import runs, secret_key
from tasks.ledger.schema import (
    DeliveryState,
    all_tables_exist,
    create_tables,
    deliveries,
    make_engine,
    streams,
    where,
)
from tasks.ledger.statements import Statements, chunks
from tasks.speed import ledger_sql
from tasks.speed.hmac_keys import hmac_keyer

DEFAULT_LEASE_SECONDS = 600.0
# 128 bits of the HMAC: collisions among a few million borrowers are out of reach.
KEY_HEX_CHARS = 32
_c = deliveries.c
_s = streams.c


class LedgerBase:
    """A ledger database, open: its engine, its writers' lock, and the row ids it remembers.

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
        if len(key) < secret_key.MIN_SECRET_BYTES:
            raise ConfigError(
                f"the ledger key is {len(key)} bytes; use at least "
                f"{secret_key.MIN_SECRET_BYTES} random bytes"
            )
        self._keys = hmac_keyer(key, KEY_HEX_CHARS)
        self.lease_seconds = lease_seconds
        self._engine = make_engine(url)
        self._postgres = self._engine.dialect.name == "postgresql"
        self._sql = Statements(postgres=self._postgres)
        # Decided once, when the ledger opens: statements in the driver's own SQL where they
        # pay, and on SQLite a first registration's batches claimed and marked by id range.
        self._driver_reads = ledger_sql.on()
        self._fast = (
            ledger_sql.SqliteFastPath() if self._driver_reads and not self._postgres else None
        )
        self._claimed_ids: dict[tuple[str, str], dict[str, int]] = {}
        # Row ids of every key `pending_keys` returned: a claim of those keys then goes straight
        # to the rows by id, one UPDATE, instead of first looking each key up in the index.
        self._known_ids: dict[tuple[str, str], dict[str, int]] = {}
        # (campaign, channel) -> delivery_stream.id; ids never change once made (see `_stream`).
        self._streams: dict[tuple[str, str], int] = {}
        # run_id -> when this instance last wrote that run's heartbeat (see `_heartbeat`).
        self._holding: dict[str, float] = {}
        self._ids_lock = threading.Lock()
        self._write_lock = threading.RLock()
        try:
            self._create_tables()
            with self._transaction() as conn:
                secret_key.verify(
                    conn, postgres=self._postgres, secret=key, origin=key_origin, where=where(url)
                )
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:  # the URL may carry a password
        return f"Ledger(dialect={self._engine.dialect.name!r})"

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def close(self) -> None:
        with self._ids_lock:
            self._known_ids.clear()
            holding, self._holding = list(self._holding), {}
        if self._fast is not None:
            self._fast.clear()
        if holding:
            # Only spares the next rerun a look at these runs; failing it (a full disk, a lost
            # connection) must not hide whatever is ending this run.
            with suppress(SQLAlchemyError), self._transaction() as conn:
                runs.release(conn, holding)
        self._engine.dispose()

    def __enter__(self) -> LedgerBase:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- reading --------------------------------------------------------------------------------

    def pending_keys(self, campaign: str, channel: str) -> list[str]:
        """Keys still to send, in storage order (the order `register` was given them).

        Remembers their row ids, so that claiming them later skips the key index.
        """
        with self._engine.connect() as conn:
            stream = self._stream(conn, campaign, channel)
            if self._driver_reads:
                ids = ledger_sql.pending_ids(conn, stream, postgres=self._postgres)
            else:
                pending = (_c.stream == stream) & (_c.state == DeliveryState.PENDING.value)
                stmt = select(_c.id, _c.recipient_key).where(pending).order_by(_c.id)
                ids = {key: row_id for row_id, key in conn.execute(stmt)}
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
            for chunk in chunks(keys):
                stmt = select(_c.recipient_key, _c.state).where(self._sql.by_keys(stream, chunk))
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
            for chunk in chunks(keys):
                stmt = select(deliveries).where(self._sql.by_keys(stream, chunk))
                result.update(
                    (row.recipient_key, {**row._mapping, **named}) for row in conn.execute(stmt)
                )
        return result

    # --- repairs (`fbsflow ledger --repair`, see repair.py): never part of a run ----------------

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
        self._forget_stream(campaign, channel)  # remembered ids may name rows that change here
        changed = 0
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel)
            for chunk in chunks(sorted(ids)):
                where = (_c.stream == stream, self._sql.by_ids(chunk), guard)
                stmt = (
                    deliveries.delete().where(*where)
                    if values is None
                    else update(deliveries).where(*where).values(values)
                )
                changed += conn.execute(stmt).rowcount
        return changed

    def delete_campaign(self, campaign: str) -> int:
        """Remove every row of a campaign (tests and deliberate clean-ups only)."""
        self._forget_stream(campaign)
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

    def _span(
        self, conn: Connection, campaign: str, channel: str, keys: Sequence[str]
    ) -> tuple[int, int] | None:
        """(first id, last id) when `keys` are a stretch of a first registration (SQLite's fast
        path); None otherwise: then by ids or keys."""
        if self._fast is None or not self._fast.knows((campaign, channel)):
            return None
        stream = self._stream(conn, campaign, channel)
        return self._fast.span(conn, (campaign, channel), stream, keys)

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

        With `expect`, a different number of rows raises CountChanged and changes nothing.
        """
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel)
            where = (_c.stream == stream, _c.state == state.value, *also)
            changed = int(conn.execute(update(deliveries).where(*where).values(values)).rowcount)
            if expect is not None and changed != expect:
                raise CountChanged(changed)  # leaving the transaction rolls the UPDATE back
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
        span = self._span(conn, campaign, channel, keys)
        if span is not None and self._fast is not None:
            # A whole claimed stretch (the usual mark) on SQLite: one range, no per-key work.
            changed = self._fast.update_span(conn, span, values, states, run_id)
            if changed is not None:
                return changed
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
        for id_chunk in chunks(ids):
            stmt = update(deliveries).where(self._sql.by_ids(id_chunk) & guard).values(values)
            changed += conn.execute(stmt).rowcount
        stream = self._stream(conn, campaign, channel) if others else -1
        for key_chunk in chunks(others):
            where = self._sql.by_keys(stream, key_chunk) & guard
            changed += conn.execute(update(deliveries).where(where).values(values)).rowcount
        return changed

    def _forget(self, campaign: str, channel: str, keys: Iterable[str]) -> None:
        with self._ids_lock:
            known = self._claimed_ids.get((campaign, channel))
            if known:
                for key in keys:
                    known.pop(key, None)

    def _forget_stream(self, campaign: str, channel: str | None = None) -> None:
        """Drop every id and stretch remembered for a campaign's channel (or all its channels)."""
        with self._ids_lock:
            for remembered in (self._claimed_ids, self._known_ids):
                for name in [n for n in remembered if n[0] == campaign]:
                    if channel in (None, name[1]):
                        del remembered[name]
        if self._fast is not None:
            self._fast.forget(campaign, channel)

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
            if now - self._holding.get(run_id, 0.0) < runs.HEARTBEAT_SECONDS:
                return
            self._holding[run_id] = now
        with self._transaction() as conn:
            runs.record(
                conn, run_id, now=now, lease_seconds=self.lease_seconds, postgres=self._postgres
            )

    def _create_tables(self) -> None:
        """Create what is missing: a ledger of an earlier layout is upgraded here, on open."""
        try:
            with self._transaction() as conn:
                create_tables(conn, postgres=self._postgres)
        except SQLAlchemyError:
            # Two processes creating a fresh PostgreSQL ledger at once: the loser's CREATE fails.
            if not all_tables_exist(self._engine):
                raise


class CountChanged(Exception):
    """An update met another number of rows than the caller expected (and was rolled back)."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count
