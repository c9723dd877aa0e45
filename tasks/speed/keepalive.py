"""One kept HTTP/1.1 connection per provider, instead of a new connection (and TLS handshake) each.

Measured effect: the SendGrid SDK's own transport (urllib) opens a connection per request, and
against api.sendgrid.com each one is a TLS handshake, a few round trips, per 1000 recipients.
`bench/latency.py` puts a relay adding a 20 ms round trip in front of the HTTPS stand-in: a
1000-recipient request took 26.5 ms on the kept connection against 70.1 ms through the SDK's own
transport (2.6x; ~20 s less for a 1M newsletter sent two chunks at a time). On loopback it
changes nothing measurable (1.00x end to end): connecting there costs next to nothing.

Off switch: FBSFLOW_SPEED_KEEPALIVE=0 (or false/no/off); SendGridProvider then posts through
the SDK's own client, as it ships. It is off by itself where urllib would go through a proxy
(http(s)_proxy without a matching no_proxy): a connection straight to the host would bypass it.
Either way the provider classifies the same outcomes (tests/providers/test_sendgrid.py proves
it against the stand-in, over HTTP and HTTPS).
"""

from __future__ import annotations

import http.client
import select
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

from tasks.providers.http import Answer, NoAnswer, NotSent, tls_context
from tasks.speed.switches import enabled

# A kept connection idle longer than this is closed rather than reused: well inside the idle
# timeouts of servers and load balancers (commonly 60 s and more), so a server closing it just as
# a request goes out (which would leave that request's fate unknown) is not to be expected.
KEEP_IDLE_SECONDS = 15.0


def keeps_connection(url: str) -> bool:
    """Whether requests to `url` should go over a kept connection: switched on
    (`FBSFLOW_SPEED_KEEPALIVE`), and no proxy in the way."""
    return enabled("KEEPALIVE") and _reached_directly(url)


def _reached_directly(url: str) -> bool:
    """Whether urllib would reach `url` without a proxy (proxy variables, no_proxy)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in urllib.request.getproxies():
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname or ""))


class KeptConnection:
    """A transport (tasks/providers/http.py) over one http.client connection, reused while fresh.

    Fails as the transport contract says: a failure to connect or to write the request raises
    NotSent (an untrusted certificate and a header http.client refuses included), a failure
    while waiting for or reading the answer raises NoAnswer. Any status is an Answer. One
    request at a time: a provider serves one chunk, and its requests go one after another.
    """

    def __init__(self, base_url: str, *, connect_timeout: float, timeout: float) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")  # a base URL with a path posts below it
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._idle_since = 0.0
        self._lock = threading.Lock()

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        with self._lock:
            return self._post(self._prefix + path, body, headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        try:
            conn = self._reusable() or self._connection()
            conn.sock.settimeout(self._timeout)  # connected: from here on, waiting for answers
            conn.request("POST", path, body=body, headers=headers)
        except (OSError, ValueError) as exc:  # ValueError: a header value http.client refuses
            self.close()
            raise NotSent(exc) from exc
        try:
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise NoAnswer(exc) from exc
        except BaseException:
            self.close()
            raise
        if response.will_close:
            self.close()
        self._idle_since = time.monotonic()
        return Answer(response.status, response.headers, data)

    def _reusable(self) -> http.client.HTTPConnection | None:
        """The kept connection, if it is still open and has not idled too long."""
        conn = self._conn
        if conn is None or conn.sock is None:
            return None
        if time.monotonic() - self._idle_since > KEEP_IDLE_SECONDS or _readable(conn.sock):
            # Readable while idle: the server closed it (or sent what nobody asked for).
            self.close()
            return None
        return conn

    def _connection(self) -> http.client.HTTPConnection:
        """A new connection, made now (DNS, TCP, TLS) within the connect timeout."""
        timeout = self._connect_timeout
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=tls_context()
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._conn = conn
        conn.connect()
        return conn


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
