"""SendGrid v3 e-mail provider: one `POST /v3/mail/send` per batch of up to 1000 recipients.

Failures and answers are classified by tasks/providers/http.py; SendGrid's own part:

    202, or 200 in sandbox mode     every recipient SENT; provider id from X-Message-Id
    other 2xx or 3xx                AmbiguousError: SendGrid never sends them for mail
    429                             TransientError, retry_after from Retry-After / X-RateLimit-Reset
    401 / 403                       ConfigError: the API key is wrong or lacks the Mail Send scope
    404                             ConfigError: SENDGRID_HOST does not point at the v3 API
    400 / 413 / other 4xx           PermanentError with SendGrid's errors[].message, scrubbed
    malformed key                   ConfigError, raised before anything is sent

The request goes out through one of two transports, the same bytes and headers either way, with
the same outcomes (tests/providers/test_sendgrid.py proves it against the stand-in, over HTTP and
HTTPS): the SDK's own client (tasks/providers/sendgrid_sdk.py, a new connection per request), or
one kept connection (tasks/speed/keepalive.py: a TLS handshake per provider instead of per
request), the default unless FBSFLOW_SPEED_KEEPALIVE=0 or a proxy is in the way.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any, ClassVar

import sendgrid

from tasks.errors import ConfigError
from tasks.models import NewsletterSettings
from tasks.providers.base import (
    MESSAGE_PARTS,
    BatchResult,
    DeliveryStatus,
    Message,
    Recipient,
    check_headers,
    secret_problem,
)
from tasks.providers.http import Answer, HttpProvider, Transport
from tasks.providers.sendgrid_sdk import SdkTransport
from tasks.settings import credentials, plain
from tasks.speed import keepalive

DEFAULT_HOST = "https://api.sendgrid.com"
MAX_RECIPIENTS = 1000  # personalizations and to+cc+bcc per request, both capped at 1000
MAX_CATEGORIES = 10
MAX_CUSTOM_ARGS_BYTES = 10_000  # SendGrid's limit on message + personalization custom_args
MAIL_SEND = "/v3/mail/send"
JSON_UTF8 = "application/json; charset=utf-8"


def build_payload(
    message: Message,
    recipients: Sequence[Recipient],
    *,
    from_email: str,
    from_name: str,
    campaign: str,
    batch_id: str,
    sandbox_mode: bool = False,
    unsubscribe_group_id: int | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The exact `/v3/mail/send` body for one batch: one personalization per recipient.

    Raises ValueError for calls no correct caller makes (too many or duplicate recipients, no
    subject, oversized custom_args); those are bugs, not delivery outcomes.
    """
    envelope = _envelope(
        message,
        recipients,
        from_email,
        from_name,
        campaign,
        batch_id,
        sandbox_mode,
        unsubscribe_group_id,
        unsubscribe_url,
    )
    return {"personalizations": _personalizations(recipients), **envelope}


def _personalizations(recipients: Sequence[Recipient]) -> list[dict[str, Any]]:
    return [{"to": [{"email": r.address}], "custom_args": {"recipient": r.key}} for r in recipients]


def encode_payload(
    message: Message,
    recipients: Sequence[Recipient],
    *,
    from_email: str,
    from_name: str,
    campaign: str,
    batch_id: str,
    sandbox_mode: bool = False,
    unsubscribe_group_id: int | None = None,
    unsubscribe_url: str | None = None,
) -> str:
    """`build_payload` as the request's JSON text: the same document (tested), same errors.

    The personalizations are written by one join per recipient, run in C, not as 3,000 dicts
    for json.dumps to walk: per 1000-recipient request that is ~2.5 ms less, a third of what
    sending a million e-mails cost this process.
    """
    envelope = _envelope(
        message,
        recipients,
        from_email,
        from_name,
        campaign,
        batch_id,
        sandbox_mode,
        unsubscribe_group_id,
        unsubscribe_url,
    )
    addresses = list(map(attrgetter("address"), recipients))
    keys = list(map(attrgetter("key"), recipients))
    if not _json_plain("".join(addresses) + "".join(keys)):
        # A character JSON must escape (quotes, backslashes, non-ASCII): json.dumps does it.
        return json.dumps({"personalizations": _personalizations(recipients), **envelope})
    # Each personalization is its five pieces joined: one C call per recipient.
    pieces = zip(repeat(_TO), addresses, repeat(_RECIPIENT), keys, repeat(_END))
    personalizations = ", ".join(map("".join, pieces))
    return f'{{"personalizations": [{personalizations}], {json.dumps(envelope)[1:]}'


_TO, _RECIPIENT, _END = '{"to": [{"email": "', '"}], "custom_args": {"recipient": "', '"}}'


