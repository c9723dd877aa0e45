"""The ledger's bulk statements in the driver's own SQL (switch: `FBSFLOW_SPEED_LEDGER_SQL=0`)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from tasks.ledger.schema import DeliveryState, deliveries
from tasks.speed.switches import enabled

SWITCH = "LEDGER_SQL"
_c = deliveries.c
# What a JSON string must escape (RFC 8259: quote, backslash, controls), and lone surrogates,
# which have no UTF-8 form. json.dumps also escapes the rest of non-ASCII, which JSON does not
# require and SQLite's json_each reads either way.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f\ud800-\udfff]')
_INSERT_PENDING = (
    f"INSERT OR IGNORE INTO {deliveries.name} (stream, recipient_key, state, attempts, "
    "updated_at) SELECT ?, value, ?, 0, ? FROM json_each(?) ORDER BY json_each.key"
)
_ENDS = (
    f"SELECT recipient_key, id FROM {deliveries.name} WHERE stream = ? AND recipient_key IN (?, ?)"
)
_CLAIM_SPAN = (
    f"UPDATE {deliveries.name} SET state = ?, attempts = attempts + 1, batch_id = ?, run_id = ?, "
    "provider_id = NULL, detail = NULL, updated_at = ?, lease_until = ? "
    "WHERE id BETWEEN ? AND ? AND state = ?"
)
_PLAIN_TYPES = frozenset({str, float, int, type(None)})
# A campaign's channel, as the ledger names its remembered state.
Stream = tuple[str, str]
# A first registration: the id of its first row, and its keys in order.
Run = tuple[int, list[str]]


def on() -> bool:
    """Whether the ledger takes the fast path (decided once per Ledger, when it opens)."""
    return enabled(SWITCH)


def json_array(values: list[str]) -> str:
    """`json.dumps(values)` for a list of strings, joined in C when none needs escaping.

    Recipient keys are hex: on a million of them this takes ~20 ms instead of ~350 ms.
    Off: `json.dumps`.
    """
    if enabled(SWITCH) and _JSON_ESCAPED.search("".join(values)) is None:
        return '["' + '","'.join(values) + '"]' if values else "[]"
    return json.dumps(values)


def pending_ids(conn: Connection, stream: int, *, postgres: bool) -> dict[str, int]:
    """Key -> row id of a stream's pending rows, in id order, read through the DB-API cursor:
    SQLAlchemy's Row objects cost ~1 us each, on a rerun's million rows a second."""
    mark = "%s" if postgres else "?"
    sql = (
        f"SELECT id, recipient_key FROM {deliveries.name} WHERE stream = {mark} "
        f"AND state = {mark} ORDER BY id"
    )
    cursor = conn.exec_driver_sql(sql, (stream, DeliveryState.PENDING.value))
    return {key: row_id for row_id, key in cursor}


class SqliteFastPath:
    """A SQLite ledger's fast path: a batch cut from a first registration is one id range.

    Measured, each as whole 1M runs, the tree before and after: claiming and marking a stretch
    by its id range with no per-key Python (one look-up of its first and last key, a list
    comparison in C, one `UPDATE ... WHERE id BETWEEN`), with nothing kept per key where a key
    -> id dict of up to 868k entries was built and emptied per batch: SMS chunk phase 5.9-6.5 s
    -> 4.7-5.5 s. The same statements as fixed SQL text through `exec_driver_sql` instead of
    SQLAlchemy (which spent ~0.45 ms building the end-key look-up and ~0.25 ms an update, each
    twice a batch): 0.96x wall, 0.94x CPU (four pairs); a registration's inserts likewise, one
    `INSERT ... SELECT FROM json_each` per 50,000 keys. Only SQLite: PostgreSQL
    hands out ids from a sequence other processes share. Off, the ledger claims and marks by
    key through the unique index, every statement built by SQLAlchemy (as it does on
    PostgreSQL, and on SQLite for a rerun's keys).
    """

    def __init__(self) -> None:
        # A first registration's keys in order and the id of the first: the key at position i
        # has id first + i. A batch cut from that order is then one id range, found with one
        # look-up, without a million-entry dict (~100 MB) of key -> id.
        self._runs: dict[Stream, Run] = {}
        self._lock = threading.Lock()

    def register(
        self,
        conn: Connection,
        stream: int,
        chunks: Iterable[list[str]],
        keys: list[str],
        now: float,
    ) -> tuple[int, Run | None]:
        """Insert each chunk's keys as pending rows in order (`keys` collects them as the chunks
        arrive); returns the rows added and, when all were new, the run to `remember` once the
        transaction is committed."""
        before = conn.exec_driver_sql(f"SELECT max(id) FROM {deliveries.name}").scalar()
        added = 0
        pending = DeliveryState.PENDING.value
        for chunk in chunks:
            params = (stream, pending, now, json_array(chunk))
            added += conn.exec_driver_sql(_INSERT_PENDING, params).rowcount
        if not keys or added != len(keys):
            return added, None
        # All new, inserted in order under the write lock: SQLite gave them the ids after the
        # previous largest, one by one. Checked at both ends all the same.
        first = (before or 0) + 1
        ends = dict(conn.exec_driver_sql(_ENDS, (stream, keys[0], keys[-1])).all())
        if ends != {keys[0]: first, keys[-1]: first + len(keys) - 1}:
            return added, None
        return added, (first, keys)

    def remember(self, name: Stream, run: Run | None) -> None:
        """Keep a committed first registration's run (see `register`)."""
        if run is not None:
            with self._lock:
                self._runs[name] = run

    def knows(self, name: Stream) -> bool:
        """Whether a first registration of this campaign's channel is remembered."""
        with self._lock:
            return name in self._runs

    def forget(self, campaign: str, channel: str | None = None) -> None:
        """Drop the runs of a campaign's channel (or of every channel): its rows change."""
        with self._lock:
            for name in [n for n in self._runs if n[0] == campaign and channel in (None, n[1])]:
                del self._runs[name]

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()

    def span(
        self, conn: Connection, name: Stream, stream: int, keys: Sequence[str]
    ) -> tuple[int, int] | None:
        """(first id, last id) when `keys` are a stretch of a first registration, in its order.

        One index look-up (the first and last key) and a list comparison (in C): no per-key
        work in Python, which on a million recipients is what claiming and marking would cost
        most.
        """
        with self._lock:
            run = self._runs.get(name)
        if run is None or not keys:
            return None
        first, order = run
        ends = dict(conn.exec_driver_sql(_ENDS, (stream, keys[0], keys[-1])).all())
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

    @staticmethod
    def claim_span(conn: Connection, span: tuple[int, int], values: Mapping[str, Any]) -> int:
        """Claim the pending rows of `span` with a claim's `values`; returns the rows claimed."""
        low, high = span
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
        return int(conn.exec_driver_sql(_CLAIM_SPAN, params).rowcount)

    @staticmethod
    def update_span(
        conn: Connection,
        span: tuple[int, int],
        values: Mapping[str, Any],
        states: Sequence[DeliveryState],
        run_id: str | None,
    ) -> int | None:
        """`values` for the rows of `span` in `states` (and of `run_id`); None when a value is
        an expression (SQLAlchemy's to write)."""
        if not all(type(v) in _PLAIN_TYPES for v in values.values()):
            return None
        sql, params = update_span_sql(values, span, states, run_id)
        return int(conn.exec_driver_sql(sql, params).rowcount)

    @staticmethod
    def pending_in_key_range(
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


def update_span_sql(
    values: Mapping[str, Any],
    span: tuple[int, int],
    states: Sequence[DeliveryState],
    run_id: str | None,
) -> tuple[str, tuple[Any, ...]]:
    """`UPDATE ... SET values WHERE id BETWEEN span AND state IN states [AND run_id = ?]`."""
    for name in values:
        if name not in _c:  # names come from the ledger; a typo must not become SQL
            raise ValueError(f"no column {name!r} in {deliveries.name}")
    sql = (
        f"UPDATE {deliveries.name} SET {', '.join(f'{name} = ?' for name in values)} "
        f"WHERE id BETWEEN ? AND ? AND state IN ({', '.join('?' * len(states))})"
        + (" AND run_id = ?" if run_id is not None else "")
    )
    params = (*values.values(), *span, *(s.value for s in states))
    return sql, params + ((run_id,) if run_id is not None else ())
