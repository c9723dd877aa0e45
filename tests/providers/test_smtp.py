"""SMTP provider tests against a real aiosmtpd relay on 127.0.0.1 (STARTTLS and AUTH included)."""

from __future__ import annotations

import email
import email.policy
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import ConfigError, TransientError, UnsupportedFeatureError
from tasks.models import Channel, Language, NewsletterSettings
from tasks.providers.base import BatchResult, DeliveryStatus, Message, Recipient
from tasks.providers.smtp import SmtpProvider
from tests.providers import outcomes
from tests.servers.smtp_relays import ScriptedRelay as Relay
from tests.servers.smtp_relays import SilentRelay, free_port
from tests.support.tls import self_signed

SUBJECT = "Sådan betaler du gæld til biblioteket fra nu af"
TEXT = "Kære låner. Gebyrer for sen aflevering betaler du nu til kommunen. Læs mere på vores side."
HTML = "<p>Kære låner. Gebyrer for <strong>sen aflevering</strong> betaler du nu til kommunen.</p>"
MESSAGE = Message(Channel.NEWSLETTER, Language.DA, text=TEXT, subject=SUBJECT, html=HTML)
USER, PASSWORD = "fbsflow", "hemmeligt-kodeord"


def recipients(*names: str) -> list[Recipient]:
    return [Recipient(key=f"k-{n}", address=f"{n}@eksempel.test") for n in names]


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    with Relay() as handler:
        yield handler, handler.port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made at test time and trusted only by the tests."""
    return self_signed(tmp_path_factory.mktemp("tls"), "relay")


@pytest.fixture
def tls_relay(certificate: tuple[Path, Path]) -> Iterator[tuple[Relay, int]]:
    cert_path, key_path = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    with Relay(tls=server_context, login=(USER, PASSWORD)) as handler:
        yield handler, handler.port


def make_provider(port: int, **overrides: Any) -> SmtpProvider:
    options: dict[str, Any] = {
        "starttls": False,
        "from_email": "bibliotek@eksempel-kommune.test",
        "from_name": "Eksempel Bibliotekerne",
        "timeout": 5,
    }
    options.update(overrides)
    return SmtpProvider("127.0.0.1", port, **options)


def send(provider: SmtpProvider, batch: list[Recipient]) -> BatchResult:
    return provider.send_batch(MESSAGE, batch, campaign="debitor-2026", batch_id="b-0001")


# --- Happy path ------------------------------------------------------------------------------


def test_one_connection_carries_every_message_across_batches(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    provider = make_provider(port)
    first, second = recipients("anna", "bo", "carl"), recipients("dorte", "erik")
    try:
        result = send(provider, first)
        send(provider, second)
    finally:
        provider.close()

    assert result.statuses == dict.fromkeys(("k-anna", "k-bo", "k-carl"), DeliveryStatus.SENT)
    assert len(result.provider_ids) == 3
    assert handler.deliveries == Counter(r.address for r in first + second)
    assert len(handler.connections) == 1


def test_each_copy_has_only_its_own_recipient_and_both_parts_in_danish(
    relay: tuple[Relay, int],
) -> None:
    handler, port = relay
    provider = make_provider(port)
    result = send(provider, recipients("anna", "bo"))
    provider.close()

    raw = handler.messages["anna@eksempel.test"]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"] == "anna@eksempel.test"
    assert b"bo@eksempel.test" not in raw
    assert parsed["Subject"] == SUBJECT
    assert parsed["Message-ID"] == result.provider_ids[0]
    assert parsed["X-Fbsflow-Campaign"] == "debitor-2026"
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert parsed.get_body(("plain",)).get_content().strip() == TEXT
    assert "<strong>sen aflevering</strong>" in parsed.get_body(("html",)).get_content()
    assert max(raw) < 128  # quoted-printable: æøå survive relays without 8BITMIME


# --- Per-recipient refusals ------------------------------------------------------------------


def test_550_on_rcpt_fails_that_recipient_only(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    handler.rcpt_replies["bo@eksempel.test"] = "550 5.1.1 <bo@eksempel.test>: no such user"
    provider = make_provider(port)
    result = send(provider, recipients("anna", "bo", "carl"))
    provider.close()

    assert result.statuses == {
        "k-anna": DeliveryStatus.SENT,
        "k-bo": DeliveryStatus.FAILED,
        "k-carl": DeliveryStatus.SENT,
    }
    assert "550 x1" in result.detail
    assert "@" not in result.detail
    assert handler.deliveries == Counter({"anna@eksempel.test": 1, "carl@eksempel.test": 1})


def test_451_on_rcpt_leaves_that_recipient_unsent_for_a_retry(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    handler.rcpt_replies["bo@eksempel.test"] = "451 4.7.1 try again later"
    provider = make_provider(port)
    result = send(provider, recipients("anna", "bo"))
    assert result.statuses == {"k-anna": DeliveryStatus.SENT, "k-bo": DeliveryStatus.DEFERRED}
    assert "deferred 1 (451 x1)" in result.detail

    del handler.rcpt_replies["bo@eksempel.test"]
    retry = send(provider, recipients("bo"))
    provider.close()
    assert retry.statuses == {"k-bo": DeliveryStatus.SENT}
    assert handler.deliveries == Counter({"anna@eksempel.test": 1, "bo@eksempel.test": 1})


def test_a_batch_where_everyone_is_deferred_is_transient(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    handler.rcpt_replies["anna@eksempel.test"] = "452 4.5.3 too many recipients today"
    with pytest.raises(TransientError, match="accepted nothing"):
        send(make_provider(port), recipients("anna"))
    assert handler.deliveries == Counter()


def test_an_address_that_could_inject_headers_is_failed_without_sending(
    relay: tuple[Relay, int],
) -> None:
    handler, port = relay
    batch = [Recipient("k-x", "x@eksempel.test\r\nBcc: y@eksempel.test"), *recipients("anna")]
    result = send(make_provider(port), batch)
    assert result.statuses == {"k-x": DeliveryStatus.FAILED, "k-anna": DeliveryStatus.SENT}
    assert handler.deliveries == Counter({"anna@eksempel.test": 1})


# --- Connection lost mid-batch ---------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [False, True])
def test_lost_connection_splits_the_batch_into_sent_unknown_and_unsent(
    relay: tuple[Relay, int], pipelining: bool
) -> None:
    handler, port = relay
    handler.pipelining = pipelining
    handler.hang_up_after_data.add("carl@eksempel.test")
    provider = make_provider(port)
    result = send(provider, recipients("anna", "bo", "carl", "dorte"))

    assert result.statuses == {
        "k-anna": DeliveryStatus.SENT,
        "k-bo": DeliveryStatus.SENT,
        "k-carl": DeliveryStatus.UNKNOWN,  # the relay had it; its answer never came
        "k-dorte": DeliveryStatus.DEFERRED,  # never attempted: safe to send later
    }
    assert "1 not attempted" in result.detail
    # The relay did deliver carl: re-sending UNKNOWN automatically would duplicate.
    assert handler.deliveries == Counter(
        {"anna@eksempel.test": 1, "bo@eksempel.test": 1, "carl@eksempel.test": 1}
    )

    # The next batch opens a fresh connection by itself.
    send(provider, recipients("dorte"))
    provider.close()
    assert handler.deliveries["dorte@eksempel.test"] == 1
    assert len(handler.connections) == 2


def test_unreachable_relay_is_transient() -> None:
    with pytest.raises(TransientError, match="not reached") as raised:
        send(make_provider(free_port()), recipients("anna"))
    assert raised.value.no_answer  # counts towards the circuit breaker


def test_a_relay_that_hangs_after_its_greeting_costs_one_command_timeout() -> None:
    with SilentRelay() as relay:
        provider = make_provider(relay.port, timeout=0.3)
        started = time.monotonic()
        with pytest.raises(TransientError, match="not reached") as raised:
            send(provider, recipients("anna"))
        provider.close()
    assert raised.value.no_answer and time.monotonic() - started < 5
    assert relay.connections == 1


def test_a_kept_connection_that_stops_answering_is_not_waited_on_twice(
    relay: tuple[Relay, int],
) -> None:
    handler, port = relay
    provider = make_provider(port, timeout=0.3)
    send(provider, recipients("anna"))
    handler.hang = True  # the kept connection's RSET now goes unanswered
    with pytest.raises(TransientError, match="did not answer") as raised:
        send(provider, recipients("bo"))
    assert raised.value.no_answer and len(handler.connections) == 1


# --- STARTTLS and AUTH -----------------------------------------------------------------------


def test_starttls_and_auth_with_a_trusted_certificate(
    tls_relay: tuple[Relay, int], certificate: tuple[Path, Path]
) -> None:
    handler, port = tls_relay
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    provider = make_provider(
        port, starttls=True, username=USER, password=PASSWORD, ssl_context=trust
    )
    result = send(provider, recipients("anna", "bo"))
    provider.close()

    assert set(result.statuses.values()) == {DeliveryStatus.SENT}
    assert handler.deliveries == Counter({"anna@eksempel.test": 1, "bo@eksempel.test": 1})
    assert PASSWORD not in repr(provider)


def test_refused_login_is_a_config_error(
    tls_relay: tuple[Relay, int], certificate: tuple[Path, Path]
) -> None:
    handler, port = tls_relay
    trust = ssl.create_default_context(cafile=str(certificate[0]))
    provider = make_provider(
        port, starttls=True, username=USER, password="forkert", ssl_context=trust
    )
    with pytest.raises(ConfigError, match="FBSFLOW_SMTP_PASSWORD") as caught:
        send(provider, recipients("anna"))
    assert "forkert" not in str(caught.value)
    assert handler.deliveries == Counter()


def test_an_untrusted_certificate_is_a_config_error(tls_relay: tuple[Relay, int]) -> None:
    handler, port = tls_relay
    provider = make_provider(port, starttls=True, username=USER, password=PASSWORD)
    with pytest.raises(ConfigError, match="certificate is not trusted"):
        send(provider, recipients("anna"))
    assert handler.deliveries == Counter()


def test_a_relay_without_starttls_is_a_config_error(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    with pytest.raises(ConfigError, match="STARTTLS"):
        send(make_provider(port, starttls=True), recipients("anna"))
    assert handler.deliveries == Counter()


# --- Settings --------------------------------------------------------------------------------


def test_from_env_reads_the_fbsflow_smtp_variables(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    settings = NewsletterSettings(from_email="bibliotek@eksempel-kommune.dk", from_name="Bibliotek")
    provider = SmtpProvider.from_env(
        settings,
        {"FBSFLOW_SMTP_HOST": "127.0.0.1", "FBSFLOW_SMTP_PORT": str(port),
         "FBSFLOW_SMTP_STARTTLS": "false"},
    )  # fmt: skip
    send(provider, recipients("anna"))
    provider.close()
    assert handler.deliveries == Counter({"anna@eksempel.test": 1})
    parsed = email.message_from_bytes(handler.messages["anna@eksempel.test"])
    assert "bibliotek@eksempel-kommune.dk" in parsed["From"]


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({}, "FBSFLOW_SMTP_HOST is not set"),
        ({"FBSFLOW_SMTP_HOST": "relay", "FBSFLOW_SMTP_PORT": "smtp"}, "FBSFLOW_SMTP_PORT"),
        ({"FBSFLOW_SMTP_HOST": "relay", "FBSFLOW_SMTP_STARTTLS": "måske"}, "FBSFLOW_SMTP_STARTTLS"),
        ({"FBSFLOW_SMTP_HOST": "relay", "FBSFLOW_SMTP_PASSWORD": "x"}, "FBSFLOW_SMTP_USERNAME"),
    ],
)
def test_from_env_names_the_variable_to_fix(env: dict[str, str], complaint: str) -> None:
    settings = NewsletterSettings(from_email="bibliotek@eksempel-kommune.dk", from_name="Bibliotek")
    with pytest.raises(ConfigError, match=complaint):
        SmtpProvider.from_env(settings, env)


@pytest.mark.parametrize(
    "setting", [{"sandbox_mode": True}, {"unsubscribe_group_id": 7}], ids=lambda s: next(iter(s))
)
def test_settings_only_sendgrid_carries_are_refused_not_dropped(setting: dict[str, Any]) -> None:
    # Dropped, sandbox_mode would really send, and the unsubscribe group would be ignored.
    settings = NewsletterSettings(
        from_email="bibliotek@eksempel-kommune.dk", from_name="Bibliotek", **setting
    )
    with pytest.raises(UnsupportedFeatureError, match=f"channels.newsletter.{next(iter(setting))}"):
        SmtpProvider.from_env(settings, {"FBSFLOW_SMTP_HOST": "relay.kommune.test"})


# --- PIPELINING (RFC 2920) ---------------------------------------------------------------------


def test_a_relay_offering_pipelining_gets_each_envelope_in_one_write(
    relay: tuple[Relay, int],
) -> None:
    handler, port = relay
    handler.pipelining = True
    handler.rcpt_replies["bo@eksempel.test"] = "550 5.1.1 no such user"
    handler.rcpt_replies["carl@eksempel.test"] = "451 4.3.0 try again later"
    provider = make_provider(port)
    result = send(provider, recipients("anna", "bo", "carl", "dorte"))
    provider.close()

    assert result.statuses == {
        "k-anna": DeliveryStatus.SENT,
        "k-bo": DeliveryStatus.FAILED,
        "k-carl": DeliveryStatus.DEFERRED,
        "k-dorte": DeliveryStatus.SENT,
    }
    assert handler.deliveries == Counter({"anna@eksempel.test": 1, "dorte@eksempel.test": 1})
    assert handler.pipelined_mails == 4
    assert len(handler.connections) == 1
    # Each copy is still addressed to its own recipient only.
    parsed = email.message_from_bytes(
        handler.messages["dorte@eksempel.test"], policy=email.policy.SMTP
    )
    assert parsed["To"] == "dorte@eksempel.test"


def test_without_pipelining_on_offer_commands_go_one_at_a_time(relay: tuple[Relay, int]) -> None:
    handler, port = relay
    provider = make_provider(port)
    result = send(provider, recipients("anna", "bo"))
    provider.close()
    assert set(result.statuses.values()) == {DeliveryStatus.SENT}
    assert handler.pipelined_mails == 0


# --- The outcome table ------------------------------------------------------------------------

ANNA, TARGET = recipients("anna", "target")  # the table's row is about TARGET; anna is accepted


@contextmanager
def staged(situation: str, certificate: tuple[Path, Path]) -> Iterator[SmtpProvider]:
    """A provider that meets `situation` (a row of tests/providers/outcomes.py) on its next send."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*certificate)
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    greeting = {"SMTP 421 greeting": "421 4.3.2 busy", "SMTP 554 greeting": "554 5.7.1 go away"}
    if situation in greeting or situation == "greeting, then no answer":
        with SilentRelay(greeting.get(situation, "220 silent.test ESMTP")) as silent:
            yield make_provider(silent.port, timeout=0.3)
        return
    if situation == "connection refused":
        yield make_provider(free_port())
        return
    if situation == "SMTP 535 on AUTH":
        with Relay(tls=server_tls, login=(USER, PASSWORD)) as relay:
            yield make_provider(
                relay.port, starttls=True, username=USER, password="forkert", ssl_context=trusted
            )
        return
    if situation == "untrusted certificate":
        with Relay(tls=server_tls) as relay:
            yield make_provider(relay.port, starttls=True)  # the system's CAs: not this one
        return
    with Relay() as relay:
        if situation == "SMTP 550 on RCPT":
            relay.rcpt_replies[TARGET.address] = "550 5.1.1 no such user"
        elif situation == "SMTP 451 on RCPT":
            relay.rcpt_replies[TARGET.address] = "451 4.7.1 try again later"
        elif situation == "SMTP 452 on RCPT for everyone":
            for r in (ANNA, TARGET):
                relay.rcpt_replies[r.address] = "452 4.5.3 too many recipients today"
        elif situation == "SMTP 550 on MAIL FROM":
            relay.mail_reply = "550 5.7.1 sender not allowed"
        elif situation == "connection dropped after the request":
            relay.hang_up_after_data.add(TARGET.address)
        else:
            assert situation == "accepted", f"no way to stage {situation!r} on an SMTP relay"
        yield make_provider(relay.port)


@pytest.mark.parametrize(("situation", "expected"), outcomes.rows("smtp"))
def test_every_outcome_is_classified_as_the_table_says(
    situation: str, expected: outcomes.Outcome, certificate: tuple[Path, Path]
) -> None:
    with staged(situation, certificate) as provider:
        try:
            assert outcomes.observe(lambda: send(provider, [ANNA, TARGET]), TARGET) == expected
        finally:
            provider.close()
