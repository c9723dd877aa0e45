"""A channel's status from its ledger counts, and the outcomes the last completion record kept."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tasks.breaker import Breaker
from tasks.models import Channel
from tasks.output import OutputFolder
from tasks.providers.registry import provider_name
from tasks.steps import DELIVERED, ChannelOutcome


def unapproved(channel: Channel, approval: dict[str, Any], files: list[str]) -> ChannelOutcome:
    """A delivering channel's outcome when sending is not approved: rejected, or awaiting."""
    status = "rejected" if approval.get("decision") == "reject" else "awaiting_approval"
    return ChannelOutcome(channel, status, provider_name(channel), files=files)


def stopped(breaker: Breaker, counts: dict[str, int]) -> str:
    """The channel's message when its breaker stopped it (counts only, no personal data)."""
    return (
        f"stopped sending: {breaker.reason()}; {counts.get('pending', 0)} recipients left "
        "pending: run again when the provider answers"
    )


def channel_status(
    channel: Channel, counts: dict[str, int], errors: list[str], notes: Sequence[str] = ()
) -> tuple[str, str]:
    """A channel's status and detail from its ledger counts after a run's send; `notes` (an
    earlier run's takeover) go into the detail without failing the channel.

    `done` only when every recipient has an outcome: none pending and none `sending` (held by
    another run of the campaign right now, whose outcome is not known yet).
    """
    status = "failed" if errors or counts.get("pending") else "done"
    detail = "; ".join([*notes, *errors[:3]])
    if counts.get("sending") and status == "done":
        # Another run of the same campaign holds these right now; it records their outcome.
        status = "in_progress"
        detail = (
            f"{counts['sending']} are being sent by another run of this campaign right now: "
            "run again after it has finished to record the final counts"
        )
    if counts.get("unknown"):
        unknown = (
            f"{counts['unknown']} may or may not have been delivered (the provider did not answer)"
        )
        if channel in DELIVERED:
            # Not "done": the card must not read as complete while some borrowers may have had
            # no message. A person decides, one way or the other; the next approved run of this
            # channel records it.
            status = "unconfirmed" if status == "done" else status
            how = (
                "check the provider's activity log, then either accept them as delivered "
                f"(fbsflow ledger CONFIG --accept-unknown {channel.value} --by NAME "
                f"--expect {counts['unknown']}) or send them "
                "again (rerun with --at-least-once)"
            )
        else:
            # Staff e-mails (the posters' branch contacts): each branch's poster step is
            # confirmed by a person anyway, and that is where a missing e-mail shows.
            how = "ask those branches whether the poster e-mail arrived"
        detail = (detail + "; " if detail else "") + f"{unknown}: {how}"
    return status, detail


def previous_outcomes(out: OutputFolder, skip: set[Channel]) -> list[ChannelOutcome]:
    """Outcomes of channels this run does not touch, from the last completion record."""
    path = out.final / "completion.json"
    if not path.is_file():
        return []
    previous = json.loads(path.read_text(encoding="utf-8")).get("channels", {})
    return [
        _outcome(Channel(name), recorded)
        for name, recorded in previous.items()
        if name in Channel._value2member_map_ and Channel(name) not in skip
    ]


def _outcome(channel: Channel, recorded: dict[str, Any]) -> ChannelOutcome:
    """A channel's outcome as `ChannelOutcome.as_dict` wrote it."""
    return ChannelOutcome(
        channel,
        recorded["status"],
        recorded["provider"],
        recorded.get("files", []),
        recorded.get("counts", {}),
        recorded.get("detail", ""),
        recorded.get("excluded", {}),
    )
