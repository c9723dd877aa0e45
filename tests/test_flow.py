"""The card's flow end to end on the Prefect test harness, with the outbox provider (and one SendGrid stand-in)."""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cli import main as fbsflow
from flows.communicate_externally import communicate_externally
from tasks.config import load_municipality
from tasks.delivery.chunks import deliver_chunk_task
from tasks.delivery.keying import branch_recipients
from tasks.errors import ConfigError
from tasks.ledger import Ledger
from tasks.models import Channel
from tasks.plan import campaign_id
from tasks.providers.http import tls_context
from tasks.providers.sendgrid import SendGridProvider
from tasks.speed import prefetch
from tasks.speed.prefetch import prefetch_audience
from tests.servers.sendgrid_server import Fault, SendGridServer
from tests.support.tls import self_signed

from .conftest import EXAMPLE_AUDIENCE, EXAMPLE_CONFIG

MANUAL = [
    "inform.website",
    "inform.faq",
    "inform.poster.hovedbiblioteket",
    "inform.poster.soeby-bibliotek",
    "inform.self_service",
    "inform.info_screen",
    "inform.social_post",
]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ledger/checklist database and no provider credentials: everything to the outbox."""
    monkeypatch.setenv("FBSFLOW_DATA_DIR", str(tmp_path / "data"))
    for name in (
        "SENDGRID_API_KEY",
        "GATEWAYAPI_TOKEN",
        "FBSFLOW_SMTP_HOST",
        "FBSFLOW_DATABASE_URL",
        "PREFECT_API_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _run(root: Path, **kwargs: object) -> dict:
    return communicate_externally(
        config_path=str(EXAMPLE_CONFIG),
        audience=str(EXAMPLE_AUDIENCE),
        output_root=str(root / "outbox"),
        **kwargs,
    )


def _newsletter_states(capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    """The newsletter's counts per state, as `fbsflow ledger CONFIG` prints them."""
    assert fbsflow(["ledger", str(EXAMPLE_CONFIG)]) == 0
    [counts] = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.strip().startswith("newsletter")
    ]
    words = counts.split()[1:]
    return dict(zip(words[::2], map(int, words[1::2]), strict=True))


def test_card_runs_end_to_end_and_is_complete(prefect_harness: None, isolated: Path) -> None:
    record = _run(isolated, approve=True, confirm=MANUAL, confirmed_by="Test Leder")
    out = isolated / "outbox" / "eksempel-kommune"
    assert record["status"] == "complete", record["reasons"]
    for channel in Channel:
        assert (out / channel.value).is_dir(), channel
    assert (out / "plan.md").read_text(encoding="utf-8").startswith("# Communication plan")
    assert (out / "gallery.html").is_file()
    completion = json.loads((out / "completion.json").read_text(encoding="utf-8"))
    assert completion["status"] == "complete"
    assert completion["card_id"] == "forbered-og-kommuniker-eksternt"
    news = completion["channels"]["newsletter"]
    sms = completion["channels"]["sms"]
    # The example audience: every consenting valid address exactly once (counts from the import).
    assert news["counts"]["sent"] == 645 and news["counts"]["failed"] == 0
    assert sms["counts"]["sent"] == 348
    # The outbox wrote the provider's own request shapes.
    requests = sorted((out / "newsletter" / "requests").glob("*.json"))
    personalizations = sum(len(json.loads(p.read_text())["personalizations"]) for p in requests)
    assert personalizations == 645
    body = json.loads(next((out / "sms" / "requests").glob("*.json")).read_text())
    assert all(isinstance(r["msisdn"], int) for r in body["recipients"])
    # No staging folders are left behind.
    assert [p.name for p in (isolated / "outbox").iterdir()] == ["eksempel-kommune"]
    assert completion["steps"]["mark-complete"]["state"] == "done"
    assert completion["approval"]["approved"] is True
    # The channels published by hand: their files in the record, their steps confirmed.
    for channel, files in (("info_screen", "slide"), ("social_post", "image")):
        outcome = completion["channels"][channel]
        assert outcome["status"] == "done" and outcome["provider"] == "files"
        assert {f"{channel}/{files}.{lang}.png" for lang in ("da", "en")} <= set(outcome["files"])
        step = completion["steps"][f"inform.{channel}"]
        assert (step["state"], step["by"]) == ("done", "Test Leder")


