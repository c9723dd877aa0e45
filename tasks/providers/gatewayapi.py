"""GatewayAPI SMS provider: one `POST /rest/mtsms` per batch, its outcome mapped onto tasks.errors.

GatewayAPI (a Danish SMS gateway) takes one message with up to 10,000 recipients per request and
answers 200 `{"ids": [...], "usage": {...}}` or an error `{"code": "0x....", "message": "..."}`;
the token goes as HTTP Basic username with an empty password. Failures and answers are
classified by tasks/providers/http.py; GatewayAPI's own part:

    2xx                    every recipient SENT; `ids` are GatewayAPI's message ids
    401, 403               ConfigError: the token, IP allow-list or account credit is refused
    403 0x0214/0x0215/0x0217  PermanentError: a blacklisted number or barred country
    404                    ConfigError: GATEWAYAPI_URL does not point at the API
    504                    AmbiguousError: a proxy stopped waiting; GatewayAPI may have sent it
    429, other 5xx         TransientError: nothing accepted; retry (after Retry-After)

httpx's errors become "not sent" or "no answer" in one place, `HttpxTransport.post`.

Text is checked before any request: it must be GSM-7 (æøå are) and fit in `max_parts` parts,
because a single character outside GSM-7 would silently turn the whole message into UCS-2
at more than twice the price.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, ClassVar

import httpx

from tasks.errors import ConfigError, PermanentError
from tasks.models import Channel, SmsSettings
from tasks.providers.base import BatchResult, DeliveryStatus, Message, Recipient, secret_problem
from tasks.providers.http import (
    Answer,
    HttpProvider,
    NoAnswer,
    NotSent,
    Transport,
    tls_context,
)
from tasks.settings import credentials, plain
from tasks.textmetrics import GSM7, sms_info, sms_sender_problem

DEFAULT_URL = "https://gatewayapi.com"
ENDPOINT = "/rest/mtsms"
MAX_RECIPIENTS = 10_000

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Numbers one per line, each as _E164 accepts it (no newline inside one: checked apart).
_E164_LINES = re.compile(r"(?:\+[1-9][0-9]{6,14}\n)+")
# 403 codes that refuse recipients, not the account: retrying cannot help, but the token is fine.
_RECIPIENT_REFUSALS = frozenset({"0x0214", "0x0215", "0x0217"})
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# httpx errors raised before a byte of the request left, or before a whole request did (a
# LocalProtocolError): retrying cannot send twice.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.LocalProtocolError,
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
    if problem := sms_sender_problem(sender):
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


class GatewayApiProvider(HttpProvider):
    """Sends SMS through GatewayAPI's REST API with one reused HTTP connection pool."""

    name: ClassVar[str] = "gatewayapi"
    title: ClassVar[str] = "GatewayAPI"
    path: ClassVar[str] = ENDPOINT
    url_variable: ClassVar[str] = "GATEWAYAPI_URL"
    carries: ClassVar[frozenset[str]] = frozenset()  # text only: no subject, HTML, attachments
    max_batch: ClassVar[int] = MAX_RECIPIENTS
    dashboard: ClassVar[str] = "the GatewayAPI dashboard"
    # A proxy in front of GatewayAPI stopped waiting, while GatewayAPI may have gone on to send.
    ambiguous_statuses: ClassVar[frozenset[int]] = frozenset({504})
    access_refused: ClassVar[str] = (
        "GatewayAPI refused the request ({status}: {reason}); fix: check GATEWAYAPI_TOKEN (an "
        "API token from the dashboard's API Keys page), and the account's IP allow-list and "
        "credit there"
    )
    not_found: ClassVar[str] = (
        f"GatewayAPI answered 404 for {ENDPOINT}; fix: GATEWAYAPI_URL must be the API's base "
        f"address, e.g. {DEFAULT_URL}, without a path"
    )

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
        for problem in (sms_sender_problem(sender), _base_url_problem(base_url)):
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
        self.secrets = (token,)
        self.headers = {"Content-Type": "application/json"}
        self.transport: Transport = HttpxTransport(
            base_url,
            token,
            timeout=self.read_timeout if timeout is None else timeout,
            connect_timeout=self.connect_timeout if connect_timeout is None else connect_timeout,
        )

    @classmethod
    def from_env(
        cls, settings: SmsSettings, env: Mapping[str, str] | None = None
    ) -> GatewayApiProvider:
        """A provider from GATEWAYAPI_TOKEN, GATEWAYAPI_URL and the municipality's SMS settings."""
        given = credentials(env)
        token = plain(given.gatewayapi_token)
        if not token.strip():
            raise ConfigError(
                "GATEWAYAPI_TOKEN is not set (fix: create an API token in the GatewayAPI "
                "dashboard under API Keys and export GATEWAYAPI_TOKEN=<token>)"
            )
        base_url = (given.gatewayapi_url or "").strip() or DEFAULT_URL
        if problem := _base_url_problem(base_url):
            raise ConfigError(f"GATEWAYAPI_URL: {problem} (fix: unset it to use {DEFAULT_URL})")
        return cls(token, base_url=base_url, sender=settings.sender, max_parts=settings.max_parts)

    @classmethod
    def document(
        cls,
        settings: SmsSettings,
        message: Message,
        recipients: Sequence[Recipient],
        *,
        campaign: str,
        batch_id: str,
    ) -> dict[str, Any]:
        """The request body for a batch as a document (what the outbox writes)."""
        return build_payload(
            message,
            recipients,
            sender=settings.sender,
            campaign=campaign,
            batch_id=batch_id,
            max_parts=settings.max_parts,
        )

    def __repr__(self) -> str:  # the token stays out of logs
        return f"GatewayApiProvider(base_url={self.base_url!r}, sender={self.sender!r})"

    def build_request(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> bytes:
        return encode_payload(
            message,
            recipients,
            sender=self.sender,
            campaign=campaign,
            batch_id=batch_id,
            sendtime=self.sendtime,
            max_parts=self.max_parts,
        )

    def read_accepted(self, answer: Answer, recipients: Sequence[Recipient]) -> BatchResult:
        body = _json(answer)
        ids = body.get("ids")
        provider_ids = [str(i) for i in ids] if isinstance(ids, list) else []
        usage = body.get("usage")
        cost = ""
        if isinstance(usage, dict) and "total_cost" in usage:
            cost = f", cost {usage['total_cost']} {usage.get('currency', '')}".rstrip()
        detail = f"{answer.status}: accepted, {len(provider_ids)} message id(s){cost}"
        statuses = dict.fromkeys(map(attrgetter("key"), recipients), DeliveryStatus.SENT)
        return BatchResult(statuses, provider_ids=provider_ids, detail=detail)

    def reason(self, answer: Answer) -> str:
        """GatewayAPI's error code and message; `variables` is left out: it lists numbers."""
        body = _json(answer)
        return f"{_code(body)} {body.get('message') or ''}".strip()

    def refuses_recipients(self, answer: Answer) -> bool:
        return _code(_json(answer)) in _RECIPIENT_REFUSALS


def _json(answer: Answer) -> dict[str, Any]:
    try:
        body = json.loads(answer.body)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _code(body: dict[str, Any]) -> str:
    return str(body.get("code") or "").strip().lower()


class HttpxTransport:
    """GatewayAPI's transport: one httpx client (a connection pool), the token as Basic auth.

    The one place where httpx's errors become "not sent" or "no answer".
    """

    def __init__(
        self, base_url: str, token: str, *, timeout: float, connect_timeout: float
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            auth=httpx.BasicAuth(token, ""),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            verify=tls_context(),
            headers={"Accept": "application/json", "User-Agent": "fbsflow"},
        )

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            response = self._client.post(path, content=body, headers=headers)
        except _NOT_SENT as exc:
            raise NotSent(exc) from exc
        except httpx.TransportError as exc:
            # Read/write timeouts, resets, a hang-up without an answer: the request may have
            # arrived whole, so a blind retry could text every recipient twice.
            raise NoAnswer(exc) from exc
        return Answer(response.status_code, response.headers, response.content)

    def close(self) -> None:
        self._client.close()
