"""SendGrid provider tests: the real SDK against the local v3 stand-in, deliveries as evidence.

Both transports (the SDK's own client, and the kept connection of tasks/speed/keepalive.py) go
through the shared outcome table, over HTTP and HTTPS: they must classify every row alike.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import python_http_client.exceptions as sdk_errors
import sendgrid
from hypothesis import example, given
from hypothesis import strategies as st

from tasks.errors import AmbiguousError, ConfigError, PermanentError, TransientError
from tasks.models import Channel, Language, NewsletterSettings
from tasks.providers.base import Attachment, BatchResult, DeliveryStatus, Message, Recipient
from tasks.providers.sendgrid import SendGridProvider, build_payload, encode_payload
from tasks.speed import keepalive
from tests.providers import outcomes
from tests.providers.conftest import Tls
from tests.servers import sendgrid_server
from tests.servers.sendgrid_server import Fault, SendGridServer

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = Message(
    channel=Channel.NEWSLETTER,
    language=Language.DA,
    subject="Nyt om betaling af gæld til biblioteket",
    text="Kære låner. Fra 1. december betaler du gebyrer til kommunen. Læs mere på vores side.",
    html="<p>Kære låner. Fra 1. december betaler du gebyrer til kommunen.</p>",
)


def recipients(n: int, start: int = 0) -> list[Recipient]:
    return [Recipient(key=f"k{i:05d}", address=f"laaner{i}@eksempel.test") for i in range(start, n)]


def addresses(batch: list[Recipient]) -> Counter[str]:
    return Counter(r.address for r in batch)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours proxy variables; the stand-in must be reached directly.
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[SendGridServer]:
    with SendGridServer() as stand_in:
        yield stand_in


def make_provider(server: SendGridServer, **overrides: object) -> SendGridProvider:
    options: dict[str, object] = {
        "host": server.url,
        "from_email": "bibliotek@eksempel-kommune.test",
        "from_name": "Eksempel Bibliotekerne",
        "timeout": 5.0,
    }
    options.update(overrides)
    api_key = str(options.pop("api_key", server.api_key))
    return SendGridProvider(api_key, **options)  # type: ignore[arg-type]


def send(provider: SendGridProvider, batch: list[Recipient]) -> BatchResult:
    return provider.send_batch(MESSAGE, batch, campaign="debitor-2026", batch_id="b-0001")


def post_raw(server: SendGridServer, body: dict) -> None:
    """Post a hand-made body through the SDK, bypassing the provider's own limits."""
    client = sendgrid.SendGridAPIClient(api_key=server.api_key, host=server.url)
    client.client.mail.send.post(request_body=body, timeout=5)


# --- Accepted batches ------------------------------------------------------------------------


def test_each_recipient_gets_its_own_personalization_and_is_delivered_once(
    server: SendGridServer,
) -> None:
    batch = recipients(3)
    result = make_provider(server, unsubscribe_group_id=42).send_batch(
        MESSAGE, batch, campaign="debitor-2026", batch_id="b-0001"
    )

    assert server.deliveries == addresses(batch)
    [request] = server.requests
    assert result.statuses == dict.fromkeys((r.key for r in batch), DeliveryStatus.SENT)
    assert result.provider_ids == [request.message_id]
    body = request.body
    assert body is not None
    assert [p["to"] for p in body["personalizations"]] == [[{"email": r.address}] for r in batch]
    keys = [p["custom_args"]["recipient"] for p in body["personalizations"]]
    assert keys == ["k00000", "k00001", "k00002"]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["subject"] == "Nyt om betaling af gæld til biblioteket"
    assert body["custom_args"] == {"campaign": "debitor-2026", "batch_id": "b-0001"}
    assert "debitor-2026" in body["categories"]
    assert body["asm"] == {"group_id": 42}
    assert body["mail_settings"] == {"sandbox_mode": {"enable": False}}