def test_without_approval_nothing_is_sent_and_the_card_stays_open(
    prefect_harness: None, isolated: Path
) -> None:
    record = _run(isolated, approve=False)
    out = isolated / "outbox" / "eksempel-kommune"
    assert record["status"] == "incomplete"
    assert record["channels"]["newsletter"]["status"] == "awaiting_approval"
    assert not (out / "newsletter" / "requests").exists()
    assert not (out / "sms" / "requests").exists()
    # The manual steps are named as awaiting confirmation.
    assert set(MANUAL) <= set(record["awaiting_confirmation"])
    # Rendered texts are still there for review.
    assert (out / "sms" / "sms.da.txt").is_file()


def test_unknown_recipients_keep_the_card_open_until_a_person_decides(
    prefect_harness: None,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with SendGridServer(keep_bodies=False) as sendgrid:
        monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
        monkeypatch.setenv("SENDGRID_HOST", sendgrid.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        # The connection drops after SendGrid took the request: delivered, but nobody knows.
        sendgrid.fail_next(Fault.drop())
        record = _run(isolated, approve=True, confirm=MANUAL, confirmed_by="Test Leder")
        news = record["channels"]["newsletter"]
        assert news["counts"]["unknown"] > 0
        assert news["status"] == "unconfirmed"
        assert record["status"] == "incomplete"
        [reason] = [r for r in record["reasons"] if r.startswith("newsletter")]
        assert (
            f"--accept-unknown newsletter --by NAME --expect {news['counts']['unknown']}" in reason
        )
        assert "--at-least-once" in reason
        requests = sendgrid.stats()["requests"]

        # Deciding needs a name; without one nothing changes.
        assert fbsflow(["ledger", str(EXAMPLE_CONFIG), "--accept-unknown", "newsletter"]) == 2
        assert "needs --by NAME" in capsys.readouterr().err
        accept = [
            "ledger",
            str(EXAMPLE_CONFIG),
            "--accept-unknown",
            "newsletter",
            "--by",
            "Test Leder",
        ]
        # A count other than the ledger's (another run changed them): refused, nothing changes.
        unknown = news["counts"]["unknown"]
        assert fbsflow([*accept, "--expect", str(unknown + 1)]) == 2
        refused = capsys.readouterr().err
        assert f"{unknown} newsletter recipients are unknown, not {unknown + 1}" in refused
        assert "Traceback" not in refused
        assert fbsflow([*accept, "--expect", str(unknown)]) == 0
        printed = capsys.readouterr().out
        assert f"Accepted {news['counts']['unknown']} unknown newsletter recipients" in printed
        [counts] = [line for line in printed.splitlines() if line.strip().startswith("newsletter")]
        assert "unknown 0" in counts
        assert f"sent {news['counts']['sent'] + news['counts']['unknown']}" in counts

        record = _run(isolated, approve=True, confirm=MANUAL, confirmed_by="Test Leder")
        assert record["channels"]["newsletter"]["status"] == "done"
        assert record["status"] == "complete", record["reasons"]
        assert sendgrid.stats()["requests"] == requests  # nobody was sent it twice


@pytest.mark.parametrize(
    ("override", "at_once"), [(None, SendGridProvider.chunks_at_once), ("3", 3)]
)
def test_sendgrid_chunks_go_out_as_many_at_once_as_the_provider_names(
    prefect_harness: None,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    override: str | None,
    at_once: int,
) -> None:
    # 645 newsletter recipients in chunks of 50: 13 chunk task runs of one request each.
    monkeypatch.setenv("FBSFLOW_CHUNK_SIZE", "50")
    if override is None:
        monkeypatch.delenv("FBSFLOW_MAX_CONCURRENT_CHUNKS", raising=False)
    else:
        monkeypatch.setenv("FBSFLOW_MAX_CONCURRENT_CHUNKS", override)
    with SendGridServer(keep_bodies=False) as sendgrid:
        monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
        monkeypatch.setenv("SENDGRID_HOST", sendgrid.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        # The first answers wait until the bound's worth of requests is in flight (delivered
        # meanwhile): every chunk that may run at once then does.
        sendgrid.fail_next(*[Fault.hold(at_once)] * at_once)
        # The newsletter alone: the posters' branch e-mail (one request) would take a hold.
        record = _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
        stats = sendgrid.stats()
    assert record["channels"]["newsletter"]["counts"]["sent"] == 645
    assert stats["requests"] > at_once  # more chunks than the bound: the bound was tested
    assert stats["max_in_flight"] == at_once


def test_an_untrusted_certificate_stops_the_channel_with_the_fix_and_sends_nobody(
    prefect_harness: None,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As behind a proxy that re-signs HTTPS: every chunk in flight fails the same way, the run
    # stops with the fix, and every borrower is still pending for the run after the fix.
    cert, key = self_signed(isolated, "stand-in")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("FBSFLOW_CHUNK_SIZE", "50")  # 13 chunks, 8 of them in flight at once
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("SSL_CERT_DIR", str(isolated))  # no CA in there
    tls_context.cache_clear()
    try:
        with SendGridServer(keep_bodies=False, tls=context) as sendgrid:
            monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
            monkeypatch.setenv("SENDGRID_HOST", sendgrid.url)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
            with pytest.raises(ConfigError, match="SSL_CERT_FILE") as raised:
                _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
            assert sendgrid.stats()["requests"] == 0 and not sendgrid.deliveries
    finally:
        tls_context.cache_clear()
    assert "laaner" not in str(raised.value) and "@" not in str(raised.value)
    states = _newsletter_states(capsys)
    assert states == {"pending": 645, "sending": 0, "sent": 0, "failed": 0, "unknown": 0}


def test_a_refused_key_stops_the_run_only_after_the_chunks_in_flight_are_recorded(
    prefect_harness: None,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FBSFLOW_CHUNK_SIZE", "50")
    monkeypatch.setenv("FBSFLOW_MAX_CONCURRENT_CHUNKS", "2")
    with SendGridServer(keep_bodies=False) as sendgrid:
        monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
        monkeypatch.setenv("SENDGRID_HOST", sendgrid.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        # The first chunk's request is delivered but answered late; the second is refused
        # (a key revoked mid-run) while the first is still in flight.
        sendgrid.fail_next(Fault.slow(1.0), Fault.respond(401, "permission denied"))
        with pytest.raises(ConfigError, match="SENDGRID_API_KEY refused"):
            _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
        delivered = sum(sendgrid.deliveries.values())
    assert delivered == 50
    # Read at once: the run stopped after the first chunk recorded its batch, not before.
    states = _newsletter_states(capsys)
    assert states == {"pending": 595, "sending": 0, "sent": 50, "failed": 0, "unknown": 0}


@pytest.fixture
def sendgrid_stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[SendGridServer]:
    """A SendGrid stand-in the newsletter goes to, with short timeouts, 13 chunks, 2 at a time."""
    monkeypatch.setenv("FBSFLOW_CHUNK_SIZE", "50")
    monkeypatch.setenv("FBSFLOW_MAX_CONCURRENT_CHUNKS", "2")
    monkeypatch.setattr(SendGridProvider, "connect_timeout", 0.5)
    monkeypatch.setattr(SendGridProvider, "read_timeout", 0.5)
    with SendGridServer(keep_bodies=False) as sendgrid:
        monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
        monkeypatch.setenv("SENDGRID_HOST", sendgrid.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield sendgrid


def test_a_sendgrid_that_never_answers_stops_the_channel_and_a_rerun_sends_the_rest_once(
    prefect_harness: None, isolated: Path, sendgrid_stand_in: SendGridServer
) -> None:
    sendgrid_stand_in.never_answer()
    record = _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
    news = record["channels"]["newsletter"]
    # Three requests in a row unanswered open the breaker; the other chunk in flight may add one.
    requests = sendgrid_stand_in.stats()["requests"]
    assert 3 <= requests <= 4
    # Unknown: only the batches that went out (50 each); every other recipient is pending.
    unknown = 50 * requests
    assert news["counts"] == {
        "pending": 645 - unknown, "sending": 0, "sent": 0, "failed": 0, "unknown": unknown,
    }  # fmt: skip
    assert news["status"] == "failed" and record["status"] == "incomplete"
    assert re.search(r"sendgrid did not answer [34] times in a row", news["detail"])
    assert (
        f"{645 - unknown} recipients left pending: run again when the provider answers"
        in (news["detail"])
    )

    sendgrid_stand_in.never_answer(False)
    record = _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
    news = record["channels"]["newsletter"]
    assert news["counts"]["sent"] == 645 - unknown and news["counts"]["unknown"] == unknown
    assert news["status"] == "unconfirmed"  # the unknown ones wait for a person's decision
    deliveries = sendgrid_stand_in.deliveries
    assert sum(deliveries.values()) == len(deliveries) == 645 - unknown  # each exactly once


def test_a_sendgrid_that_refuses_connections_ends_the_run_without_prefect_retries(
    prefect_harness: None,
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    sendgrid_stand_in: SendGridServer,
) -> None:
    closed = SendGridServer().start()
    monkeypatch.setenv("SENDGRID_HOST", closed.url)
    closed.stop()  # nothing listens there any more: every connection is refused
    started = time.monotonic()
    record = _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
    refused = time.monotonic() - started
    news = record["channels"]["newsletter"]
    assert news["status"] == "failed"
    assert news["counts"]["pending"] == 645 and news["counts"]["unknown"] == 0
    assert "645 recipients left pending: run again when the provider answers" in news["detail"]

    monkeypatch.setenv("SENDGRID_HOST", sendgrid_stand_in.url)
    started = time.monotonic()
    record = _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
    answered = time.monotonic() - started
    assert record["channels"]["newsletter"]["counts"]["sent"] == 645
    assert sum(sendgrid_stand_in.deliveries.values()) == 645
    # A retried chunk alone waits out Prefect's retry delays (5 + 30 s); the run that was
    # refused took about as long as the one that sent everything, on however busy a machine.
    delays = sum(deliver_chunk_task.retry_delay_seconds)
    assert refused < answered + delays


def test_posters_are_not_done_while_another_run_is_sending_a_branch_email(
    prefect_harness: None, isolated: Path, sendgrid_stand_in: SendGridServer
) -> None:
    config = load_municipality(EXAMPLE_CONFIG)
    campaign = campaign_id(config)
    with Ledger.open(isolated / "data") as ledger:  # the flow's ledger (FBSFLOW_DATA_DIR)
        keys = [r.key for r in branch_recipients(config, ledger)]
        ledger.register(campaign, "poster", keys)
        # Another run of the campaign holds both branch e-mails right now.
        assert len(ledger.claim(campaign, "poster", keys, batch_id="b", run_id="other")) == 2
    record = _run(isolated, approve=True, confirm=MANUAL, channels=[Channel.POSTER])
    poster = record["channels"]["poster"]
    assert poster["counts"]["sending"] == 2
    assert poster["status"] == "in_progress"
    assert "being sent by another run" in poster["detail"]
    assert record["status"] == "incomplete"
    assert sendgrid_stand_in.stats()["requests"] == 0


def test_an_audience_keyed_in_parts_is_sent_exactly_once(
    prefect_harness: None, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parts of at least 100: the example's 645 newsletter recipients are keyed, sorted and
    # registered a part at a time, as a large municipality's are in parts of 50,000 and more.
    keying = importlib.import_module("tasks.delivery.keying")
    channel = importlib.import_module("tasks.delivery.channel")
    monkeypatch.setattr(keying, "MIN_PART", 100)
    sizes: list[int] = []
    keyed_parts = keying.keyed_parts

    def counted(*args: Any) -> Iterator[Any]:
        for part in keyed_parts(*args):
            sizes.append(len(part[1]))
            yield part

    monkeypatch.setattr(channel, "keyed_parts", counted)
    with SendGridServer(keep_bodies=False) as sendgrid:
        monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
        monkeypatch.setenv("SENDGRID_HOST", sendgrid.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        record = _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
        first, parts = sendgrid.stats(), list(sizes)
        _run(isolated, approve=True, channels=[Channel.NEWSLETTER])
        second = sendgrid.stats()
    assert len(parts) >= 4 and sum(parts) == 645
    assert record["channels"]["newsletter"]["counts"]["sent"] == 645
    assert first["deliveries"] == first["unique_addresses"] == 645
    assert second["requests"] == first["requests"]  # the rerun found everyone sent


def test_a_channel_run_keeps_the_other_channels_output(
    prefect_harness: None, isolated: Path
) -> None:
    _run(isolated, approve=True, confirm=MANUAL)
    out = isolated / "outbox" / "eksempel-kommune"
    before = (out / "website" / "article.da.html").read_text(encoding="utf-8")
    record = _run(isolated, approve=True, channels=[Channel.SMS])
    assert (out / "website" / "article.da.html").read_text(encoding="utf-8") == before
    assert record["channels"]["website"]["status"] == "done"
    assert record["status"] == "complete"


def test_a_missing_audience_file_leaves_nothing_half_written(
    prefect_harness: None, isolated: Path, tmp_path: Path
) -> None:
    from tasks.errors import ConfigError

    with pytest.raises(ConfigError):
        communicate_externally(
            config_path=str(EXAMPLE_CONFIG),
            audience=str(tmp_path / "missing.csv"),
            output_root=str(isolated / "outbox"),
            approve=True,
        )
    assert not any((isolated / "outbox").iterdir()) if (isolated / "outbox").exists() else True


def test_another_municipality_config_runs_the_same_way(
    prefect_harness: None, isolated: Path
) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["municipality"] = {"name": "Andeby Kommune", "slug": "andeby-kommune"}
    data["payment"]["self_service"] = None
    data["channels"] = {"website": data["channels"]["website"], "sms": data["channels"]["sms"]}
    data["audience"] = {"file": str(EXAMPLE_AUDIENCE)}
    path = isolated / "andeby.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    record = communicate_externally(
        config_path=str(path),
        output_root=str(isolated / "outbox"),
        approve=True,
        confirm=["inform.website"],
    )
    assert record["status"] == "complete", record["reasons"]
    assert set(record["channels"]) == {"website", "sms"}


def test_a_prefetched_audience_is_taken_once_and_a_changed_file_is_read_again(
    prefect_harness: None, isolated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`fbsflow run` parses the borrowers while Prefect's temporary server boots (prefetch)."""
    config = load_municipality(EXAMPLE_CONFIG)
    csv = isolated / "borrowers.csv"
    shutil.copy(EXAMPLE_AUDIENCE, csv)
    assert prefetch_audience(config, str(EXAMPLE_CONFIG), str(csv))
    caplog.set_level(logging.INFO)
    record = communicate_externally(
        config_path=str(EXAMPLE_CONFIG),
        audience=str(csv),
        output_root=str(isolated / "outbox"),
        approve=True,
    )
    assert "read while Prefect was starting" in caplog.text
    assert not prefetch._prefetched  # handed over, not kept alive beside the flow's copy
    assert record["channels"]["newsletter"]["counts"]["sent"] == 645

    # Prefetched, then the export changes before the flow reads it: the new file is read.
    assert prefetch_audience(config, str(EXAMPLE_CONFIG), str(csv))
    with csv.open("a", encoding="utf-8", newline="") as fh:
        fh.write("1199999999;Ny Låner;ny.laaner@example.com;;Nej;Ja;da\r\n")
    caplog.clear()
    record = communicate_externally(
        config_path=str(EXAMPLE_CONFIG),
        audience=str(csv),
        output_root=str(isolated / "outbox"),
        approve=True,
    )
    assert "read while Prefect was starting" not in caplog.text
    assert not prefetch._prefetched
    assert record["channels"]["newsletter"]["counts"]["sent"] == 646

    # Rewritten to the same size with the old modification time put back (as `cp -p` does):
    # the change time still tells, and the file is read again.
    assert prefetch_audience(config, str(EXAMPLE_CONFIG), str(csv))
    before = csv.stat()
    data = csv.read_bytes().replace(b"ny.laaner@", b"ny.laanar@")
    csv.write_bytes(data)
    os.utime(csv, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert csv.stat().st_size == before.st_size and csv.stat().st_mtime_ns == before.st_mtime_ns
    caplog.clear()
    record = communicate_externally(
        config_path=str(EXAMPLE_CONFIG),
        audience=str(csv),
        output_root=str(isolated / "outbox"),
        approve=True,
    )
    assert "read while Prefect was starting" not in caplog.text
    assert record["channels"]["newsletter"]["counts"]["sent"] == 646
    requests = isolated / "outbox" / "eksempel-kommune" / "newsletter" / "requests"
    sent_to = "".join(p.read_text(encoding="utf-8") for p in requests.glob("*.json"))
    assert "ny.laanar@example.com" in sent_to and "ny.laaner@example.com" not in sent_to


def test_prefetch_leaves_a_broken_file_to_the_import_step(isolated: Path) -> None:
    config = load_municipality(EXAMPLE_CONFIG)
    empty = isolated / "empty.csv"
    empty.write_text("", encoding="utf-8")
    assert prefetch_audience(config, str(EXAMPLE_CONFIG), str(empty)) is False
    assert not prefetch._prefetched


# --- Runs that tell the truth: Danish final states, a rejection that sends nothing ---------------


def _paused_form(client: Any, flow_run_id: Any, after: str | None = None) -> tuple[str, str]:
    """Wait until the run pauses with a form saved (other than `after`); returns its
    description's key and the description."""
    deadline = time.monotonic() + 180
    while True:
        state = client.read_flow_run(flow_run_id).state
        assert state is None or not state.is_final(), f"ended as {state.name}: {state.message}"
        keyset = state.state_details.run_input_keyset if state and state.is_paused() else None
        if keyset and keyset["description"] != after:
            try:
                saved = client.read_flow_run_input(flow_run_id, keyset["description"])
                return keyset["description"], json.loads(saved)
            except Exception:
                pass  # paused, but the form is not saved yet
        assert time.monotonic() < deadline, "the run never paused"
        time.sleep(0.2)


def _in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    return thread, results


def _latest_run_id(client: Any, flow_name: str) -> Any:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    deadline = time.monotonic() + 120
    while True:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
        )
        running = [r for r in runs if r.state and not r.state.is_final()]
        if running:
            return running[0].id
        assert time.monotonic() < deadline, f"no {flow_name} run started"
        time.sleep(0.2)


@pytest.fixture
def server_mode(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness's server named in PREFECT_API_URL: runs pause for approval there."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("FBSFLOW_APPROVAL_POLL_SECONDS", "1")
    monkeypatch.setenv("FBSFLOW_APPROVAL_TIMEOUT", "300")


def test_a_rejected_run_ends_afvist_and_the_sink_receives_nothing_poster_emails_included(
    isolated: Path, server_mode: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    from tests.servers.gatewayapi_server import GatewayApiServer

    with SendGridServer(keep_bodies=False) as sendgrid, GatewayApiServer() as gateway:
        monkeypatch.setenv("SENDGRID_API_KEY", sendgrid.api_key)
        monkeypatch.setenv("SENDGRID_HOST", sendgrid.url)
        monkeypatch.setenv("GATEWAYAPI_TOKEN", gateway.token)
        monkeypatch.setenv("GATEWAYAPI_URL", gateway.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        # approve on, but no name: against a server that is no approval, the form is shown.
        thread, results = _in_thread(
            lambda: _run(isolated, approve=True, confirm=MANUAL, return_state=True)
        )
        with get_client(sync_client=True) as client:
            run_id = _latest_run_id(client, "communicate-externally")
            _, description = _paused_form(client, run_id)
            # The form states the numbers and links to the review artifact.
            assert "SMS: 348 låntagere" in description
            assert "Nyhedsbrev: 645 låntagere" in description
            assert "/artifacts/artifact/" in description
            [review] = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["eksempel-kommune-review"])
                ),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            )
            assert str(review.id) in description
            answer = client.resume_flow_run(
                run_id,
                run_input={"decision": "reject", "approved_by": "Åse", "comment": "Ret datoen"},
            )
            assert answer.status.value == "ACCEPT"
            thread.join(timeout=300)
            flow_run = client.read_flow_run(run_id)
        stats, sms_requests = sendgrid.stats(), gateway.requests
    [state] = results
    assert state.name == "Afvist" and state.is_cancelled() and not state.is_completed()
    assert state.message.startswith("Afvist af Åse: Ret datoen. Intet er sendt")
    assert flow_run.state.name == "Afvist"
    assert flow_run.name.startswith("Eksempel Kommune · hele kortet · ")
    assert stats["requests"] == 0 and sms_requests == 0  # the sink received nothing
    out = isolated / "outbox" / "eksempel-kommune"
    completion = json.loads((out / "completion.json").read_text(encoding="utf-8"))
    for channel in ("newsletter", "sms", "poster"):
        assert completion["channels"][channel]["status"] == "rejected", channel
    # Every message as it goes out: the SMS in full, the poster as a picture.
    sms_text = (out / "sms" / "sms.da.txt").read_text(encoding="utf-8").strip()
    assert sms_text in review.data
    assert "![Plakat, dansk](data:image/png;base64," in review.data


def test_an_incomplete_card_ends_waiting_and_done_records_name_and_note_in_completion(
    isolated: Path, server_mode: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Against a server, approve sends without the form only with a name.
    state = _run(isolated, approve=True, approved_by="Åse Sørensen", return_state=True)
    assert state.name == "Afventer bekræftelser" and state.name != "Completed"
    assert "inform.website" in state.message
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    with get_client(sync_client=True) as client:
        [status] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["eksempel-kommune-status"])),
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            ),
        )
    assert status.data.startswith("# Forbered og kommunikér eksternt: Afventer bekræftelser")
    assert all(f"- trin {step} er ikke bekræftet" in status.data for step in MANUAL)
    out = isolated / "outbox"
    done = ["done", str(EXAMPLE_CONFIG), "--output", str(out), "--by", "Åse Sørensen"]
    assert fbsflow([*done, *MANUAL[:2], "--note", "Publiceret kl. 9"]) == 0
    printed = capsys.readouterr().out
    assert "inform.website: done, Åse Sørensen (Publiceret kl. 9)" in printed
    completion = json.loads((out / "eksempel-kommune" / "completion.json").read_text("utf-8"))
    for step in MANUAL[:2]:
        recorded = completion["steps"][step]
        assert (recorded["by"], recorded["note"], recorded["how"]) == (
            "Åse Sørensen",
            "Publiceret kl. 9",
            "cli",
        )
    assert completion["status"] == "incomplete"
    assert set(completion["awaiting_confirmation"]) == set(MANUAL[2:])
    assert fbsflow([*done, *MANUAL[2:], "--note", "Alt er gjort"]) == 0
    completion = json.loads((out / "eksempel-kommune" / "completion.json").read_text("utf-8"))
    assert completion["status"] == "complete" and not completion["reasons"]
    assert completion["steps"]["mark-complete"]["state"] == "done"
    printed = capsys.readouterr().out
    assert "Kortet er fuldført." in printed
    # The card run, which ended waiting for these confirmations, now reads Fuldført too.
    assert "står nu som Fuldført i Prefect" in printed
    with get_client(sync_client=True) as client:
        settled = client.read_flow_run(state.state_details.flow_run_id).state
    assert settled.name == "Fuldført" and settled.is_completed()
    # An unknown step is the user's mistake: exit 2, nothing changed.
    assert fbsflow([*done, "inform.telefax"]) == 2


def _confirm_in_form(isolated: Path, run_input: dict[str, Any]) -> tuple[Any, str]:
    """A confirm-steps run, its form answered with `run_input`: (its final state, the form)."""
    from prefect.client.orchestration import get_client

    from flows.confirm_steps import confirm_steps

    thread, results = _in_thread(
        lambda: confirm_steps(
            config_path=str(EXAMPLE_CONFIG),
            output_root=str(isolated / "outbox"),
            return_state=True,
        )
    )
    with get_client(sync_client=True) as client:
        run_id = _latest_run_id(client, "confirm-steps")
        _, description = _paused_form(client, run_id)
        answer = client.resume_flow_run(run_id, run_input=run_input)
        assert answer.status.value == "ACCEPT"
        thread.join(timeout=120)
    [state] = results
    return state, description


def test_the_confirm_steps_form_records_who_did_what_and_completes_the_card_later(
    isolated: Path, server_mode: None
) -> None:
    from prefect.client.orchestration import get_client

    from tasks.approval import step_field

    card = _run(isolated, approve=True, approved_by="Åse Sørensen", return_state=True)
    assert card.name == "Afventer bekræftelser"  # ended, not paused for weeks
    first = {"inform.website", "inform.poster.soeby-bibliotek"}
    state, description = _confirm_in_form(
        isolated,
        {
            **{step_field(s): True for s in first},
            "confirmed_by": "Filialleder Bo",
            "note": "To plakater ved indgangen",
        },
    )
    assert "Bekræft manuelle trin" in description
    assert state.name == "Afventer bekræftelser"
    path = isolated / "outbox" / "eksempel-kommune" / "completion.json"
    completion = json.loads(path.read_text(encoding="utf-8"))
    for step in first:
        recorded = completion["steps"][step]
        assert (recorded["state"], recorded["by"], recorded["note"], recorded["how"]) == (
            "done",
            "Filialleder Bo",
            "To plakater ved indgangen",
            "prefect-form",
        )
    assert set(completion["awaiting_confirmation"]) == set(MANUAL) - first

    # The rest, weeks later: the card is complete, and so is its card run in the UI.
    rest = {step_field(s): True for s in set(MANUAL) - first}
    state, _ = _confirm_in_form(isolated, {**rest, "confirmed_by": "Åse Sørensen"})
    assert state.name == "Fuldført" and state.is_completed()
    completion = json.loads(path.read_text(encoding="utf-8"))
    assert completion["status"] == "complete" and not completion["awaiting_confirmation"]
    assert completion["steps"]["inform.website"]["by"] == "Filialleder Bo"  # kept as typed
    with get_client(sync_client=True) as client:
        settled = client.read_flow_run(card.state_details.flow_run_id).state
    assert settled.name == "Fuldført" and settled.is_completed()


def test_a_users_mistake_is_the_failed_states_one_line_message(
    prefect_harness: None, isolated: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = isolated / "nope.csv"
    state = communicate_externally(
        config_path=str(EXAMPLE_CONFIG),
        audience=str(missing),
        output_root=str(isolated / "outbox"),
        approve=True,
        return_state=True,
    )
    assert state.is_failed() and state.name == "Fejl i opsætningen"
    assert str(missing) in state.message and "\n" not in state.message
    assert "Traceback" not in state.message and "encountered an exception" not in state.message
    # Found before any task ran: no task's traceback in the run's log either.
    assert "Traceback" not in caplog.text and str(missing) in caplog.text


def test_a_channel_run_ends_in_the_card_runs_state_with_a_readable_name(
    prefect_harness: None, isolated: Path
) -> None:
    from prefect.client.orchestration import get_client

    from flows.inform_channel import inform_channel

    state = inform_channel(
        config_path=str(EXAMPLE_CONFIG),
        channel=Channel.WEBSITE,
        output_root=str(isolated / "outbox"),
        return_state=True,
    )
    assert state.name == "Afventer bekræftelser" and "inform.website" in state.message
    record = state.result()
    assert record["channels"]["website"]["status"] == "done"
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.name.startswith("Eksempel Kommune · website · ")
    assert flow_run.state.name == "Afventer bekræftelser"
