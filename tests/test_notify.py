"""Failure notice: scrubbed message, sent via the SendGrid stand-in, an aiosmtpd relay, or a .eml file."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from prefect import flow
from prefect.client.schemas.objects import FlowRun
from prefect.states import Crashed, Failed

from tasks.notify import build_notice, failure_notice, scrub_personal_data
from tests.servers.sendgrid_server import SendGridServer

from .conftest import EXAMPLE_CONFIG

LEADER = "projektleder@eksempel-kommune.test"
BORROWER_EMAIL = "karen.jensen@borger.test"
BORROWER_PHONES = ("+45 12 34 56 78", "87654321")
STATE_MESSAGE = (
    "Flow run encountered an exception: PermanentError: row 17 "
    f"({BORROWER_EMAIL}, {BORROWER_PHONES[0]}) refused; retry of {BORROWER_PHONES[1]} failed "
    "on 2026-12-14 at 09:15:00 after 3 attempts"
)


@flow(name="communicate-externally")
def _named_flow() -> None:
    """Stands in for the real flow: the hook reads only its name."""


def make_run(tmp_path: Path, **parameters: Any) -> FlowRun:
    return FlowRun(
        flow_id=uuid.uuid4(),
        name="gentle-otter",
        parameters={"config_path": str(EXAMPLE_CONFIG), "output_root": str(tmp_path), **parameters},
    )


def assert_scrubbed(text: str) -> None:
    assert BORROWER_EMAIL not in text
    for phone in BORROWER_PHONES:
        assert phone not in text and phone.replace(" ", "") not in text.replace(" ", "")
    assert "<e-mail>" in text and text.count("<phone>") == 2
    # What the leader needs stays readable.
    assert "row 17" in text and "2026-12-14 at 09:15:00" in text and "3 attempts" in text


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours proxy variables; the stand-in must be reached directly.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# --- Scrubbing and the text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail til anna@eksempel.test nu", "mail til <e-mail> nu"),
        ("<ole.hansen+lib@sub.eksempel.dk>", "<<e-mail>>"),
        ("ring 12 34 56 78", "ring <phone>"),
        ("ring +45 12345678.", "ring <phone>."),
        ("msisdn 4512345678", "msisdn <phone>"),
        ("tlf. 12-34-56-78", "tlf. <phone>"),
        ("(+45) 1234 5678", "(<phone>"),
        ("go-live 2026-12-14, 3 rows", "go-live 2026-12-14, 3 rows"),
        ("1200 sent, 17 failed at 09:15:00", "1200 sent, 17 failed at 09:15:00"),
        (
            "batch-0007 of campaign eksempel-kommune-2026",
            "batch-0007 of campaign eksempel-kommune-2026",
        ),
    ],
)
def test_scrub_personal_data(text: str, expected: str) -> None:
    assert scrub_personal_data(text) == expected


def test_notice_text_names_flow_run_and_municipality(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    subject, body = build_notice(
        _named_flow,
        run,
        Failed(message=STATE_MESSAGE),
        env={"PREFECT_UI_URL": "https://prefect.eksempel-kommune.test/"},
    )
    assert subject == "fbsflow: communicate-externally fejlede for Eksempel Kommune"
    assert "gentle-otter" in body and str(run.id) in body and "Failed" in body
    assert f"Åbn kørslen: https://prefect.eksempel-kommune.test/runs/flow-run/{run.id}" in body
    assert "Kørslen er stoppet" in body and "Tidspunkt: " in body
    assert_scrubbed(body)

    _, without_ui = build_notice(_named_flow, run, Failed(message="x"), env={})
    assert "/runs/flow-run/" not in without_ui and "PREFECT_UI_URL" in without_ui

    # Without PREFECT_UI_URL, the UI beside the API the run was on.
    _, api_only = build_notice(
        _named_flow, run, Failed(message="x"), env={"PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    )
    assert f"Åbn kørslen: http://127.0.0.1:4200/runs/flow-run/{run.id}" in api_only


def test_the_notice_gives_the_time_in_copenhagen_in_danish(tmp_path: Path) -> None:
    import re
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from babel.dates import format_datetime

    before = datetime.now(ZoneInfo("Europe/Copenhagen"))
    _, body = build_notice(_named_flow, make_run(tmp_path), Failed(message="x"), env={})
    [line] = [line for line in body.splitlines() if line.startswith("Tidspunkt: ")]
    # "Tidspunkt: 7. dec. 2026 kl. 00.30": Copenhagen's wall clock, Danish month, no UTC.
    assert re.fullmatch(r"Tidspunkt: \d{1,2}\. \w+\.? \d{4} kl\. \d{2}\.\d{2}", line), line
    after = datetime.now(ZoneInfo("Europe/Copenhagen"))
    month = format_datetime(before, "MMM", locale="da_DK")
    assert month in line and "UTC" not in body
    assert f"kl. {before:%H}." in line or f"kl. {after:%H}." in line


def test_an_operator_who_chose_english_gets_the_notice_in_english(tmp_path: Path) -> None:
    from .channels.helpers import write_variant

    config = write_variant(tmp_path, {"operator_language": "en"})
    run = make_run(tmp_path, config_path=str(config))
    subject, body = build_notice(_named_flow, run, Failed(message="x"), env={})
    assert subject == "fbsflow: communicate-externally failed for Eksempel Kommune"
    assert "This run has stopped" in body and "Time: " in body


def test_a_broken_config_still_names_the_municipality_by_file(tmp_path: Path) -> None:
    broken = tmp_path / "roskilde.yaml"
    broken.write_text("municipality: [", encoding="utf-8")
    subject, _ = build_notice(
        _named_flow, make_run(tmp_path, config_path=str(broken)), Crashed(message="boom"), env={}
    )
    assert subject == "fbsflow: communicate-externally fejlede for roskilde"


# --- Where it goes -----------------------------------------------------------------------------


def test_without_a_recipient_nothing_is_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tasks.notify"):
        assert failure_notice(_named_flow, make_run(tmp_path), Failed(message="x"), env={}) is None
    assert "FBSFLOW_NOTIFY_EMAIL is not set" in caplog.text
    assert not any(tmp_path.rglob("*.eml"))


def read_eml(path: Path) -> EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_without_a_provider_it_is_written_to_the_outbox(tmp_path: Path) -> None:
    where = failure_notice(
        _named_flow,
        make_run(tmp_path),
        Failed(message=STATE_MESSAGE),
        env={"FBSFLOW_NOTIFY_EMAIL": LEADER},
    )
    files = list((tmp_path / "_notices").glob("*.eml"))
    assert [str(f) for f in files] == [where]
    mail = read_eml(files[0])
    assert mail["To"] == LEADER
    assert mail["Subject"] == "fbsflow: communicate-externally fejlede for Eksempel Kommune"
    assert_scrubbed(mail.get_content())


def test_sendgrid_stand_in_receives_it_scrubbed(tmp_path: Path) -> None:
    with SendGridServer() as server:
        env = {
            "FBSFLOW_NOTIFY_EMAIL": LEADER,
            "SENDGRID_API_KEY": server.api_key,
            "SENDGRID_HOST": server.url,
        }
        where = failure_notice(
            _named_flow, make_run(tmp_path), Failed(message=STATE_MESSAGE), env=env
        )
    assert where == "sendgrid"
    assert server.deliveries == {LEADER: 1}
    body = server.requests[0].body
    assert body is not None
    assert body["subject"] == "fbsflow: communicate-externally fejlede for Eksempel Kommune"
    # The newsletter's sender from the config: the address SendGrid has verified.
    assert body["from"]["email"] == "nyhedsbrev@bibliotek.eksempel.dk"
    assert_scrubbed(body["content"][0]["value"])
    assert BORROWER_EMAIL not in str(body)
    assert not any(tmp_path.rglob("*.eml"))


def test_a_refused_notice_falls_back_to_a_file_and_never_raises(tmp_path: Path) -> None:
    with SendGridServer() as server:
        env = {
            "FBSFLOW_NOTIFY_EMAIL": LEADER,
            "SENDGRID_API_KEY": "SG.wrong-key",
            "SENDGRID_HOST": server.url,
            "FBSFLOW_NOTIFY_FROM": "drift@eksempel-kommune.test",
        }
        where = failure_notice(
            _named_flow, make_run(tmp_path), Failed(message=STATE_MESSAGE), env=env
        )
    assert server.deliveries == {}
    assert [r.status for r in server.requests] == [401]  # reached SendGrid, key refused
    assert where is not None and where.endswith(".eml")
    assert read_eml(Path(where))["From"].addresses[0].addr_spec == "drift@eksempel-kommune.test"


def test_nothing_it_meets_makes_it_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")  # the outbox root is a file: writing the notice must fail
    run = make_run(tmp_path, output_root=str(blocked), config_path=None)
    with caplog.at_level(logging.WARNING, logger="tasks.notify"):
        assert (
            failure_notice(
                _named_flow,
                run,
                Failed(message=STATE_MESSAGE),
                env={"FBSFLOW_NOTIFY_EMAIL": LEADER},
            )
            is None
        )
    assert "could not be made (NotADirectoryError" in caplog.text
    assert BORROWER_EMAIL not in caplog.text

    # No flow, run or state, and an SMTP setting that is wrong: still a notice, in ./outbox.
    monkeypatch.chdir(tmp_path)
    env = {
        "FBSFLOW_NOTIFY_EMAIL": LEADER,
        "FBSFLOW_SMTP_HOST": "127.0.0.1",
        "FBSFLOW_SMTP_PORT": "x",
        "FBSFLOW_NOTIFY_FROM": "drift@eksempel-kommune.test",
    }
    where = failure_notice(None, None, None, env=env)
    assert where is not None and Path(where).parent == Path("outbox/_notices")
    assert "ukendt kommune" in read_eml(tmp_path / where)["Subject"]
    assert "FBSFLOW_SMTP_PORT" in caplog.text  # the provider's ConfigError names the fix


class _Relay:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Queued"


@pytest.fixture
def relay() -> Iterator[tuple[_Relay, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = _Relay()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def test_smtp_relay_receives_it_scrubbed(tmp_path: Path, relay: tuple[_Relay, int]) -> None:
    handler, port = relay
    env = {
        "FBSFLOW_NOTIFY_EMAIL": LEADER,
        "FBSFLOW_SMTP_HOST": "127.0.0.1",
        "FBSFLOW_SMTP_PORT": str(port),
        "FBSFLOW_SMTP_STARTTLS": "false",  # the local relay speaks plain SMTP
    }
    where = failure_notice(_named_flow, make_run(tmp_path), Crashed(message=STATE_MESSAGE), env=env)
    assert where == "smtp"
    assert [rcpts for rcpts, _ in handler.messages] == [[LEADER]]
    mail = email.message_from_bytes(handler.messages[0][1], policy=email.policy.default)
    assert mail["Subject"] == "fbsflow: communicate-externally fejlede for Eksempel Kommune"
    text = mail.get_body(("plain",)).get_content()
    assert "Crashed" in text
    assert_scrubbed(text)


# --- As a hook on a real flow run -----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_hook_on_a_failing_flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBSFLOW_NOTIFY_EMAIL", LEADER)
    for name in ("SENDGRID_API_KEY", "FBSFLOW_SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)

    @flow(name="communicate-externally", on_failure=[failure_notice], on_crashed=[failure_notice])
    def failing(config_path: str, output_root: str) -> None:
        raise ValueError(f"row 17 ({BORROWER_EMAIL}, {BORROWER_PHONES[0]}) is broken")

    state = failing(str(EXAMPLE_CONFIG), str(tmp_path), return_state=True)
    assert state.is_failed()
    files = list((tmp_path / "_notices").glob("*.eml"))
    assert len(files) == 1
    text = read_eml(files[0]).get_content()
    assert "Eksempel Kommune" in text and "ValueError" in text
    assert BORROWER_EMAIL not in text and BORROWER_PHONES[0] not in text
    assert "<e-mail>" in text and "<phone>" in text
