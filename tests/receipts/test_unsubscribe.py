"""One-click unsubscribe (RFC 8058): headers only when the config gives the URL, on both e-mail
paths; the newsletter's unsubscribe line likewise; the SMS gets no opt-out line."""

from __future__ import annotations

import email
import email.policy

import yaml

from tasks.channels import render_channel
from tasks.config import load_municipality
from tasks.models import Channel, Language
from tasks.providers.base import Message, Recipient
from tasks.providers.sendgrid import build_payload
from tasks.providers.smtp import SmtpProvider
from tests.conftest import EXAMPLE_CONFIG

URL = "https://bibliotek.eksempel.dk/afmeld"
MESSAGE = Message(Channel.NEWSLETTER, Language.DA, text="Hej", subject="Nyt")
TO = [Recipient("k1", "a@example.test")]


def test_the_sendgrid_request_carries_list_unsubscribe_only_with_a_url() -> None:
    common = {"from_email": "n@example.test", "from_name": "B", "campaign": "c", "batch_id": "b"}
    with_url = build_payload(MESSAGE, TO, unsubscribe_url=URL, unsubscribe_group_id=7, **common)
    assert with_url["headers"] == {
        "List-Unsubscribe": f"<{URL}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert with_url["asm"] == {"group_id": 7}
    assert "headers" not in build_payload(MESSAGE, TO, **common)


def test_the_smtp_message_carries_the_same_headers() -> None:
    provider = SmtpProvider(
        "127.0.0.1", from_email="n@example.test", from_name="B", unsubscribe_url=URL
    )
    raw = provider._render(MESSAGE, "c", "b")
    parsed = email.message_from_bytes(raw[: -len(b".\r\n")], policy=email.policy.SMTP)
    assert parsed["List-Unsubscribe"] == f"<{URL}>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    bare = SmtpProvider("127.0.0.1", from_email="n@example.test", from_name="B")
    assert b"List-Unsubscribe" not in bare._render(MESSAGE, "c", "b")


def test_the_unsubscribe_line_is_there_only_when_the_config_gives_the_url(tmp_path) -> None:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    plain = load_municipality(EXAMPLE_CONFIG)
    without = render_channel(Channel.NEWSLETTER, plain)
    assert all(
        "fmeld" not in m.text and "nsubscribe" not in m.text for m in without.messages.values()
    )
    data["channels"]["newsletter"]["unsubscribe_url"] = URL
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    config = load_municipality(path)
    content = render_channel(Channel.NEWSLETTER, config)
    assert "Afmeld nyhedsbrevet" in content.messages[Language.DA].text
    assert URL in content.messages[Language.DA].html
    if Language.EN in content.messages:
        assert "Unsubscribe here" in content.messages[Language.EN].text
    sms = render_channel(Channel.SMS, config)
    assert all("fmeld" not in m.text for m in sms.messages.values())
