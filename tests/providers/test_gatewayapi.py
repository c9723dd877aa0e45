"""GatewayAPI provider tests: through httpx against the local GatewayAPI stand-in on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.errors import (
    AmbiguousError,
    ConfigError,
    PermanentError,
    TransientError,
    UnsupportedFeatureError,
)
from tasks.models import Channel, Language, SmsSettings
from tasks.providers.base import BatchResult, DeliveryStatus, Message, Recipient
from tasks.providers.gatewayapi import (
    _E164,
    GatewayApiProvider,
    _msisdn,
    build_payload,
    encode_payload,
)
from tests.providers import outcomes
from tests.providers.conftest import Tls
from tests.servers.gatewayapi_server import Fault, GatewayApiServer

TOKEN = "test-token-gw"
SENDER = "Bibliotek"
TEXT = (
    "Kære låner: Fra 1. december betaler du gebyrer til kommunen, ikke på biblioteket. "
    "Læs mere på ørby.dk/betaling. Hilsen Ørby Bibliotek"
)


def sms(text: str = TEXT) -> Message:
    return Message(channel=Channel.SMS, language=Language.DA, text=text)


def borrowers(count: int, first: int = 20_000_001) -> list[Recipient]:
    """Synthetic Danish mobile numbers (+45 2000 0001, ...) with non-personal keys."""
    return [Recipient(key=f"b{i:05d}", address=f"+45{first + i}") for i in range(count)]


@pytest.fixture(scope="module")
def server() -> Iterator[GatewayApiServer]:
    with GatewayApiServer(TOKEN) as running:
        yield running


@pytest.fixture(autouse=True)
def _fresh(server: GatewayApiServer) -> None:
    server.reset()


@pytest.fixture
def provider(server: GatewayApiServer) -> Iterator[GatewayApiProvider]:
    gateway = GatewayApiProvider(TOKEN, base_url=server.url, sender=SENDER, timeout=2.0)
    yield gateway
    gateway.close()


def send(
    provider: GatewayApiProvider, recipients: list[Recipient], text: str = TEXT
) -> BatchResult:
    return provider.send_batch(sms(text), recipients, campaign="fbs-2026", batch_id="b1")


# --- The request GatewayAPI receives --------------------------------------------------------------


def test_payload_has_integer_msisdns_userref_label_sender_and_sendtime(
    server: GatewayApiServer,
) -> None:
    sendtime = datetime(2026, 12, 14, 9, 0, tzinfo=ZoneInfo("Europe/Copenhagen"))
    gateway = GatewayApiProvider(TOKEN, base_url=server.url, sender=SENDER, sendtime=sendtime)
    try:
        gateway.send_batch(sms(), borrowers(2), campaign="fbs-2026", batch_id="b7")
    finally:
        gateway.close()
    assert server.last_body == {
        "sender": "Bibliotek",
        "message": TEXT,
        "recipients": [{"msisdn": 4520000001}, {"msisdn": 4520000002}],
        "userref": "fbs-2026:b7",
        "label": "fbs-2026",
        "max_parts": 2,
        "sendtime": 1797235200,  # 2026-12-14 08:00 UTC
    }


def test_build_payload_matches_what_the_provider_sends(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    # The outbox provider writes build_payload's result as "what would be sent": it must be exact.
    expected = build_payload(sms(), borrowers(3), sender=SENDER, campaign="fbs-2026", batch_id="b1")
    send(provider, borrowers(3))
    assert server.last_body == expected
    assert "sendtime" not in expected


def test_a_number_listed_twice_is_sent_once_and_both_rows_are_sent(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    twins = [Recipient("b1", "+4520000001"), Recipient("b2", "+4520000001")]
    result = send(provider, twins)
    assert result.statuses == {"b1": DeliveryStatus.SENT, "b2": DeliveryStatus.SENT}
    assert server.delivered == {4520000001: 1}


# --- 200 ------------------------------------------------------------------------------------------


def test_200_marks_every_recipient_sent_with_gatewayapis_ids(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    batch = borrowers(5)
    result = send(provider, batch)
    assert result.statuses == {r.key: DeliveryStatus.SENT for r in batch}
    assert result.provider_ids == [str(server.accepted[0].id)]
    assert "DKK" in result.detail
    assert server.delivered == {int(r.address[1:]): 1 for r in batch}


def test_10000_recipients_go_in_one_request_and_10001_are_refused_before_sending(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    assert GatewayApiProvider.max_batch == 10_000
    with pytest.raises(ValueError, match="1 to 10000 recipients"):
        send(provider, borrowers(10_001))
    assert server.requests == 0

    result = send(provider, borrowers(10_000))
    assert server.requests == 1
    assert server.accepted[0].recipient_count == 10_000
    assert len(result.statuses) == 10_000
    assert sum(server.delivered.values()) == 10_000


def test_the_stand_in_itself_refuses_10001_recipients(
    http: httpx.Client, server: GatewayApiServer
) -> None:
    body = {"message": "Hej", "recipients": [{"msisdn": 4520000000 + i} for i in range(10_001)]}
    response = http.post(f"{server.url}/rest/mtsms", json=body, auth=(TOKEN, ""))
    assert response.status_code == 400
    assert response.json()["code"] == "0x0308"
    assert server.delivered == {}


# --- Refusals and failures ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422])
def test_refused_content_is_permanent_and_the_error_carries_no_phone_number(
    server: GatewayApiServer, provider: GatewayApiProvider, status: int
) -> None:
    # A gateway that fills its placeholders in would quote the number; the error must not.
    server.inject(Fault.http(status, "0x0310", "MSISDN 4520000001 (+45 20 00 00 02) is duplicated"))
    with pytest.raises(PermanentError) as caught:
        send(provider, borrowers(2))
    error = caught.value
    assert error.status == status
    assert "0x0310" in str(error) and "duplicated" in str(error)
    for fragment in ("4520000001", "20000001", "20 00 00 02", "20000002"):
        assert fragment not in str(error) and fragment not in repr(error)
    assert server.delivered == {}


def test_wrong_token_is_a_config_error_naming_the_setting(server: GatewayApiServer) -> None:
    gateway = GatewayApiProvider("not-the-token", base_url=server.url, sender=SENDER)
    try:
        with pytest.raises(ConfigError, match="GATEWAYAPI_TOKEN") as caught:
            gateway.send_batch(sms(), borrowers(1), campaign="c", batch_id="b")
    finally:
        gateway.close()
    assert "401" in str(caught.value) and "0x0229" in str(caught.value)
    assert "not-the-token" not in str(caught.value)
    assert server.delivered == {}


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.http(403, "0x0213", "Unauthorized IP-address: %1"), ConfigError),
        (Fault.http(403, "0x0216", "Insufficient credit"), ConfigError),
        # A blacklisted number refuses the batch, not the token: no reason to stop the run.
        (Fault.http(403, "0x0215", "MSISDN %1 blacklisted"), PermanentError),
        (Fault.http(404, "0x0101", "Not found"), ConfigError),
    ],
)
def test_403_and_404_classification(
    server: GatewayApiServer, provider: GatewayApiProvider, fault: Fault, error: type[Exception]
) -> None:
    server.inject(fault)
    with pytest.raises(error):
        send(provider, borrowers(1))


@pytest.mark.parametrize(
    ("fault", "retry_after"),
    [
        (Fault.rate_limited(retry_after=7), 7.0),
        (Fault.rate_limited(retry_after=None), None),
        (Fault.server_error(), None),
        (Fault.http(503, "0x0109", "Resource temporarily unavailable", retry_after=2.5), 2.5),
    ],
)
def test_429_and_5xx_are_transient_and_a_retry_then_succeeds(
    server: GatewayApiServer, provider: GatewayApiProvider, fault: Fault, retry_after: float | None
) -> None:
    server.inject(fault)
    with pytest.raises(TransientError) as caught:
        send(provider, borrowers(2))
    assert caught.value.status == fault.status
    assert caught.value.retry_after == retry_after
    assert server.delivered == {}
    assert set(send(provider, borrowers(2)).statuses.values()) == {DeliveryStatus.SENT}
    assert sum(server.delivered.values()) == 2


def test_retry_after_as_an_http_date(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    server.inject(Fault("http", status=429, code="0x0109", headers=(("Retry-After", when),)))
    with pytest.raises(TransientError) as caught:
        send(provider, borrowers(1))
    assert caught.value.retry_after is not None and 100 < caught.value.retry_after <= 120


def test_504_from_a_proxy_is_ambiguous(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    server.inject(Fault.http(504, "", "Gateway Timeout"))
    with pytest.raises(AmbiguousError) as caught:
        send(provider, borrowers(1))
    assert caught.value.status == 504


def test_dropped_connection_after_sending_is_ambiguous_and_really_was_delivered(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    server.inject(Fault.drop())
    with pytest.raises(AmbiguousError, match="may have accepted"):
        send(provider, borrowers(3))
    # The reason a retry is not safe: the stand-in, like GatewayAPI, already sent them.
    assert sum(server.delivered.values()) == 3


def test_connection_closed_before_reading_is_ambiguous_to_the_client(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    server.inject(Fault.close_before_read())
    with pytest.raises(AmbiguousError):
        send(provider, borrowers(1))
    assert server.delivered == {}


def test_slow_answer_times_out_as_ambiguous(server: GatewayApiServer) -> None:
    server.inject(Fault.slow(3.0))
    gateway = GatewayApiProvider(TOKEN, base_url=server.url, sender=SENDER, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(AmbiguousError, match="ReadTimeout"):
            gateway.send_batch(sms(), borrowers(2), campaign="c", batch_id="b")
    finally:
        gateway.close()
    assert time.monotonic() - started < 2.0
    assert sum(server.delivered.values()) == 2


def test_closed_port_is_transient() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = GatewayApiProvider(TOKEN, base_url=f"http://127.0.0.1:{port}", sender=SENDER)
    try:
        with pytest.raises(TransientError, match="nothing was sent") as caught:
            gateway.send_batch(sms(), borrowers(1), campaign="c", batch_id="b")
    finally:
        gateway.close()
    assert caught.value.status is None and caught.value.no_answer


def test_a_gateway_that_never_answers_is_ambiguous_and_counts_for_the_breaker(
    server: GatewayApiServer,
) -> None:
    server.never_answer()
    gateway = GatewayApiProvider(TOKEN, base_url=server.url, sender=SENDER, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(AmbiguousError, match="ReadTimeout") as caught:
            gateway.send_batch(sms(), borrowers(2), campaign="c", batch_id="b")
    finally:
        gateway.close()
        server.never_answer(False)
    assert caught.value.no_answer and time.monotonic() - started < 5
    assert server.requests == 1 and server.delivered == {}


# --- Text checks before any request ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hej 😀 husk at betale", "U+1F600"),
        ("Здравствуйте, библиотека", "U+0417"),
        ("“Citat” fra biblioteket", "U+201C"),  # typographic quotes: transliterate before sending
        ("a" * 307, "3 parts"),
        ("€" * 153, "3 parts"),  # each € is two septets, and a pair is never split over parts
        ("   ", "empty"),
    ],
)
def test_text_that_is_not_gsm7_or_too_long_is_refused_before_any_request(
    server: GatewayApiServer, provider: GatewayApiProvider, text: str, expected: str
) -> None:
    with pytest.raises(PermanentError, match=re.escape(expected)):
        send(provider, borrowers(1), text)
    assert server.requests == 0


@pytest.mark.parametrize("text", ["a" * 306, "€" * 152, "Æ" * 160])
def test_text_that_fills_two_parts_exactly_is_sent(
    server: GatewayApiServer, provider: GatewayApiProvider, text: str
) -> None:
    send(provider, borrowers(1), text)
    assert server.accepted[0].fields["message"] == text


def test_danish_text_is_gsm7_and_sent_unchanged_in_one_part(server: GatewayApiServer) -> None:
    text = "Kære låner: Nu betaler du gebyrer via kommunen. Læs mere på biblioteket. ÆØÅ æøå"
    gateway = GatewayApiProvider(TOKEN, base_url=server.url, sender=SENDER, max_parts=1)
    try:
        result = gateway.send_batch(sms(text), borrowers(1), campaign="c", batch_id="b")
    finally:
        gateway.close()
    assert result.statuses == {"b00000": DeliveryStatus.SENT}
    assert server.accepted[0].fields["message"] == text
    assert server.accepted[0].fields["max_parts"] == 1


# --- Caller mistakes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"sender": "Ørby Bibliotek"}, "at most 11"),
        ({"sender": "1234567890123456"}, "at most 11"),
        ({"max_parts": 0}, "max_parts"),
        ({"sendtime": datetime(2026, 12, 14, 9, 0)}, "timezone-aware"),
        ({"base_url": "http://gatewayapi.com"}, "https"),
        ({"base_url": "gatewayapi.com"}, "https"),
    ],
)
def test_constructor_refuses_bad_settings(change: dict, expected: str) -> None:
    settings = {"base_url": "https://gatewayapi.com", "sender": SENDER} | change
    with pytest.raises(ValueError, match=expected):
        GatewayApiProvider(TOKEN, **settings)


def test_build_payload_refuses_other_channels_and_bad_numbers_without_quoting_them() -> None:
    email = Message(channel=Channel.NEWSLETTER, language=Language.DA, text="Hej")
    with pytest.raises(ValueError, match="SMS only"):
        build_payload(email, borrowers(1), sender=SENDER, campaign="c", batch_id="b")
    local = [Recipient(key="b-42", address="20000001")]
    with pytest.raises(ValueError, match="b-42") as caught:
        build_payload(sms(), local, sender=SENDER, campaign="c", batch_id="b")
    assert "20000001" not in str(caught.value)
    with pytest.raises(ValueError, match="1 to 10000"):
        build_payload(sms(), [], sender=SENDER, campaign="c", batch_id="b")


@given(
    st.one_of(
        st.text(alphabet="+0123456789 \n٣x", max_size=18),
        st.from_regex(r"\+[0-9]{5,17}", fullmatch=True),
    )
)
def test_msisdn_fast_path_agrees_with_the_e164_pattern(address: str) -> None:
    """The regex-free path for ordinary numbers must accept and convert exactly as _E164 does."""
    recipient = Recipient(key="k", address=address)
    if _E164.match(address):
        assert _msisdn(recipient) == int(address[1:])
    else:
        with pytest.raises(ValueError, match=r"E\.164"):
            _msisdn(recipient)


_NUMBERS = st.one_of(
    st.from_regex(r"\+45[2-9][0-9]{7}", fullmatch=True),
    st.sampled_from(["+4520000001", "+4520000001\n", "+045123", "4520000001", "+45 20000001"]),
    st.text(alphabet="+0123456789\n", min_size=1, max_size=14),
)


@given(
    st.lists(_NUMBERS, min_size=1, max_size=8),
    st.sampled_from([None, datetime(2026, 12, 14, 9, tzinfo=UTC)]),
)
def test_encode_payload_is_build_payload_as_json(
    numbers: list[str], sendtime: datetime | None
) -> None:
    """The provider's request body must be exactly build_payload's document, or fail as it does."""
    recipients = [Recipient(key=f"k{i}", address=n) for i, n in enumerate(numbers)]
    kwargs = dict(sender=SENDER, campaign="c", batch_id="b", sendtime=sendtime)
    try:
        expected = build_payload(sms(), recipients, **kwargs)
    except ValueError as exc:
        with pytest.raises(ValueError, match=re.escape(str(exc))):
            encode_payload(sms(), recipients, **kwargs)
        return
    assert json.loads(encode_payload(sms(), recipients, **kwargs)) == expected


# --- Configuration from the environment -----------------------------------------------------------


def test_from_env_reads_token_and_url(server: GatewayApiServer) -> None:
    settings = SmsSettings(sender="Orby Bib", max_parts=3)
    gateway = GatewayApiProvider.from_env(
        settings, env={"GATEWAYAPI_TOKEN": TOKEN, "GATEWAYAPI_URL": server.url}
    )
    try:
        gateway.send_batch(sms(), borrowers(1), campaign="c", batch_id="b")
    finally:
        gateway.close()
    assert server.last_body["sender"] == "Orby Bib"
    assert server.last_body["max_parts"] == 3
    assert TOKEN not in repr(gateway)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "GATEWAYAPI_TOKEN is not set"),
        ({"GATEWAYAPI_TOKEN": "  "}, "GATEWAYAPI_TOKEN is not set"),
        ({"GATEWAYAPI_TOKEN": TOKEN, "GATEWAYAPI_URL": "http://example.com"}, "GATEWAYAPI_URL"),
    ],
)
def test_from_env_refuses_missing_token_and_bad_url(environ: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        GatewayApiProvider.from_env(SmsSettings(sender=SENDER), env=environ)


def test_from_env_defaults_to_gatewayapi_com() -> None:
    gateway = GatewayApiProvider.from_env(
        SmsSettings(sender=SENDER), env={"GATEWAYAPI_TOKEN": TOKEN}
    )
    gateway.close()
    assert gateway.base_url == "https://gatewayapi.com"


# --- The stand-in ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def _post(
    http: httpx.Client, server: GatewayApiServer, body: object, token: str | None = TOKEN
) -> httpx.Response:
    auth = (token, "") if token is not None else httpx.USE_CLIENT_DEFAULT
    return http.post(f"{server.url}/rest/mtsms", json=body, auth=auth)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"recipients": [{"msisdn": 4520000001}]}, 400, "0x0222"),
        ({"message": "", "recipients": [{"msisdn": 4520000001}]}, 400, "0x0308"),
        ({"message": "Hej"}, 400, "0x0222"),
        ({"message": "Hej", "recipients": []}, 400, "0x0308"),
        ({"message": "Hej", "recipients": [{"msisdn": "4520000001"}]}, 400, "0x0308"),
        (
            {"message": "Hej", "recipients": [{"msisdn": 4520000001}], "sender": "A" * 12},
            400,
            "0x0308",
        ),
        ({"message": "Hej", "recipients": [{"msisdn": 4520000001}], "sendtme": 1}, 400, "0x0220"),
        ({"message": "Hej", "recipients": [{"msisdn": 4520000001}] * 2}, 422, "0x0310"),
        ([], 422, "0x0308"),
        ("just a string", 422, "0x0308"),
    ],
)
def test_stand_in_refuses_what_gatewayapi_refuses(
    http: httpx.Client, server: GatewayApiServer, body: object, status: int, code: str
) -> None:
    response = _post(http, server, body)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert server.delivered == {}


def test_stand_in_keeps_refused_numbers_out_of_its_message(
    http: httpx.Client, server: GatewayApiServer
) -> None:
    response = _post(http, server, {"message": "Hej", "recipients": [{"msisdn": 4520000001}] * 2})
    assert "4520000001" not in response.json()["message"]
    assert response.json()["variables"] == ["4520000001"]


def test_stand_in_checks_basic_auth(http: httpx.Client, server: GatewayApiServer) -> None:
    body = {"message": "Hej", "recipients": [{"msisdn": 4520000001}]}
    assert _post(http, server, body, token=None).status_code == 401
    assert _post(http, server, body, token="wrong").json() == {
        "code": "0x0229",
        "message": "Invalid token",
    }
    garbled = {"Authorization": "Basic %%%"}
    assert http.post(f"{server.url}/rest/mtsms", json=body, headers=garbled).status_code == 401
    bearer = {"Authorization": "Bearer " + base64.b64encode(f"{TOKEN}:".encode()).decode()}
    assert http.post(f"{server.url}/rest/mtsms", json=body, headers=bearer).status_code == 401
    assert server.delivered == {}


def test_stand_in_takes_a_list_of_messages_and_reports_usage(
    http: httpx.Client, server: GatewayApiServer
) -> None:
    body = [
        {"message": "Hej", "sender": "Bibliotek", "recipients": [{"msisdn": 4520000001}]},
        {"message": "Hello", "recipients": [{"msisdn": 4670000001}, {"msisdn": 4520000002}]},
    ]
    answer = _post(http, server, body).json()
    assert len(answer["ids"]) == 2 and answer["ids"][0] != answer["ids"][1]
    assert answer["usage"]["countries"] == {"DK": 2, "SE": 1}
    assert answer["usage"]["currency"] == "DKK" and answer["usage"]["total_cost"] > 0
    assert server.delivered == {4520000001: 1, 4670000001: 1, 4520000002: 1}


def test_stand_in_calls_on_request_with_the_request_number_before_reading(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    seen: list[tuple[int, int]] = []
    server.on_request = lambda n: seen.append((n, sum(server.delivered.values())))
    send(provider, borrowers(1))
    send(provider, borrowers(1, first=20_000_100))
    # Each call happens before that request's recipients are counted.
    assert seen == [(1, 0), (2, 1)]


def test_stand_in_stats_endpoint_reports_counts_only(
    http: httpx.Client, server: GatewayApiServer
) -> None:
    two = [{"msisdn": 4520000001}, {"msisdn": 4520000002}]
    _post(http, server, {"message": "Hej", "recipients": two})
    stats = http.get(f"{server.url}/_stats").json()
    assert stats == {"requests": 1, "messages": 1, "delivered": 2, "unique_recipients": 2}


def test_stand_in_runs_as_a_process_and_prints_counts_on_sigterm(http: httpx.Client) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers.gatewayapi_server", "--port", "0", "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]  # ".../rest/mtsms"
        assert url.startswith("http://127.0.0.1:") and url.endswith("/rest/mtsms")
        body = {"message": "Hej", "recipients": [{"msisdn": 4520000001}]}
        assert http.post(url, json=body, auth=(TOKEN, "")).status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "1 requests, 1 recipients delivered (1 unique)" in output
    assert "4520000001" not in output


# --- The outcome table, over HTTP and HTTPS -------------------------------------------------------

# What GatewayAPI says with each refusal the table names (its error codes).
_REFUSALS = {
    "HTTP 401": Fault.http(401, "0x0229", "Invalid token"),
    "HTTP 403": Fault.http(403, "0x0213", "Unauthorized IP-address: %1"),
    "HTTP 403 refusing a recipient": Fault.http(403, "0x0215", "MSISDN %1 blacklisted"),
    "HTTP 429": Fault.rate_limited(retry_after=7),
}


def staged(situation: str, server: GatewayApiServer, tls: Tls) -> GatewayApiProvider:
    """A provider that meets `situation` (a row of tests/providers/outcomes.py) on its next send."""
    url, timeout = server.url, 2.0
    if situation.startswith("HTTP "):
        status = int(situation.split()[1])
        server.inject(_REFUSALS.get(situation) or Fault.http(status, "0x0101", "no"))
    elif situation == "connection refused":
        with socket.socket() as probe:  # a port that was free a moment ago and has no listener
            probe.bind(("127.0.0.1", 0))
            url = f"{url.split(':')[0]}://127.0.0.1:{probe.getsockname()[1]}"
    elif situation == "untrusted certificate":
        tls.distrust()
    elif situation == "request read, then no answer":
        server.never_answer()
        timeout = 0.3
    elif situation == "connection dropped after the request":
        server.inject(Fault.drop())
    else:
        assert situation == "accepted", f"no way to stage {situation!r} on the GatewayAPI stand-in"
    return GatewayApiProvider(TOKEN, base_url=url, sender=SENDER, timeout=timeout)


def _table() -> Iterator[pytest.ParameterSet]:
    for row in outcomes.rows("gatewayapi"):
        situation, expected = row.values
        schemes = ("https",) if situation == "untrusted certificate" else ("http", "https")
        for scheme in schemes:
            yield pytest.param(situation, expected, scheme, id=f"{situation}-{scheme}")


@pytest.mark.parametrize(("situation", "expected", "scheme"), list(_table()))
def test_every_outcome_is_classified_as_the_table_says(
    situation: str,
    expected: outcomes.Outcome,
    scheme: str,
    tls: Tls,
) -> None:
    batch = borrowers(2)
    with GatewayApiServer(TOKEN, tls=tls.server(scheme)) as server:
        provider = staged(situation, server, tls)
        try:
            assert outcomes.observe(lambda: send(provider, batch), batch[-1]) == expected
        finally:
            provider.close()
            server.never_answer(False)


def test_a_message_part_sms_cannot_carry_is_refused_before_any_request(
    server: GatewayApiServer, provider: GatewayApiProvider
) -> None:
    with_subject = Message(Channel.SMS, Language.DA, text=TEXT, subject="Nyt om gebyrer")
    with pytest.raises(UnsupportedFeatureError, match="cannot carry the sms message's subject"):
        provider.send_batch(with_subject, borrowers(1), campaign="c", batch_id="b")
    assert server.requests == 0
