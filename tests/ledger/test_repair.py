"""`fbsflow ledger --repair`: rows outbox runs left in the real ledger."""

from __future__ import annotations

from tasks.ledger import (
    DeliveryState,
    Ledger,
)
from tasks.ledger import repair as ledger_repair
from tests.ledger.common import KEY, keys_

# --- rows outbox runs left in the real ledger (fbsflow ledger --repair) --------------------------


def _outbox_run(
    led: Ledger, campaign: str, keys: list[str], run_id: str, *, marked: int, pending: int
) -> None:
    """What an outbox run of an earlier fbsflow wrote: `marked` rows sent with request files as
    provider ids, the rest claimed and never marked (killed), `pending` of them never claimed."""
    led.register(campaign, "sms", keys)
    claimed = keys[: len(keys) - pending]
    led.claim(campaign, "sms", claimed, batch_id="ob", run_id=run_id)
    ids = ["da-0123456789abcdef.json", "en-fedcba9876543210.json"]
    led.mark(campaign, "sms", dict.fromkeys(claimed[:marked], "sent"), provider_ids=ids)


def test_the_check_tells_outbox_rows_from_real_deliveries_and_the_repair_keeps_the_real_ones(
    db_url: str, campaign: str
) -> None:
    audience = keys_(12, "a")
    with Ledger(db_url, key=KEY, lease_seconds=0) as led:
        # A real run delivered 10 recipients, and one borrower who has left the audience since.
        led.register(campaign, "sms", [*audience[:10], "left"])
        led.claim(campaign, "sms", [*audience[:10], "left"], batch_id="r", run_id="real")
        led.mark(
            campaign, "sms", dict.fromkeys([*audience[:10], "left"], "sent"), provider_ids=["1"]
        )
        # Outbox runs: one under a random key (strays), killed with 2 claimed and 2 never claimed;
        # one under the real key, which "sent" the last two recipients to nobody.
        _outbox_run(led, campaign, keys_(10, "x"), "outbox-1", marked=6, pending=2)
        _outbox_run(led, campaign, audience[10:], "outbox-2", marked=2, pending=0)
        [lapsed] = led.resolve_interrupted(campaign, "sms")  # a later run met the killed claims
        assert lapsed.count == 2

        found = ledger_repair.check(led, campaign, "sms", audience)
        assert found.outbox_runs == {"outbox-1", "outbox-2"}
        assert found.stray == {"sent": 7, "unknown": 2, "pending": 2}
        assert len(found.removable) == 10 and found.kept == {"sent": 1}
        assert len(found.outbox_only) == 2
        lines = "\n".join(found.lines())
        assert (
            "sms: 11 rows are not recipients of this audience (pending 2, sent 7, unknown 2)"
            in lines
        )
        assert "10 of them record no delivery" in lines and "--repair removes them" in lines
        assert "kept 1 rows that may record a real delivery (sent 1)" in lines
        assert "2 recipients are recorded only by an outbox run" in lines
        assert led.counts(campaign, "sms")["sent"] == 19  # the check changed nothing

        assert ledger_repair.repair(led, campaign, found) == (10, 2)
        assert led.counts(campaign, "sms") == {
            "pending": 2,
            "sending": 0,
            "sent": 11,
            "failed": 0,
            "unknown": 0,
        }
        assert led.pending_keys(campaign, "sms") == audience[10:]
        again = ledger_repair.check(led, campaign, "sms", audience)
        assert not again.removable and not again.outbox_only and again.kept == {"sent": 1}


def test_the_repair_leaves_a_row_another_run_claimed_since_the_check(
    db_url: str, campaign: str
) -> None:
    with Ledger(db_url, key=KEY) as led:
        led.register(campaign, "sms", ["stray-1", "stray-2"])
        found = ledger_repair.check(led, campaign, "sms", [])
        assert len(found.removable) == 2
        # A run with another export claims one of them before the repair: it is being sent now.
        with Ledger(db_url, key=KEY) as other:
            other.claim(campaign, "sms", ["stray-1"], batch_id="b", run_id="other")
        assert ledger_repair.repair(led, campaign, found) == (1, 0)
        assert led.states(campaign, "sms", ["stray-1", "stray-2"]) == {
            "stray-1": DeliveryState.SENDING
        }
