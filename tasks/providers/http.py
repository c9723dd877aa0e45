"""What the HTTP providers share: the transport seam, one classification of answers and failures.

A provider over an HTTP API (SendGrid, GatewayAPI) subclasses `HttpProvider` and writes only its
request body, what counts as accepted and its messages; it posts through a `Transport`, a small
interface of its own (`post(path, body, headers) -> Answer`), so the library underneath (the
SendGrid SDK, httpx, http.client) is translated in that transport alone, and only into where the
request failed: `NotSent` (it never left whole) or `NoAnswer` (it left, no answer came). From
there, one place turns failures and answers into tasks.errors:

    NotSent, certificate not trusted     ConfigError: no retry can change it
    NotSent, a malformed header          ConfigError: raised before a byte was written
    NotSent (refused, DNS, connect       TransientError, no_answer: it cannot have been accepted
      timeout, TLS handshake, write)
    NoAnswer (read timeout, lost)        AmbiguousError, no_answer: it may have been accepted
    429, 5xx                             TransientError, retry_after from the answer's headers
    5xx the provider names ambiguous     AmbiguousError (GatewayAPI's 504: a proxy gave up)
    401, 403                             ConfigError: the credentials or account are refused
    401/403 refusing recipients          PermanentError (the provider says which)
    404                                  ConfigError: the URL does not point at the API
    other 4xx                            PermanentError, the provider's reason scrubbed
    1xx, 2xx or 3xx not "accepted"       AmbiguousError: nobody can tell what happened

Also here: Retry-After / X-RateLimit-Reset parsing, the one TLS context of a process, and the
scrubbing of addresses, numbers and secrets out of anything a provider says.
"""

from __future__ import annotations

import functools
import math
import re
import ssl
import time
from collections.abc import Iterable, Sequence
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, ClassVar, NamedTuple, Protocol

from tasks.errors import AmbiguousError, ConfigError, DeliveryError, PermanentError, TransientError
from tasks.providers.base import BatchResult, Message, Provider, Recipient
from tasks.settings import credentials

# Shaped like an e-mail address: what a provider's answer may echo back.
EMAIL_ADDRESS = re.compile(r"[^\s<>\[\]()\"',;:]+@[^\s<>\[\]()\"',;:]+")
# Eight or more digits, optionally with +, spaces, dashes, dots or brackets between them: Danish
# numbers ("12 34 56 78", "+45 12345678", "4512345678"), MSISDNs and foreign numbers. ISO dates
# are left alone: they are not personal and a reader needs them.
PHONE_NUMBER = re.compile(
    r"(?<![\w+])(?!\d{4}-\d{2}-\d{2}(?!\d))\+?\d(?:[ \-.()/]{0,2}\d){7,}(?!\w)"
)
_REASON_CHARS = 500  # of a provider's own words in an error: enough to act on, never a dump


def scrub_personal_data(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with e-mail addresses as <e-mail>, phone numbers as <phone>, `secrets` as <secret>."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<secret>")
    return PHONE_NUMBER.sub("<phone>", EMAIL_ADDRESS.sub("<e-mail>", text))


class Headers(Protocol):
    """An answer's headers, looked up without regard to case (http.client's, httpx's)."""

    def get(self, name: str, /) -> str | None: ...


class Answer(NamedTuple):
    """What an HTTP API answered: any status, error statuses included."""

    status: int
    headers: Headers
    body: bytes


class Transport(Protocol):
    """How an HTTP provider's requests reach its API; raises only NotSent and NoAnswer."""

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer: ...

    def close(self) -> None: ...


class NotSent(Exception):
    """The request never left whole (connect, DNS, TLS handshake, writing it): not accepted."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(describe(cause))


class NoAnswer(Exception):
    """The request was sent, and no answer came (timed out, connection lost): maybe accepted."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(describe(cause))


def describe(cause: BaseException) -> str:
    """The kind of a failure without its text: library messages may quote headers or hosts."""
    strerror = getattr(cause, "strerror", None)
    return type(cause).__name__ + (f" ({strerror})" if strerror else "")


def untrusted_certificate(cause: BaseException) -> str | None:
    """Why the server's certificate was refused, if that is what `cause` (or its causes) is."""
    seen: BaseException | None = cause
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or "certificate verify failed"
        reason = getattr(seen, "reason", None)  # urllib's URLError wraps it as its reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return reason.verify_message or "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None


def retry_after(
    headers: Headers | None, reset_header: str | None = None, *, now: float | None = None
) -> float | None:
    """Seconds to wait before retrying, as the answer asks; None when it does not say.

    Retry-After in seconds or as an HTTP date (in whatever timezone it names; one without a
    usable zone is GMT, as HTTP dates are), else `reset_header` (e.g. SendGrid's
    X-RateLimit-Reset) as epoch seconds. Never negative: a time already past means now.
    """
    if headers is None:
        return None
    now = time.time() if now is None else now
    value = (headers.get("Retry-After") or "").strip()
    if value:
        try:
            seconds = float(value)
        except ValueError:
            seconds = _until(value, now)
        if seconds is not None and math.isfinite(seconds):
            return max(0.0, seconds)
    reset = (headers.get(reset_header) or "").strip() if reset_header else ""
    if reset:
        try:
            at = float(reset)
        except ValueError:
            return None
        if math.isfinite(at):
            return max(0.0, at - now)
    return None


