"""GatewayAPI SMS provider: one `POST /rest/mtsms` per batch, its outcome mapped onto tasks.errors.

GatewayAPI (a Danish SMS gateway) takes one message with up to 10,000 recipients per request and
answers 200 `{"ids": [...], "usage": {...}}` or an error `{"code": "0x....", "message": "..."}`;
the token goes as HTTP Basic username with an empty password. Which outcome means what:

    200                    every recipient SENT; `ids` are GatewayAPI's message ids
    400, 422, other 4xx    PermanentError: the content or a recipient is refused
    401, 403               ConfigError: the token, IP allow-list or account credit is refused
    403 0x0214/0x0215/0x0217  PermanentError: a blacklisted number or barred country
    404                    ConfigError: GATEWAYAPI_URL does not point at the API
    429, 5xx except 504    TransientError: nothing accepted; retry (after Retry-After)
    504, lost answer       AmbiguousError: may have been sent; never re-sent automatically
    no connection          TransientError: nothing was sent
    untrusted certificate  ConfigError: nothing was sent, and a retry cannot change that

No connection and a lost answer carry `no_answer`, which the circuit breaker counts.

Text is checked before any request: it must be GSM-7 (æøå are) and fit in `max_parts` parts,
because a single character outside GSM-7 would silently turn the whole message into UCS-2
at more than twice the price.
"""

from __future__ import annotations

import functools
import json
import os
import re
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from operator import attrgetter
from typing import Any, ClassVar

import httpx

from tasks.errors import AmbiguousError, ConfigError, PermanentError, TransientError
from tasks.models import Channel, SmsSettings
from tasks.providers.base import (
    BatchResult,
    DeliveryStatus,
    Message,
    Provider,
    Recipient,
    secret_problem,
)
from tasks.textmetrics import GSM7, sms_info

DEFAULT_URL = "https://gatewayapi.com"
ENDPOINT = "/rest/mtsms"
MAX_RECIPIENTS = 10_000

# GatewayAPI: "up to 11 alphanumeric characters, or 15 digits"; its own examples use spaces.
_SENDER = re.compile(r"^(?:[A-Za-z0-9 ]{1,11}|[0-9]{1,15})$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Numbers one per line, each as _E164 accepts it (no newline inside one: checked apart).
_E164_LINES = re.compile(r"(?:\+[1-9][0-9]{6,14}\n)+")
# Phone numbers in whatever form an error text might quote them: 8+ digits, maybe spaced.
_NUMBER_LIKE = re.compile(r"\+?\d(?:[ -]?\d){7,}")
# 403 codes that refuse recipients, not the account: retrying cannot help, but the token is fine.
_RECIPIENT_REFUSALS = frozenset({"0x0214", "0x0215", "0x0217"})
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# httpx errors raised before a byte of the request left: retrying cannot send twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One CA bundle load per process: httpx loads it per client otherwise (~0.1 s each)."""
    try:
        return httpx.create_ssl_context()
    except OSError as exc:  # ssl.SSLError too: a CA file that is missing or holds no certificate
        raise ConfigError(
            f"the CA certificates for HTTPS could not be loaded ({type(exc).__name__}), so no "
            "SMS was sent; fix: point SSL_CERT_FILE at a PEM file of CA certificates, or unset it"
        ) from None


def _scrub(text: str) -> str:
    """`text` without anything that could be a phone number, cut to a readable length."""
    return _NUMBER_LIKE.sub("<number>", text)[:300]


def _sender_problem(sender: str) -> str | None:
    if _SENDER.match(sender):
        return None
    return (
        f"SMS sender {sender!r} must be at most 11 letters/digits (A-Z, 0-9, space; no æøå) "
        "or at most 15 digits"
    )


def _base_url_problem(base_url: str) -> str | None:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        return f"{base_url!r} is not a URL"
    if url.scheme == "https" and url.host:
        return None
    # Plain http would send the token in clear text; it is only for a local stand-in.
    if url.scheme == "http" and url.host in _LOCAL_HOSTS:
        return None
    return f"{base_url!r} must be an https:// address (plain http only for 127.0.0.1/localhost)"


def _unix_seconds(sendtime: datetime) -> int:
    if sendtime.tzinfo is None:
        raise ValueError("sendtime must be timezone-aware (a naive time is ambiguous across DST)")
    return int(sendtime.timestamp())


def _check_text(text: str, max_parts: int) -> None:
    """Raise PermanentError for text GatewayAPI should not be asked to send."""
    if not text.strip():
        raise PermanentError("SMS text is empty (fix: check the SMS template renders text)")
    info = sms_info(text)
    if info.encoding != "GSM-7":
        # The offending characters come from the template, never from personal data.
        bad = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in dict.fromkeys(text) if c not in GSM7)
        raise PermanentError(
            f"SMS text is not GSM-7 and would be sent as UCS-2 at more than twice the price; "
            f"no GSM-7 form for: {bad} (fix: rewrite these characters, or transliterate the text "
            "with tasks.textmetrics.to_gsm7)"
        )
    if info.parts > max_parts:
        limit = 160 if max_parts == 1 else 153 * max_parts
        raise PermanentError(
            f"SMS text needs {info.parts} parts ({info.septets_or_chars} septets) but max_parts is "
            f"{max_parts} (fix: shorten it to at most {limit} septets, where each of "
            "€ [ ] { } ^ ~ \\ | counts two, or raise channels.sms.max_parts)"
        )


