"""SendGrid v3 e-mail provider: one `POST /v3/mail/send` per batch through the official SDK.

Outcome classification (the only place SDK and urllib errors are translated: `_translate`):

    202, or 200 in sandbox mode     every recipient SENT; provider id from X-Message-Id
    429                             TransientError, retry_after from Retry-After / X-RateLimit-Reset
    5xx                             TransientError
    connect failed (refused, DNS,   TransientError: the request never left this machine whole
      connect timeout, send error)
    read timeout, connection lost   AmbiguousError: SendGrid may have accepted the request
      after the request was sent    (these two no_answer: the circuit breaker counts them)
    malformed key or header value   ConfigError, raised before anything is sent
    401 / 403                       ConfigError: the API key is wrong or lacks the Mail Send scope
    404                             ConfigError: SENDGRID_HOST does not point at the v3 API
    400 / 413 / other 4xx           PermanentError with SendGrid's messages, addresses scrubbed
"""

from __future__ import annotations

import base64
import email.utils
import functools
import http.client
import io
import json
import logging
import os
import re
import select
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any, ClassVar

import python_http_client.exceptions as sdk_errors
import sendgrid

from tasks.errors import AmbiguousError, ConfigError, DeliveryError, PermanentError, TransientError
from tasks.models import NewsletterSettings
from tasks.providers.base import (
    BatchResult,
    DeliveryStatus,
    Message,
    Provider,
    Recipient,
    check_headers,
    secret_problem,
)

# python_http_client logs every request body at DEBUG, and a body holds 1000 addresses: keep that
# logger above DEBUG even when a run turns debug logging on globally.
logging.getLogger("python_http_client").setLevel(logging.INFO)

DEFAULT_HOST = "https://api.sendgrid.com"
MAX_RECIPIENTS = 1000  # personalizations and to+cc+bcc per request, both capped at 1000
MAX_CATEGORIES = 10
MAX_CUSTOM_ARGS_BYTES = 10_000  # SendGrid's limit on message + personalization custom_args
_ADDRESS = re.compile(r"[^\s<>\[\]()\"',;:]+@[^\s<>\[\]()\"',;:]+")


def scrub_addresses(text: str) -> str:
    """Replace anything shaped like an e-mail address, so provider messages are safe to log."""
    return _ADDRESS.sub("<address>", text)


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


_JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


class _Unlogged(bytes):
    """A request body that formats as its size, not its content.

    The SDK formats every request body into a debug message (`'PAYLOAD: {data}'.format(...)`)
    before it asks whether debug logging is on. For a body of 1000 addresses that costs ~0.4 ms
    of the GIL a request (a tenth of what a chunk thread holds it for), and should anyone turn
    the SDK's debug logging on, it would print every address. As its size, it does neither.
    """

    __slots__ = ()

    def __str__(self) -> str:
        return f"<request body, {len(self):,} bytes>"

    __repr__ = __str__