def test_sandbox_mode_is_validated_with_200_and_delivers_nothing(server: SendGridServer) -> None:
    batch = recipients(2)
    result = send(make_provider(server, sandbox_mode=True), batch)

    assert set(result.statuses.values()) == {DeliveryStatus.SENT}
    assert result.provider_ids == []
    assert "sandbox" in result.detail
    assert server.requests[0].status == 200
    assert server.deliveries == Counter()
    assert server.sandboxed == addresses(batch)


def test_attachments_travel_base64(server: SendGridServer) -> None:
    pdf = b"%PDF-1.7 plakat"
    message = Message(
        channel=MESSAGE.channel, language=MESSAGE.language, subject=MESSAGE.subject,
        text=MESSAGE.text, attachments=(Attachment("plakat.pdf", pdf, "application/pdf"),),
    )  # fmt: skip
    make_provider(server).send_batch(message, recipients(1), campaign="c", batch_id="b")

    assert server.deliveries == Counter({"laaner0@eksempel.test": 1})
    [attachment] = server.requests[0].body["attachments"]  # type: ignore[index]
    assert base64.b64decode(attachment["content"]) == pdf
    assert attachment["filename"] == "plakat.pdf"


def test_the_request_is_build_payloads_document_sent_as_utf8_json(server: SendGridServer) -> None:
    # An address JSON must escape; the body must still be the same document.
    batch = [*recipients(2), Recipient(key="k-3", address='"o\\dd"@eksempel.test')]
    send(make_provider(server, unsubscribe_group_id=7), batch)

    [request] = server.requests
    assert request.content_type == "application/json; charset=utf-8"
    assert request.body == build_payload(
        MESSAGE, batch, from_email="bibliotek@eksempel-kommune.test",
        from_name="Eksempel Bibliotekerne", campaign="debitor-2026", batch_id="b-0001",
        unsubscribe_group_id=7,
    )  # fmt: skip


_ADDRESSES = st.one_of(
    st.from_regex(r"[a-z0-9.+_-]{1,12}@[a-z0-9-]{1,10}\.[a-z]{2,4}", fullmatch=True),
    st.sampled_from(
        ['a"b@x.dk', "a\\b@x.dk", "æble@x.dk", "tab\t@x.dk", "snow☃@x.dk", "~@x", "a@b.co\nc@d.ef"]
    ),
    st.text(max_size=12),
)


_KEYS = st.one_of(st.from_regex(r"[0-9a-f]{1,8}", fullmatch=True), st.text(max_size=6))


@given(
    st.lists(st.tuples(_KEYS, _ADDRESSES), min_size=0, max_size=6),
    st.booleans(),
    st.sampled_from([None, 3]),
)
@example([("a1", "x@y.dk"), ("b2", 'a"b@x.dk')], False, None)
@example([("a1", "x@y.dk"), ("b2", "a\\b@x.dk")], True, 3)
def test_encode_payload_is_build_payload_as_json(
    pairs: list[tuple[str, str]], sandbox: bool, group: int | None
) -> None:
    """The provider's request body must be exactly build_payload's document, or fail as it does."""
    batch = [Recipient(key=key, address=address) for key, address in pairs]
    kwargs = dict(
        from_email="a@eksempel.test", from_name="Ø", campaign="c", batch_id="b",
        sandbox_mode=sandbox, unsubscribe_group_id=group,
    )  # fmt: skip
    try:
        expected = build_payload(MESSAGE, batch, **kwargs)  # type: ignore[arg-type]
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            encode_payload(MESSAGE, batch, **kwargs)  # type: ignore[arg-type]
        return
    assert json.loads(encode_payload(MESSAGE, batch, **kwargs)) == expected  # type: ignore[arg-type]


def test_the_stand_in_refuses_a_body_that_is_not_json(server: SendGridServer) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        body = json.dumps(build_payload(
            MESSAGE, recipients(1), from_email="a@eksempel.test", from_name="A", campaign="c",
            batch_id="b",
        ))  # fmt: skip
        headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "text/plain"}
        conn.request("POST", "/v3/mail/send", body=body.encode(), headers=headers)
        response = conn.getresponse()
        assert response.status == 415
        assert b"Content-Type should be application/json" in response.read()
    finally:
        conn.close()
    assert server.deliveries == Counter()