def _msisdn(recipient: Recipient) -> int:
    address = recipient.address
    # The usual case without the regex (a million calls): what _E164 accepts, "+" and 7-15
    # ASCII digits, the first not 0.
    digits = address[1:]
    if (
        address[:1] == "+"
        and 7 <= len(digits) <= 15
        and digits[0] != "0"
        and digits.isdigit()
        and digits.isascii()
    ):
        return int(digits)
    if not _E164.match(address):
        # Name the recipient by key: the address itself is personal data.
        raise ValueError(
            f"recipient {recipient.key}: address is not an E.164 number such as +4512345678 "
            "(the audience import must normalise mobile numbers)"
        )
    return int(recipient.address[1:])


def build_payload(
    message: Message,
    recipients: Sequence[Recipient],
    *,
    sender: str,
    campaign: str,
    batch_id: str,
    sendtime: datetime | None = None,
    max_parts: int = 2,
) -> dict[str, Any]:
    """The JSON body of one `POST /rest/mtsms` sending `message` to `recipients`.

    Raises ValueError for a caller's mistake (wrong channel, bad sender, no or too many
    recipients, an address not in E.164, a naive `sendtime`) and PermanentError for text
    GatewayAPI should not send (empty, not GSM-7, more than `max_parts` parts). A number that
    occurs twice is sent once: GatewayAPI refuses a message with a repeated recipient.
    """
    payload = _envelope(message, recipients, sender, campaign, batch_id, sendtime, max_parts)
    payload["recipients"] = _recipient_list(recipients)
    return payload


def _recipient_list(recipients: Sequence[Recipient]) -> list[dict[str, int]]:
    """Each number once, in order, as GatewayAPI's integer msisdn; names a bad one by key."""
    msisdns = dict.fromkeys(_msisdn(r) for r in recipients)
    return [{"msisdn": m} for m in msisdns]


def encode_payload(
    message: Message,
    recipients: Sequence[Recipient],
    *,
    sender: str,
    campaign: str,
    batch_id: str,
    sendtime: datetime | None = None,
    max_parts: int = 2,
) -> bytes:
    """`build_payload` as the request's JSON bytes: the same document (tested), same errors.

    The recipient list is written by joining the numbers in C, not as 10,000 dicts for
    json.dumps: on a million SMS recipients that is ~1.5 s less.
    """
    envelope = _envelope(message, recipients, sender, campaign, batch_id, sendtime, max_parts)
    addresses = list(dict.fromkeys(map(attrgetter("address"), recipients)))
    lines = "\n".join(addresses)
    if lines.count("\n") != len(addresses) - 1 or not _E164_LINES.fullmatch(lines + "\n"):
        # Something unusual: checked number by number, as build_payload does.
        return json.dumps({**envelope, "recipients": _recipient_list(recipients)}).encode()
    # Plain E.164 numbers, each once: a number's one "+" goes, and the digits are the integer.
    numbers = '},{"msisdn":'.join(addresses).replace("+", "")
    head = json.dumps(envelope)
    return f'{head[:-1]}, "recipients": [{{"msisdn":{numbers}}}]}}'.encode()


