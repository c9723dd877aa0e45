"""Who a campaign reached, per channel: sent, delivered, not reached, unsubscribed, unknown.

Counts only, from the ledger and the providers' events; the completion record, its Prefect
table artifact, the checklist and `fbsflow ledger` all read them through `channel_reach`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.ledger import DB_FILE_NAME, Ledger
from tasks.ledger.outcomes import NOT_REACHED, outcome_counts, sent_without_event
from tasks.ledger.schema import DeliveryState

log = logging.getLogger(__name__)
# The channels whose messages providers report on.
REPORTED = ("newsletter", "sms")


@dataclass(frozen=True)
class Reach:
    """One channel's reach in counts."""

    sent: int
    delivered: int
    not_reached: int  # bounced, dropped, undeliverable, expired, rejected
    unsubscribed: int  # unsubscribed or complained (they got it, and want no more)
    unknown: int  # the ledger's unknown: maybe accepted, no event has settled it
    no_event_yet: int  # sent, and no event about it so far

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def channel_reach(ledger: Ledger, campaign: str, channel: str) -> Reach:
    """A channel's reach from its ledger rows and outcomes."""
    states = ledger.counts(campaign, channel)
    outcomes = outcome_counts(ledger, campaign, channel)
    return Reach(
        sent=states.get(DeliveryState.SENT.value, 0),
        delivered=outcomes.get("delivered", 0),
        not_reached=sum(n for o, n in outcomes.items() if o in NOT_REACHED),
        unsubscribed=outcomes.get("unsubscribed", 0) + outcomes.get("complained", 0),
        unknown=states.get(DeliveryState.UNKNOWN.value, 0),
        no_event_yet=sent_without_event(ledger, campaign, channel),
    )


def campaign_reach(ledger: Ledger, campaign: str) -> dict[str, Reach]:
    """`channel_reach` of each reported channel."""
    return {channel: channel_reach(ledger, campaign, channel) for channel in REPORTED}


def _ledger_exists(data: Path) -> bool:
    """Whether a real ledger is there to read, without making one (or its key) by looking."""
    from tasks.settings import StorageSettings, settings

    return bool(settings(StorageSettings).database_url) or os.path.exists(data / DB_FILE_NAME)


def reach_record(data: Path, campaign: str) -> dict[str, dict[str, int]] | None:
    """For the completion record and the checklist: per channel, reach in counts; None when
    there is no real ledger (every channel went to the outbox) or it cannot be read."""
    if not _ledger_exists(data):
        return None
    try:
        with Ledger.open(data) as ledger:
            return {c: r.as_dict() for c, r in campaign_reach(ledger, campaign).items()}
    except Exception as exc:  # the record is written anyway; reach is an addition to it
        log.warning("reach not recorded: %s", type(exc).__name__)
        return None


def not_reached_total(reach: dict[str, dict[str, int]] | None) -> int:
    """Recipients of every channel the providers said were not reached."""
    return sum(r["not_reached"] for r in (reach or {}).values())


def table_rows(reach: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Rows for a Prefect table artifact (Danish column names for the project leader)."""
    return [
        {
            "kanal": channel,
            "sendt": r["sent"],
            "leveret": r["delivered"],
            "ikke nået (bounce/ikke leverbar)": r["not_reached"],
            "afmeldt": r["unsubscribed"],
            "ukendt": r["unknown"],
            "ingen hændelse endnu": r["no_event_yet"],
        }
        for channel, r in reach.items()
    ]
