"""The ledger's fast SQLite path and its plain SQLAlchemy path leave the same rows behind."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event

from tasks.ledger import DeliveryState, Ledger
from tasks.speed import ledger_sql
from tasks.speed.ledger_sql import json_array, update_span_sql

KEY = b"test-ledger-key-0123456789abcdef"
CAMPAIGN, CHANNEL = "camp", "newsletter"
SWITCH = "FBSFLOW_SPEED_LEDGER_SQL"


@given(st.lists(st.text(max_size=8), max_size=6))
def test_json_array_is_json_dumps_for_any_strings(values: list[str]) -> None:
    assert json.loads(json_array(values)) == values


def test_a_stretch_update_names_only_ledger_columns() -> None:
    sql, params = update_span_sql(
        {"state": "sent", "detail": None}, (5, 9), [DeliveryState.SENDING], run_id="r"
    )
    assert sql.endswith("WHERE id BETWEEN ? AND ? AND state IN (?) AND run_id = ?")
    assert params == ("sent", None, 5, 9, "sending", "r")
    with pytest.raises(ValueError, match="no column 'stat'"):
        update_span_sql({"stat": "sent"}, (5, 9), [DeliveryState.SENDING], run_id=None)


def _story(ledger: Ledger) -> list[tuple[Any, ...]]:
    """A first registration in parts, batches claimed (one of them twice), marked with mixed
    outcomes, released and renewed, then a rerun that registers more and claims by key: every
    row's id, key, state, attempts, batch, run, provider id and detail at the end."""
    keys = [f"{i:032x}" for i in range(600)]
    random.Random(7).shuffle(keys)
    parts = [sorted(keys[:250]), sorted(keys[250:])]
    order = [k for part in parts for k in part]
    assert ledger.register_parts(CAMPAIGN, CHANNEL, iter(parts)) == 600
    for n, start in enumerate(range(0, 600, 100)):
        batch = order[start : start + 100]
        claimed = ledger.claim(CAMPAIGN, CHANNEL, batch, batch_id=f"b{n}", run_id="r1")
        assert sorted(claimed) == sorted(batch)
        if n == 1:  # a stretch claimed again: nothing more to take
            assert ledger.claim(CAMPAIGN, CHANNEL, batch, batch_id="again", run_id="r2") == []
        if n == 2:  # not accepted: back to pending, for the rerun
            assert ledger.release(CAMPAIGN, CHANNEL, batch, run_id="r1") == 100
            continue
        if n == 3:  # another attempt at the same batch
            assert ledger.renew_claim(CAMPAIGN, CHANNEL, batch, run_id="r1") == 100
        statuses = {k: DeliveryState.SENT for k in batch}
        statuses.update({k: DeliveryState.FAILED for k in batch[:3]})
        ledger.mark(CAMPAIGN, CHANNEL, statuses, provider_ids=[f"p{n}"], run_id="r1")
    # A partial claim across a stretch: some rows are taken already.
    assert ledger.register(CAMPAIGN, CHANNEL, ["new-1", "new-2", *order[:5]]) == 2
    pending = ledger.pending_keys(CAMPAIGN, CHANNEL)
    assert len(pending) == 102
    taken = ledger.claim(CAMPAIGN, CHANNEL, pending, batch_id="rerun", run_id="r3")
    ledger.mark(CAMPAIGN, CHANNEL, dict.fromkeys(taken, DeliveryState.UNKNOWN), run_id="r3")
    rows = ledger.rows(CAMPAIGN, CHANNEL, [*order, "new-1", "new-2"])
    fields = ("id", "recipient_key", "state", "attempts", "batch_id", "run_id", "provider_id")
    return sorted(tuple(row[f] for f in (*fields, "detail")) for row in rows.values())


def _told(path: Path) -> tuple[list[tuple[Any, ...]], set[str]]:
    """The story's rows on a new ledger at `path`, and every statement it sent."""
    seen: set[str] = set()
    with Ledger(f"sqlite:///{path}", key=KEY) as ledger:

        @event.listens_for(ledger._engine, "before_cursor_execute")
        def _seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
            seen.add(statement)

        return _story(ledger), seen


def test_fast_and_plain_paths_leave_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = {ledger_sql._INSERT_PENDING, ledger_sql._ENDS, ledger_sql._CLAIM_SPAN}
    monkeypatch.setenv(SWITCH, "1")
    fast_rows, fast_sql = _told(tmp_path / "fast.db")
    assert fixed <= fast_sql  # the stretches were taken
    monkeypatch.setenv(SWITCH, "0")
    plain_rows, plain_sql = _told(tmp_path / "plain.db")
    assert not fixed & plain_sql
    assert not any(
        s.startswith("UPDATE delivery_ledger SET state = ?, attempts") for s in plain_sql
    )
    assert fast_rows == plain_rows
    assert {row[2] for row in fast_rows} == {"sent", "failed", "unknown"}
    assert json_array(["a", "b"]) == json.dumps(["a", "b"])  # the switch is still off
