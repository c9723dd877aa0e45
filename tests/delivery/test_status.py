"""A channel's status from its ledger counts, and the outcomes a completion record keeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.delivery.status import channel_status, previous_outcomes, unapproved
from tasks.models import Channel
from tasks.output import OutputFolder
from tasks.steps import ChannelOutcome

SMS, POSTER = Channel.SMS, Channel.POSTER


@pytest.mark.parametrize(
    ("channel", "counts", "errors", "status", "detail_has"),
    [
        (SMS, {"sent": 5}, [], "done", ""),
        (SMS, {"sent": 4, "pending": 1}, [], "failed", ""),
        (SMS, {"sent": 5}, ["TransientError: 503"], "failed", "TransientError: 503"),
        (SMS, {"sent": 4, "sending": 1}, [], "in_progress", "being sent by another run"),
        (SMS, {"sent": 4, "unknown": 1}, [], "unconfirmed", "--accept-unknown sms --by NAME"),
        (SMS, {"pending": 1, "unknown": 1}, [], "failed", "may or may not have been delivered"),
        (POSTER, {"sent": 1, "unknown": 1}, [], "done", "ask those branches"),
    ],
)
def test_status_from_counts(
    channel: Channel, counts: dict[str, int], errors: list[str], status: str, detail_has: str
) -> None:
    got, detail = channel_status(channel, counts, errors)
    assert got == status
    assert detail_has in detail


def test_an_earlier_runs_takeover_is_told_without_failing_the_channel() -> None:
    status, detail = channel_status(SMS, {"sent": 3}, [], ["2 recipients of an earlier run"])
    assert (status, detail) == ("done", "2 recipients of an earlier run")


@pytest.mark.parametrize(
    ("decision", "status"), [("reject", "rejected"), (None, "awaiting_approval")]
)
def test_an_unapproved_channel_keeps_its_files(decision: str | None, status: str) -> None:
    outcome = unapproved(SMS, {"approved": False, "decision": decision}, ["sms/text.da.txt"])
    assert (outcome.status, outcome.files, outcome.counts) == (status, ["sms/text.da.txt"], {})


def test_previous_outcomes_read_back_what_the_record_wrote(tmp_path: Path) -> None:
    kept = ChannelOutcome(SMS, "done", "gatewayapi", ["sms/a.txt"], {"sent": 3}, "", {"x": 1})
    with OutputFolder(tmp_path, "kommune") as out:
        record = {"channels": {"sms": kept.as_dict(), "website": {}, "gone": {"status": "done"}}}
        (out.final / "completion.json").parent.mkdir(parents=True, exist_ok=True)
        (out.final / "completion.json").write_text(json.dumps(record), encoding="utf-8")
        # The website runs now (skipped); a channel no longer known is left out.
        assert previous_outcomes(out, {Channel.WEBSITE}) == [kept]
