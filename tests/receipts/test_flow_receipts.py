"""The issue's fixed points end to end: a send to the SendGrid stand-in, signed bounce events for
ten of its recipients posted to the receiver, `fbsflow ledger` reporting them, and a second
campaign that does not write to them; the newsletter carries one-click unsubscribe headers."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
import yaml

from flows.cli import main as fbsflow
from tasks.config import load_municipality
from tasks.ledger import Ledger
from tasks.plan import campaign_id
from tasks.steps import data_dir
from tests.servers.webhooks import SigningKey, post_events, signed_batch
from tests.test_ledger_flow import NEWSLETTER, municipality, run, stand_ins  # noqa: F401

from .support import receiver

pytestmark = pytest.mark.integration
UNSUBSCRIBE = "https://bibliotek.eksempel.dk/nyhedsbrev/afmeld"


def outcome_line(capsys: pytest.CaptureFixture[str], config: Path) -> dict[str, int]:
    assert fbsflow(["ledger", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["newsletter"])
    words = lines[at + 1].split()
    assert words[0] == "udfald:"
    return dict(zip(words[1::2], map(int, words[2::2]), strict=True))


def prefect_database_text() -> str:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url.get_secret_value()
    path = url.split("///", 1)[1]
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(repr(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


def test_bounces_reach_the_ledger_and_a_second_campaign_skips_them(
    municipality: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = yaml.safe_load(municipality.read_text(encoding="utf-8"))
    data["channels"]["newsletter"]["unsubscribe_url"] = UNSUBSCRIBE
    municipality.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    from tasks.models import Channel

    with stand_ins(monkeypatch) as (sendgrid, _gatewayapi):
        sendgrid.keep_bodies = True
        run(municipality, tmp_path / "out1", channels=[Channel.NEWSLETTER])
        assert sum(sendgrid.deliveries.values()) == NEWSLETTER
        body = sendgrid.requests[0].body
        assert body is not None
        # Fixed point: the newsletter request carries the one-click unsubscribe headers.
        assert body["headers"] == {
            "List-Unsubscribe": f"<{UNSUBSCRIBE}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert any("Afmeld nyhedsbrevet" in c["value"] for c in body["content"])
        bounces = sendgrid.events("bounce")[:10]
    bounced = {e["email"] for e in bounces}
    assert len(bounced) == 10
    capsys.readouterr()
    assert outcome_line(capsys, municipality)["bounced"] == 0

    config = load_municipality(municipality)
    key = SigningKey()
    with (
        Ledger.open(data_dir(municipality)) as ledger,
        receiver(
            ledger, key, municipality=config.municipality.slug, campaign=campaign_id(config)
        ) as url,
    ):
        # Fixed point: a correctly signed batch of 10 bounces -> `fbsflow ledger` says 10.
        assert post_events(url, key, bounces) == [200]
        after = outcome_line(capsys, municipality)
        assert after["bounced"] == 10
        # The same batch again changes nothing.
        assert post_events(url, key, bounces) == [200]
        assert outcome_line(capsys, municipality) == after
        # A batch with a bad signature is refused and changes nothing.
        forged = [{**e, "sg_event_id": e["sg_event_id"] + "x"} for e in bounces]
        body_, headers = signed_batch(SigningKey(), forged)
        import httpx

        answer = httpx.post(f"{url}/sendgrid/events", content=body_, headers=headers)
        assert answer.status_code == 401
        assert outcome_line(capsys, municipality) == after

    assert fbsflow(["suppressions", str(municipality)]) == 0
    assert "email  bounced        10" in capsys.readouterr().out

    # Fixed point: a second run with a new campaign date does not send to those 10.
    data["go_live"] = (config.go_live + dt.timedelta(days=90)).isoformat()
    municipality.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with stand_ins(monkeypatch) as (sendgrid, _gatewayapi):
        record = run(municipality, tmp_path / "out2", channels=[Channel.NEWSLETTER])
        assert not bounced & set(sendgrid.deliveries)
        assert sum(sendgrid.deliveries.values()) == NEWSLETTER - 10
    assert record["reach"]["newsletter"]["sent"] == NEWSLETTER - 10
    completion = json.loads(next((tmp_path / "out2").rglob("completion.json")).read_text())
    assert completion["reach"]["newsletter"]["no_event_yet"] == NEWSLETTER - 10

    # Lifting one address puts it back for the next campaign.
    lifted = sorted(bounced)[0]
    assert fbsflow(["suppressions", str(municipality), "--lift", lifted]) == 0
    assert "email  bounced        9" in capsys.readouterr().out

    # No address in the Prefect database.
    text = prefect_database_text()
    assert not [a for a in bounced if a in text]


def test_gatewayapi_reports_of_a_real_sms_run_arrive_late_twice_and_out_of_order(
    municipality: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tasks.ledger.outcomes import outcome_counts, suppressed_keys
    from tasks.models import Channel
    from tests.servers.webhooks import disorder, post_reports
    from tests.test_ledger_flow import SMS

    from .support import SECRET

    with stand_ins(monkeypatch) as (_sendgrid, gatewayapi):
        run(municipality, tmp_path / "out", channels=[Channel.SMS])
        delivered = gatewayapi.delivery_reports("DELIVERED", share=0.5, seed=1)
        enroute = gatewayapi.delivery_reports("ENROUTE", share=1.0)
        dead = [r for r in gatewayapi.delivery_reports("UNDELIVERABLE") if r not in delivered]
    dead_numbers = {r["msisdn"] for r in dead[:5]}
    dead = [r for r in dead if r["msisdn"] in dead_numbers]
    delivered = [r for r in delivered if r["msisdn"] not in dead_numbers]
    # In transit after final, duplicates, shuffled.
    reports = disorder(delivered + dead, duplicates=0.1, seed=3) + enroute
    config = load_municipality(municipality)
    with Ledger.open(data_dir(municipality)) as ledger:
        with receiver(
            ledger, None, municipality=config.municipality.slug, campaign=campaign_id(config)
        ) as url:
            assert set(post_reports(url, SECRET, reports, delay=0.0)) == {200}
        counts = outcome_counts(ledger, campaign_id(config), "sms")
        assert counts["delivered"] == len({r["msisdn"] for r in delivered})
        assert counts["undeliverable"] == 5
        assert counts["deferred"] == SMS - len(delivered) - 5
        assert len(suppressed_keys(ledger, config.municipality.slug)) == 5
