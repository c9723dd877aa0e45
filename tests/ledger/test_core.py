"""The delivery ledger on SQLite and PostgreSQL: register, exclusive claims, marks, dead runs."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tasks.errors import ConfigError
from tasks.ledger import (
    DeliveryState,
    Ledger,
)
from tasks.ledger import runs as ledger_runs
from tests.ledger.common import CHANNEL, KEY, keys_

# --- register, claim, mark ---------------------------------------------------------------------


def test_register_is_idempotent_and_keeps_states(ledger: Ledger, campaign: str) -> None:
    assert ledger.register(campaign, CHANNEL, ["a", "b", "c"]) == 3
    assert ledger.register(campaign, CHANNEL, ["c", "b", "a"]) == 0
    ledger.claim(campaign, CHANNEL, ["a"], batch_id="b1", run_id="r1")
    ledger.mark(campaign, CHANNEL, {"a": DeliveryState.SENT})
    assert ledger.register(campaign, CHANNEL, ["a", "d", "d"]) == 1
    assert ledger.states(campaign, CHANNEL, ["a", "b", "d", "zz"]) == {
        "a": DeliveryState.SENT,
        "b": DeliveryState.PENDING,
        "d": DeliveryState.PENDING,
    }
    # The same key in another channel is another row.
    assert ledger.register(campaign, "sms", ["a"]) == 1
    assert ledger.counts(campaign)["pending"] == 4
    assert ledger.counts(campaign, CHANNEL) == {
        "pending": 3,
        "sending": 0,
        "sent": 1,
        "failed": 0,
        "unknown": 0,
    }


def test_parts_register_in_their_order_as_one_registration(ledger: Ledger, campaign: str) -> None:
    keys = keys_(60)
    random.Random(2).shuffle(keys)
    parts = [sorted(keys[:20]), sorted(keys[20:45]), sorted(keys[45:])]
    # A generator: each part is inserted as it comes, as the flow hands them over.
    assert ledger.register_parts(campaign, CHANNEL, (p for p in parts)) == 60
    order = [k for p in parts for k in p]
    assert ledger.pending_keys(campaign, CHANNEL) == order
    if ledger.dialect == "sqlite":
        # One registration: a batch cut across two parts is one stretch of ids.
        first, recorded = ledger._fast._runs[(campaign, CHANNEL)]  # type: ignore[union-attr]
        assert recorded == order
        assert ledger.rows(campaign, CHANNEL, [order[0]])[order[0]]["id"] == first
    batch = order[15:25]
    assert sorted(ledger.claim(campaign, CHANNEL, batch, batch_id="b", run_id="r")) == sorted(batch)
    assert ledger.register_parts(campaign, CHANNEL, [order[:5], ["new"]]) == 1
    assert ledger.counts(campaign, CHANNEL)["pending"] == 51


def test_parts_that_end_in_an_error_register_nothing(ledger: Ledger, campaign: str) -> None:
    def parts() -> Iterator[list[str]]:
        yield ["a", "b"]
        raise RuntimeError("keying failed")

    with pytest.raises(RuntimeError, match="keying failed"):
        ledger.register_parts(campaign, CHANNEL, parts())
    assert ledger.counts(campaign, CHANNEL)["pending"] == 0
    assert ledger.register(campaign, CHANNEL, ["a", "b"]) == 2


def test_claim_takes_only_pending_keys_once(ledger: Ledger, campaign: str) -> None:
    ledger.register(campaign, CHANNEL, ["a", "b", "c"])
    assert sorted(ledger.claim(campaign, CHANNEL, ["a", "b", "x"], batch_id="1", run_id="r")) == [
        "a",
        "b",
    ]
    assert ledger.claim(campaign, CHANNEL, ["a", "b"], batch_id="2", run_id="r2") == []
    assert ledger.claim(campaign, CHANNEL, ["c", "c"], batch_id="3", run_id="r") == ["c"]
    rows = ledger.rows(campaign, CHANNEL, ["a", "c"])
    assert rows["a"]["state"] == "sending" and rows["a"]["batch_id"] == "1"
    assert rows["a"]["run_id"] == "r" and rows["a"]["attempts"] == 1
    assert rows["a"]["lease_until"] > time.time()
    assert ledger.counts(campaign, CHANNEL)["sending"] == 3


def test_mark_records_outcomes_and_never_overwrites_them(ledger: Ledger, campaign: str) -> None:
    ledger.register(campaign, CHANNEL, ["a", "b", "c", "d"])
    ledger.claim(campaign, CHANNEL, ["a", "b", "c"], batch_id="b1", run_id="r1")
    changed = ledger.mark(
        campaign,
        CHANNEL,
        {"a": DeliveryState.SENT, "b": DeliveryState.FAILED, "c": DeliveryState.UNKNOWN},
        provider_ids=["msg-1", "msg-2"],
        detail="400: invalid recipient",
        run_id="r1",
    )
    assert changed == 3
    rows = ledger.rows(campaign, CHANNEL, ["a", "b"])
    assert rows["a"]["provider_id"] == "msg-1 msg-2"
    assert rows["b"]["detail"] == "400: invalid recipient"
    assert rows["a"]["lease_until"] is None
    # Outcomes are final, and a row never claimed cannot be marked.
    assert ledger.mark(campaign, CHANNEL, {"a": DeliveryState.FAILED, "d": DeliveryState.SENT}) == 0
    # Unknown may still learn the truth from the run that sent it.
    assert ledger.mark(campaign, CHANNEL, {"c": DeliveryState.SENT}, run_id="r1") == 1
    assert ledger.states(campaign, CHANNEL, ["a", "b", "c", "d"]) == {
        "a": DeliveryState.SENT,
        "b": DeliveryState.FAILED,
        "c": DeliveryState.SENT,
        "d": DeliveryState.PENDING,
    }
    with pytest.raises(ValueError, match="pending"):
        ledger.mark(campaign, CHANNEL, {"d": DeliveryState.PENDING})


def test_mark_and_release_with_run_id_touch_only_that_runs_rows(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    ledger.register(campaign, CHANNEL, ["a", "b"])
    ledger.claim(campaign, CHANNEL, ["a"], batch_id="1", run_id="run-1")
    # Another instance (another process) knows no row ids: it goes by key and run.
    with Ledger(db_url, key=KEY) as other:
        other.claim(campaign, CHANNEL, ["b"], batch_id="2", run_id="run-2")
        assert other.mark(campaign, CHANNEL, {"a": DeliveryState.SENT}, run_id="run-2") == 0
        assert other.release(campaign, CHANNEL, ["a"], run_id="run-2") == 0
        assert other.release(campaign, CHANNEL, ["b"], run_id="run-2") == 1
    assert ledger.mark(campaign, CHANNEL, {"a": DeliveryState.SENT}, run_id="run-1") == 1
    assert ledger.states(campaign, CHANNEL, ["a", "b"]) == {
        "a": DeliveryState.SENT,
        "b": DeliveryState.PENDING,
    }


def test_updates_by_row_id_touch_exactly_the_claimed_rows(ledger: Ledger, campaign: str) -> None:
    keys = keys_(20)
    ledger.register(campaign, CHANNEL, keys)
    gaps, run = keys[0:10:2], keys[12:17]  # ids with gaps, and a contiguous run of ids
    assert sorted(ledger.claim(campaign, CHANNEL, gaps + run, batch_id="1", run_id="r")) == sorted(
        gaps + run
    )
    assert ledger.mark(campaign, CHANNEL, dict.fromkeys(gaps, DeliveryState.SENT), run_id="r") == 5
    assert ledger.mark(campaign, CHANNEL, dict.fromkeys(run, DeliveryState.FAILED)) == 5
    got = ledger.states(campaign, CHANNEL, keys)
    assert {k for k, s in got.items() if s is DeliveryState.SENT} == set(gaps)
    assert {k for k, s in got.items() if s is DeliveryState.FAILED} == set(run)
    assert ledger.counts(campaign, CHANNEL)["pending"] == 10


def test_release_returns_claimed_keys_to_pending(ledger: Ledger, campaign: str) -> None:
    ledger.register(campaign, CHANNEL, keys_(10))
    claimed = ledger.claim(campaign, CHANNEL, keys_(10), batch_id="1", run_id="r")
    ledger.mark(campaign, CHANNEL, {claimed[0]: DeliveryState.SENT})
    assert ledger.release(campaign, CHANNEL, claimed) == 9  # the sent one stays sent
    assert ledger.pending_keys(campaign, CHANNEL) == sorted(claimed[1:])
    assert len(ledger.claim(campaign, CHANNEL, claimed, batch_id="2", run_id="r")) == 9
    assert ledger.rows(campaign, CHANNEL, [claimed[1]])[claimed[1]]["attempts"] == 2


def test_renew_claim_counts_the_attempt_and_extends_the_lease(db_url: str, campaign: str) -> None:
    with Ledger(db_url, key=KEY, lease_seconds=5) as led:
        led.register(campaign, CHANNEL, ["a"])
        led.claim(campaign, CHANNEL, ["a"], batch_id="1", run_id="r")
        before = led.rows(campaign, CHANNEL, ["a"])["a"]["lease_until"]
        led.lease_seconds = 60
        assert led.renew_claim(campaign, CHANNEL, ["a"], run_id="r") == 1
        assert led.renew_claim(campaign, CHANNEL, ["a"], run_id="someone-else") == 0
        row = led.rows(campaign, CHANNEL, ["a"])["a"]
        assert row["attempts"] == 2 and row["lease_until"] > before + 50
        led.delete_campaign(campaign)


def test_resolve_interrupted_turns_only_expired_claims_unknown(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    ledger.register(campaign, CHANNEL, ["dead-1", "dead-2", "alive", "done", "waiting"])
    # A run that died: its lease ran out (lease 0 makes it expire at once).
    with Ledger(db_url, key=KEY, lease_seconds=0) as dead_run:
        dead_run.claim(campaign, CHANNEL, ["dead-1", "dead-2", "done"], batch_id="1", run_id="dead")
        dead_run.mark(campaign, CHANNEL, {"done": DeliveryState.SENT})
    # A run that is still sending, within its lease.
    ledger.claim(campaign, CHANNEL, ["alive"], batch_id="2", run_id="alive")
    time.sleep(0.01)
    [expired] = ledger.resolve_interrupted(campaign, CHANNEL)
    assert expired.count == 2 and expired.pid is None and "lease ran out" in str(expired)
    assert ledger.resolve_interrupted(campaign, CHANNEL) == []
    assert ledger.states(campaign, CHANNEL, ["dead-1", "dead-2", "alive", "done", "waiting"]) == {
        "dead-1": DeliveryState.UNKNOWN,
        "dead-2": DeliveryState.UNKNOWN,
        "alive": DeliveryState.SENDING,
        "done": DeliveryState.SENT,
        "waiting": DeliveryState.PENDING,
    }
    assert "interrupted" in ledger.rows(campaign, CHANNEL, ["dead-1"])["dead-1"]["detail"]
    # A rerun does not send unknown rows ...
    assert ledger.claim(campaign, CHANNEL, ["dead-1", "waiting"], batch_id="3", run_id="x") == [
        "waiting"
    ]
    # ... unless a person chooses at-least-once.
    assert ledger.requeue_unknown(campaign, CHANNEL) == 2
    assert sorted(ledger.pending_keys(campaign, CHANNEL)) == ["dead-1", "dead-2"]


def _claim_and_die(url: str, campaign: str, keys: list[str], done: Any, stay: Any) -> None:
    """A run that claims `keys` (a lease of 10 minutes) and, unless told to stay, is killed."""
    with Ledger(url, key=KEY) as led:
        led.claim(campaign, CHANNEL, keys, batch_id="b", run_id=f"run-{os.getpid()}")
        done.set()
        if stay is None:
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no mark: as kill -9 leaves it
        stay.wait(60)


def _child_run(db_url: str, campaign: str, keys: list[str], *, stay: bool) -> tuple[Any, Any]:
    ctx = multiprocessing.get_context("fork")
    done = ctx.Event()
    keep = ctx.Event() if stay else None
    child = ctx.Process(target=_claim_and_die, args=(db_url, campaign, keys, done, keep))
    child.start()
    assert done.wait(60), "the child run never claimed"
    return child, keep


def test_a_claim_by_a_dead_process_on_this_host_is_taken_over_at_once(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    ledger.register(campaign, CHANNEL, ["a", "b", "c", "d"])
    child, _ = _child_run(db_url, campaign, ["a", "b", "c"], stay=False)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    # Its lease has ten minutes to go; its process is gone: the rerun takes its rows at once.
    [gone] = ledger.resolve_interrupted(campaign, CHANNEL)
    assert (gone.count, gone.pid, gone.host) == (3, child.pid, ledger_runs.HOST)
    assert str(gone) == (
        f"the earlier run (pid {child.pid} on host {ledger_runs.HOST}) is gone: its 3 recipients "
        "were marked unknown (the provider may have accepted them)"
    )
    assert set(ledger.states(campaign, CHANNEL, ["a", "b", "c"]).values()) == {
        DeliveryState.UNKNOWN
    }
    assert f"pid {child.pid}" in ledger.rows(campaign, CHANNEL, ["a"])["a"]["detail"]
    assert ledger.resolve_interrupted(campaign, CHANNEL) == []


def test_a_claim_by_a_live_run_is_left_alone_until_it_stops_sending_heartbeats(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    from sqlalchemy import create_engine

    ledger.register(campaign, CHANNEL, ["a", "b"])
    child, stay = _child_run(db_url, campaign, ["a", "b"], stay=True)
    try:
        assert ledger.resolve_interrupted(campaign, CHANNEL) == []
        assert ledger.counts(campaign, CHANNEL)["sending"] == 2
        # The same run seen from another host: alive while its heartbeat is fresh ...
        engine = create_engine(db_url)
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE ledger_run SET host = 'elsewhere'")
        assert ledger.resolve_interrupted(campaign, CHANNEL) == []
        # ... and dead once it has been silent for more than two minutes.
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE ledger_run SET heartbeat_at = {time.time() - 300}")
        engine.dispose()
        [silent] = ledger.resolve_interrupted(campaign, CHANNEL)
        assert (silent.count, silent.pid, silent.host) == (2, child.pid, "elsewhere")
        assert "has sent no heartbeat for 5 minutes: its 2 recipients were marked unknown" in str(
            silent
        )
    finally:
        assert stay is not None
        stay.set()
        child.join(30)


def test_a_run_writes_its_heartbeat_once_per_interval_not_per_claim(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    from sqlalchemy import create_engine

    ledger.register(campaign, CHANNEL, keys_(30))
    for i in range(0, 30, 3):
        ledger.claim(campaign, CHANNEL, keys_(30)[i : i + 3], batch_id=str(i), run_id="r")
    engine = create_engine(db_url)
    with engine.connect() as conn:
        [(host, pid, beat)] = conn.exec_driver_sql(
            "SELECT host, pid, heartbeat_at FROM ledger_run WHERE run_id = 'r'"
        ).all()
    engine.dispose()
    assert (host, pid) == (ledger_runs.HOST, os.getpid())
    assert ledger._holding == {"r": beat}  # one write for ten claims


def test_accept_unknown_records_them_sent_and_who_decided(ledger: Ledger, campaign: str) -> None:
    ledger.register(campaign, CHANNEL, ["u1", "u2", "sent", "failed", "pending"])
    ledger.register(campaign, "sms", ["u1"])
    ledger.claim(campaign, CHANNEL, ["u1", "u2", "sent", "failed"], batch_id="1", run_id="r")
    ledger.mark(
        campaign, CHANNEL,
        {"u1": DeliveryState.UNKNOWN, "u2": DeliveryState.UNKNOWN, "sent": DeliveryState.SENT,
         "failed": DeliveryState.FAILED},
        detail="ambiguous: read timeout",
    )  # fmt: skip
    ledger.claim(campaign, "sms", ["u1"], batch_id="2", run_id="r")
    ledger.mark(campaign, "sms", {"u1": DeliveryState.UNKNOWN})

    assert ledger.accept_unknown(campaign, CHANNEL, by="Test Leder") == 2
    assert ledger.accept_unknown(campaign, CHANNEL, by="Test Leder") == 0
    assert ledger.states(campaign, CHANNEL, ["u1", "u2", "sent", "failed", "pending"]) == {
        "u1": DeliveryState.SENT,
        "u2": DeliveryState.SENT,
        "sent": DeliveryState.SENT,
        "failed": DeliveryState.FAILED,
        "pending": DeliveryState.PENDING,
    }
    assert ledger.rows(campaign, CHANNEL, ["u1"])["u1"]["detail"] == (
        "accepted as delivered by Test Leder; was: ambiguous: read timeout"
    )
    # Another channel of the same campaign keeps its unknown row.
    assert ledger.states(campaign, "sms", ["u1"]) == {"u1": DeliveryState.UNKNOWN}


def test_accept_unknown_with_a_count_takes_that_many_or_none(ledger: Ledger, campaign: str) -> None:
    ledger.register(campaign, CHANNEL, ["u1", "u2", "u3"])
    ledger.claim(campaign, CHANNEL, ["u1", "u2", "u3"], batch_id="1", run_id="r")
    ledger.mark(campaign, CHANNEL, dict.fromkeys(["u1", "u2"], DeliveryState.UNKNOWN))

    # The person checked 3 with the provider; the ledger has 2 (or another run changed them).
    with pytest.raises(ConfigError) as refused:
        ledger.accept_unknown(campaign, CHANNEL, by="Test Leder", expect=3)
    assert "2 newsletter recipients are unknown, not 3" in str(refused.value)
    assert "--expect 2" in str(refused.value)
    assert ledger.counts(campaign, CHANNEL)["unknown"] == 2  # nothing changed

    assert ledger.accept_unknown(campaign, CHANNEL, by="Test Leder", expect=2) == 2
    assert ledger.counts(campaign, CHANNEL) == {
        "pending": 0,
        "sending": 1,
        "sent": 2,
        "failed": 0,
        "unknown": 0,
    }


def test_requeue_failed(ledger: Ledger, campaign: str) -> None:
    ledger.register(campaign, CHANNEL, ["a", "b"])
    ledger.claim(campaign, CHANNEL, ["a", "b"], batch_id="1", run_id="r")
    ledger.mark(campaign, CHANNEL, {"a": DeliveryState.FAILED, "b": DeliveryState.SENT})
    assert ledger.requeue_failed(campaign, CHANNEL) == 1
    assert ledger.pending_keys(campaign, CHANNEL) == ["a"]


def test_counts_include_every_state_and_pending_keys_keep_registration_order(
    ledger: Ledger, campaign: str
) -> None:
    assert ledger.counts(campaign) == dict.fromkeys(
        ["pending", "sending", "sent", "failed", "unknown"], 0
    )
    keys = keys_(50)
    random.Random(1).shuffle(keys)
    ledger.register(campaign, CHANNEL, keys)
    assert ledger.pending_keys(campaign, CHANNEL) == keys
    # A later registration adds only the new keys, after the earlier ones.
    assert ledger.register(campaign, CHANNEL, ["new", keys[0]]) == 1
    assert ledger.pending_keys(campaign, CHANNEL) == [*keys, "new"]
    assert ledger.pending_keys(campaign, "sms") == []


def test_claims_of_a_fresh_registration_hit_exactly_their_own_rows(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    """A first registration teaches the ledger its row ids; claims by id must hit only those."""
    other = f"{campaign}-other"
    with Ledger(db_url, key=KEY) as second:
        try:
            # Rows of another campaign before and after, so the new ids do not start at 1.
            second.register(other, CHANNEL, keys_(7, "o"))
            assert ledger.register(campaign, CHANNEL, keys_(30)) == 30
            second.register(other, CHANNEL, keys_(5, "p"))
            picked = keys_(30)[3:9] + keys_(30)[20:22]
            claimed = ledger.claim(campaign, CHANNEL, picked, batch_id="b1", run_id="r")
            assert sorted(claimed) == sorted(picked)
            states = ledger.states(campaign, CHANNEL, keys_(30))
            assert {k for k, v in states.items() if v is DeliveryState.SENDING} == set(picked)
            assert set(second.states(other, CHANNEL, keys_(7, "o") + keys_(5, "p")).values()) == {
                DeliveryState.PENDING
            }
            # A second claim of the same keys gets none of them.
            assert ledger.claim(campaign, CHANNEL, picked, batch_id="b2", run_id="r") == []
            ledger.mark(
                campaign, CHANNEL, dict.fromkeys(picked[:2], DeliveryState.SENT), run_id="r"
            )
            assert ledger.counts(campaign, CHANNEL)["sent"] == 2
        finally:
            second.delete_campaign(other)


def test_a_claim_by_id_reports_only_the_rows_it_took(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    ledger.register(campaign, CHANNEL, keys_(10))
    with Ledger(db_url, key=KEY) as rival:
        rival.pending_keys(campaign, CHANNEL)  # learns the ids too
        assert rival.claim(campaign, CHANNEL, keys_(10)[:4], batch_id="rival", run_id="r2")
    claimed = ledger.claim(campaign, CHANNEL, keys_(10)[2:6], batch_id="mine", run_id="r1")
    assert sorted(claimed) == keys_(10)[4:6]
    # Marking the whole stretch as this run touches only the rows this run took.
    stretch = dict.fromkeys(keys_(10)[2:6], DeliveryState.SENT)
    assert ledger.mark(campaign, CHANNEL, stretch, run_id="r1") == 2
    states = ledger.states(campaign, CHANNEL, keys_(10)[:7])
    assert [states[k] for k in keys_(10)[:7]] == [DeliveryState.SENDING] * 4 + [
        DeliveryState.SENT
    ] * 2 + [DeliveryState.PENDING]


def test_a_stale_first_registration_is_not_trusted_after_the_campaign_was_rewritten(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    """Another instance deletes the campaign and registers other keys into the same ids."""
    if ledger.dialect != "sqlite":
        # Known limit: on PostgreSQL a ledger keeps the row ids it learned until it is closed,
        # and a claim by those ids after another instance's delete_campaign takes nothing
        # (the rows stay pending for a rerun). delete_campaign is for tests and clean-ups.
        pytest.skip("id ranges of a first registration are a SQLite path")
    ledger.register(campaign, CHANNEL, ["a", "b", "c"])
    with Ledger(db_url, key=KEY) as other:
        other.delete_campaign(campaign)
        other.register(campaign, CHANNEL, ["a", "x", "b"])
    assert sorted(ledger.claim(campaign, CHANNEL, ["a", "b"], batch_id="1", run_id="r")) == [
        "a",
        "b",
    ]
    assert ledger.mark(campaign, CHANNEL, dict.fromkeys(["a", "b"], DeliveryState.SENT)) == 2
    states = ledger.states(campaign, CHANNEL, ["a", "b", "x"])
    assert states == {
        "a": DeliveryState.SENT,
        "b": DeliveryState.SENT,
        "x": DeliveryState.PENDING,
    }


# --- concurrency -------------------------------------------------------------------------------


def test_threads_racing_never_claim_a_key_twice(db_url: str, ledger: Ledger, campaign: str) -> None:
    keys = keys_(3000)
    ledger.register(campaign, CHANNEL, keys)
    results: list[list[str]] = []
    lock = threading.Lock()

    def worker(seed: int, own_instance: bool) -> None:
        order = keys[:]
        random.Random(seed).shuffle(order)
        led = Ledger(db_url, key=KEY) if own_instance else ledger
        mine: list[str] = []
        for i in range(0, len(order), 250):
            mine += led.claim(
                campaign, CHANNEL, order[i : i + 250], batch_id=f"{seed}-{i}", run_id=f"run-{seed}"
            )
        if own_instance:
            led.close()
        with lock:
            results.append(mine)

    threads = [threading.Thread(target=worker, args=(s, s % 2 == 0)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [k for mine in results for k in mine]
    assert len(results) == 6
    assert len(claimed) == len(set(claimed)) == len(keys)
    assert ledger.counts(campaign, CHANNEL)["sending"] == len(keys)


def test_a_claim_rolled_back_by_a_postgresql_deadlock_is_made_again(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    """Another transaction holds one row and then asks for one this claim holds: a real lock
    cycle, which PostgreSQL breaks by rolling back the claim (it waited first). The claim is
    then made again and takes both rows."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite takes one writer at a time: no lock cycles")
    from sqlalchemy import create_engine, text

    from tasks.ledger import deliveries

    hold = text(
        f"UPDATE {deliveries.name} SET detail = 'held' WHERE recipient_key = :k AND stream = "
        "(SELECT id FROM delivery_stream WHERE campaign = :c)"
    )
    first, second = "k-a", "k-b"  # the claim by keys locks them in this order
    ledger.register(campaign, CHANNEL, [first, second])
    other = create_engine(db_url)
    claimed: list[list[str]] = []
    failed: list[BaseException] = []
    try:
        with other.connect() as conn:
            conn.execute(text("BEGIN"))
            # Hold the second row, as a claim by ids in another run would.
            conn.execute(hold, {"c": campaign, "k": second})

            def claim() -> None:
                # A new instance knows no ids: it claims by keys, first row first.
                try:
                    with Ledger(db_url, key=KEY) as led:
                        claimed.append(
                            led.claim(campaign, CHANNEL, [first, second], batch_id="b", run_id="r")
                        )
                except BaseException as exc:  # handed to the test
                    failed.append(exc)

            worker = threading.Thread(target=claim)
            worker.start()
            _wait_for_a_lock_wait(conn, campaign)
            # Now ask for the first row, which the claim holds while it waits for the second.
            conn.execute(hold, {"c": campaign, "k": first})
            conn.execute(text("COMMIT"))
            worker.join(60)
    finally:
        other.dispose()
    assert not failed, failed
    assert claimed and sorted(claimed[0]) == [first, second]
    assert ledger.counts(campaign, CHANNEL)["sending"] == 2