_PLAIN_PERSONALIZATION = st.fixed_dictionaries(
    {"to": st.tuples(st.fixed_dictionaries({"email": _ADDRESSES})).map(list)},
    optional={"custom_args": st.fixed_dictionaries({"recipient": st.text(max_size=4)})},
)
_PERSONALIZATION_PARTS = st.fixed_dictionaries(
    {"to": st.lists(st.fixed_dictionaries({"email": _ADDRESSES}), min_size=0, max_size=2)},
    optional={
        "custom_args": st.one_of(
            st.dictionaries(st.sampled_from(["recipient", "campaign"]), st.text(max_size=4)),
            st.just({"recipient": "x" * 9_990}),
            st.just({"recipient": 1}),
            st.just([]),
        ),
        "cc": st.lists(st.fixed_dictionaries({"email": _ADDRESSES}), max_size=1),
        "subject": st.just("s"),
    },
)


@given(
    st.one_of(
        st.lists(_PLAIN_PERSONALIZATION, max_size=5),
        st.lists(st.one_of(_PERSONALIZATION_PARTS, st.just("p"), st.just({"to": [1]})), max_size=5),
    ),
    st.sampled_from([{}, {"campaign": "c"}, {"campaign": 2}, {"big": "x" * 5_000}]),
)
@example([{"to": [{"email": "a@b.co\nc@d.ef"}]}], {})  # one address, two lines
def test_the_stand_ins_quick_check_never_passes_what_the_full_check_refuses(
    personalizations: list, top_args: dict
) -> None:
    body = {"personalizations": personalizations, "custom_args": top_args}
    quick = sendgrid_server._check_personalizations(body)
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(sendgrid_server, "_plain_personalizations", lambda *_: False)
        full = sendgrid_server._check_personalizations(body)
    assert quick == full


# --- The 1000-recipient limit ----------------------------------------------------------------


def test_a_full_batch_of_1000_is_one_request(server: SendGridServer) -> None:
    batch = recipients(1000)
    result = send(make_provider(server), batch)

    assert len(result.statuses) == 1000
    assert server.stats()["max_recipients_per_request"] == 1000
    assert server.deliveries == addresses(batch)


def test_the_provider_refuses_to_build_a_request_over_1000(server: SendGridServer) -> None:
    with pytest.raises(ValueError, match="at most 1000"):
        send(make_provider(server), recipients(1001))
    assert server.requests == []
    assert SendGridProvider.max_batch == 1000


def test_the_stand_in_refuses_1001_personalizations(server: SendGridServer) -> None:
    body = build_payload(
        MESSAGE, recipients(1000), from_email="a@eksempel.test", from_name="A", campaign="c",
        batch_id="b",
    )  # fmt: skip
    body["personalizations"].append({"to": [{"email": "ekstra@eksempel.test"}]})
    with pytest.raises(sdk_errors.BadRequestsError) as caught:
        post_raw(server, body)
    assert "limited to 1000 personalizations" in caught.value.body.decode()
    assert server.deliveries == Counter()


def test_the_stand_in_counts_to_cc_and_bcc_against_1000(server: SendGridServer) -> None:
    body = build_payload(
        MESSAGE, recipients(1000), from_email="a@eksempel.test", from_name="A", campaign="c",
        batch_id="b",
    )  # fmt: skip
    body["personalizations"][0]["bcc"] = [{"email": "bcc@eksempel.test"}]
    with pytest.raises(sdk_errors.BadRequestsError) as caught:
        post_raw(server, body)
    assert "limit of 1000 total recipients" in caught.value.body.decode()
    assert server.deliveries == Counter()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda b: b["content"].reverse(), "text/plain content must be first"),
        (lambda b: b.update(categories=[f"c{i}" for i in range(11)]), "more than 10 categories"),
        (lambda b: b["custom_args"].update(big="x" * 10_000), "maximum size of 10,000 bytes"),
        (lambda b: b.pop("subject"), "The subject is required"),
        (lambda b: b.update(personalizations=[]), "at least one personalization"),
    ],
    ids=["html-first", "11-categories", "custom-args-size", "no-subject", "no-personalizations"],
)
def test_the_stand_in_enforces_sendgrid_rules(server: SendGridServer, change, expected) -> None:
    body = build_payload(
        MESSAGE, recipients(2), from_email="a@eksempel.test", from_name="A", campaign="c",
        batch_id="b",
    )  # fmt: skip
    change(body)
    with pytest.raises(sdk_errors.BadRequestsError) as caught:
        post_raw(server, body)
    assert expected in caught.value.body.decode()
    assert server.deliveries == Counter()


