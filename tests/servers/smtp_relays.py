"""SMTP relays on 127.0.0.1 for tests: ones that deliver (aiosmtpd), one that greets and hangs.

A test points SmtpProvider at `SinkRelay().port` to see what was delivered, once per address, in
`deliveries`; at `ScriptedRelay().port` for a relay that also refuses, defers, hangs up or
offers PIPELINING on cue (optionally with STARTTLS and AUTH); and at `SilentRelay().port` to see
EHLO time out (`connections` counts the connections that got the greeting; another greeting,
such as "421 busy", makes it a relay that turns clients away).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections import Counter
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """A loopback port free right now (aiosmtpd does not report a port the system picked)."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return int(free.getsockname()[1])


class SinkRelay:
    """An aiosmtpd relay that accepts every message and counts deliveries per address."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.deliveries.update(envelope.rcpt_tos)
        return "250 OK"

    def __enter__(self) -> SinkRelay:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()


class ScriptedRelay:
    """An aiosmtpd relay that records deliveries and connections, refuses or hangs up on cue.

    With `tls` it offers STARTTLS (and requires it); with `login` (user, password) it also
    requires AUTH, refusing other credentials with 535.
    """

    def __init__(
        self, *, tls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None
    ) -> None:
        self.deliveries: Counter[str] = Counter()
        self.messages: dict[str, bytes] = {}
        self.connections: set[Any] = set()
        self.mail_reply = ""  # e.g. "550 5.7.1 sender not allowed" (empty: accept)
        self.rcpt_replies: dict[str, str] = {}  # address -> reply, e.g. "550 5.1.1 no such user"
        self.hang_up_after_data: set[str] = set()  # deliver, then close without answering
        self.pipelining = False  # offer RFC 2920 PIPELINING in the EHLO reply
        self.pipelined_mails = 0  # MAIL commands that arrived with RCPT already behind them
        self.hang = False  # leave RSET unanswered (long enough for any client timeout here)
        self.port = free_port()
        options: dict[str, Any] = {}
        if tls is not None:
            options.update(tls_context=tls, require_starttls=True)
        if login is not None:
            options.update(
                authenticator=_Authenticator(login), auth_required=True, auth_require_tls=True
            )
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **options)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        self.connections.add(session.peer)  # one peer (host, port) per TCP connection
        # aiosmtpd reads one command at a time: the next ones wait in its stream buffer.
        if b"RCPT TO" in bytes(getattr(server._reader, "_buffer", b"")):
            self.pipelined_mails += 1
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hang:
            await asyncio.sleep(2)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for address in envelope.rcpt_tos:
            self.deliveries[address] += 1
            self.messages[address] = envelope.original_content
        if self.hang_up_after_data & set(envelope.rcpt_tos):
            server.transport.close()
        return "250 2.0.0 Queued"

    def __enter__(self) -> ScriptedRelay:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()


class _Authenticator:
    """AUTH for ScriptedRelay: one user and password; anything else gets aiosmtpd's 535."""

    def __init__(self, login: tuple[str, str]) -> None:
        self._expected = (login[0].encode(), login[1].encode())

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == self._expected
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


class SilentRelay:
    """Accepts connections, greets each (220 by default), then reads and answers nothing."""

    def __init__(self, greeting: str = "220 silent.test ESMTP") -> None:
        self._greeting = f"{greeting}\r\n".encode()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # so the accept loop sees stop() soon
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-smtp", daemon=True)
        self.connections = 0

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            with contextlib.suppress(OSError):
                conn.sendall(self._greeting)
            self._held.append(conn)  # kept open, unanswered, until stop()
            self.connections += 1

    def __enter__(self) -> SilentRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self._held:
            conn.close()