def _wait_for_a_lock_wait(conn: Any, campaign: str) -> None:
    """Until another backend waits for a row lock (the claim, blocked on the held row)."""
    from sqlalchemy import text

    for _ in range(200):
        # Inside a transaction PostgreSQL keeps showing its first look at pg_stat_activity.
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND pid <> pg_backend_pid() AND datname = current_database()"
            )
        ).scalar()
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the claim never waited for the held row")


def _claim_in_child(url: str, campaign: str, keys: list[str], seed: int, queue: object) -> None:
    order = keys[:]
    random.Random(seed).shuffle(order)
    with Ledger(url, key=KEY) as led:
        mine: list[str] = []
        for i in range(0, len(order), 200):
            mine += led.claim(
                campaign,
                CHANNEL,
                order[i : i + 200],
                batch_id=f"p{seed}-{i}",
                run_id=f"proc-{seed}",
            )
    queue.put(mine)  # type: ignore[attr-defined]


def test_processes_racing_never_claim_a_key_twice(
    db_url: str, ledger: Ledger, campaign: str
) -> None:
    keys = keys_(2000)
    ledger.register(campaign, CHANNEL, keys)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_claim_in_child, args=(db_url, campaign, keys, seed, queue))
        for seed in range(3)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    claimed = [k for mine in results for k in mine]
    assert len(claimed) == len(set(claimed)) == len(keys)