# --- Transient: definitely not accepted ------------------------------------------------------


def test_429_with_retry_after_is_transient_and_delivers_nothing(server: SendGridServer) -> None:
    server.fail_next(Fault.rate_limit(retry_after=7))
    with pytest.raises(TransientError) as caught:
        send(make_provider(server), recipients(2))
    assert caught.value.status == 429
    assert caught.value.retry_after == 7
    assert server.deliveries == Counter()


def test_429_falls_back_to_the_rate_limit_reset_epoch(server: SendGridServer) -> None:
    server.fail_next(Fault.rate_limit(retry_after=None, reset_in=30))
    with pytest.raises(TransientError) as caught:
        send(make_provider(server), recipients(1))
    assert caught.value.retry_after is not None
    assert 27 <= caught.value.retry_after <= 31
    assert server.deliveries == Counter()


def test_500_is_transient_and_a_retry_delivers_exactly_once(server: SendGridServer) -> None:
    provider, batch = make_provider(server), recipients(3)
    server.fail_next(Fault.server_error(500))
    with pytest.raises(TransientError) as caught:
        send(provider, batch)
    assert caught.value.status == 500
    assert server.deliveries == Counter()

    send(provider, batch)
    assert server.deliveries == addresses(batch)


def test_connection_refused_is_transient(server: SendGridServer) -> None:
    closed = SendGridServer().start()
    closed_url = closed.url
    closed.stop()
    batch = recipients(2)
    with pytest.raises(TransientError, match="not reached") as raised:
        send(make_provider(server, host=closed_url), batch)
    assert raised.value.no_answer  # counts towards the circuit breaker

    # The same batch retried against a live SendGrid arrives exactly once.
    send(make_provider(server), batch)
    assert server.deliveries == addresses(batch)


def test_connect_timeout_is_transient(server: SendGridServer) -> None:
    # A listener whose backlog is full drops further SYNs, so connecting times out.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        # The connect timeout applies, not the (longer) wait for an answer.
        stalled = make_provider(
            server, host=f"http://127.0.0.1:{port}", connect_timeout=0.3, timeout=30
        )
        started = time.monotonic()
        try:
            with pytest.raises(TransientError, match="not reached") as raised:
                send(stalled, recipients(1))
            assert raised.value.no_answer and time.monotonic() - started < 5
        finally:
            for filler in fillers:
                filler.close()
    send(make_provider(server), recipients(1))
    assert server.deliveries == Counter({"laaner0@eksempel.test": 1})


def test_close_before_reading_delivers_nothing_and_is_never_called_sent(
    server: SendGridServer,
) -> None:
    server.fail_next(Fault.close_before_read())
    # Whether the client still managed to write the body decides which of the two it sees.
    with pytest.raises((TransientError, AmbiguousError)):
        send(make_provider(server), recipients(2))
    assert server.deliveries == Counter()


# --- One connection for the requests of a provider -------------------------------------------


def test_batches_share_one_kept_connection(server: SendGridServer) -> None:
    provider = make_provider(server)
    assert provider.keeps_connection
    batches = [recipients(3), recipients(6, 3), recipients(9, 6)]
    for batch in batches:
        send(provider, batch)
    provider.close()
    assert server.deliveries == addresses(recipients(9))
    assert server.stats()["requests"] == 3
    assert server.connections == 1


