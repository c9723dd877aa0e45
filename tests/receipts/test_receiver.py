"""The receiver: signed batches recorded by key; forged, stale, replayed and malformed ones change
nothing; outcomes settle unknown recipients and feed the suppression list."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from sqlalchemy import func, select

from tasks.ledger import Ledger
from tasks.ledger.outcome_tables import outcomes, receipt_events, suppressions
from tasks.ledger.outcomes import outcome_counts, suppressed_keys
from tasks.receipts.reach import channel_reach
from tests.servers.webhooks import SigningKey, post_reports, report_token, signed_batch

from .support import CAMPAIGN, MUNICIPALITY, SECRET, addresses, events, receiver, send


def snapshot(ledger: Ledger) -> tuple:
    """Everything the receiver may change: the three receipt tables and the ledger's states."""
    with ledger._engine.connect() as conn:
        tables = tuple(
            tuple(sorted(map(tuple, conn.execute(select(t)))))
            for t in (receipt_events, outcomes, suppressions)
        )
    return (*tables, tuple(sorted(ledger.counts(CAMPAIGN, "newsletter").items())))


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(f"{url}/sendgrid/events", content=body, headers=headers).status_code


def test_a_signed_bounce_batch_is_recorded_and_its_replay_forgery_and_staleness_change_nothing(
    ledger: Ledger,
) -> None:
    key = SigningKey()
    sent = addresses(50)
    keys = send(ledger, "newsletter", sent)
    batch = events(sent[:10], keys[:10], "bounce")
    with receiver(ledger, key) as url:
        body, headers = signed_batch(key, batch)
        assert post(url, body, headers) == 200
        assert outcome_counts(ledger, CAMPAIGN, "newsletter") == {"bounced": 10}
        assert suppressed_keys(ledger, MUNICIPALITY) == set(keys[:10])
        before = snapshot(ledger)
        # Replayed: the same batch, signed again (a SendGrid retry), changes nothing.
        body, headers = signed_batch(key, batch)
        assert post(url, body, headers) == 200
        assert snapshot(ledger) == before
        other = events(sent[10:20], keys[10:20], "bounce")
        # Forged: signed by another key.
        body, headers = signed_batch(SigningKey(), other)
        assert post(url, body, headers) == 401
        # Tampered: the signature of one body over another.
        good_body, good_headers = signed_batch(key, other)
        assert post(url, good_body.replace(b"bounce", b"spamreport"), good_headers) == 401
        # Stale: correctly signed, an hour old.
        body, headers = signed_batch(key, other, timestamp=int(time.time()) - 3600)
        assert post(url, body, headers) == 403
        # No signature at all.
        assert post(url, good_body, {"Content-Type": "application/json"}) == 401
        # Malformed, though correctly signed: 400, nothing half-recorded.
        half = json.dumps([other[0], {"event": "bounce"}]).encode()
        stamp = str(int(time.time()))
        from tasks.receipts.signatures import sign_sendgrid

        signature = sign_sendgrid(key.private, stamp, half)
        headers = {
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "X-Twilio-Email-Event-Webhook-Signature": signature,
        }
        assert post(url, half, headers) == 400
        assert snapshot(ledger) == before


def test_events_keyed_by_address_reach_the_same_rows_and_no_address_is_stored(
    ledger: Ledger,
) -> None:
    key = SigningKey()
    sent = addresses(20)
    send(ledger, "newsletter", sent)
    with receiver(ledger, key) as url:
        body, headers = signed_batch(key, events(sent[:5], None, "delivered"))
        assert post(url, body, headers) == 200
    assert outcome_counts(ledger, CAMPAIGN, "newsletter") == {"delivered": 5}
    with ledger._engine.connect() as conn:
        stored = repr([list(conn.execute(select(t))) for t in (receipt_events, outcomes)])
    assert "@" not in stored and "laaner" not in stored


def test_a_delivered_event_settles_an_unknown_recipient_so_no_rerun_sends_or_asks(
    ledger: Ledger,
) -> None:
    key = SigningKey()
    sent = addresses(3)
    keys = ledger.recipient_keys(sent)
    ledger.register(CAMPAIGN, "newsletter", keys)
    ledger.claim(CAMPAIGN, "newsletter", keys, batch_id="b", run_id="r")
    ledger.mark(CAMPAIGN, "newsletter", dict.fromkeys(keys, "unknown"), run_id="r")
    with receiver(ledger, key) as url:
        body, headers = signed_batch(
            key, events(sent[:1], keys[:1], "delivered") + events(sent[1:2], keys[1:2], "bounce")
        )
        assert post(url, body, headers) == 200
    counts = ledger.counts(CAMPAIGN, "newsletter")
    assert counts["sent"] == 2 and counts["unknown"] == 1
    assert ledger.pending_keys(CAMPAIGN, "newsletter") == []
    reach = channel_reach(ledger, CAMPAIGN, "newsletter")
    assert (reach.sent, reach.delivered, reach.not_reached, reach.unknown) == (2, 1, 1, 1)


