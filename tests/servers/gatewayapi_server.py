"""A local stand-in for GatewayAPI's `POST /rest/mtsms`, with fault injection for tests/benchmarks.

It validates what GatewayAPI validates (Basic auth with the token as username, one message or a
list, `message`, `recipients` as integer MSISDNs, at most 10,000 per message, `sender` length)
and answers in GatewayAPI's shapes: 200 `{"ids", "usage"}`, or 400/401/422
`{"code", "message"}` with the codes of GatewayAPI's error table.

Every accepted MSISDN is counted in `delivered` the moment a body passes validation, before the
answer is written: a request whose answer is lost (dropped connection, client timeout, client
killed) was still delivered, exactly the case a sender must treat as ambiguous.

    with GatewayApiServer(token="test-token") as server:
        server.inject(Fault.rate_limited(retry_after=2), Fault.drop())
        ...  # point a client at server.url
        assert server.delivered[4512345678] == 1

Benchmarks run it as a process: `python -m tests.servers.gatewayapi_server --port 8099`;
`GET /_stats` then answers the counts (never the numbers).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import itertools
import json
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

try:  # orjson parses a 10,000-recipient body several times faster; the stdlib is the fallback
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - depends on the environment
    _loads = json.loads

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode()


PATH = "/rest/mtsms"
MAX_RECIPIENTS = 10_000
# GatewayAPI's docs show senders with spaces ("Example SMS"), so a space counts as alphanumeric.
_SENDER = re.compile(r"^(?:[A-Za-z0-9 ]{1,11}|[0-9]{1,15})$")
# The optional fields of a message in GatewayAPI's docs; anything else is refused, which catches
# typos in a client's payload instead of silently ignoring them.
_OPTIONAL_FIELDS = frozenset(
    ("class", "sender", "sendtime", "tags", "userref", "priority", "validity_period", "encoding",
     "destaddr", "udh", "callback_url", "label", "max_parts", "extra_details")
)  # fmt: skip
# Enough of the numbering plan to fill `usage.countries` realistically.
_COUNTRY_PREFIXES = {
    "45": "DK",
    "46": "SE",
    "47": "NO",
    "49": "DE",
    "44": "GB",
    "298": "FO",
    "299": "GL",
}
_DUPLICATE = "A message contains the same recipient more than once. MSISDNs %1 is duplicated"
_PRICE_DKK = 0.12  # per recipient; a plausible figure, not GatewayAPI's price list


@dataclass(frozen=True)
class Fault:
    """What the server does with one request instead of answering normally.

    `kind`: "http" answers `status` with GatewayAPI's error body and does not deliver; "drop"
    reads and validates the body, delivers, then closes the connection without an answer;
    "slow" delivers and answers after `delay` seconds; "close" closes the connection without
    reading the body (nothing delivered, but the client cannot know that).
    """

    kind: Literal["http", "drop", "slow", "close"]
    status: int = 0
    code: str = ""
    message: str = ""
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def http(
        cls,
        status: int,
        code: str = "0x0101",
        message: str = "Unknown error",
        *,
        retry_after: float | None = None,
    ) -> Fault:
        headers = (("Retry-After", f"{retry_after:g}"),) if retry_after is not None else ()
        return cls("http", status=status, code=code, message=message, headers=headers)

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1) -> Fault:
        return cls.http(429, "0x0109", "Too many requests", retry_after=retry_after)

    @classmethod
    def server_error(cls) -> Fault:
        return cls.http(500, "0x0101", "Unknown error")

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        return cls("slow", delay=delay)

    @classmethod
    def close_before_read(cls) -> Fault:
        return cls("close")


class _Refused(Exception):
    """A body GatewayAPI would refuse; carries the answer to send."""

    def __init__(self, status: int, code: str, message: str, variables: Iterable[str] = ()) -> None:
        self.status, self.code, self.message = status, code, message
        self.variables = list(variables)
        super().__init__(message)


def _missing(name: str) -> _Refused:
    return _Refused(400, "0x0222", "Missing required parameter %1", [name])


def _invalid(name: str) -> _Refused:
    return _Refused(400, "0x0308", "Invalid argument %1", [name])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_body(body: Any) -> list[dict[str, Any]]:
    """The messages of a request body, or `_Refused` with the answer GatewayAPI would give."""
    messages = body if isinstance(body, list) else [body]
    if not messages or not all(isinstance(m, dict) for m in messages):
        raise _Refused(422, "0x0308", "Invalid json request body")
    for message in messages:
        unknown = sorted(set(message) - _OPTIONAL_FIELDS - {"message", "recipients"})
        if unknown:
            raise _Refused(400, "0x0220", "Unsupported parameter %1", unknown[:1])
        if "message" not in message:
            raise _missing("message")
        if not isinstance(message["message"], str) or not message["message"]:
            raise _invalid("message")
        if "sender" in message and not (
            isinstance(message["sender"], str) and _SENDER.match(message["sender"])
        ):
            raise _invalid("sender")
        for name in ("sendtime", "max_parts", "validity_period"):
            if name in message and not (_is_int(message[name]) and message[name] > 0):
                raise _invalid(name)
        for name in ("userref", "label", "callback_url"):
            if name in message and not isinstance(message[name], str):
                raise _invalid(name)
        recipients = message.get("recipients")
        if recipients is None:
            raise _missing("recipients")
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise _invalid("recipients")
        seen: set[int] = set()
        for recipient in recipients:
            msisdn = recipient.get("msisdn") if isinstance(recipient, dict) else None
            if not (_is_int(msisdn) and 0 < msisdn < 10**15):
                raise _invalid("recipients.msisdn")
            if msisdn in seen:
                # GatewayAPI names the number in `variables`, never in `message`.
                raise _Refused(422, "0x0310", _DUPLICATE, [str(msisdn)])
            seen.add(msisdn)
    return messages


def _country(msisdn: int) -> str:
    digits = str(msisdn)
    for length in (3, 2):
        if digits[:length] in _COUNTRY_PREFIXES:
            return _COUNTRY_PREFIXES[digits[:length]]
    return "ZZ"


@dataclass
class AcceptedMessage:
    """One accepted message without its recipients (those are counted in `delivered`)."""

    fields: dict[str, Any]  # every field of the message except `recipients`
    recipient_count: int
    id: int
    # The numbers it went to, for the delivery reports `delivery_reports` makes.
    msisdns: list[int] = field(default_factory=list)


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    delivered: Counter[int] = field(default_factory=Counter)
    accepted: list[AcceptedMessage] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    requests: int = 0
    last_body: Any = None
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(421_332_671))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a benchmark measures the client, not TCP setup
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines would fill test output (and carry nothing useful)."""

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            try:
                self.request.do_handshake()
            except ssl.SSLError as exc:
                # A client that does not trust the certificate hangs up here (a test does so).
                raise ConnectionAbortedError(f"TLS handshake failed: {exc}") from exc
        super().setup()
        # Headers and body go out in two writes; with Nagle's algorithm the second waits for
        # the client's delayed ACK (40 ms), which would dominate every benchmark.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.track(self.connection, open_=False)

    def _answer(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        payload = _dumps(body)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout, killed): its problem, not the server's
            self.close_connection = True

    def _error(
        self, status: int, code: str, message: str, variables: list[str] | None = None
    ) -> None:
        body: dict[str, Any] = {"code": code, "message": message}
        if variables:
            body["variables"] = variables
        self._answer(status, body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorised(self) -> bool:
        scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
            username = decoded.partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return False
        return username == self.server.token

    def do_GET(self) -> None:
        if self.path != "/_stats":
            self._error(404, "0x0101", "Not found")
            return
        state = self.server.state
        with state.lock:
            stats = {
                "requests": state.requests,
                "messages": len(state.accepted),
                "delivered": sum(state.delivered.values()),
                "unique_recipients": len(state.delivered),
            }
        self._answer(200, stats)

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != PATH:
            self._read_body()
            self._error(404, "0x0101", "Not found")
            return
        state = self.server.state
        with state.lock:
            state.requests += 1
            number = state.requests
            fault = state.faults.popleft() if state.faults else None
        if self.server.on_request is not None:
            self.server.on_request(number)

        if fault is not None and fault.kind == "close":
            self.close_connection = True
            return
        raw = self._read_body()
        if self.server.silent.is_set():
            while self.server.silent.is_set() and not self.server.stopping.wait(0.05):
                pass
            self.close_connection = True
            return
        if fault is not None and fault.kind == "http":
            self._answer(
                fault.status, {"code": fault.code, "message": fault.message}, fault.headers
            )
            return
        if not self._authorised():
            self._error(401, "0x0229", "Invalid token")
            return
        try:
            body = _loads(raw)
        except ValueError:
            self._error(422, "0x0308", "Invalid json request body")
            return
        with state.lock:
            state.last_body = body
        try:
            messages = validate_body(body)
        except _Refused as refused:
            self._error(refused.status, refused.code, refused.message, refused.variables)
            return

        answer = self.server.deliver(messages)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "slow":
            # Interruptible, so stopping the server does not wait for a slow answer.
            self.server.stopping.wait(fault.delay)
        self._answer(200, answer)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], token: str, on_request: Callable[[int], None] | None
    ) -> None:
        self.token = token
        self.on_request = on_request
        self.state = _State()
        self.stopping = threading.Event()
        self.silent = threading.Event()  # see GatewayApiServer.never_answer
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request (killed, timed out) is expected; anything else is
        # a bug in the stand-in and is printed as usual.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Hang up on keep-alive clients so their handler threads end with the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def deliver(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Count the recipients as delivered and build GatewayAPI's 200 answer."""
        countries: Counter[str] = Counter()
        ids: list[int] = []
        total = 0
        state = self.state
        with state.lock:
            for message in messages:
                msisdns = [r["msisdn"] for r in message["recipients"]]
                state.delivered.update(msisdns)
                countries.update(_country(m) for m in msisdns)
                message_id = next(state.ids)
                ids.append(message_id)
                fields = {k: v for k, v in message.items() if k != "recipients"}
                state.accepted.append(AcceptedMessage(fields, len(msisdns), message_id, msisdns))
                total += len(msisdns)
        cost = round(total * _PRICE_DKK, 2)
        usage = {"countries": dict(countries), "currency": "DKK", "total_cost": cost}
        return {"ids": ids, "usage": usage}