def test_errors_keep_the_connection_and_a_retry_goes_out_on_it(server: SendGridServer) -> None:
    provider, batch = make_provider(server), recipients(2)
    server.fail_next(Fault.rate_limit(retry_after=1), Fault.server_error(503))
    for _ in range(2):
        with pytest.raises(TransientError):
            send(provider, batch)
    send(provider, batch)
    assert server.deliveries == addresses(batch)
    assert server.connections == 1


def test_a_connection_the_server_closed_unannounced_is_not_reused(server: SendGridServer) -> None:
    # The server ends the kept connection after answering, as one ending idle connections does.
    # The next request must not be written into it (its fate would then be unknown): it goes out
    # on a new connection and is accepted.
    provider = make_provider(server)
    server.fail_next(Fault.hang_up())
    send(provider, recipients(2))
    deadline = time.monotonic() + 5
    while not _closed_by_peer(provider) and time.monotonic() < deadline:
        time.sleep(0.01)
    send(provider, recipients(4, 2))
    assert server.deliveries == addresses(recipients(4))
    assert server.connections == 2


def _closed_by_peer(provider: SendGridProvider) -> bool:
    import select

    conn = provider.transport._conn if provider.keeps_connection else None  # type: ignore[attr-defined]
    return conn is None or conn.sock is None or bool(select.select([conn.sock], [], [], 0)[0])


def test_a_connection_idle_too_long_is_not_reused(
    server: SendGridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keepalive, "KEEP_IDLE_SECONDS", 0.05)
    provider = make_provider(server)
    send(provider, recipients(1))
    time.sleep(0.1)
    send(provider, recipients(2, 1))
    assert server.deliveries == addresses(recipients(2))
    assert server.connections == 2