def _envelope(
    message: Message,
    recipients: Sequence[Recipient],
    sender: str,
    campaign: str,
    batch_id: str,
    sendtime: datetime | None,
    max_parts: int,
) -> dict[str, Any]:
    """Every field of the payload but the recipients, after checking the arguments."""
    if message.channel is not Channel.SMS:
        raise ValueError(f"GatewayAPI sends SMS only, not {message.channel.value} messages")
    if problem := _sender_problem(sender):
        raise ValueError(problem)
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1")
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise ValueError(
            f"a GatewayAPI message takes 1 to {MAX_RECIPIENTS} recipients, got {len(recipients)}"
        )
    _check_text(message.text, max_parts)
    payload: dict[str, Any] = {
        "sender": sender,
        "message": message.text,
        # Comes back in every delivery report, so a report finds its campaign and batch.
        "userref": f"{campaign}:{batch_id}",
        "label": campaign,
        "max_parts": max_parts,
    }
    if sendtime is not None:
        payload["sendtime"] = _unix_seconds(sendtime)
    return payload


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), if it says."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _refusal(response: httpx.Response) -> tuple[str, str]:
    """GatewayAPI's error code and a scrubbed one-line reason from an error answer."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code = message = ""
    if isinstance(body, dict):
        code = str(body.get("code") or "").strip().lower()
        # `variables` is left out on purpose: GatewayAPI puts refused numbers there.
        message = str(body.get("message") or "").strip()
    reason = " ".join(p for p in (code, message) if p) or response.reason_phrase or "no detail"
    return code, _scrub(" ".join(reason.split()))


def _untrusted(exc: BaseException) -> bool:
    """Whether a connect error comes from a certificate this machine does not trust."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    return cause is not None


