"""SMTP relays on 127.0.0.1 for tests: one that delivers (aiosmtpd), one that greets and hangs.

A test points SmtpProvider at `SilentRelay().port` to see EHLO time out (`connections` counts the
connections that got the greeting), and at `SinkRelay().port` to see what was delivered, once
per address, in `deliveries`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from typing import Any

from aiosmtpd.controller import Controller


class SinkRelay:
    """An aiosmtpd relay that accepts every message and counts deliveries per address."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        with socket.socket() as free:  # aiosmtpd does not report a port the system picked
            free.bind(("127.0.0.1", 0))
            self.port = int(free.getsockname()[1])
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
        self.deliveries.update(envelope.rcpt_tos)
        return "250 OK"

    def __enter__(self) -> SinkRelay:
        self._controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._controller.stop()


class SilentRelay:
    """Accepts connections, greets each with 220, then reads nothing and answers nothing."""

    def __init__(self) -> None:
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
                conn.sendall(b"220 silent.test ESMTP\r\n")
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