def test_outcomes_only_climb_so_order_does_not_matter(ledger: Ledger) -> None:
    key = SigningKey()
    sent = addresses(4)
    keys = send(ledger, "newsletter", sent)
    later = events(sent, keys, "delivered")
    earlier = events(sent, keys, "deferred")
    unsub = events(sent[:1], keys[:1], "unsubscribe")
    with receiver(ledger, key) as url:
        for batch in (unsub, later, earlier):
            body, headers = signed_batch(key, batch)
            assert post(url, body, headers) == 200
    assert outcome_counts(ledger, CAMPAIGN, "newsletter") == {"delivered": 3, "unsubscribed": 1}
    assert suppressed_keys(ledger, MUNICIPALITY) == {keys[0]}


def test_gatewayapi_reports_need_their_jwt_and_an_in_transit_report_after_a_final_is_ignored(
    ledger: Ledger,
) -> None:
    numbers = [f"+45200000{i:02d}" for i in range(5)]
    keys = send(ledger, "sms", numbers)

    def report(i: int, status: str) -> dict:
        return {
            "id": 1000 + i,
            "msisdn": int(numbers[i][1:]),
            "time": int(time.time()),
            "status": status,
            "userref": f"{CAMPAIGN}:batch-1",
        }

    with receiver(ledger, None) as url:
        assert post_reports(url, SECRET, [report(0, "DELIVERED"), report(0, "ENROUTE")]) == [
            200,
            200,
        ]
        assert post_reports(url, SECRET, [report(1, "UNDELIVERABLE")]) == [200]
        assert post_reports(url, "not-the-secret", [report(2, "DELIVERED")]) == [401]
        # A JWT for another report does not carry this one.
        token = report_token(SECRET, report(3, "DELIVERED"))
        answer = httpx.post(
            f"{url}/gatewayapi/dlr",
            json=report(4, "DELIVERED"),
            headers={"X-Gwapi-Signature": token},
        )
        assert answer.status_code == 401
        answer = httpx.post(
            f"{url}/gatewayapi/dlr", content=b"{not json", headers={"X-Gwapi-Signature": token}
        )
        assert answer.status_code == 400
        # SendGrid's endpoint has no key here: refused.
        body, headers = signed_batch(SigningKey(), [])
        assert post(url, body, headers) == 403
    assert outcome_counts(ledger, CAMPAIGN, "sms") == {"delivered": 1, "undeliverable": 1}
    assert suppressed_keys(ledger, MUNICIPALITY) == {keys[1]}


@pytest.mark.slow
def test_100000_events_with_10_percent_duplicates_shuffled_give_exact_counts(
    ledger: Ledger,
) -> None:
    from tests.servers.webhooks import disorder

    n = 100_000
    sent = addresses(n)
    keys = send(ledger, "newsletter", sent)
    kinds = ["delivered"] * 6 + ["bounce", "deferred", "dropped", "spamreport"]
    expected = {"delivered": 0, "bounced": 0, "deferred": 0, "dropped": 0, "complained": 0}
    name = {"bounce": "bounced", "spamreport": "complained"}
    batch: list[dict] = []
    for i, (address, key) in enumerate(zip(sent, keys, strict=True)):
        kind = kinds[i % len(kinds)]
        expected[name.get(kind, kind)] += 1
        batch.extend(events([address], [key], kind))
    shuffled = disorder(batch, duplicates=0.10, seed=7)
    assert len(shuffled) == 110_000
    from tasks.receipts.ingest import Receipts

    receipts = Receipts(ledger, MUNICIPALITY, CAMPAIGN)
    total_duplicates = 0
    for start in range(0, len(shuffled), 5000):
        done = receipts.sendgrid(json.dumps(shuffled[start : start + 5000]).encode())
        total_duplicates += done.duplicates
    assert total_duplicates == 10_000
    assert outcome_counts(ledger, CAMPAIGN, "newsletter") == expected
    with ledger._engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(receipt_events)).scalar() == n
    assert (
        len(suppressed_keys(ledger, MUNICIPALITY)) == expected["bounced"] + expected["complained"]
    )


@pytest.mark.parametrize("kind", ["bounce", "spamreport", "unsubscribe"])
def test_hard_bounces_complaints_and_unsubscribes_are_suppressed_soft_bounces_are_not(
    ledger: Ledger, kind: str
) -> None:
    from tasks.receipts.ingest import Receipts

    sent = addresses(2)
    keys = send(ledger, "newsletter", sent)
    soft = events(sent[1:], keys[1:], "bounce")
    soft[0]["type"] = "blocked"
    Receipts(ledger, MUNICIPALITY, CAMPAIGN).sendgrid(
        json.dumps(events(sent[:1], keys[:1], kind) + soft).encode()
    )
    assert suppressed_keys(ledger, MUNICIPALITY) == {keys[0]}
