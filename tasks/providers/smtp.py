"""SMTP e-mail provider for a municipality's own relay: one message per recipient, one connection.

When the relay offers PIPELINING (RFC 2920), each message's MAIL, RCPT and DATA go out in one
write: two round trips per message instead of four.

Per-recipient outcome, read from the relay's replies:

    250 after DATA                    SENT
    5xx on RCPT or after DATA         FAILED (this recipient is refused for good)
    4xx on MAIL, RCPT or DATA         DEFERRED: not sent, so the worker retries it later
    connection lost mid-batch         recipients already accepted stay SENT; the one whose message
                                      body was fully written but not yet confirmed is UNKNOWN; the
                                      rest are DEFERRED (definitely not sent)

When not a single recipient got a status (every one deferred, or the connection failed before
anything was accepted), `read_statuses` raises TransientError instead, so a plain retry is correct.
The steps are the base's (tasks/providers/base.py): `build_request` renders the message once,
`post` sends a copy per recipient and keeps the relay's replies, `read_statuses` reads them.
Setting up the connection translates smtplib's errors in one place (`_setup_error`): refused,
unreachable or busy relays are TransientError; refused credentials, a relay without STARTTLS or
AUTH, and an untrusted certificate are ConfigError. A relay that does not answer at all (refused,
timed out, hung up) raises with `no_answer`, which the circuit breaker counts: each command waits
at most `read_timeout` (20 s), so a relay that hangs after its greeting costs a chunk at most
about a minute (three attempts) before the breaker stops the channel.

Not thread-safe by design of SMTP itself: one connection carries one transaction at a time, so
calls are serialised with a lock.
"""

from __future__ import annotations

import email.policy
import re
import smtplib
import ssl
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import ClassVar

from tasks.errors import ConfigError, DeliveryError, TransientError, UnsupportedFeatureError
from tasks.models import NewsletterSettings
from tasks.providers.base import (
    MESSAGE_PARTS,
    BatchResult,
    DeliveryStatus,
    Message,
    Provider,
    Recipient,
    check_headers,
)
from tasks.settings import credentials, plain

_PLAIN_ADDRESS = re.compile(r"^[!-~]+@[!-~]+$")  # printable ASCII, no spaces: safe in a header


@dataclass(frozen=True)
class _Copies:
    """The request: the message rendered once, and who gets a copy of it."""

    body: bytes  # serialised and dot-stuffed; only To and Message-ID are added per copy
    recipients: Sequence[Recipient]


@dataclass
class _Replies:
    """What the relay answered, copy by copy, until the batch ended or the connection did."""

    statuses: dict[str, DeliveryStatus] = field(default_factory=dict)
    message_ids: list[str] = field(default_factory=list)
    refused: Counter[int] = field(default_factory=Counter)
    deferred: Counter[int] = field(default_factory=Counter)
    lost: str = ""  # why the batch ended early, if it did
    hung_up: bool = False  # the relay stopped answering (rather than refusing)


