"""What providers said after accepting a message: per-recipient outcomes, seen events, suppressions.

Three tables beside the delivery ledger, none holding an address or number:

    receipt_event      (source, event_id): every provider event recorded, so a retried or
                       replayed one changes nothing
    delivery_outcome   (stream, recipient_key) -> the strongest outcome heard so far
    suppression        (municipality, recipient_key) -> why later campaigns skip this address

An outcome only ever moves up its rank (`RANKS`): events may arrive in any order and any number
of times, and the table ends the same. The ledger's own states are left to the ledger; the one
move made here is `unknown -> sent` for a recipient the provider reports on (it was accepted),
the move `Ledger.accept_unknown` makes on a person's word.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import (
    Table,
    and_,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tasks.ledger.base import LedgerBase
from tasks.ledger.outcome_tables import outcomes, suppressions
from tasks.ledger.schema import DeliveryState, deliveries, streams
from tasks.ledger.statements import chunks

# Outcome -> rank: a later event replaces an earlier outcome only with a higher rank, so the
# final table does not depend on the order events arrive in (GatewayAPI: "may arrive out of
# order"; an in-transit report after a final one is then ignored).
RANKS: dict[str, int] = {
    "deferred": 10,  # SendGrid tries again; SMS: buffered, enroute, accepted
    "delivered": 20,
    "dropped": 30,  # SendGrid did not send it (e.g. on its own suppression list)
    "expired": 35,
    "rejected": 38,
    "undeliverable": 40,
    "bounced": 40,
    "complained": 50,
    "unsubscribed": 60,
}
# Outcomes that mean the message did not reach the person.
NOT_REACHED = frozenset({"bounced", "dropped", "undeliverable", "expired", "rejected"})
# Outcomes that mean it did (a complaint or an unsubscribe comes from someone who got it).
REACHED = frozenset({"delivered", "complained", "unsubscribed"})
SUPPRESSION_REASONS = ("bounced", "undeliverable", "complained", "unsubscribed")

_c = deliveries.c
_s = streams.c
_o = outcomes.c
_x = suppressions.c


class KeyedEvent(NamedTuple):
    """One provider event, reduced to what the ledger keeps: no address, no number.

    A NamedTuple: a batch makes thousands, and a tuple is built several times faster than a
    frozen dataclass.
    """

    source: str  # "sendgrid" or "gatewayapi"
    event_id: str  # the provider's id of the event (sg_event_id; message id + status for SMS)
    campaign: str
    recipient_key: str
    outcome: str | None  # a key of RANKS, or None for an event that only proves acceptance
    suppress: str | None = None  # a SUPPRESSION_REASONS entry when the address must be skipped
    medium: str = "email"


@dataclass
class Ingested:
    """What one batch did, in counts only."""

    events: int = 0
    duplicates: int = 0
    matched: int = 0
    unmatched: int = 0
    settled: int = 0
    suppressed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)

    def add(self, other: Ingested) -> None:
        for name in ("events", "duplicates", "matched", "unmatched", "settled", "suppressed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for outcome, count in other.by_outcome.items():
            self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + count


def _insert(ledger: LedgerBase, table: Table) -> object:
    return pg_insert(table) if ledger._postgres else sqlite_insert(table)


def record(ledger: LedgerBase, municipality: str, events: Sequence[KeyedEvent]) -> Ingested:
    """Record a batch of events in one transaction: all of it, or (on an error) none of it.

    Events already recorded (same source and id) are skipped; the rest update their recipient's
    outcome, settle an `unknown` recipient as sent, and put an address the provider says must
    not be written to again on the municipality's suppression list.
    """
    done = Ingested(events=len(events))
    now = time.time()
    unique = list({(e.source, e.event_id): e for e in events}.values())
    done.duplicates = len(events) - len(unique)
    with ledger._transaction() as conn:
        fresh = _new_events(ledger, conn, unique, now)
        done.duplicates += len(unique) - len(fresh)
        # (campaign) -> {stream id: channel}; then each event's rows by key.
        by_campaign: dict[str, list[KeyedEvent]] = {}
        for event in fresh:
            by_campaign.setdefault(event.campaign, []).append(event)
        best: dict[tuple[int, str], str] = {}
        unknown_rows: list[tuple[int, str]] = []
        unknown = DeliveryState.UNKNOWN.value
        for campaign, group in by_campaign.items():
            ids = [row[0] for row in conn.execute(select(_s.id).where(_s.campaign == campaign))]
            found: dict[str, list[tuple[int, str]]] = {}
            if ids:
                keys = sorted({e.recipient_key for e in group})
                for stream, key, state in _ledger_rows(ledger, conn, ids, keys):
                    found.setdefault(key, []).append((stream, state))
            for event in group:
                rows = found.get(event.recipient_key)
                if not rows:
                    done.unmatched += 1
                    continue
                done.matched += 1
                for stream, state in rows:
                    if state == unknown:
                        unknown_rows.append((stream, event.recipient_key))
                    if event.outcome is None:
                        continue
                    slot = (stream, event.recipient_key)
                    held = best.get(slot)
                    if held is None or RANKS[event.outcome] > RANKS[held]:
                        best[slot] = event.outcome
        if best:
            _raise_outcomes(ledger, conn, best, now)
        done.settled = _settle(conn, sorted(set(unknown_rows)), now)
        done.suppressed = _suppress(ledger, conn, municipality, fresh, now)
    for outcome in best.values():
        done.by_outcome[outcome] = done.by_outcome.get(outcome, 0) + 1
    return done


def _new_events(
    ledger: LedgerBase, conn: Any, events: list[KeyedEvent], now: float
) -> list[KeyedEvent]:
    """The events not recorded before; records them (in the caller's transaction).

    One INSERT ... RETURNING per source and chunk, its ids in one JSON parameter: the rows it
    returns are the new events (a parallel request that recorded one first wins it).
    """
    if not events:
        return []
    inserted: set[tuple[str, str]] = set()
    by_source: dict[str, list[str]] = {}
    for event in events:
        by_source.setdefault(event.source, []).append(event.event_id)
    for source, ids in by_source.items():
        # Sorted: two requests carrying the same events (a retry while the first is still being
        # recorded) then take PostgreSQL's row locks in one order, never in a deadlock.
        for chunk in chunks(sorted(ids), 10_000):
            if ledger._postgres:
                params = {"source": source, "now": now, "ids": json.dumps(chunk)}
                rows = conn.exec_driver_sql(_NEW_EVENTS_PG, params).fetchall()
                inserted.update((source, event_id) for (event_id,) in rows)
                continue
            # SQLite: one look-up, then the driver's executemany (in C) for the new ones; the
            # write lock is held from BEGIN IMMEDIATE, so nothing comes in between.
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(_SEEN_SQLITE, (source, json.dumps(chunk)))
            seen = {event_id for (event_id,) in cursor.fetchall()}
            new = [i for i in chunk if i not in seen]
            cursor.executemany(_INSERT_EVENT_SQLITE, [(source, i, now) for i in new])
            inserted.update((source, i) for i in new)
    return [e for e in events if (e.source, e.event_id) in inserted]


_NEW_EVENTS_PG = (
    "INSERT INTO receipt_event (source, event_id, received_at) "
    "SELECT %(source)s, value, %(now)s FROM json_array_elements_text(%(ids)s::json) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)
_SEEN_SQLITE = (
    "SELECT event_id FROM receipt_event WHERE source = ? "
    "AND event_id IN (SELECT value FROM json_each(?))"
)
_INSERT_EVENT_SQLITE = (
    "INSERT OR IGNORE INTO receipt_event (source, event_id, received_at) VALUES (?, ?, ?)"
)
_ROWS_PG = (
    "SELECT stream, recipient_key, state FROM delivery_ledger "
    "WHERE stream = ANY(%(streams)s) AND recipient_key = ANY(string_to_array(%(keys)s, ','))"
)
_ROWS_SQLITE = (
    "SELECT stream, recipient_key, state FROM delivery_ledger "
    "WHERE stream IN (SELECT value FROM json_each(:streams)) "
    "AND recipient_key IN (SELECT value FROM json_each(:keys))"
)
_UPSERT_TAIL = (
    "ON CONFLICT (stream, recipient_key) DO UPDATE SET outcome = excluded.outcome, "
    "rank = excluded.rank, updated_at = excluded.updated_at "
    "WHERE delivery_outcome.rank < excluded.rank"
)
_OUTCOMES_PG = (
    "INSERT INTO delivery_outcome (stream, recipient_key, outcome, rank, updated_at) "
    "SELECT (r->>0)::int, r->>1, r->>2, (r->>3)::int, %(now)s "
    "FROM json_array_elements(%(rows)s::json) AS r " + _UPSERT_TAIL
)
_OUTCOMES_SQLITE = (
    "INSERT INTO delivery_outcome (stream, recipient_key, outcome, rank, updated_at) "
    "VALUES (?, ?, ?, ?, ?) " + _UPSERT_TAIL
)


def _ledger_rows(
    ledger: LedgerBase, conn: Any, streams_: list[int], keys: list[str]
) -> list[tuple[int, str, str]]:
    """(stream, recipient_key, state) of the ledger's rows of these keys in these streams."""
    found: list[tuple[int, str, str]] = []
    for chunk in chunks(keys, 10_000):
        if ledger._postgres:
            if any("," in key for key in chunk):
                continue  # no ledger key has one: keys are hex
            params: dict[str, Any] = {"streams": streams_, "keys": ",".join(chunk)}
            rows = conn.exec_driver_sql(_ROWS_PG, params).fetchall()
        else:
            params = {"streams": json.dumps(streams_), "keys": json.dumps(chunk)}
            rows = conn.exec_driver_sql(_ROWS_SQLITE, params).fetchall()
        found.extend((int(s), k, st) for s, k, st in rows)
    return found


def _raise_outcomes(
    ledger: LedgerBase, conn: Any, best: dict[tuple[int, str], str], now: float
) -> None:
    """Upsert each recipient's outcome, only ever to a higher rank: on PostgreSQL one statement
    per chunk (its rows in one JSON parameter), on SQLite the driver's executemany (in C)."""
    ordered = sorted(best.items())
    if not ledger._postgres:
        cursor = conn.connection.driver_connection.cursor()
        cursor.executemany(
            _OUTCOMES_SQLITE, [(s, k, out, RANKS[out], now) for (s, k), out in ordered]
        )
        return
    rows = [[stream, key, outcome, RANKS[outcome]] for (stream, key), outcome in ordered]
    for chunk in chunks(rows, 10_000):
        conn.exec_driver_sql(_OUTCOMES_PG, {"now": now, "rows": json.dumps(chunk)})


def _settle(conn: object, rows: Sequence[tuple[int, str]], now: float) -> int:
    """unknown -> sent for rows the provider reported on: it had accepted them."""
    settled = 0
    by_stream: dict[int, list[str]] = {}
    for stream, key in rows:
        by_stream.setdefault(stream, []).append(key)
    values = {
        "state": DeliveryState.SENT.value,
        "detail": "settled by the provider's delivery event (it had accepted the message)",
        "updated_at": now,
    }
    for stream, keys in by_stream.items():
        for chunk in chunks(keys):
            where = and_(
                _c.stream == stream,
                _c.recipient_key.in_(chunk),
                _c.state == DeliveryState.UNKNOWN.value,
            )
            settled += conn.execute(update(deliveries).where(where).values(values)).rowcount  # type: ignore[attr-defined]
    return settled


def _suppress(
    ledger: LedgerBase, conn: object, municipality: str, events: Iterable[KeyedEvent], now: float
) -> int:
    """Put the events' hard bounces, complaints and unsubscribes on the suppression list."""
    rows = {
        e.recipient_key: {
            "municipality": municipality,
            "recipient_key": e.recipient_key,
            "reason": e.suppress,
            "medium": e.medium,
            "created_at": now,
        }
        for e in events
        if e.suppress
    }
    if not rows:
        return 0
    keys = sorted(rows)
    present: set[str] = set()
    for chunk in chunks(keys):
        stmt = select(_x.recipient_key).where(
            _x.municipality == municipality, _x.recipient_key.in_(chunk)
        )
        present.update(key for (key,) in conn.execute(stmt))  # type: ignore[attr-defined]
    new = [rows[k] for k in keys if k not in present]
    if new:
        stmt = _insert(ledger, suppressions).on_conflict_do_nothing()  # type: ignore[attr-defined]
        conn.execute(stmt, new)  # type: ignore[attr-defined]
    return len(new)


# --- reading ------------------------------------------------------------------------------------


def outcome_counts(ledger: LedgerBase, campaign: str, channel: str) -> dict[str, int]:
    """Recipients per outcome of a campaign's channel (only outcomes some recipient has)."""
    named = select(_s.id).where(_s.campaign == campaign, _s.channel == channel)
    stmt = select(_o.outcome, func.count()).where(_o.stream.in_(named)).group_by(_o.outcome)
    with ledger._engine.connect() as conn:
        return {outcome: int(count) for outcome, count in conn.execute(stmt)}


def sent_without_event(ledger: LedgerBase, campaign: str, channel: str) -> int:
    """Recipients recorded as sent of whom no provider event has told anything yet."""
    named = select(_s.id).where(_s.campaign == campaign, _s.channel == channel)
    heard = select(_o.recipient_key).where(
        _o.stream == _c.stream, _o.recipient_key == _c.recipient_key
    )
    stmt = select(func.count()).where(
        _c.stream.in_(named), _c.state == DeliveryState.SENT.value, ~heard.exists()
    )
    with ledger._engine.connect() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def suppressed_keys(ledger: LedgerBase, municipality: str) -> set[str]:
    """Every key on the municipality's suppression list."""
    stmt = select(_x.recipient_key).where(_x.municipality == municipality)
    with ledger._engine.connect() as conn:
        return {key for (key,) in conn.execute(stmt)}


def suppression_counts(ledger: LedgerBase, municipality: str) -> dict[tuple[str, str], int]:
    """(medium, reason) -> entries on the municipality's suppression list."""
    stmt = (
        select(_x.medium, _x.reason, func.count())
        .where(_x.municipality == municipality)
        .group_by(_x.medium, _x.reason)
    )
    with ledger._engine.connect() as conn:
        return {(medium, reason): int(n) for medium, reason, n in conn.execute(stmt)}


def lift(ledger: LedgerBase, municipality: str, key: str) -> int:
    """Take one key off the municipality's suppression list; returns entries removed (0 or 1)."""
    where = and_(_x.municipality == municipality, _x.recipient_key == key)
    with ledger._transaction() as conn:
        return int(conn.execute(suppressions.delete().where(where)).rowcount)


def withdraw_suppressed(ledger: LedgerBase, municipality: str, campaign: str, channel: str) -> int:
    """pending -> failed for a channel's recipients put on the suppression list after they were
    registered: they are never sent, and the channel does not wait for them."""
    suppressed = select(_x.recipient_key).where(_x.municipality == municipality)
    named = select(_s.id).where(_s.campaign == campaign, _s.channel == channel)
    where = and_(
        _c.stream.in_(named),
        _c.state == DeliveryState.PENDING.value,
        _c.recipient_key.in_(suppressed),
    )
    values = {
        "state": DeliveryState.FAILED.value,
        "detail": "on the municipality's suppression list (bounced, complained or unsubscribed)",
        "updated_at": time.time(),
    }
    with ledger._transaction() as conn:
        return int(conn.execute(update(deliveries).where(where).values(values)).rowcount)