class GatewayApiProvider(Provider):
    """Sends SMS through GatewayAPI's REST API with one reused HTTP connection pool."""

    name: ClassVar[str] = "gatewayapi"
    max_batch: ClassVar[int] = MAX_RECIPIENTS

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_URL,
        sender: str,
        max_parts: int = 2,
        sendtime: datetime | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        if not token:
            raise ValueError("GatewayAPI token is empty")
        if problem := secret_problem(token):
            raise ConfigError(
                f"GATEWAYAPI_TOKEN {problem}, which no GatewayAPI token has, so no SMS was sent "
                "(fix: copy the token again from the dashboard's API Keys page and export "
                "GATEWAYAPI_TOKEN=<token>; a token read from a file saved on Windows ends in a "
                "carriage return)"
            )
        for problem in (_sender_problem(sender), _base_url_problem(base_url)):
            if problem:
                raise ValueError(problem)
        if max_parts < 1:
            raise ValueError("max_parts must be at least 1")
        if sendtime is not None:
            _unix_seconds(sendtime)  # refuse a naive time now, not at the first batch
        self.base_url = base_url
        self.sender = sender
        self.max_parts = max_parts
        self.sendtime = sendtime
        self._client = httpx.Client(
            base_url=base_url,
            auth=httpx.BasicAuth(token, ""),
            timeout=httpx.Timeout(
                self.read_timeout if timeout is None else timeout,
                connect=self.connect_timeout if connect_timeout is None else connect_timeout,
            ),
            verify=_tls_context(),
            headers={"Accept": "application/json", "User-Agent": "fbsflow"},
        )

    @classmethod
    def from_env(
        cls, settings: SmsSettings, *, environ: Mapping[str, str] | None = None
    ) -> GatewayApiProvider:
        """A provider from GATEWAYAPI_TOKEN, GATEWAYAPI_URL and the municipality's SMS settings."""
        env = os.environ if environ is None else environ
        token = env.get("GATEWAYAPI_TOKEN", "")
        if not token.strip():
            raise ConfigError(
                "GATEWAYAPI_TOKEN is not set (fix: create an API token in the GatewayAPI "
                "dashboard under API Keys and export GATEWAYAPI_TOKEN=<token>)"
            )
        base_url = env.get("GATEWAYAPI_URL", "").strip() or DEFAULT_URL
        if problem := _base_url_problem(base_url):
            raise ConfigError(f"GATEWAYAPI_URL: {problem} (fix: unset it to use {DEFAULT_URL})")
        return cls(token, base_url=base_url, sender=settings.sender, max_parts=settings.max_parts)

    def __repr__(self) -> str:  # the token stays out of logs
        return f"GatewayApiProvider(base_url={self.base_url!r}, sender={self.sender!r})"

    def send_batch(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> BatchResult:
        """Send `message` to up to 10,000 `recipients` in one request."""
        body = encode_payload(
            message,
            recipients,
            sender=self.sender,
            campaign=campaign,
            batch_id=batch_id,
            sendtime=self.sendtime,
            max_parts=self.max_parts,
        )
        response = self._post(body)
        return self._outcome(response, recipients)

    def close(self) -> None:
        self._client.close()

    def _post(self, body: bytes) -> httpx.Response:
        """The one place where httpx's errors become fbsflow's."""
        try:
            return self._client.post(
                ENDPOINT, content=body, headers={"Content-Type": "application/json"}
            )
        except _NOT_SENT as exc:
            if _untrusted(exc):
                raise ConfigError(
                    "GatewayAPI's TLS certificate was not trusted, so no SMS was sent (fix: "
                    "check GATEWAYAPI_URL; behind a proxy that re-signs HTTPS, point "
                    "SSL_CERT_FILE at your organisation's CA certificate file)"
                ) from None
            raise TransientError(
                f"GatewayAPI could not be reached ({type(exc).__name__}); nothing was sent",
                no_answer=True,
            ) from exc
        except httpx.TransportError as exc:
            # Read/write timeouts, resets, a hang-up without an answer: the request may have
            # arrived whole, so a blind retry could text every recipient twice.
            raise AmbiguousError(
                f"GatewayAPI may have accepted the batch: the connection failed after sending "
                f"({type(exc).__name__}); check the GatewayAPI dashboard before sending again",
                no_answer=True,
            ) from exc

    def _outcome(self, response: httpx.Response, recipients: Sequence[Recipient]) -> BatchResult:
        status = response.status_code
        if 200 <= status < 300:
            return self._accepted(response, recipients)
        code, reason = _refusal(response)
        if status in (401, 403) and code not in _RECIPIENT_REFUSALS:
            raise ConfigError(
                f"GatewayAPI refused the request ({status} {reason}) (fix: check GATEWAYAPI_TOKEN: "
                "an API token from the dashboard's API Keys page; also the account's IP "
                "allow-list and credit there)"
            )
        if status == 404:
            raise ConfigError(
                f"GatewayAPI answered 404 for {ENDPOINT} (fix: GATEWAYAPI_URL must be the API's "
                f"base address, e.g. {DEFAULT_URL}, without a path)"
            )
        if status == 429 or (500 <= status < 600 and status != 504):
            raise TransientError(
                f"GatewayAPI did not accept the batch ({status} {reason}); retry later",
                status=status,
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        if 400 <= status < 500:
            raise PermanentError(f"GatewayAPI refused the batch ({status} {reason})", status=status)
        # 504 (a proxy stopped waiting while GatewayAPI may have gone on to send), 1xx, 3xx.
        raise AmbiguousError(
            f"GatewayAPI answered {status} ({reason}); the batch may have been accepted, check "
            "the GatewayAPI dashboard before sending again",
            status=status,
        )

    def _accepted(self, response: httpx.Response, recipients: Sequence[Recipient]) -> BatchResult:
        try:
            body = response.json()
        except ValueError:
            body = None
        ids = body.get("ids") if isinstance(body, dict) else None
        provider_ids = [str(i) for i in ids] if isinstance(ids, list) else []
        usage = body.get("usage") if isinstance(body, dict) else None
        cost = ""
        if isinstance(usage, dict) and "total_cost" in usage:
            cost = f", cost {usage['total_cost']} {usage.get('currency', '')}".rstrip()
        detail = f"{response.status_code}: accepted, {len(provider_ids)} message id(s){cost}"
        statuses = dict.fromkeys(map(attrgetter("key"), recipients), DeliveryStatus.SENT)
        return BatchResult(statuses, provider_ids=provider_ids, detail=detail)