def _until(http_date: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000", or a zone name the parser does not know
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verified-certificates context every HTTPS provider uses; built once a process.

    The system's CA store, as urllib uses it; SSL_CERT_FILE and SSL_CERT_DIR (OpenSSL's own
    variables) replace it. Once, because loading a CA bundle takes ~0.1 s; and a CA file that
    cannot be loaded is said here, where OpenSSL alone would silently trust nothing.
    """
    cafile = credentials().ssl_cert_file
    try:
        context = ssl.create_default_context()
        if cafile:
            context.load_verify_locations(cafile=cafile)
    except OSError as exc:  # ssl.SSLError too: a CA file that is missing or holds no certificate
        raise ConfigError(
            f"the CA certificates for HTTPS could not be loaded ({type(exc).__name__}), so "
            "nothing was sent; fix: point SSL_CERT_FILE at a PEM file of CA certificates, or "
            "unset it"
        ) from None
    return context


class HttpProvider(Provider[bytes, Answer]):
    """A provider over an HTTP API: posts the batch's body and classifies what came back.

    A subclass sets the ClassVars below, builds `transport` and `headers` in its constructor,
    writes `build_request`, `read_accepted` and `reason`, and overrides `accepted` or
    `refuses_recipients` where its API differs.
    """

    title: ClassVar[str]  # the provider's name in messages, e.g. "SendGrid"
    path: ClassVar[str]  # the endpoint a batch is posted to
    url_variable: ClassVar[str]  # the setting that points at the API, e.g. "SENDGRID_HOST"
    # Messages for refused access (formatted with status and reason) and for a wrong URL.
    access_refused: ClassVar[str]
    not_found: ClassVar[str]
    dashboard: ClassVar[str]  # where a person checks whether an ambiguous batch went out
    reset_header: ClassVar[str | None] = None  # epoch seconds of a rate limit's reset, if any
    ambiguous_statuses: ClassVar[frozenset[int]] = frozenset()  # 5xx that may have been sent

    transport: Transport
    headers: dict[str, str]
    secrets: tuple[str, ...] = ()  # masked in anything this provider says

    def post(self, request: bytes) -> Answer:
        """Send the body; a failure to get any answer is classified here, for every transport."""
        try:
            return self.transport.post(self.path, request, self.headers)
        except NotSent as failed:
            raise self.not_sent(failed.cause) from failed.cause
        except NoAnswer as failed:
            raise AmbiguousError(
                f"no answer from {self.title} after sending ({failed}): it may have accepted "
                f"the batch, so it is not re-sent automatically; check {self.dashboard} before "
                "sending again",
                no_answer=True,
            ) from failed.cause

    def read_statuses(self, answer: Answer, recipients: Sequence[Recipient]) -> BatchResult:
        if self.accepted(answer):
            return self.read_accepted(answer, recipients)
        raise self.refusal(answer)

    @classmethod
    def document(
        cls,
        settings: Any,
        message: Message,
        recipients: Sequence[Recipient],
        *,
        campaign: str,
        batch_id: str,
    ) -> dict[str, Any]:
        """A batch's request body as a JSON document, from the channel's settings: what the
        outbox writes in this provider's place."""
        raise NotImplementedError

    def accepted(self, answer: Answer) -> bool:
        """Whether the answer accepts the batch (default: any 2xx)."""
        return 200 <= answer.status < 300

    def read_accepted(self, answer: Answer, recipients: Sequence[Recipient]) -> BatchResult:
        """Each recipient's status from an accepted answer."""
        raise NotImplementedError

    def reason(self, answer: Answer) -> str:
        """The provider's own words for a refusal, from the answer's body (scrubbed after)."""
        return ""

    def refuses_recipients(self, answer: Answer) -> bool:
        """Whether a 401/403 refuses the batch's recipients rather than the credentials."""
        return False

    def close(self) -> None:
        self.transport.close()

    def not_sent(self, cause: BaseException) -> ConfigError | TransientError:
        """The error for a request that never left whole."""
        if (why := untrusted_certificate(cause)) is not None:
            return ConfigError(
                f"{self.title}'s TLS certificate was not trusted ({why}), so nothing was sent; "
                f"fix: check that {self.url_variable} is {self.title}'s API; behind a proxy "
                "that re-signs HTTPS, point SSL_CERT_FILE at your organisation's CA "
                "certificate file"
            )
        if isinstance(cause, ValueError):
            # http.client refuses a header value with a line break before writing a byte; its
            # text would quote the header (the key), so only the fix is said.
            return ConfigError(
                f"a {self.title} request header is malformed, so nothing was sent; fix: check "
                f"{self.url_variable} and the key or token for stray characters"
            )
        return TransientError(
            f"{self.title} not reached ({describe(cause)}); nothing was sent", no_answer=True
        )

    def refusal(self, answer: Answer) -> DeliveryError | ConfigError:
        """The error for an answer that does not accept the batch (see the module docstring)."""
        status = answer.status
        reason = self.scrub(self.reason(answer)) or _phrase(status)
        if status == 429 or (500 <= status < 600 and status not in self.ambiguous_statuses):
            return TransientError(
                f"{self.title} did not accept the batch ({status}: {reason}); nothing was sent",
                status=status,
                retry_after=retry_after(answer.headers, self.reset_header),
            )
        if status in (401, 403) and not self.refuses_recipients(answer):
            return ConfigError(self.access_refused.format(status=status, reason=reason))
        if status == 404:
            return ConfigError(self.not_found)
        if 400 <= status < 500:
            return PermanentError(
                f"{self.title} refused the batch ({status}: {reason})", status=status
            )
        return AmbiguousError(
            f"{self.title} answered {status} ({reason}): it may have accepted the batch, so it "
            f"is not re-sent automatically; check {self.dashboard} before sending again",
            status=status,
        )

    def scrub(self, text: str) -> str:
        """`text` on one line, without personal data or this provider's secrets, bounded."""
        return scrub_personal_data(" ".join(text.split()), self.secrets)[:_REASON_CHARS]


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "no detail"