def _url(settings: NewsletterSettings) -> str | None:
    url = getattr(settings, "unsubscribe_url", None)
    return str(url) if url else None


def _json_plain(text: str) -> bool:
    r"""Printable ASCII without `"` and `\`: text json.dumps writes as it is, between quotes."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _envelope(
    message: Message,
    recipients: Sequence[Recipient],
    from_email: str,
    from_name: str,
    campaign: str,
    batch_id: str,
    sandbox_mode: bool,
    unsubscribe_group_id: int | None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """Every field of the payload but the personalizations, after checking the arguments."""
    if not recipients:
        raise ValueError("a SendGrid batch needs at least one recipient")
    if len(recipients) > MAX_RECIPIENTS:
        raise ValueError(
            f"a SendGrid batch holds at most {MAX_RECIPIENTS} recipients, got {len(recipients)}"
        )
    if len(set(map(attrgetter("key"), recipients))) != len(recipients):
        raise ValueError("recipient keys repeat within the batch; the ledger must deduplicate")
    if not message.subject:
        raise ValueError("an e-mail message needs a subject")
    check_headers(message, from_name=from_name, from_email=from_email)

    custom_args = {"campaign": campaign, "batch_id": batch_id}
    # The recipient key rides along per personalization so event webhooks map back to the ledger
    # without an address lookup.
    widest = max(recipients, key=lambda r: len(r.key.encode()))
    size = len(json.dumps({**custom_args, "recipient": widest.key}).encode())
    if size >= MAX_CUSTOM_ARGS_BYTES:
        raise ValueError(f"custom_args would be {size} bytes; SendGrid takes under 10,000")

    content = [{"type": "text/plain", "value": message.text}]
    if message.html:
        content.append({"type": "text/html", "value": message.html})
    categories = ["fbsflow", campaign[:255], f"{message.channel.value}-{message.language.value}"]

    payload: dict[str, Any] = {
        "from": {"email": from_email, "name": from_name},
        "subject": message.subject,
        "content": content,
        "categories": list(dict.fromkeys(categories))[:MAX_CATEGORIES],
        "custom_args": custom_args,
        "mail_settings": {"sandbox_mode": {"enable": sandbox_mode}},
    }
    if unsubscribe_group_id is not None:
        payload["asm"] = {"group_id": unsubscribe_group_id}
    if unsubscribe_url:
        payload["headers"] = unsubscribe_headers(unsubscribe_url)
    if message.attachments:
        payload["attachments"] = [
            {
                "content": base64.b64encode(a.content).decode("ascii"),
                "filename": a.filename,
                "type": a.mime_type,
                "disposition": "attachment",
            }
            for a in message.attachments
        ]
    return payload


def unsubscribe_headers(url: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: what Gmail and Yahoo require of bulk senders."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


class SendGridProvider(HttpProvider):
    """Sends a batch of up to 1000 recipients as one SendGrid request, through one transport."""

    name: ClassVar[str] = "sendgrid"
    title: ClassVar[str] = "SendGrid"
    path: ClassVar[str] = MAIL_SEND
    url_variable: ClassVar[str] = "SENDGRID_HOST"
    carries: ClassVar[frozenset[str]] = frozenset(MESSAGE_PARTS)
    max_batch: ClassVar[int] = MAX_RECIPIENTS
    # api.sendgrid.com is a round trip to the US away, and each request waits for it: with a
    # 20 ms round trip, 1M e-mails took 22.1 s two chunks at a time and 12.2-12.7 s eight at a time
    # (bench/latency.py --flow); on loopback eight cost the same as two. More stays within what
    # SendGrid takes (it answers 429 with a reset time when not, which the delivery honours).
    chunks_at_once: ClassVar[int] = 8
    reset_header: ClassVar[str | None] = "X-RateLimit-Reset"
    dashboard: ClassVar[str] = "SendGrid's Activity Feed"
    access_refused: ClassVar[str] = (
        "SENDGRID_API_KEY refused ({status}: {reason}); fix: create a key with the Mail Send "
        "permission in SendGrid (Settings > API Keys), export it as SENDGRID_API_KEY, and check "
        "that SENDGRID_HOST is the API of the account that owns the key"
    )
    not_found: ClassVar[str] = (
        f"SendGrid answered 404 for {MAIL_SEND}; fix: set SENDGRID_HOST to {DEFAULT_HOST} "
        "(or unset it)"
    )

    def __init__(
        self,
        api_key: str,
        *,
        host: str = DEFAULT_HOST,
        from_email: str,
        from_name: str,
        sandbox_mode: bool = False,
        unsubscribe_group_id: int | None = None,
        unsubscribe_url: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError(
                "SENDGRID_API_KEY is empty; fix: create a key with the Mail Send permission "
                "in SendGrid (Settings > API Keys) and export SENDGRID_API_KEY"
            )
        if problem := secret_problem(api_key):
            raise ConfigError(
                f"SENDGRID_API_KEY {problem}, which no SendGrid key has, so nothing was sent; "
                "fix: export it again exactly as SendGrid showed it (a key read from a file "
                "saved on Windows ends in a carriage return)"
            )
        if not host.startswith(("https://", "http://")):
            raise ConfigError(
                f"SENDGRID_HOST={host!r} is not a URL; fix: use {DEFAULT_HOST} or unset it"
            )
        self.host = host.rstrip("/")
        self.from_email = from_email
        self.from_name = from_name
        self.sandbox_mode = sandbox_mode
        self.unsubscribe_group_id = unsubscribe_group_id
        self.unsubscribe_url = unsubscribe_url
        self.timeout = self.read_timeout if timeout is None else timeout
        connect = self.connect_timeout if connect_timeout is None else connect_timeout
        self.secrets = (api_key,)
        sdk = sendgrid.SendGridAPIClient(api_key=api_key, host=self.host)
        # The SDK's own headers (key, User-Agent, Accept) on either transport. With the charset
        # named, the SDK sends a body as it is rather than json.dumps it (SendGrid's C# library
        # sends this header on every request).
        self.headers = {**sdk.client.request_headers, "Content-Type": JSON_UTF8}
        self.transport: Transport = (
            keepalive.KeptConnection(self.host, connect_timeout=connect, timeout=self.timeout)
            if keepalive.keeps_connection(self.host)
            else SdkTransport(sdk, self.timeout)
        )

    @property
    def keeps_connection(self) -> bool:
        """Whether requests share a kept-open connection (False: the SDK's own, one each)."""
        return isinstance(self.transport, keepalive.KeptConnection)

    @classmethod
    def from_env(
        cls, settings: NewsletterSettings, env: Mapping[str, str] | None = None
    ) -> SendGridProvider:
        """Build from the newsletter settings plus SENDGRID_API_KEY and SENDGRID_HOST."""
        given = credentials(env)
        return cls(
            plain(given.sendgrid_api_key),
            host=given.sendgrid_host or DEFAULT_HOST,
            from_email=str(settings.from_email),
            from_name=settings.from_name,
            sandbox_mode=settings.sandbox_mode,
            unsubscribe_group_id=settings.unsubscribe_group_id,
            unsubscribe_url=_url(settings),
        )

    @classmethod
    def document(
        cls,
        settings: NewsletterSettings,
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
            from_email=str(settings.from_email),
            from_name=settings.from_name,
            campaign=campaign,
            batch_id=batch_id,
            sandbox_mode=settings.sandbox_mode,
            unsubscribe_group_id=settings.unsubscribe_group_id,
            unsubscribe_url=_url(settings),
        )

    def __repr__(self) -> str:  # the API key stays out of logs and tracebacks
        return f"SendGridProvider(host={self.host!r}, sandbox_mode={self.sandbox_mode})"

    def build_request(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> bytes:
        return encode_payload(
            message,
            recipients,
            from_email=self.from_email,
            from_name=self.from_name,
            campaign=campaign,
            batch_id=batch_id,
            sandbox_mode=self.sandbox_mode,
            unsubscribe_group_id=self.unsubscribe_group_id,
            unsubscribe_url=self.unsubscribe_url,
        ).encode()

    def accepted(self, answer: Answer) -> bool:
        return answer.status == 202 or (answer.status == 200 and self.sandbox_mode)

    def read_accepted(self, answer: Answer, recipients: Sequence[Recipient]) -> BatchResult:
        """Every recipient shares the outcome of the one request."""
        message_id = answer.headers.get("X-Message-Id")
        sandbox = " (sandbox: validated, not delivered)" if answer.status == 200 else ""
        return BatchResult(
            statuses=dict.fromkeys(map(attrgetter("key"), recipients), DeliveryStatus.SENT),
            provider_ids=[message_id] if message_id else [],
            detail=f"{answer.status}: accepted{sandbox}",
        )

    def reason(self, answer: Answer) -> str:
        """SendGrid's `errors[].message` (and field)."""
        try:
            errors = json.loads(answer.body or b"{}").get("errors") or []
            parts = [
                str(e.get("message") or "") + (f" (field {e['field']})" if e.get("field") else "")
                for e in errors
                if isinstance(e, dict)
            ]
        except (ValueError, AttributeError):
            parts = []
        return "; ".join(p for p in parts if p) or "no error details in the response"
