"""The delivery ledger: a row per campaign x channel x recipient, so each borrower gets one message."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    String,
    Text,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import OperationalError

from tasks.errors import ConfigError
from tasks.ledger import runs, secret_key
from tasks.ledger.base import DEFAULT_LEASE_SECONDS, CountChanged, LedgerBase
from tasks.ledger.runs import Interruption
from tasks.ledger.schema import DeliveryState, deliveries, make_engine, streams, where
from tasks.ledger.statements import chunks, chunks_of_parts
from tasks.settings import StorageSettings, settings
from tasks.speed import ledger_sql

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "FBSFLOW_DATABASE_URL"
DB_FILE_NAME = "ledger.db"
# Rows added at once after which PostgreSQL's statistics are refreshed.
_ANALYZE_AFTER = 10_000
# PostgreSQL's "deadlock detected". A claim by row ids (id order) and another run's claim by
# keys (key order) can lock the same rows in different orders; PostgreSQL then rolls one back.
_DEADLOCK = "40P01"
_DEADLOCK_RETRIES = 3
_SPACES = re.compile(r"\s+")
_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")
_c = deliveries.c
_s = streams.c


def normalise_address(address: str) -> str:
    """The form two spellings of an address share: e-mail lower-cased, phone without punctuation."""
    value = _SPACES.sub("", address.strip())
    if "@" in value:
        return value.casefold()
    value = _PHONE_PUNCTUATION.sub("", value)
    if value.startswith("00"):
        value = "+" + value[2:]
    return value


class Ledger(LedgerBase):
    """The delivery ledger over SQLite (one machine) or PostgreSQL (`FBSFLOW_DATABASE_URL`).

    Rows move through the states `DeliveryState` draws. How a rerun tells a dead run's `sending`
    rows from a live parallel run's: every claim carries a lease (`lease_until`, wall-clock
    seconds). The worker renews the lease before every new attempt at a batch (`renew_claim`),
    so a live run's rows never sit past their lease, while a run killed by SIGKILL or a crash
    leaves rows whose lease runs out. Each run also records who holds its claims (`runs.py`:
    host, process id, heartbeat; one row per run): `resolve_interrupted` turns into `unknown`
    the `sending` rows whose lease ran out, and at once those of a run whose process is gone
    from this host or that has sent no heartbeat for two minutes. Rows of a live run are left
    alone and show up as `sending` in `counts`. The lease (default 10 minutes) must be longer
    than one send attempt plus one backoff sleep. Machines sharing a PostgreSQL ledger should
    keep their clocks in sync (NTP), which is far finer than the lease.

    The ledger never stores an address: `recipient_key` is an HMAC-SHA256 of the normalised
    address under a secret key (env `FBSFLOW_LEDGER_KEY`, or a random key kept in a file beside
    the SQLite database), and the ledger records a check value of that key, so a run with
    another key stops before sending (`secret_key.py`). Every operation is one statement per up
    to 50,000 keys, never one per recipient.
    """

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
        configured = settings(StorageSettings).database_url
        url = (
            configured.get_secret_value() if configured else f"sqlite:///{data_dir / DB_FILE_NAME}"
        )
        key = secret_key.find_key(data_dir)
        if key is None:
            engine = make_engine(url)
            try:
                with engine.connect() as conn:
                    secret_key.refuse_a_new_key(conn, deliveries.name, where(url), data_dir)
            except ConfigError:  # unless a run started with us made the key file meanwhile
                if (key := secret_key.find_key(data_dir)) is None:
                    raise
            finally:
                engine.dispose()
            key = key or secret_key.make_key_file(data_dir)
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

    def __enter__(self) -> Ledger:
        return self

    def recipient_key(self, address: str) -> str:
        """A stable, non-personal key for an address: truncated HMAC-SHA256 of its normal form."""
        return self.recipient_keys([address])[0]

    def recipient_keys(self, addresses: Iterable[str], *, normalised: bool = False) -> list[str]:
        """`recipient_key` of each address, in order (the loop a million-recipient run needs).

        `normalised=True` says the addresses are already in `normalise_address` form (the
        audience import's output: lower-case ASCII e-mail, E.164 numbers), which saves its two
        regex passes per address (~0.6 s on 1M).
        """
        if not normalised:
            addresses = map(normalise_address, addresses)
        return self._keys(addresses)

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
        unique: list[str] = []
        run: ledger_sql.Run | None = None
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel, create=True)
            chunked = chunks_of_parts(parts, unique)
            if self._fast is not None:
                added, run = self._fast.register(conn, stream, chunked, unique, now)
            else:
                added = self._insert_pending(conn, campaign, channel, stream, chunked, now)
        if self._fast is not None:
            self._fast.remember((campaign, channel), run)
        if self._postgres and added >= _ANALYZE_AFTER:
            # Fresh statistics, so the planner knows this campaign has many rows (~0.2 s).
            with self._transaction() as conn:
                conn.exec_driver_sql(f"ANALYZE {deliveries.name}")
        return added

    def _insert_pending(
        self,
        conn: Connection,
        campaign: str,
        channel: str,
        stream: int,
        chunked: Iterable[list[str]],
        now: float,
    ) -> int:
        """Insert each chunk's keys as pending rows, in order; on PostgreSQL, learn their ids."""
        cols = ["stream", "recipient_key", "state", "attempts", "updated_at"]
        added = 0
        ids: dict[str, int] = {}
        for chunk in chunked:
            source = self._sql.values(chunk)
            rows = select(
                literal(stream, Integer),
                source.c.value,
                literal(DeliveryState.PENDING.value, String),
                literal(0, Integer),
                literal(now, Float),
            )
            if not self._postgres:
                # In the order given: the rows get their ids in that order.
                rows = rows.order_by(source.c.key)
                stmt = insert(deliveries).prefix_with("OR IGNORE").from_select(cols, rows)
                added += conn.execute(stmt).rowcount
                continue
            stmt = pg_insert(deliveries).from_select(cols, rows).on_conflict_do_nothing()
            new = conn.execute(stmt.returning(_c.id, _c.recipient_key)).all()
            added += len(new)
            ids.update((key, row_id) for row_id, key in new)
        if ids:
            with self._ids_lock:
                self._known_ids.setdefault((campaign, channel), {}).update(ids)
        return added

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
            span = self._span(conn, campaign, channel, keys)
            if span is not None and self._fast is not None:
                if self._fast.claim_span(conn, span, values) == len(keys):
                    return list(keys)
                # Another run got to some of them first: exactly the rows this claim took.
                mine = (_c.batch_id == batch_id) & (_c.run_id == values["run_id"])
                stmt = select(_c.id, _c.recipient_key).where(_c.id.between(*span) & mine)
                found = sorted(conn.execute(stmt).all())
            else:
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

    def _claim_by_ids(
        self, conn: Connection, by_id: dict[int, str], values: dict[str, Any], batch_id: str
    ) -> list[tuple[int, str]]:
        """Claim rows whose ids `pending_keys` read: one UPDATE, usually over one id range.

        Deliberately no `campaign`/`channel` condition (the ids already belong to them): SQLite
        would then walk the campaign's part of the unique index instead of the id range.
        """
        ids = sorted(by_id)
        pending = _c.state == DeliveryState.PENDING.value
        stmt = update(deliveries).where(self._sql.by_ids(ids) & pending).values(values)
        if self._postgres:
            # Sorted ids: concurrent claims lock PostgreSQL rows in one order (no deadlock).
            return list(conn.execute(stmt.returning(_c.id, _c.recipient_key)).all())
        claimed = conn.execute(stmt).rowcount
        if claimed == len(ids):  # the usual case: nobody else had any of them
            return [(row_id, by_id[row_id]) for row_id in ids]
        # Some were taken or done already: read back which rows this claim took.
        mine = select(_c.id).where(
            self._sql.by_ids(ids) & (_c.batch_id == batch_id) & (_c.run_id == values["run_id"])
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
            for chunk in chunks(sorted(set(keys))):
                pending = self._sql.by_keys(stream, chunk) & (
                    _c.state == DeliveryState.PENDING.value
                )
                if self._postgres:
                    stmt = (
                        update(deliveries)
                        .where(pending)
                        .values(values)
                        .returning(_c.id, _c.recipient_key)
                    )
                    found.extend(conn.execute(stmt).all())
                    continue
                # RETURNING costs SQLite more than this read, which the write lock makes safe.
                rows = None
                if self._fast is not None:
                    rows = self._fast.pending_in_key_range(conn, stream, chunk)
                if rows is None:
                    rows = conn.execute(select(_c.id, _c.recipient_key).where(pending)).all()
                if rows:
                    ids = [row_id for row_id, _ in rows]
                    conn.execute(update(deliveries).where(self._sql.by_ids(ids)).values(values))
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
        minutes (`runs.gone`), or the rows' lease ran out. One UPDATE per dead run (there is
        rarely more than one) and one for expired leases.
        """
        now = time.time()
        found: list[Interruption] = []
        sending = _c.state == DeliveryState.SENDING.value
        with self._transaction() as conn:
            stream = self._stream(conn, campaign, channel)
            candidates = list(runs.gone(conn, now))
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
        except CountChanged as changed:
            raise ConfigError(
                f"{changed.count} {channel} recipients are unknown, not {expect}: nothing was "
                "accepted. Another run may have changed them since you checked; look at "
                "`fbsflow ledger CONFIG` and the provider's log again, then accept with "
                f"--expect {changed.count} if they were all delivered"
            ) from None

    def requeue_failed(self, campaign: str, channel: str) -> int:
        """failed -> pending, after a person fixed what the provider refused (e.g. the sender)."""
        return self._requeue(campaign, channel, DeliveryState.FAILED)

    def _requeue(self, campaign: str, channel: str, state: DeliveryState) -> int:
        values = {"state": DeliveryState.PENDING.value, "updated_at": time.time()}
        return self._move(campaign, channel, state, values)
