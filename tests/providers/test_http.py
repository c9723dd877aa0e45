"""The HTTP providers' shared helpers: Retry-After parsing, scrubbing, the one TLS context.

How answers and failures are classified is in the outcome table (tests/providers/outcomes.py),
asserted per provider against its stand-in; here are the pieces that need no server.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from tasks.errors import ConfigError
from tasks.providers.http import (
    describe,
    retry_after,
    scrub_personal_data,
    tls_context,
    untrusted_certificate,
)
from tests.support.tls import self_signed

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday; Denmark is on UTC+1 (CET) then
LATER = NOW + timedelta(seconds=120)


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)  # "Mon, 02 Nov 2026 09:02:00 GMT"


# --- Retry-After and X-RateLimit-Reset ------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reset_header", "expected"),
    [
        ({"Retry-After": "7"}, None, 7.0),
        ({"Retry-After": "2.5"}, None, 2.5),
        ({"Retry-After": " 0 "}, None, 0.0),
        ({"Retry-After": "-5"}, None, 0.0),  # never negative
        ({"Retry-After": http_date(LATER)}, None, 120.0),
        # The same instant written in other timezones: Copenhagen's CET, and New York's EST.
        (
            {"Retry-After": format_datetime(LATER.astimezone(timezone(timedelta(hours=1))))},
            None,
            120.0,
        ),
        ({"Retry-After": "Mon, 02 Nov 2026 04:02:00 EST"}, None, 120.0),
        # "-0000", and a zone name the parser does not know (CET), leave it without a zone:
        # read as GMT, the only zone HTTP allows, not as the local time.
        ({"Retry-After": "Mon, 02 Nov 2026 09:02:00 -0000"}, None, 120.0),
        ({"Retry-After": "Mon, 02 Nov 2026 09:02:00 CET"}, None, 120.0),
        ({"Retry-After": http_date(NOW - timedelta(hours=1))}, None, 0.0),  # already past
        ({"Retry-After": "soon"}, None, None),
        ({"Retry-After": "inf"}, None, None),
        ({"Retry-After": "nan"}, None, None),
        ({"X-RateLimit-Reset": str(int(NOW.timestamp()) + 30)}, "X-RateLimit-Reset", 30.0),
        ({"x-ratelimit-reset": str(int(NOW.timestamp()) + 30)}, "X-RateLimit-Reset", 30.0),
        ({"X-RateLimit-Reset": str(int(NOW.timestamp()) - 30)}, "X-RateLimit-Reset", 0.0),
        ({"X-RateLimit-Reset": "tomorrow"}, "X-RateLimit-Reset", None),
        ({"X-RateLimit-Reset": str(int(NOW.timestamp()) + 30)}, None, None),  # not this API's
        ({"Retry-After": "3", "X-RateLimit-Reset": "0"}, "X-RateLimit-Reset", 3.0),  # it wins
        (
            {"Retry-After": "soon", "X-RateLimit-Reset": str(int(NOW.timestamp()) + 9)},
            "X-RateLimit-Reset",
            9.0,
        ),
        ({}, "X-RateLimit-Reset", None),
    ],
)
def test_retry_after(
    headers: dict[str, str], reset_header: str | None, expected: float | None
) -> None:
    # httpx's headers, as GatewayAPI's transport returns them: looked up without regard to case.
    assert retry_after(httpx.Headers(headers), reset_header, now=NOW.timestamp()) == expected


def test_retry_after_without_headers() -> None:
    assert retry_after(None) is None


# --- Scrubbing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        # SendGrid echoes the address it refuses, in brackets.
        ("dup [a.b+c@x.dk] and <d@e.test>.", (), "dup [<e-mail>] and <<e-mail>>."),
        # A gateway that fills its placeholders in quotes the numbers, in any spacing.
        (
            "MSISDN 4520000001 (+45 20 00 00 02) is duplicated",
            (),
            "MSISDN <phone> (<phone>) is duplicated",
        ),
        ("0x0310 code, 2026-12-14 date", (), "0x0310 code, 2026-12-14 date"),
        ("Invalid key SG.abc123 for you", ("SG.abc123",), "Invalid key <secret> for you"),
        ("nothing to hide", ("",), "nothing to hide"),  # an empty secret masks nothing
    ],
)
def test_scrub_personal_data(text: str, secrets: tuple[str, ...], expected: str) -> None:
    assert scrub_personal_data(text, secrets) == expected


# --- Failures named without their text ------------------------------------------------------------


def test_describe_names_the_kind_and_strerror_never_the_text() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert describe(refused) == "ConnectionRefusedError (Connection refused)"
    assert describe(ValueError("Invalid header value b'Bearer SG.secret\\r'")) == "ValueError"


def test_an_untrusted_certificate_is_found_down_the_chain() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    wrapped = httpx.ConnectError("handshake failed")
    wrapped.__cause__ = cause
    assert untrusted_certificate(wrapped) == "self-signed certificate"
    assert untrusted_certificate(ConnectionRefusedError()) is None


# --- The one TLS context --------------------------------------------------------------------------


def test_the_tls_context_is_built_once_and_verifies() -> None:
    context = tls_context()
    assert tls_context() is context
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_ssl_cert_file_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, _ = self_signed(tmp_path, "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    subjects = [dict(x[0] for x in c["subject"]) for c in tls_context().get_ca_certs()]
    assert {"commonName": "fbsflow ca"} in subjects


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_a_ca_file_that_cannot_be_loaded_is_a_config_error_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("SSL_CERT_FILE", str(path))
    with pytest.raises(ConfigError, match="fix: point SSL_CERT_FILE at a PEM file"):
        tls_context()