def test_behind_a_proxy_the_sdk_sends_as_it_always_did(
    server: SendGridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # urllib sends through HTTP(S)_PROXY; a kept connection straight to the host would not.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "")
    monkeypatch.setenv("NO_PROXY", "")
    assert not make_provider(server).keeps_connection
    assert not make_provider(server, host="https://api.sendgrid.com").keeps_connection
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert make_provider(server).keeps_connection


def test_the_sdks_own_transport_still_classifies_and_delivers(
    server: SendGridServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Switched off (or behind a proxy), the SDK sends per request as it ships; same outcomes.
    monkeypatch.setenv("FBSFLOW_SPEED_KEEPALIVE", "0")
    provider, batch = make_provider(server), recipients(2)
    assert not provider.keeps_connection
    server.fail_next(Fault.server_error(500), Fault.respond(400, "bad"))
    with pytest.raises(TransientError):
        send(provider, batch)
    with pytest.raises(PermanentError):
        send(provider, batch)
    send(provider, batch)
    send(provider, recipients(4, 2))
    assert server.deliveries == addresses(recipients(4))
    assert server.connections == 4


# --- Ambiguous: may have been accepted -------------------------------------------------------


def test_dropped_connection_after_the_request_is_ambiguous(server: SendGridServer) -> None:
    batch = recipients(2)
    server.fail_next(Fault.drop())
    with pytest.raises(AmbiguousError):
        send(make_provider(server), batch)
    # The stand-in delivered it: re-sending would be a duplicate, which is why it is ambiguous.
    assert server.deliveries == addresses(batch)


def test_a_sendgrid_that_never_answers_is_ambiguous_and_counts_for_the_breaker(
    server: SendGridServer,
) -> None:
    server.never_answer()
    started = time.monotonic()
    with pytest.raises(AmbiguousError) as raised:
        send(make_provider(server, timeout=0.3), recipients(2))
    assert raised.value.no_answer and time.monotonic() - started < 5
    assert server.stats()["requests"] == 1 and server.deliveries == Counter()
    server.never_answer(False)
    send(make_provider(server), recipients(2))  # answers again
    assert server.deliveries == addresses(recipients(2))


def test_an_answer_is_no_failure_to_answer(server: SendGridServer) -> None:
    server.fail_next(Fault.server_error(503))
    with pytest.raises(TransientError) as raised:
        send(make_provider(server), recipients(1))
    assert not raised.value.no_answer  # SendGrid is there: the breaker must not count it


def test_answer_slower_than_the_timeout_is_ambiguous(server: SendGridServer) -> None:
    batch = recipients(2)
    server.fail_next(Fault.slow(3))
    started = time.monotonic()
    with pytest.raises(AmbiguousError):
        send(make_provider(server, timeout=0.3), batch)
    assert time.monotonic() - started < 2
    assert server.deliveries == addresses(batch)


# --- Refused: permanent and configuration errors ---------------------------------------------


def test_400_is_permanent_and_its_message_carries_no_address(server: SendGridServer) -> None:
    server.fail_next(Fault.respond(
        400, "We found the first duplicate instance of [laaner0@eksempel.test] in the to field."
    ))  # fmt: skip
    with pytest.raises(PermanentError) as caught:
        send(make_provider(server), recipients(1))
    text = str(caught.value)
    assert "duplicate instance of" in text
    assert "@" not in text
    assert caught.value.status == 400
    assert caught.value.__cause__ is None  # the SDK error holds the raw body
    assert server.deliveries == Counter()


def test_an_invalid_address_is_refused_by_the_stand_in_as_permanent(
    server: SendGridServer,
) -> None:
    batch = [Recipient(key="k1", address="ikke-en-adresse@eksempel")]
    with pytest.raises(PermanentError, match=r"valid address.*personalizations\.0\.to\.0\.email"):
        send(make_provider(server), batch)
    assert server.requests[0].status == 400
    assert server.deliveries == Counter()


def test_a_wrong_api_key_is_a_config_error_naming_the_variable(server: SendGridServer) -> None:
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY refused") as caught:
        send(make_provider(server, api_key="SG.forkert-noegle"), recipients(1))
    assert "forkert" not in str(caught.value)
    assert server.requests[0].status == 401
    assert server.deliveries == Counter()


def test_a_wrong_host_is_a_config_error(server: SendGridServer) -> None:
    with pytest.raises(ConfigError, match="SENDGRID_HOST"):
        send(make_provider(server, host=server.url + "/forkert"), recipients(1))
    with pytest.raises(ConfigError, match="SENDGRID_HOST"):
        make_provider(server, host="api.sendgrid.com")
    assert server.stats()["requests"] == 0  # the wrong path never reached mail send
    assert server.deliveries == Counter()


# --- Secrets and personal data ---------------------------------------------------------------


def test_debug_logging_does_not_leak_addresses(
    server: SendGridServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    batch = recipients(2)
    send(make_provider(server), batch)
    assert server.deliveries == addresses(batch)
    assert "eksempel.test" not in caplog.text


def test_the_sdks_own_debug_log_shows_a_request_body_as_its_size(
    server: SendGridServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Someone debugging turns the SDK's own logger to DEBUG: it logs every request body, which
    # holds up to 1000 addresses, and the headers, which hold the key. The provider hands it a
    # body that prints as its size, and masks the key.
    monkeypatch.setenv("FBSFLOW_SPEED_KEEPALIVE", "0")
    caplog.set_level(logging.DEBUG, logger="python_http_client")
    batch = recipients(2)
    send(make_provider(server), batch)
    assert server.deliveries == addresses(batch)
    body = encode_payload(
        MESSAGE,
        batch,
        from_email="bibliotek@eksempel-kommune.test",
        from_name="Eksempel Bibliotekerne",
        campaign="debitor-2026",
        batch_id="b-0001",
    ).encode()
    payloads = [r.getMessage() for r in caplog.records if r.getMessage().startswith("PAYLOAD")]
    assert payloads == [f"PAYLOAD: <request body, {len(body):,} bytes>"]
    assert "eksempel.test" not in caplog.text
    assert "HEADERS" in caplog.text and server.api_key not in caplog.text


def test_repr_and_from_env_keep_the_key_secret(server: SendGridServer) -> None:
    settings = NewsletterSettings(
        from_email="bibliotek@eksempel-kommune.dk", from_name="Eksempel Bibliotekerne",
        unsubscribe_group_id=7,
    )  # fmt: skip
    provider = SendGridProvider.from_env(
        settings, {"SENDGRID_API_KEY": server.api_key, "SENDGRID_HOST": server.url}
    )
    assert server.api_key not in repr(provider)
    send(provider, recipients(1))
    assert server.requests[0].body["asm"] == {"group_id": 7}  # type: ignore[index]
    assert server.deliveries == Counter({"laaner0@eksempel.test": 1})

    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        SendGridProvider.from_env(settings, {})


# --- The stand-in itself ---------------------------------------------------------------------


def test_on_request_hook_sees_each_request_as_it_arrives() -> None:
    seen: list[int] = []
    with SendGridServer(on_request=seen.append) as stand_in:
        provider = make_provider(stand_in)
        send(provider, recipients(1))
        send(provider, recipients(2, start=1))
        assert seen == [1, 2]
        assert stand_in.deliveries == addresses(recipients(2))


def test_command_line_server_serves_and_reports_stats() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.sendgrid_server", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[0] == "READY"
        provider = SendGridProvider(
            "SG.stand-in-test-key", host=ready[1], from_email="a@eksempel.test", from_name="A"
        )
        send(provider, recipients(5))
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert '"deliveries":5' in out
    assert '"duplicate_deliveries":0' in out


@pytest.fixture
def https_server(tls: Tls) -> Iterator[SendGridServer]:
    """The stand-in over HTTPS, as api.sendgrid.com speaks, with a certificate trusted here."""
    with SendGridServer(tls=tls.server()) as stand_in:
        yield stand_in


def test_over_https_batches_share_one_verified_connection(https_server: SendGridServer) -> None:
    server = https_server
    provider = make_provider(server)
    assert server.url.startswith("https://") and provider.keeps_connection
    for start in (0, 3, 6):
        result = provider.send_batch(
            MESSAGE, recipients(start + 3, start), campaign="c", batch_id=f"b{start}"
        )
        assert set(result.statuses.values()) == {DeliveryStatus.SENT}
    provider.close()
    assert server.deliveries == addresses(recipients(9))
    assert server.connections == 1  # one TCP connection and one TLS handshake for all three


def test_the_sdk_as_it_ships_reaches_the_https_stand_in(https_server: SendGridServer) -> None:
    # What bench/email.py times as "one request per recipient": a connection (and TLS
    # handshake) per request.
    server = https_server
    sdk = sendgrid.SendGridAPIClient(api_key=server.api_key, host=server.url)
    for r in recipients(2):
        body = encode_payload(
            MESSAGE,
            [r],
            from_email="bibliotek@eksempel-kommune.test",
            from_name="Bibliotek",
            campaign="c",
            batch_id="b",
        )
        # With a charset, the SDK sends an already encoded body as it is (bench/email.py too).
        response = sdk.client.mail.send.post(
            request_body=body, request_headers={"Content-Type": "application/json; charset=utf-8"}
        )
        assert response.status_code == 202
    assert server.deliveries == addresses(recipients(2))
    assert server.connections == 2


def test_an_untrusted_certificate_is_a_config_error_not_a_retry(
    https_server: SendGridServer, tls: Tls
) -> None:
    # As behind a proxy that re-signs HTTPS: no retry can fix it, and nothing was sent.
    server = https_server
    tls.distrust()
    provider = make_provider(server)
    with pytest.raises(ConfigError, match="SSL_CERT_FILE") as raised:
        provider.send_batch(MESSAGE, recipients(3), campaign="c", batch_id="b")
    provider.close()
    assert "not trusted" in str(raised.value)
    assert "laaner" not in str(raised.value)
    assert server.stats()["requests"] == 0 and server.deliveries == Counter()


# --- The outcome table, on both transports, over HTTP and HTTPS --------------------------------


def staged(situation: str, server: SendGridServer, tls: Tls) -> SendGridProvider:
    """A provider that meets `situation` (a row of tests/providers/outcomes.py) on its next send."""
    if situation.startswith("HTTP "):
        status = int(situation.split()[1])
        fault = Fault.rate_limit(retry_after=7) if status == 429 else Fault.respond(status, "no")
        server.fail_next(fault)
    elif situation == "connection refused":
        closed = SendGridServer().start()
        port = closed.port
        closed.stop()
        return make_provider(server, host=f"{server.url.split(':')[0]}://127.0.0.1:{port}")
    elif situation == "untrusted certificate":
        tls.distrust()
    elif situation == "request read, then no answer":
        server.never_answer()
        return make_provider(server, timeout=0.3)
    elif situation == "connection dropped after the request":
        server.fail_next(Fault.drop())
    else:
        assert situation == "accepted", f"no way to stage {situation!r} on the SendGrid stand-in"
    return make_provider(server)


def _table() -> Iterator[pytest.ParameterSet]:
    for row in outcomes.rows("sendgrid"):
        situation, expected = row.values
        schemes = ("https",) if situation == "untrusted certificate" else ("http", "https")
        for scheme in schemes:
            for transport in ("sdk", "kept"):
                yield pytest.param(
                    situation, expected, scheme, transport, id=f"{situation}-{scheme}-{transport}"
                )


@pytest.mark.parametrize(("situation", "expected", "scheme", "transport"), list(_table()))
def test_every_outcome_is_classified_alike_on_both_transports(
    situation: str,
    expected: outcomes.Outcome,
    scheme: str,
    transport: str,
    tls: Tls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FBSFLOW_SPEED_KEEPALIVE", "1" if transport == "kept" else "0")
    batch = recipients(2)
    with SendGridServer(tls=tls.server(scheme)) as server:
        provider = staged(situation, server, tls)
        assert provider.keeps_connection is (transport == "kept")
        try:
            assert outcomes.observe(lambda: send(provider, batch), batch[-1]) == expected
        finally:
            provider.close()
            server.never_answer(False)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_sdk_and_the_kept_connection_give_the_same_results(
    scheme: str, tls: Tls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast transport is only faster: the same statuses, errors and deliveries, in order."""
    faults = [
        Fault.rate_limit(retry_after=None, reset_in=30),
        Fault.server_error(503),
        Fault.respond(400, "We found a duplicate of [laaner1@eksempel.test]"),
        Fault.respond(401, "The provided authorization grant is invalid"),
        Fault.drop(),
    ]
    seen = {}
    for transport in ("0", "1"):
        monkeypatch.setenv("FBSFLOW_SPEED_KEEPALIVE", transport)
        with SendGridServer(tls=tls.server(scheme)) as server:
            provider = make_provider(server)
            results: list[object] = [_result(provider, recipients(2))]
            server.fail_next(*faults)
            results += [_result(provider, recipients(2 + i, 1 + i)) for i in range(len(faults))]
            results.append(_result(provider, recipients(9, 7)))
            provider.close()
            seen[transport] = (results, server.deliveries, server.stats()["requests"])
    assert seen["0"] == seen["1"]
    assert [r[0] for r in seen["1"][0]] == [
        "202: accepted", "TransientError", "TransientError", "PermanentError", "ConfigError",
        "AmbiguousError", "202: accepted",
    ]  # fmt: skip


def _result(provider: SendGridProvider, batch: list[Recipient]) -> tuple[object, ...]:
    """What a send gave, as far as it must not depend on the transport (message ids do)."""
    try:
        result = send(provider, batch)
    except (TransientError, PermanentError, ConfigError, AmbiguousError) as error:
        retry_after = getattr(error, "retry_after", None)
        return (
            type(error).__name__,
            str(error),
            getattr(error, "status", None),
            getattr(error, "no_answer", None),
            None if retry_after is None else round(retry_after / 10),
        )
    return result.detail, result.statuses, len(result.provider_ids)
