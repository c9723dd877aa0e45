"""`fbsflow ledger CONFIG --audience CSV [--repair]`: rows outbox runs left in the real ledger."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement

from tasks.ledger.core import Ledger
from tasks.ledger.schema import DeliveryState, deliveries

# Before the outbox got a ledger of its own, an outbox run with FBSFLOW_DATABASE_URL set wrote its
# rows into the real ledger: under a random key (rows no recipient has; a kill left them pending
# or sending, and the channel never completed), or, with FBSFLOW_LEDGER_KEY set, under the real
# key (recipients recorded as sent though nobody received anything). This module tells those rows
# apart and, asked to, repairs them: it removes rows that record no delivery and puts the
# recipients only an outbox run "sent" back to pending. A row that may record a real delivery (a
# borrower who left the audience since, or a run it cannot identify) is never touched.

# The outbox's provider id of a batch is its request file: "<language>-<batch id>.json".
_OUTBOX_ID = re.compile(r"[a-z]{2,3}-[0-9a-f]{16}\.json")
REQUEUED_DETAIL = "written by an outbox run, which delivers to nobody: pending again"


@dataclass
class ChannelCheck:
    """One channel's rows against an audience's recipient keys (counts and row ids, no keys)."""

    channel: str
    recipients: int
    outbox_runs: set[str] = field(default_factory=set)
    stray: Counter[str] = field(default_factory=Counter)  # not recipients: by state
    removable: list[int] = field(default_factory=list)  # stray, and no record of a delivery
    kept: Counter[str] = field(default_factory=Counter)  # stray, may record a delivery: by state
    outbox_only: list[int] = field(default_factory=list)  # recipients an outbox run "sent"

    def lines(self, *, removed: int | None = None, requeued: int | None = None) -> list[str]:
        """What was found (and, after `repair`, what it did), one line each; empty if all is well."""
        name = self.channel
        lines = []
        if self.stray:
            lines.append(
                f"{name}: {self.stray.total()} rows are not recipients of this audience "
                f"({_states(self.stray)})"
            )
        if self.removable:
            what = (
                f"{len(self.removable)} of them record no delivery (never sent, or written by "
                "an outbox run, which sends nothing)"
            )
            if removed is None:
                lines.append(f"{name}: {what}; --repair removes them")
            else:
                lines.append(f"{name}: removed {removed} rows: {what}")
        if self.kept:
            lines.append(
                f"{name}: kept {self.kept.total()} rows that may record a real delivery "
                f"({_states(self.kept)}): borrowers who left the audience, or runs that cannot be "
                "told from a real provider's; left as they are"
            )
        if self.outbox_only:
            what = (
                f"{len(self.outbox_only)} recipients are recorded only by an outbox run, which "
                "delivered nothing to them"
            )
            if requeued is None:
                lines.append(f"{name}: {what}; --repair puts them back to pending")
            else:
                lines.append(
                    f"{name}: put {requeued} recipients back to pending ({what}): the next "
                    "approved run sends them"
                )
        return lines


def check(ledger: Ledger, campaign: str, channel: str, keys: Iterable[str]) -> ChannelCheck:
    """Compare a channel's rows with the recipient keys of an audience; changes nothing.

    Reads every row of the channel (a few seconds on a million): a tool for a person, not a
    step of a run.
    """
    wanted = set(keys)
    result = ChannelCheck(channel, len(wanted))
    result.outbox_runs = {
        run_id
        for run_id, ids in ledger.provider_ids(campaign, channel, like="%.json")
        if run_id is not None and all(map(_OUTBOX_ID.fullmatch, ids.split()))
    }
    outbox = result.outbox_runs
    pending = DeliveryState.PENDING.value
    for row_id, key, state, run_id in ledger.channel_rows(campaign, channel):
        if key in wanted:
            if run_id in outbox and state != pending:
                result.outbox_only.append(row_id)
            continue
        result.stray[state] += 1
        if state == pending or run_id in outbox:
            result.removable.append(row_id)
        else:
            result.kept[state] += 1
    return result


def repair(ledger: Ledger, campaign: str, found: ChannelCheck) -> tuple[int, int]:
    """Remove the rows `check` found removable; put the outbox-only recipients back to pending.

    Each change is guarded by the reason it was chosen, checked again in the same statement: a
    row another run claimed or delivered meanwhile is left as it is. Returns (removed, requeued).
    """
    c = deliveries.c
    by_outbox: ColumnElement[bool] = c.run_id.in_(sorted(found.outbox_runs))
    pending = DeliveryState.PENDING.value
    removed = ledger.change_rows(
        campaign, found.channel, found.removable, (c.state == pending) | by_outbox, None
    )
    values = {
        "state": pending,
        "detail": REQUEUED_DETAIL,
        "updated_at": time.time(),
        "lease_until": None,
    }
    requeued = ledger.change_rows(
        campaign, found.channel, found.outbox_only, by_outbox & (c.state != pending), values
    )
    return removed, requeued


def _states(counts: Counter[str]) -> str:
    return ", ".join(f"{state} {counts[state]}" for state in DeliveryState if counts[state])
