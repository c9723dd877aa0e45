"""The outbox provider: it writes the request body the provider it mirrors would have received."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tasks.errors import UnsupportedFeatureError
from tasks.models import Channel, Language, NewsletterSettings, SmsSettings
from tasks.output import PRIVATE_FOLDER, PrivateFiles
from tasks.providers.base import Message, Recipient
from tasks.providers.gatewayapi import GatewayApiProvider
from tasks.providers.outbox import OutboxProvider
from tasks.providers.sendgrid import SendGridProvider
from tests.providers import outcomes

NEWSLETTER = NewsletterSettings.model_construct(
    from_email="bibliotek@eksempel-kommune.dk", from_name="Eksempel Bibliotekerne"
)
SMS_SETTINGS = SmsSettings(sender="EksBibl", max_parts=3)
EMAIL = Message(Channel.NEWSLETTER, Language.DA, "Kære låner", subject="Nyt om gebyrer")
SMS = Message(Channel.SMS, Language.DA, "Kære låner: nyt om gebyrer")
BORROWERS = [Recipient("k1", "anna@eksempel.test"), Recipient("k2", "bo@eksempel.test")]
MOBILES = [Recipient("k1", "+4520000001"), Recipient("k2", "+4520000002")]


def test_an_e_mail_batch_is_written_as_sendgrids_request_body(tmp_path: Path) -> None:
    files = PrivateFiles(tmp_path)
    outbox = OutboxProvider(files, "newsletter", mirrors=SendGridProvider, settings=NEWSLETTER)
    result = outbox.send_batch(EMAIL, BORROWERS, campaign="c-2026", batch_id="b1")

    assert result.statuses == {"k1": "sent", "k2": "sent"}
    assert result.provider_ids == ["da-b1.json"]
    [path] = files.publish(tmp_path / "out")
    assert path == tmp_path / "out" / "newsletter" / PRIVATE_FOLDER / "da-b1.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds addresses
    expected = SendGridProvider.document(
        NEWSLETTER, EMAIL, BORROWERS, campaign="c-2026", batch_id="b1"
    )
    assert path.read_bytes() == json.dumps(expected, ensure_ascii=False, indent=1).encode()


def test_an_sms_batch_is_written_as_gatewayapis_request_body(tmp_path: Path) -> None:
    files = PrivateFiles(tmp_path)
    outbox = OutboxProvider(files, "sms", mirrors=GatewayApiProvider, settings=SMS_SETTINGS)
    outbox.send_batch(SMS, MOBILES, campaign="c-2026", batch_id="b2")

    [path] = files.publish(tmp_path / "out")
    body = json.loads(path.read_bytes())
    assert body["recipients"] == [{"msisdn": 4520000001}, {"msisdn": 4520000002}]
    assert body["sender"] == "EksBibl" and body["max_parts"] == 3
    assert body["userref"] == "c-2026:b2"


def test_it_takes_the_batches_and_message_parts_of_the_provider_it_mirrors(tmp_path: Path) -> None:
    email = OutboxProvider(PrivateFiles(tmp_path), "newsletter", mirrors=SendGridProvider, settings=NEWSLETTER)  # fmt: skip
    sms = OutboxProvider(PrivateFiles(tmp_path), "sms", mirrors=GatewayApiProvider, settings=SMS_SETTINGS)  # fmt: skip
    assert (email.max_batch, sms.max_batch) == (1000, 10_000)
    assert email.carries == SendGridProvider.carries and sms.carries == frozenset()

    files = PrivateFiles(tmp_path)
    sms = OutboxProvider(files, "sms", mirrors=GatewayApiProvider, settings=SMS_SETTINGS)
    with pytest.raises(UnsupportedFeatureError, match="html"):
        sms.send_batch(
            Message(Channel.SMS, Language.DA, "Hej", html="<p>Hej</p>"), MOBILES,
            campaign="c", batch_id="b",
        )  # fmt: skip
    assert files.publish(tmp_path / "out") == []  # nothing written, as GatewayAPI sends nothing


def _stage(situation: str, folder: Path) -> OutboxProvider:
    if situation == "outbox folder cannot be written":
        blocker = folder / "not-a-folder"
        blocker.write_text("a file where the outbox folder should be")
        folder = blocker / "private"
    else:
        assert situation == "accepted", f"no way to stage {situation!r} for the outbox"
    files = PrivateFiles(folder)
    return OutboxProvider(files, "newsletter", mirrors=SendGridProvider, settings=NEWSLETTER)


@pytest.mark.parametrize(("situation", "expected"), outcomes.rows("outbox"))
def test_every_outcome_is_classified_as_the_table_says(
    situation: str, expected: outcomes.Outcome, tmp_path: Path
) -> None:
    outbox = _stage(situation, tmp_path)
    got = outcomes.observe(
        lambda: outbox.send_batch(EMAIL, BORROWERS, campaign="c", batch_id="b"), BORROWERS[-1]
    )
    assert got == expected