# --- bulk --------------------------------------------------------------------------------------


def _bulk(ledger: Ledger, campaign: str, n: int, batch: int = 1000) -> dict[str, float]:
    """Register, claim and mark n keys the way the worker does (key order, batches of 1000)."""
    keys = [ledger.recipient_key(f"borger{i}@example.dk") for i in range(n)]
    timings: dict[str, float] = {}
    start = time.perf_counter()
    assert ledger.register(campaign, CHANNEL, keys) == n
    timings["register"] = time.perf_counter() - start
    order = sorted(keys)
    start = time.perf_counter()
    claimed = 0
    for i in range(0, n, batch):
        claimed += len(
            ledger.claim(campaign, CHANNEL, order[i : i + batch], batch_id=str(i), run_id="bulk")
        )
    timings["claim"] = time.perf_counter() - start
    assert claimed == n
    start = time.perf_counter()
    for i in range(0, n, batch):
        ledger.mark(
            campaign,
            CHANNEL,
            dict.fromkeys(order[i : i + batch], DeliveryState.SENT),
            provider_ids=[f"msg-{i}"],
            run_id="bulk",
        )
    timings["mark"] = time.perf_counter() - start
    assert ledger.counts(campaign, CHANNEL)["sent"] == n
    print(
        f"\n{ledger.dialect} ledger, {n:,} keys: "
        + ", ".join(f"{step} {seconds:.2f}s" for step, seconds in timings.items())
    )
    return timings


def test_bulk(ledger: Ledger, campaign: str) -> None:
    # 100k on SQLite; 20k on PostgreSQL keeps this file fast and still catches a plan that
    # scans the campaign per statement (that took minutes at 20k before the fix).
    n = 100_000 if ledger.dialect == "sqlite" else 20_000
    timings = _bulk(ledger, campaign, n)
    # Generous: the point is bulk SQL (a statement per recipient would take minutes).
    assert sum(timings.values()) < 60


@pytest.mark.slow
def test_bulk_1m(ledger: Ledger, campaign: str) -> None:
    _bulk(ledger, campaign, 1_000_000)
