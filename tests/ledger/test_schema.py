"""Upgrading a ledger of the layout before `delivery_stream`: same rows, nothing sent twice."""

from __future__ import annotations

import time
from typing import Any

from tasks.ledger import (
    Ledger,
)
from tests.ledger.common import CHANNEL, KEY

# --- upgrading --------------------------------------------------------------------------------


def _old_layout(metadata: Any) -> Any:
    """The ledger table as it was before `delivery_stream`: campaign and channel in every row."""
    from sqlalchemy import BigInteger, Column, Float, Integer, String, Table, Text, UniqueConstraint

    return Table(
        "delivery_ledger",
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("campaign", String(200), nullable=False),
        Column("channel", String(40), nullable=False),
        Column("recipient_key", String(64), nullable=False),
        Column("state", String(16), nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("batch_id", String(200)),
        Column("run_id", String(200)),
        Column("provider_id", Text),
        Column("detail", Text),
        Column("updated_at", Float, nullable=False),
        Column("lease_until", Float),
        UniqueConstraint("campaign", "channel", "recipient_key", name="delivery_ledger_recipient"),
    )


def test_a_ledger_of_the_old_layout_is_moved_over_with_every_row_as_it_was(db_url: str) -> None:
    old_ledger_url = db_url  # a fresh database: nothing but the old-layout ledger made below
    from sqlalchemy import MetaData, create_engine, inspect

    old = _old_layout(MetaData())
    engine = create_engine(old_ledger_url)
    old.metadata.create_all(engine)
    now = time.time()
    states = ["sent"] * 3 + ["failed"] * 2 + ["unknown", "sending"] + ["pending"] * 3
    rows = [
        {
            "id": 10 + 3 * i,  # gaps, as deleted campaigns leave: ids must survive as they are
            "campaign": "a",
            "channel": CHANNEL,
            "recipient_key": f"k{i}",
            "state": state,
            "attempts": 0 if state == "pending" else 1,
            "batch_id": None if state == "pending" else "b1",
            "run_id": None if state == "pending" else "r1",
            "provider_id": "msg-1" if state == "sent" else None,
            "detail": "refused: 400" if state == "failed" else None,
            "updated_at": now,
            "lease_until": now + 600 if state == "sending" else None,
        }
        for i, state in enumerate(states)
    ]
    rows.append({**rows[-1], "id": 2, "channel": "sms", "recipient_key": "s0"})
    rows.append({**rows[0], "id": 1, "campaign": "b", "recipient_key": "k0"})
    with engine.begin() as conn:
        conn.execute(old.insert(), rows)
        before = {(r.campaign, r.channel, r.recipient_key): r for r in conn.execute(old.select())}
    engine.dispose()

    with Ledger(old_ledger_url, key=KEY) as led:
        keys = [f"k{i}" for i in range(len(states))]
        assert {k: s.value for k, s in led.states("a", CHANNEL, keys).items()} == dict(
            zip(keys, states, strict=True)
        )
        moved = led.rows("a", CHANNEL, keys)
        for key in keys:
            was = before[("a", CHANNEL, key)]
            assert {c: moved[key][c] for c in was._fields} == dict(was._mapping)
        assert led.counts("a") == {"pending": 4, "sending": 1, "sent": 3, "failed": 2, "unknown": 1}
        assert led.counts("b", CHANNEL)["sent"] == 1
        # A rerun after upgrading: only the new keys are added, only pending rows are sent.
        assert led.register("a", CHANNEL, [*keys, "k-new"]) == 1
        pending = led.pending_keys("a", CHANNEL)
        assert pending == ["k7", "k8", "k9", "k-new"]
        newest = max(r.id for r in before.values())
        assert led.rows("a", CHANNEL, ["k-new"])["k-new"]["id"] > newest
        claimed = led.claim("a", CHANNEL, [*keys, "k-new"], batch_id="b2", run_id="r2")
        assert sorted(claimed) == sorted(pending)

    with Ledger(old_ledger_url, key=KEY) as again:  # opening once more changes nothing
        assert again.counts("a", CHANNEL)["sending"] == 5
    engine = create_engine(old_ledger_url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert tables == {
        "delivery_ledger",
        "delivery_stream",
        "ledger_key",
        "ledger_run",
        # The providers' outcomes (tasks/ledger/outcome_tables.py), empty until events come.
        "receipt_event",
        "delivery_outcome",
        "suppression",
    }