class SmtpProvider(Provider[_Copies, _Replies]):
    """Sends each recipient their own copy of the message over one reused SMTP connection."""

    name: ClassVar[str] = "smtp"
    carries: ClassVar[frozenset[str]] = frozenset(MESSAGE_PARTS)
    max_batch: ClassVar[int] = 1000
    # Two, the default: relays cap connections per client (Microsoft 365's SMTP AUTH at three).
    # A relay answers each command at once; the wait after a message's final dot is the longest
    # (content scanning), and a few seconds there is already slow.
    read_timeout: ClassVar[float] = 20.0

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        starttls: bool = True,
        username: str | None = None,
        password: str | None = None,
        from_email: str,
        from_name: str,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        ssl_context: ssl.SSLContext | None = None,
        unsubscribe_url: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.starttls = starttls
        self.username = username
        self._password = password
        self.from_email = from_email
        self.from_name = from_name
        self.unsubscribe_url = unsubscribe_url
        self.timeout = self.read_timeout if timeout is None else timeout
        self._connect = self.connect_timeout if connect_timeout is None else connect_timeout
        # Tests pass a context trusting their self-signed relay; production uses the system CAs.
        self._ssl_context = ssl_context or ssl.create_default_context()
        self._conn: smtplib.SMTP | None = None
        self._needs_reset = False
        self._lock = threading.Lock()

    @classmethod
    def from_env(
        cls, settings: NewsletterSettings, env: Mapping[str, str] | None = None
    ) -> SmtpProvider:
        """Build from the newsletter settings plus the FBSFLOW_SMTP_* variables.

        Refuses the settings only SendGrid carries rather than dropping them: with
        `sandbox_mode` a relay would really send every message, and without the unsubscribe
        group a borrower who opted out of it would get this one.
        """
        given = credentials(env)
        for setting, value in (
            ("sandbox_mode", settings.sandbox_mode),
            ("unsubscribe_group_id", settings.unsubscribe_group_id),
        ):
            if value:
                raise UnsupportedFeatureError(
                    f"channels.newsletter.{setting} is set, which an SMTP relay cannot carry, so "
                    f"nothing was sent; fix: remove {setting} from the municipality's config, "
                    "or send through SendGrid (SENDGRID_API_KEY)"
                )
        host = (given.smtp_host or "").strip()
        if not host:
            raise ConfigError(
                "FBSFLOW_SMTP_HOST is not set; fix: export FBSFLOW_SMTP_HOST=<the municipality's "
                "mail relay>, e.g. smtp.eksempel-kommune.dk"
            )
        username = given.smtp_username or None
        password = plain(given.smtp_password) or None
        if password and not username:
            raise ConfigError(
                "FBSFLOW_SMTP_PASSWORD is set but FBSFLOW_SMTP_USERNAME is not; fix: set both, "
                "or neither for a relay that trusts this machine's address"
            )
        return cls(
            host,
            given.smtp_port,
            starttls=given.smtp_starttls,
            username=username,
            password=password,
            from_email=str(settings.from_email),
            from_name=settings.from_name,
            unsubscribe_url=str(settings.unsubscribe_url) if settings.unsubscribe_url else None,
        )

    def __repr__(self) -> str:  # credentials stay out of logs and tracebacks
        auth = "yes" if self.username else "no"
        return (
            f"SmtpProvider(host={self.host!r}, port={self.port}, "
            f"starttls={self.starttls}, auth={auth})"
        )

    def build_request(
        self, message: Message, recipients: Sequence[Recipient], *, campaign: str, batch_id: str
    ) -> _Copies:
        if len({r.key for r in recipients}) != len(recipients):
            raise ValueError("recipient keys repeat within the batch; the ledger must deduplicate")
        return _Copies(self._render(message, campaign, batch_id), recipients)

    def post(self, request: _Copies) -> _Replies:
        """Send one copy per recipient; see the module docstring for what a reply means."""
        with self._lock:
            return self._send_all(request.body, request.recipients)

    def read_statuses(self, answer: _Replies, recipients: Sequence[Recipient]) -> BatchResult:
        statuses = answer.statuses
        if statuses:
            # Everyone without an outcome was definitely not sent: say so, so the worker retries.
            for recipient in recipients:
                statuses.setdefault(recipient.key, DeliveryStatus.DEFERRED)
        sent = sum(1 for s in statuses.values() if s is DeliveryStatus.SENT)
        refused, deferred = answer.refused, answer.deferred
        detail = (
            f"sent {sent}, refused {refused.total()}{_codes(refused)}, "
            f"deferred {deferred.total()}{_codes(deferred)}{answer.lost}"
        )
        if not statuses:
            raise TransientError(f"SMTP relay accepted nothing: {detail}", no_answer=answer.hung_up)
        return BatchResult(statuses=statuses, provider_ids=answer.message_ids, detail=detail)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.quit()
                except OSError:
                    conn.close()

    # --- internals ---------------------------------------------------------------------------

    def _render(self, message: Message, campaign: str, batch_id: str) -> bytes:
        """The message once, serialised and dot-stuffed; only To and Message-ID vary later."""
        if not message.subject:
            raise ValueError("an e-mail message needs a subject")
        check_headers(message, from_name=self.from_name, from_email=self.from_email)
        mail = EmailMessage(policy=email.policy.SMTP)
        mail["From"] = Address(display_name=self.from_name, addr_spec=self.from_email)
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=True)
        mail["X-Fbsflow-Campaign"] = campaign
        mail["X-Fbsflow-Batch"] = batch_id
        if self.unsubscribe_url:
            # The same one-click unsubscribe (RFC 8058) as through SendGrid.
            mail["List-Unsubscribe"] = f"<{self.unsubscribe_url}>"
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # Quoted-printable keeps æøå 7-bit clean, so no relay needs 8BITMIME.
        mail.set_content(message.text, cte="quoted-printable")
        if message.html:
            mail.add_alternative(message.html, subtype="html", cte="quoted-printable")
        for a in message.attachments:
            maintype, _, subtype = a.mime_type.partition("/")
            mail.add_attachment(a.content, maintype=maintype, subtype=subtype, filename=a.filename)
        data = mail.as_bytes()
        data = re.sub(rb"(?m)^\.", b"..", data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        return data + b".\r\n"

    def _send_all(self, body: bytes, recipients: Sequence[Recipient]) -> _Replies:
        conn = self._connection()
        domain = self.from_email.rpartition("@")[2] or "fbsflow.invalid"
        replies = _Replies()
        for i, recipient in enumerate(recipients):
            message_id = make_msgid(domain=domain)
            try:
                status, code = self._send_one(conn, body, recipient, message_id)
            except _ConnectionLost as exc:
                self._drop()
                if exc.in_flight:
                    replies.statuses[recipient.key] = DeliveryStatus.UNKNOWN
                not_sent = len(recipients) - i - (1 if exc.in_flight else 0)
                replies.lost = f"; connection lost ({exc.reason}), {not_sent} not attempted"
                replies.hung_up = True
                break
            except _SenderRefused as exc:
                if not replies.statuses:
                    raise ConfigError(
                        f"SMTP relay {self.host}:{self.port} refused the sender address "
                        f"({exc.code}); fix: use a from_email the relay may send for, or ask "
                        "its administrator to allow it"
                    ) from None
                replies.lost = f"; sender refused ({exc.code}), {len(recipients) - i} not attempted"
                break
            if status is DeliveryStatus.SENT:
                replies.message_ids.append(message_id)
            elif status is DeliveryStatus.FAILED:
                replies.refused[code] += 1
            else:
                replies.deferred[code] += 1
            if status is not None:
                replies.statuses[recipient.key] = status
        return replies

    def _send_one(
        self, conn: smtplib.SMTP, body: bytes, recipient: Recipient, message_id: str
    ) -> tuple[DeliveryStatus | None, int]:
        """One SMTP transaction. None means deferred (4xx): not sent, retry later."""
        address = recipient.address
        if not _PLAIN_ADDRESS.match(address):
            # Non-ASCII or control characters would need SMTPUTF8 or could inject headers.
            return DeliveryStatus.FAILED, 0
        in_flight = False
        try:
            if self._needs_reset:
                # The previous transaction was cut short; RSET now, so that a relay hanging up
                # on it counts against this recipient (not sent) rather than the refused one.
                conn.rset()
                self._needs_reset = False
            if conn.has_extn("pipelining"):
                code = self._envelope_pipelined(conn, address)
            else:
                code, _ = conn.mail(self.from_email)
                if code >= 500:
                    raise _SenderRefused(code)
                if code < 300:
                    code, _ = conn.rcpt(address)
                if code < 300:
                    conn.putcmd("data")
                    code, _ = conn.getreply()
            if code == 354:
                headers = f"To: {address}\r\nMessage-ID: {message_id}\r\n".encode("ascii")
                conn.send(headers + body)
                in_flight = True  # the relay has the whole message; only its answer is missing
                code, _ = conn.getreply()
                in_flight = False
                if code < 300:
                    return DeliveryStatus.SENT, code
        except OSError as exc:  # smtplib reports every lost or timed-out connection as OSError
            raise _ConnectionLost(in_flight, type(exc).__name__) from None
        self._needs_reset = True
        return (DeliveryStatus.FAILED if code >= 500 else None), code

    def _envelope_pipelined(self, conn: smtplib.SMTP, address: str) -> int:
        """MAIL, RCPT and DATA in one write, then their three replies (RFC 2920 PIPELINING).

        One round trip instead of three per message, on relays that offer it (Postfix and
        Exchange do). Returns the first reply code that is not a success, else DATA's (354).
        """
        conn.send(
            f"MAIL FROM:{smtplib.quoteaddr(self.from_email)}\r\n"
            f"RCPT TO:{smtplib.quoteaddr(address)}\r\nDATA\r\n"
        )
        mail_code, _ = conn.getreply()
        rcpt_code, _ = conn.getreply()
        data_code, _ = conn.getreply()
        failed = next((code for code in (mail_code, rcpt_code) if code >= 300), None)
        if failed is not None and data_code == 354:
            # A relay that took DATA without a recipient now waits for a message: end it empty.
            conn.send(b".\r\n")
            conn.getreply()
        if mail_code >= 500:
            raise _SenderRefused(mail_code)
        return data_code if failed is None else failed

    def _connection(self) -> smtplib.SMTP:
        """The open connection, checked with RSET, or a new one (STARTTLS and AUTH done)."""
        if self._conn is not None:
            try:
                if self._conn.rset()[0] == 250:
                    self._needs_reset = False
                    return self._conn
            except OSError as exc:
                # A relay that closed an idle connection gets a fresh one; one that stopped
                # answering does not (it would be waited on twice). smtplib reports a timeout as
                # a disconnect caused by it.
                if isinstance(exc.__context__, TimeoutError):
                    self._drop()
                    message = f"{self._where()} did not answer"
                    raise TransientError(message, no_answer=True) from None
            self._drop()
        conn = None
        try:
            # The host goes to the constructor: STARTTLS checks the certificate against it.
            # The greeting is awaited within the connect timeout, every command within `timeout`.
            conn = smtplib.SMTP(self.host, self.port, timeout=self._connect)
            conn.sock.settimeout(self.timeout)
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=self._ssl_context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self._password or "")
        except OSError as exc:
            if conn is not None:
                conn.close()
            raise self._setup_error(exc) from None
        self._conn = conn
        return conn

    def _setup_error(self, exc: OSError) -> ConfigError | DeliveryError:
        """Translate an smtplib/ssl/socket error raised while opening the connection."""
        where = self._where()
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return ConfigError(
                f"{where} refused the login ({exc.smtp_code}); fix: check "
                "FBSFLOW_SMTP_USERNAME and FBSFLOW_SMTP_PASSWORD with the relay's administrator"
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return ConfigError(
                f"{where}: {exc} fix: ask the relay's administrator to offer it; without "
                "STARTTLS set FBSFLOW_SMTP_STARTTLS=false only on a trusted network, without "
                "AUTH unset FBSFLOW_SMTP_USERNAME if the relay trusts this machine's address"
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ConfigError(
                f"{where}: its TLS certificate is not trusted ({exc.verify_message}); fix: use "
                "the relay's name as it appears in its certificate in FBSFLOW_SMTP_HOST"
            )
        if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code >= 500:
            return ConfigError(
                f"{where} refused the session ({exc.smtp_code}); fix: check FBSFLOW_SMTP_* "
                "with the relay's administrator"
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return TransientError(f"{where} is busy ({exc.smtp_code})", status=exc.smtp_code)
        if isinstance(exc, smtplib.SMTPException) and not isinstance(
            exc, smtplib.SMTPServerDisconnected
        ):
            return ConfigError(f"{where}: {exc}; fix: check FBSFLOW_SMTP_* settings")
        # Refused, unresolved, timed out or hung up on: no answer to count on.
        return TransientError(f"{where} not reached ({type(exc).__name__})", no_answer=True)

    def _where(self) -> str:
        return f"SMTP relay {self.host}:{self.port}"

    def _drop(self) -> None:
        self._needs_reset = False
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _ConnectionLost(Exception):
    def __init__(self, in_flight: bool, reason: str) -> None:
        self.in_flight = in_flight
        self.reason = reason
        super().__init__(reason)


class _SenderRefused(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(code)


def _codes(counts: Counter[int]) -> str:
    """Reply codes only: relays echo addresses in their reply text."""
    if not counts:
        return ""
    parts = (f"{code or 'invalid address'} x{n}" for code, n in sorted(counts.items()))
    return " (" + ", ".join(parts) + ")"
