"""Errors raised before anything left this machine put the batch back to pending, never `unknown`.

A key with a stray carriage return, a sender name with a line break, an untrusted certificate or
an unwritable outbox sent nothing; recording such a batch as "may have been delivered" would let
`--accept-unknown` record never-sent mail as delivered. Each row goes through the delivery worker
and the real provider against a local stand-in: the right error, every recipient pending, nothing
received, and no secret or address in the message.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tasks.delivery import RetryPolicy, deliver_chunk
from tasks.errors import ConfigError, FbsflowError, TransientError
from tasks.ledger import Ledger
from tasks.models import Channel, Language, NewsletterSettings, SmsSettings
from tasks.output import PrivateFiles
from tasks.providers.base import Message, Provider, Recipient
from tasks.providers.gatewayapi import GatewayApiProvider
from tasks.providers.outbox import OutboxProvider
from tasks.providers.sendgrid import SendGridProvider
from tasks.providers.smtp import SmtpProvider
from tests.servers.gatewayapi_server import GatewayApiServer
from tests.servers.sendgrid_server import SendGridServer
from tests.servers.smtp_relays import SinkRelay
from tests.support.tls import self_signed

KEY = b"not-sent-test-key-0123456789abcdef"
CAMPAIGN = "eksempel-kommune-2026"
EMAIL = Message(Channel.NEWSLETTER, Language.DA, "Sådan betaler du nu", subject="Nyt om gebyrer")
SMS = Message(Channel.SMS, Language.DA, "Sådan betaler du gebyrer nu")
SENDER = {"from_email": "bibliotek@eksempel-kommune.test", "from_name": "Eksempel Bibliotekerne"}
INJECTED = "Eksempel Bibliotekerne\r\nBcc: alle@example.test"


@dataclass
class StandIns:
    sendgrid: SendGridServer
    gatewayapi: GatewayApiServer
    relay: SinkRelay
    untrusted_url: str  # HTTPS with a certificate nobody here trusts
    folder: Path

    def received(self) -> int:
        return (
            self.sendgrid.stats()["requests"]
            + self.gatewayapi.requests
            + self.relay.deliveries.total()
        )


@contextlib.contextmanager
def untrusted_https(folder: Path) -> Iterator[str]:
    """A TLS listener with a self-signed certificate: clients give up in the handshake."""
    cert, key = self_signed(folder, "untrusted")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            with contextlib.suppress(OSError):  # timeouts, and every refused handshake
                conn, _ = listener.accept()
                with context.wrap_socket(conn, server_side=True):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIns]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with (
        SendGridServer(keep_bodies=False) as sendgrid,
        GatewayApiServer() as gateway,
        SinkRelay() as relay,
        untrusted_https(tmp_path) as untrusted,
    ):
        yield StandIns(sendgrid, gateway, relay, untrusted, tmp_path)


def sendgrid(s: StandIns, api_key: str | None = None, **overrides: str) -> SendGridProvider:
    options = {**SENDER, **overrides}
    return SendGridProvider(api_key or s.sendgrid.api_key, host=s.sendgrid.url, **options)


def smtp(s: StandIns, **overrides: str) -> SmtpProvider:
    return SmtpProvider("127.0.0.1", s.relay.port, starttls=False, **{**SENDER, **overrides})


def gateway(s: StandIns, token: str | None = None, url: str | None = None) -> GatewayApiProvider:
    env = {"GATEWAYAPI_TOKEN": token or s.gatewayapi.token, "GATEWAYAPI_URL": url or ""}
    return GatewayApiProvider.from_env(SmsSettings(sender="EksBibl"), env)


def unwritable_outbox(s: StandIns) -> OutboxProvider:
    blocker = s.folder / "not-a-folder"
    blocker.write_text("a file where the outbox folder should be")

    settings = NewsletterSettings.model_construct(**SENDER)  # .test is no real domain
    files = PrivateFiles(blocker / "private")
    return OutboxProvider(files, "newsletter", mirrors=SendGridProvider, settings=settings)


@dataclass(frozen=True)
class Case:
    make: Callable[[StandIns], Provider]
    error: type[FbsflowError]
    says: str  # in the message
    message: Message = EMAIL
    secret: str = ""  # must not be in the message


CASES = {
    "sendgrid key ends in a carriage return": Case(
        lambda s: sendgrid(s, api_key=s.sendgrid.api_key + "\r"),
        ConfigError,
        "SENDGRID_API_KEY holds a carriage return",
        secret="stand-in-test-key",
    ),
    "sendgrid key holds a space": Case(
        lambda s: sendgrid(s, api_key="SG.abc def"), ConfigError, "holds a space", secret="abc"
    ),
    "sendgrid sender name adds a Bcc header": Case(
        lambda s: sendgrid(s, from_name=INJECTED), ConfigError, "from_name holds a carriage"
    ),
    "sendgrid subject holds a control character": Case(
        sendgrid,
        ConfigError,
        "subject holds the character U+0007",
        message=replace(EMAIL, subject="Nyt om\x07 gebyrer"),
    ),
    "smtp sender name adds a Bcc header": Case(
        lambda s: smtp(s, from_name=INJECTED), ConfigError, "from_name holds a carriage"
    ),
    "smtp subject holds a line break": Case(
        smtp,
        ConfigError,
        "subject holds a line feed",
        message=replace(EMAIL, subject="Nyt\nBcc: alle@example.test"),
    ),
    "gatewayapi token ends in a carriage return": Case(
        lambda s: gateway(s, token=s.gatewayapi.token + "\r"),
        ConfigError,
        "GATEWAYAPI_TOKEN holds a carriage return (\\r) at the end",
        message=SMS,
        secret="test-token",
    ),
    "gatewayapi certificate not trusted": Case(
        lambda s: gateway(s, url=s.untrusted_url),
        ConfigError,
        "SSL_CERT_FILE",
        message=SMS,
    ),
    "outbox folder cannot be written": Case(unwritable_outbox, TransientError, "outbox could not"),
}


@pytest.mark.parametrize("name", CASES)
def test_an_error_before_sending_leaves_every_recipient_pending(
    stand_ins: StandIns, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    sms = case.message.channel is Channel.SMS
    addresses = [f"+4520{i:06d}" if sms else f"borger{i}@example.dk" for i in range(12)]
    with Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", key=KEY) as ledger:
        recipients = [Recipient(ledger.recipient_key(a), a) for a in addresses]
        channel = case.message.channel.value
        ledger.register(CAMPAIGN, channel, [r.key for r in recipients])
        with pytest.raises(case.error, match=re.escape(case.says)) as raised:
            provider = case.make(stand_ins)
            try:
                deliver_chunk(
                    provider, ledger, {Language.DA: case.message}, recipients,
                    campaign=CAMPAIGN, channel=channel, run_id="run-1",
                    retry=RetryPolicy(attempts=2, base=0.0, jitter=0.0),
                )  # fmt: skip
            finally:
                provider.close()
        counts = ledger.counts(CAMPAIGN, channel)
    assert counts["pending"] == len(recipients) and counts["unknown"] == 0
    assert stand_ins.received() == 0
    text = str(raised.value) + repr(raised.value)
    assert "@" not in text and "+4520" not in text
    if case.secret:
        assert case.secret not in text


def test_a_ca_file_that_cannot_be_loaded_stops_gatewayapi_with_the_fix(
    stand_ins: StandIns, monkeypatch: pytest.MonkeyPatch
) -> None:
    garbage = stand_ins.folder / "ca.pem"
    garbage.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(garbage))
    with pytest.raises(ConfigError, match="SSL_CERT_FILE"):
        gateway(stand_ins)