class GatewayApiServer:
    """A GatewayAPI stand-in on 127.0.0.1 in a background thread; use as a context manager.

    `on_request(n)` is called when the n-th `POST /rest/mtsms` arrives (1-based), before its
    body is read: a crash test kills the client there.
    """

    def __init__(
        self,
        token: str = "test-token",
        *,
        port: int = 0,
        on_request: Callable[[int], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self._http = _HttpServer(("127.0.0.1", port), token, on_request)
        # HTTPS, as gatewayapi.com speaks it; the handshake happens in each connection's own
        # thread (`_Handler.setup`), so a client that stalls in it holds up no other.
        self.tls = tls is not None
        if tls is not None:
            self._http.socket = tls.wrap_socket(
                self._http.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def token(self) -> str:
        return self._http.token

    @property
    def on_request(self) -> Callable[[int], None] | None:
        return self._http.on_request

    @on_request.setter
    def on_request(self, hook: Callable[[int], None] | None) -> None:
        self._http.on_request = hook

    @property
    def delivered(self) -> Counter[int]:
        """MSISDN -> how many times it was accepted (a copy, safe to read while serving)."""
        with self._http.state.lock:
            return Counter(self._http.state.delivered)

    @property
    def accepted(self) -> list[AcceptedMessage]:
        with self._http.state.lock:
            return list(self._http.state.accepted)

    def delivery_reports(
        self, status: str = "DELIVERED", *, share: float = 1.0, seed: int = 0
    ) -> list[dict[str, Any]]:
        """GatewayAPI's delivery report (webhook body) for `share` of the accepted recipients,
        as the real service posts them to the callback: `id`, `msisdn`, `time`, `status`,
        `userref`; post them with tests.servers.webhooks.post_reports."""
        import random

        rng = random.Random(seed)
        reports = []
        for message in self.accepted:
            for msisdn in message.msisdns:
                if rng.random() < share:
                    reports.append(
                        {
                            "id": message.id,
                            "msisdn": msisdn,
                            "time": int(time.time()),
                            "status": status,
                            "userref": message.fields.get("userref"),
                            "charge_status": "CAPTURED",
                        }
                    )
        return reports

    @property
    def requests(self) -> int:
        """How many `POST /rest/mtsms` arrived, whatever became of them."""
        with self._http.state.lock:
            return self._http.state.requests

    @property
    def last_body(self) -> Any:
        """The last JSON body that parsed and came with a valid token, accepted or not."""
        with self._http.state.lock:
            return self._http.state.last_body

    def never_answer(self, on: bool = True) -> None:
        """While on, every `POST /rest/mtsms` is read, not delivered and never answered: its
        connection stays open until this is turned off or the server stops (a gateway that
        hangs). Counted in `requests`."""
        if on:
            self._http.silent.set()
        else:
            self._http.silent.clear()

    def inject(self, *faults: Fault) -> None:
        """Queue faults; each following request takes the next one, then answers normally again."""
        with self._http.state.lock:
            self._http.state.faults.extend(faults)

    def reset(self) -> None:
        """Forget deliveries, counters and queued faults (for a server shared by several tests)."""
        with self._http.state.lock:
            ids = self._http.state.ids
            self._http.state = _State(ids=ids)  # ids stay unique across tests, as in GatewayAPI
        self._http.on_request = None

    def start(self) -> GatewayApiServer:
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="gatewayapi-stand-in",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.stopping.set()
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.close_connections()
        self._http.server_close()

    def __enter__(self) -> GatewayApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT or SIGTERM; prints the URL, then the counts when stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--token", default="test-token", help="the API token clients must send")
    args = parser.parse_args(argv)
    # A benchmark stops it with SIGTERM, and a background job may have inherited an ignored
    # SIGINT: both must end the loop so the counts get printed.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    server = GatewayApiServer(args.token, port=args.port)
    try:
        server.start()
        # Printed inside the try: a client that reads the URL may stop us at once.
        print(f"GatewayAPI stand-in listening on {server.url}{PATH}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        delivered = server.delivered
        print(
            f"{server.requests} requests, {sum(delivered.values())} recipients delivered "
            f"({len(delivered)} unique)",
            flush=True,
        )


if __name__ == "__main__":
    main()