class _Body(str):
    """The request's JSON text; the SDK's `.encode("utf-8")` of it gives an `_Unlogged`."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return _Unlogged(str.encode(self, encoding, errors))


_TO, _RECIPIENT, _END = '{"to": [{"email": "', '"}], "custom_args": {"recipient": "', '"}}'


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


class SendGridProvider(Provider):
    """Sends a batch of up to 1000 recipients as one SendGrid request; holds one SDK client."""

    name: ClassVar[str] = "sendgrid"
    max_batch: ClassVar[int] = MAX_RECIPIENTS
    # api.sendgrid.com is a round trip to the US away, and each request waits for it: with a
    # 20 ms round trip, 1M e-mails took 22.1 s two chunks at a time and 12.2-12.7 s eight at a time
    # (bench/latency.py --flow); on loopback eight cost the same as two. More stays within what
    # SendGrid takes (it answers 429 with a reset time when not, which the delivery honours).
    chunks_at_once: ClassVar[int] = 8

    def __init__(
        self,
        api_key: str,
        *,
        host: str = DEFAULT_HOST,
        from_email: str,
        from_name: str,
        sandbox_mode: bool = False,
        unsubscribe_group_id: int | None = None,
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
        self.timeout = self.read_timeout if timeout is None else timeout
        connect = self.connect_timeout if connect_timeout is None else connect_timeout
        self._client = sendgrid.SendGridAPIClient(api_key=api_key, host=self.host)
        # The SDK's client for POST /v3/mail/send, kept: the SDK builds a new one per call.
        self._mail_send = self._client.client.mail.send
        self._transport: _KeepAlive | None = None
        seam = callable(getattr(self._mail_send, "_make_request", None))
        if seam and _reached_directly(self.host):
            # The SDK opens a connection per request (urllib); against api.sendgrid.com that is a
            # TLS handshake per 1000 recipients. Its own seam for the transport (`_make_request`,
            # "separated so we can mock it") takes one that keeps the connection instead. Behind
            # a proxy, or with an SDK without that seam, the SDK sends as it always did.
            self._transport = _KeepAlive(self.host, connect, self.timeout)
            self._mail_send._make_request = self._transport

    @property
    def keeps_connection(self) -> bool:
        """Whether requests share a kept-open connection (False: the SDK's own, one each)."""
        return self._transport is not None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @classmethod
    def from_env(
        cls, settings: NewsletterSettings, env: Mapping[str, str] | None = None
    ) -> SendGridProvider:
        """Build from the newsletter settings plus SENDGRID_API_KEY and SENDGRID_HOST."""
        env = os.environ if env is None else env
        return cls(
            env.get("SENDGRID_API_KEY", ""),
            host=env.get("SENDGRID_HOST") or DEFAULT_HOST,
            from_email=str(settings.from_email),
            from_name=settings.from_name,
            sandbox_mode=settings.sandbox_mode,
            unsubscribe_group_id=settings.unsubscribe_group_id,
        )

    def __repr__(self) -> str:  # the API key stays out of logs and tracebacks
        return f"SendGridProvider(host={self.host!r}, sandbox_mode={self.sandbox_mode})"

    def send_batch(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> BatchResult:
        """Post the batch once; every recipient shares the outcome of that one request."""
        if not recipients:
            return BatchResult(statuses={})
        body = encode_payload(
            message,
            recipients,
            from_email=self.from_email,
            from_name=self.from_name,
            campaign=campaign,
            batch_id=batch_id,
            sandbox_mode=self.sandbox_mode,
            unsubscribe_group_id=self.unsubscribe_group_id,
        )
        try:
            # The SDK json.dumps a request body unless the Content-Type is other than exactly
            # "application/json"; with the charset named, it sends our encoded text as it is
            # (the header SendGrid's C# library sends on every request). The SDK keeps the
            # header for every later call on this client, so this client only ever posts text.
            response = self._mail_send.post(
                request_body=_Body(body), request_headers=_JSON_HEADERS, timeout=self.timeout
            )
        except Exception as exc:
            error = _translate(exc)
            if error is None:
                raise
            # SDK errors carry the response body, which may echo addresses: drop the chain.
            raise error from (None if isinstance(exc, sdk_errors.HTTPError) else exc)

        status = response.status_code
        if status == 202 or (status == 200 and self.sandbox_mode):
            message_id = response.headers.get("X-Message-Id")
            sandbox = " (sandbox: validated, not delivered)" if status == 200 else ""
            return BatchResult(
                statuses=dict.fromkeys(map(attrgetter("key"), recipients), DeliveryStatus.SENT),
                provider_ids=[message_id] if message_id else [],
                detail=f"{status}: accepted{sandbox}",
            )
        # A 2xx or 3xx SendGrid never sends for mail: we cannot tell what happened.
        raise AmbiguousError(f"SendGrid answered {status}, expected 202", status=status)


def _reached_directly(url: str) -> bool:
    """Whether urllib would reach `url` without a proxy (proxy variables, no_proxy)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in urllib.request.getproxies():
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname or ""))


# A kept connection idle longer than this is closed rather than reused: well inside the idle
# timeouts of servers and load balancers (commonly 60 s and more), so a server closing it just as
# a request goes out (which would leave that request's fate unknown) is not to be expected.
_KEEP_IDLE_SECONDS = 15.0


class _KeepAlive:
    """The SDK's transport for one provider: the same HTTP/1.1 connection for every request.

    Called as the SDK calls `Client._make_request(opener, request, timeout)`, and fails as that
    does, so `_translate` classifies alike: a failure to connect or to write the request raises
    URLError (not sent whole, as urllib reports it), a failure while waiting for or reading the
    answer is raised as it is (the request was sent), and an HTTP error status raises the SDK's
    own error for it. The SDK's opener is not used.
    """

    def __init__(self, host: str, connect_timeout: float, timeout: float) -> None:
        parts = urllib.parse.urlsplit(host)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._idle_since = 0.0
        self._lock = threading.Lock()  # one request at a time on the one connection

    def __call__(
        self, opener: object, request: urllib.request.Request, timeout: float | None = None
    ) -> _Answer:
        with self._lock:
            return self._send(request, timeout or self._timeout)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self, request: urllib.request.Request, timeout: float) -> _Answer:
        try:
            conn = self._reusable() or self._connection()
            conn.sock.settimeout(timeout)  # connected: from here on, waiting for answers
            conn.request(
                request.get_method(),
                request.selector,
                body=request.data,  # type: ignore[arg-type]
                headers=dict(request.header_items()),
            )
        except OSError as exc:
            self.close()
            raise urllib.error.URLError(exc) from exc
        except ValueError:
            # A header value http.client refuses before writing a byte; its text quotes the key.
            self.close()
            raise ConfigError(
                "a SendGrid request header is malformed, nothing was sent; fix: "
                "check SENDGRID_API_KEY and SENDGRID_HOST for stray characters"
            ) from None
        try:
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        self._idle_since = time.monotonic()
        if response.status >= 400:
            error = urllib.error.HTTPError(
                request.full_url,
                response.status,
                response.reason,
                response.headers,
                io.BytesIO(body),
            )
            raise sdk_errors.handle_error(error)
        return _Answer(response.status, body, response.headers)

    def _reusable(self) -> http.client.HTTPConnection | None:
        """The kept connection, if it is still open and has not idled too long."""
        conn = self._conn
        if conn is None or conn.sock is None:
            return None
        if time.monotonic() - self._idle_since > _KEEP_IDLE_SECONDS or _readable(conn.sock):
            # Readable while idle: the server closed it (or sent what nobody asked for).
            self.close()
            return None
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        """A new connection, made now (DNS, TCP, TLS) within the connect timeout."""
        timeout = self._connect_timeout
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=_tls()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._conn = conn
        conn.connect()
        return conn


class _Answer:
    """A response as the SDK reads one from urllib: `getcode()`, `read()`, `info()`."""

    def __init__(self, status: int, body: bytes, headers: Any) -> None:
        self._status, self._body, self._headers = status, body, headers

    def getcode(self) -> int:
        return self._status

    def read(self) -> bytes:
        return self._body

    def info(self) -> Any:
        return self._headers


def _readable(sock: Any) -> bool:
    """Whether an idle socket has something to read: for a kept connection, the server's close.

    poll, not select: select cannot watch a descriptor numbered 1024 or higher. An error counts
    as readable, so that the connection is not reused.
    """
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


@functools.cache
def _tls() -> ssl.SSLContext:
    """urllib's default: verified certificates (the system's CA store, or SSL_CERT_FILE)."""
    return ssl.create_default_context()


def _translate(exc: BaseException) -> DeliveryError | ConfigError | None:
    """Map one exception from the SDK or urllib onto fbsflow's error tree (None: not ours)."""
    if isinstance(exc, sdk_errors.HTTPError):
        return _from_status(exc.status_code, exc.body, exc.headers)
    if isinstance(exc, urllib.error.URLError):
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            # A certificate this machine does not trust stays untrusted on every retry.
            why = getattr(exc.reason, "verify_message", None) or "certificate verify failed"
            return ConfigError(
                f"SendGrid's TLS certificate was not trusted ({why}), so this batch was not sent. "
                "Fix: check that SENDGRID_HOST is SendGrid's API; behind a proxy that re-signs "
                "HTTPS, point SSL_CERT_FILE at your organisation's CA certificate file"
            )
        # urllib wraps only failures before the request was fully written (connect, DNS, TLS
        # handshake, send): SendGrid cannot have accepted an incomplete request.
        return TransientError(f"SendGrid not reached: {_reason(exc.reason)}", no_answer=True)
    if isinstance(exc, (TimeoutError, http.client.HTTPException, OSError)):
        # Raised while waiting for or reading the answer: the request was sent.
        return AmbiguousError(
            f"no answer from SendGrid after sending ({type(exc).__name__}); the batch may have "
            "been accepted, so it is not re-sent automatically",
            no_answer=True,
        )
    return None


def _from_status(status: int, body: bytes | None, headers: Any) -> DeliveryError | ConfigError:
    if status == 429:
        return TransientError(
            "SendGrid rate limit (429)", status=status, retry_after=_retry_after(headers)
        )
    if status >= 500:
        return TransientError(f"SendGrid server error ({status})", status=status)
    if status in (401, 403):
        return ConfigError(
            f"SENDGRID_API_KEY refused ({status}); fix: create a key with the Mail Send "
            "permission in SendGrid (Settings > API Keys), export it as SENDGRID_API_KEY, and "
            "check that SENDGRID_HOST is the API of the account that owns the key"
        )
    if status == 404:
        return ConfigError(
            "SendGrid answered 404 for /v3/mail/send; fix: set SENDGRID_HOST to "
            f"{DEFAULT_HOST} (or unset it)"
        )
    return PermanentError(
        f"SendGrid refused the batch ({status}): {_messages(body)}", status=status
    )


def _messages(body: bytes | None) -> str:
    """SendGrid's `errors[].message` (and field), addresses scrubbed, bounded in length."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        parts = [
            str(e.get("message") or "") + (f" (field {e['field']})" if e.get("field") else "")
            for e in errors
            if isinstance(e, dict)
        ]
    except (ValueError, AttributeError):
        parts = []
    text = "; ".join(p for p in parts if p) or "no error details in the response"
    return scrub_addresses(text)[:1000]


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait: Retry-After (seconds or HTTP date), else X-RateLimit-Reset (epoch)."""
    if headers is None:
        return None
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - time.time())
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            return None
    return None


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        strerror = getattr(reason, "strerror", None)
        return type(reason).__name__ + (f" ({strerror})" if strerror else "")
    return str(reason)
