"""A local stand-in for SendGrid's `POST /v3/mail/send`: records every delivery, fails on cue.

In a test:

    with SendGridServer() as server:
        provider = SendGridProvider(server.api_key, host=server.url, ...)
        server.fail_next(Fault.rate_limit(retry_after=3), Fault.drop())
        ...
        assert server.deliveries == Counter({"a@example.test": 1})

From a benchmark: `python -m tests.servers.sendgrid_server --port 8025 [--tls CERT KEY]` prints
`READY <url>` and serves (HTTPS with `--tls`) until SIGINT/SIGTERM, then prints its stats as JSON. Control endpoints (no auth, loopback
only): `GET /_stats`, `GET /_deliveries`, `POST /_faults` (a JSON list of faults), `POST /_reset`.

A request counts as delivered the moment its body has been read and validated, before any answer
is written: like a real provider, a request whose answer is lost was still delivered.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
import secrets
import signal
import ssl
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

try:
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

except ImportError:  # pragma: no cover - orjson is only a speed-up
    import json

    def _loads(data: bytes) -> Any:
        return json.loads(data)

    def _dumps(value: Any) -> bytes:
        return json.dumps(value).encode()


DEFAULT_API_KEY = "SG.stand-in-test-key"
MAIL_SEND = "/v3/mail/send"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_CUSTOM_ARGS_BYTES = 10_000
MAX_BODY_BYTES = 30 * 1024 * 1024
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_EMAILS = re.compile(r"(?:[^@\s]+@[^@\s]+\.[^@\s]+\n)+")  # _EMAIL, one per line
_PLAIN_KEYS = frozenset({"to", "custom_args"})
_HELP = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors#{}"

FaultKind = Literal["status", "drop", "slow", "hold", "close_before_read", "hang_up", "silent"]


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, used by the next request to arrive."""

    kind: FaultKind
    status: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    errors: tuple[dict[str, Any], ...] = ()
    seconds: float = 0.0
    in_flight: int = 0

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1, reset_in: float | None = None) -> Fault:
        """429, not delivered; Retry-After and/or X-RateLimit-Reset (epoch seconds)."""
        headers = [("X-RateLimit-Limit", "600"), ("X-RateLimit-Remaining", "0")]
        if retry_after is not None:
            headers.append(("Retry-After", f"{retry_after:g}"))
        if reset_in is not None:
            headers.append(("X-RateLimit-Reset", str(int(time.time() + reset_in))))
        return cls("status", 429, tuple(headers), ({"message": "too many requests"},))

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx answer, not delivered."""
        return cls("status", status, (), ({"message": "internal server error"},))

    @classmethod
    def respond(cls, status: int, *messages: str) -> Fault:
        """Any error answer with SendGrid's error shape, not delivered."""
        return cls("status", status, (), tuple({"message": m} for m in messages))

    @classmethod
    def drop(cls) -> Fault:
        """Read, validate and deliver the request, then close the connection without answering."""
        return cls("drop")

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Deliver the request, then wait `seconds` before answering."""
        return cls("slow", seconds=seconds)

    @classmethod
    def hold(cls, in_flight: int, seconds: float = 10.0) -> Fault:
        """Deliver the request, then answer once `in_flight` mail-send requests have been handled
        at once (since the last reset), or after `seconds`: shows how many a client sends at once
        without racing a timer (one that sends fewer waits out `seconds`; more shows in
        `max_in_flight`)."""
        return cls("hold", seconds=seconds, in_flight=in_flight)

    @classmethod
    def hang_up(cls) -> Fault:
        """Deliver and answer 202, then close the connection without saying so beforehand
        (no `Connection: close`), as a server ending an idle kept-alive connection does."""
        return cls("hang_up")

    @classmethod
    def close_before_read(cls) -> Fault:
        """Close the connection before reading the body: nothing is delivered."""
        return cls("close_before_read")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from JSON, e.g. {"kind": "rate_limit", "retry_after": 2} or {"kind": "drop"}."""
        kind = data["kind"]
        args = {k: v for k, v in data.items() if k != "kind"}
        builders: dict[str, Callable[..., Fault]] = {
            "rate_limit": cls.rate_limit,
            "server_error": cls.server_error,
            "drop": cls.drop,
            "slow": cls.slow,
            "hold": cls.hold,
            "close_before_read": cls.close_before_read,
            "hang_up": cls.hang_up,
        }
        if kind == "respond":
            return cls.respond(args["status"], *args.get("messages", ()))
        return builders[kind](**args)


@dataclass
class RecordedRequest:
    """What the stand-in saw of one mail-send request."""

    index: int  # 1-based arrival order
    status: int | None  # answer sent (or meant to be sent); None when dropped unanswered
    fault: FaultKind | None
    recipients: int = 0
    delivered: bool = False
    sandbox: bool = False
    message_id: str | None = None
    body: dict[str, Any] | None = None  # kept only when the server keeps bodies
    content_type: str | None = None  # of a delivered request


class SendGridServer:
    """The stand-in: a ThreadingHTTPServer on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        port: int = 0,
        keep_bodies: bool = True,
        on_request: Callable[[int], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.api_key = api_key
        self.keep_bodies = keep_bodies
        # Called with the 1-based index of each mail-send request as it arrives, before its body
        # is read: lets a crash test kill the client at exactly the Nth request.
        self.on_request = on_request
        self.deliveries: Counter[str] = Counter()
        self.sandboxed: Counter[str] = Counter()
        self.requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._arrived = 0
        self._in_flight = 0
        self.max_in_flight = 0  # mail-send requests being handled at once, at most
        # Connections served (a client keeping one open: fewer); over TLS, those whose
        # handshake succeeded.
        self.connections = 0
        self._lock = threading.Lock()
        self._arrivals = threading.Condition(self._lock)  # for Fault.hold
        self._stopping = threading.Event()
        self._silent = threading.Event()  # see never_answer
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.stand_in = self
        # HTTPS, as api.sendgrid.com speaks it: each new connection then costs a TLS handshake.
        self.tls = tls is not None
        if tls is not None:
            # The handshake happens in the connection's own thread (`_Handler.setup`), so a
            # client that stalls in it cannot hold up accepting the others.
            self._httpd.socket = tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL to give the SDK as `host`."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> SendGridServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a slow fault
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SendGridServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def never_answer(self, on: bool = True) -> None:
        """While on, every mail-send request is read, not delivered and never answered: its
        connection stays open until this is turned off or the server stops (a SendGrid that
        hangs). Recorded with fault "silent"."""
        if on:
            self._silent.set()
        else:
            self._silent.clear()

    def fail_next(self, *faults: Fault) -> None:
        """Queue faults; each arriving mail-send request takes the next one."""
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.deliveries.clear()
            self.sandboxed.clear()
            self.requests.clear()
            self._faults.clear()
            self._arrived = 0
            self.max_in_flight = self._in_flight
            self.connections = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self._arrived,
                "delivered_requests": sum(1 for r in self.requests if r.delivered),
                "deliveries": sum(self.deliveries.values()),
                "unique_addresses": len(self.deliveries),
                "duplicate_deliveries": sum(n - 1 for n in self.deliveries.values() if n > 1),
                "sandboxed": sum(self.sandboxed.values()),
                "max_recipients_per_request": max((r.recipients for r in self.requests), default=0),
                "max_in_flight": self.max_in_flight,
                "connections": self.connections,
            }

    def events(
        self, event: str = "delivered", *, share: float = 1.0, seed: int = 0, **extra: Any
    ) -> list[dict[str, Any]]:
        """SendGrid Event Webhook events for `share` of the recipients it accepted, in
        SendGrid's shape: `email`, `timestamp`, `event`, `sg_event_id`, `sg_message_id`, and
        the message's and personalization's custom args at the top level. Needs keep_bodies.
        Post them with tests.servers.webhooks.post_events."""
        import random

        rng = random.Random(seed)
        out = []
        with self._lock:
            accepted = [r for r in self.requests if r.delivered and r.body is not None]
        for request in accepted:
            assert request.body is not None
            top = request.body.get("custom_args") or {}
            for p in request.body["personalizations"]:
                if rng.random() >= share:
                    continue
                out.append(
                    {
                        "email": p["to"][0]["email"],
                        "timestamp": int(time.time()),
                        "event": event,
                        "sg_event_id": secrets.token_urlsafe(16),
                        "sg_message_id": f"{request.message_id}.filter0001",
                        **top,
                        **(p.get("custom_args") or {}),
                        **extra,
                    }
                )
        return out

    # Called from handler threads.

    def _arrive(self) -> tuple[int, Fault | None]:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._arrivals.notify_all()
            self._arrived += 1
            return self._arrived, (self._faults.popleft() if self._faults else None)

    def _wait_for_in_flight(self, count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._arrivals:
            # The peak, not the count now: the first to be woken may already have answered.
            while self.max_in_flight < count and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._arrivals.wait(min(left, 0.1))

    def _record(self, request: RecordedRequest, addresses: Iterable[str]) -> None:
        with self._lock:
            if request.delivered:
                (self.sandboxed if request.sandbox else self.deliveries).update(addresses)
            self.requests.append(request)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler stuck in a slow fault must not block stop()
    request_queue_size = 128
    stand_in: SendGridServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, killed processes) are part of the tests; stay quiet.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 30  # a client that stalls mid-request does not pin a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        pass  # per-request logging would dominate the benchmark

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.timeout)
            try:
                self.request.do_handshake()
            except ssl.SSLError as exc:
                # A client that does not trust the certificate hangs up here (a test does so).
                raise ConnectionAbortedError(f"TLS handshake failed: {exc}") from exc
        super().setup()
        stand_in = self.server.stand_in
        with stand_in._lock:
            stand_in.connections += 1

    def do_GET(self) -> None:
        stand_in = self.server.stand_in
        if self.path == "/_stats":
            self._answer(200, stand_in.stats())
        elif self.path == "/_deliveries":
            with stand_in._lock:
                self._answer(200, dict(stand_in.deliveries))
        else:
            self._answer(404, _errors({"message": "not found"}))

    def do_POST(self) -> None:
        stand_in = self.server.stand_in
        if self.path == MAIL_SEND:
            self._mail_send(stand_in)
        elif self.path == "/_faults":
            faults = [Fault.from_dict(f) for f in _loads(self._read_body())]
            stand_in.fail_next(*faults)
            self._answer(200, {"queued": len(faults)})
        elif self.path == "/_reset":
            self._read_body()
            stand_in.reset()
            self._answer(200, {})
        else:
            self._read_body()
            self._answer(404, _errors({"message": "not found"}))

    def _mail_send(self, stand_in: SendGridServer) -> None:
        try:
            self._serve_mail_send(stand_in)
        finally:
            self._leave()

    def _leave(self) -> None:
        """This mail-send request is no longer in flight (once per request).

        Called before the answer is written, not after: the client may send its next request
        the moment it has the answer, before this thread gets to run again.
        """
        if getattr(self, "_in_flight", False):
            self._in_flight = False
            stand_in = self.server.stand_in
            with stand_in._lock:
                stand_in._in_flight -= 1

    def _serve_mail_send(self, stand_in: SendGridServer) -> None:
        index, fault = stand_in._arrive()
        self._in_flight = True
        if stand_in.on_request is not None:
            stand_in.on_request(index)
        kind = fault.kind if fault else None
        if stand_in._silent.is_set():
            self._read_body()
            stand_in._record(RecordedRequest(index, None, "silent"), ())
            while stand_in._silent.is_set() and not stand_in._stopping.wait(0.05):
                pass
            self.close_connection = True
            return
        if kind == "close_before_read":
            self.close_connection = True
            stand_in._record(RecordedRequest(index, None, kind), ())
            return

        status, errors, body = self._check(stand_in, self._read_body())
        headers: list[tuple[str, str]] = []
        if status == 0 and fault is not None and fault.kind == "status":
            status, errors, headers = fault.status, list(fault.errors), list(fault.headers)
        if status != 0:
            stand_in._record(RecordedRequest(index, status, kind), ())
            self._answer(status, _errors(*errors), headers)
            return

        assert body is not None
        addresses = [
            r["email"]
            for p in body["personalizations"]
            for kind_ in ("to", "cc", "bcc")
            for r in p.get(kind_) or ()
        ]
        sandbox = bool(((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable"))
        status = 200 if sandbox else 202
        message_id = None if sandbox else secrets.token_urlsafe(16)
        record = RecordedRequest(
            index,
            None if kind == "drop" else status,
            kind,
            recipients=len(addresses),
            delivered=True,
            sandbox=sandbox,
            message_id=message_id,
            body=body if stand_in.keep_bodies else None,
            content_type=self.headers.get("Content-Type"),
        )
        stand_in._record(record, addresses)

        if kind == "drop":
            self.close_connection = True
            return
        if fault is not None and fault.kind == "slow":
            stand_in._stopping.wait(fault.seconds)
        if fault is not None and fault.kind == "hold":
            stand_in._wait_for_in_flight(fault.in_flight, fault.seconds)
        self._answer(status, None, [("X-Message-Id", message_id)] if message_id else [])
        if kind == "hang_up":
            self.close_connection = True

    def _check(self, stand_in: SendGridServer, raw: bytes) -> tuple[int, list[dict[str, Any]], Any]:
        """(0, [], body) when the request is acceptable, else (status, errors, None)."""
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return 401, [{"message": "Permission denied, wrong credentials"}], None
        if not secrets.compare_digest(auth[len("Bearer ") :], stand_in.api_key):
            message = "The provided authorization grant is invalid, expired, or revoked"
            return 401, [{"message": message}], None
        media_type = self.headers.get("Content-Type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":  # a charset parameter is fine, as at SendGrid
            return 415, [{"message": "Content-Type should be application/json."}], None
        if len(raw) > MAX_BODY_BYTES:
            return 413, [{"message": "The JSON payload you have included is too large."}], None
        try:
            body = _loads(raw)
        except ValueError:
            return 400, [{"message": "Bad Request", "field": None}], None
        errors = validate(body)
        return (400, errors, None) if errors else (0, [], body)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        data = b"" if body is None else _dumps(body)
        self._leave()
        try:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client is gone; the delivery already counted


def _errors(*errors: dict[str, Any]) -> dict[str, Any]:
    return {
        "errors": [
            {"message": e["message"], "field": e.get("field"), "help": e.get("help")}
            for e in errors
        ]
    }


def _error(message: str, field: str | None, anchor: str) -> dict[str, Any]:
    return {"message": message, "field": field, "help": _HELP.format(anchor)}


def validate(body: Any) -> list[dict[str, Any]]:
    """SendGrid's checks on a mail-send body that fbsflow can trip; [] when acceptable."""
    if not isinstance(body, dict):
        return [_error("The request body must be a JSON object.", None, "body")]
    errors = _check_personalizations(body)
    sender = body.get("from")
    if not (isinstance(sender, dict) and _EMAIL.match(str(sender.get("email", "")))):
        errors.append(
            _error(
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.",
                "from.email",
                "message.from",
            )
        )
    personalizations = body.get("personalizations") or []
    if not body.get("subject") and not (
        personalizations and all(isinstance(p, dict) and p.get("subject") for p in personalizations)
    ):
        errors.append(
            _error(
                "The subject is required. You can get around this requirement if you use a template "
                "with a subject defined or if every personalization has a subject defined.",
                "subject",
                "message.subject",
            )
        )
    errors.extend(_check_content(body.get("content")))
    errors.extend(_check_extras(body))
    return errors


def _check_personalizations(body: dict[str, Any]) -> list[dict[str, Any]]:
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return [
            _error(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
                "message.personalizations",
            )
        ]
    if len(personalizations) > MAX_PERSONALIZATIONS:
        return [
            _error(
                "The personalization block is limited to 1000 personalizations per API request. You "
                f"have provided {len(personalizations)} personalizations. Please consider splitting "
                "this into multiple requests and resending your request.",
                "personalizations",
                "message.personalizations",
            )
        ]
    top_args = body.get("custom_args") or {}
    if _plain_personalizations(personalizations, top_args):
        return []
    # Something to report, or an unusual shape: personalization by personalization.
    errors: list[dict[str, Any]] = []
    total = 0
    for i, p in enumerate(personalizations):
        if not isinstance(p, dict) or not p.get("to"):
            errors.append(
                _error(
                    "The to array is required for all personalization objects, and must have at "
                    "least one email object with a valid email address.",
                    f"personalizations.{i}.to",
                    "message.personalizations.to",
                )
            )
            continue
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            for j, r in enumerate(p.get(kind) or ()):
                total += 1
                address = str(r.get("email", "")) if isinstance(r, dict) else ""
                if not _EMAIL.match(address):
                    errors.append(
                        _error(
                            "Does not contain a valid address.",
                            f"personalizations.{i}.{kind}.{j}.email",
                            "message.personalizations.to",
                        )
                    )
                elif address.lower() in seen:
                    # SendGrid really does echo the address here; clients must scrub it.
                    errors.append(
                        _error(
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc. We found the first duplicate instance of "
                            f"[{address}] in the personalizations.{i}.{kind} field.",
                            f"personalizations.{i}",
                            "message.personalizations",
                        )
                    )
                seen.add(address.lower())
        args = p.get("custom_args") or {}
        errors.extend(_check_custom_args({**top_args, **args}, f"personalizations.{i}"))
    if total > MAX_RECIPIENTS:
        errors.append(
            _error(
                f"There is a limit of 1000 total recipients (to + cc + bcc) per request; "
                f"you have provided {total}.",
                "personalizations",
                "message.personalizations",
            )
        )
    return errors


def _plain_personalizations(personalizations: list[Any], top_args: Any) -> bool:
    """True if every personalization is one valid `to` address with string custom_args that fit.

    The shape fbsflow sends, checked in a few passes that run mostly in C: the stand-in shares
    the benchmark's two cores with the client, and the loop below costs ~2 ms a 1000-recipient
    request. False means "look closer", never "invalid".
    """
    try:
        if not isinstance(top_args, dict) or any(
            p.keys() - _PLAIN_KEYS or len(p["to"]) != 1 for p in personalizations
        ):
            return False
        emails = [p["to"][0]["email"] for p in personalizations]
        args = [p.get("custom_args") or {} for p in personalizations]
        values = [v for a in args for v in a.values()]
    except (AttributeError, KeyError, TypeError):
        return False
    types = {*map(type, emails), *map(type, values), *map(type, top_args.values())}
    if types - {str}:
        return False
    lines = "\n".join(emails) + "\n"
    # One line per address: an address holding a newline must not pass as two.
    if lines.count("\n") != len(emails) or not _EMAILS.fullmatch(lines):
        return False
    # A merged custom_args is never larger than the top-level one plus its own, and no one of
    # them is larger than all of them together.
    return len(_dumps(top_args)) + len(_dumps(args)) < MAX_CUSTOM_ARGS_BYTES or all(
        len(_dumps({**top_args, **a})) < MAX_CUSTOM_ARGS_BYTES for a in args
    )


def _check_custom_args(args: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(args, dict):
        return [_error("custom_args must be an object.", f"{where}.custom_args", "custom_args")]
    if any(not isinstance(v, str) for v in args.values()):
        return [
            _error(
                "Invalid type. Expected: string, given: non-string.",
                f"{where}.custom_args",
                "message.custom_args",
            )
        ]
    if len(_dumps(args)) >= MAX_CUSTOM_ARGS_BYTES:
        return [
            _error(
                "The custom_args exceed the maximum size of 10,000 bytes.",
                f"{where}.custom_args",
                "message.custom_args",
            )
        ]
    return []


def _check_content(content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, list) or not content:
        return [
            _error(
                "Unless a valid template_id is provided, the content parameter is required. There "
                "must be at least one defined content block.",
                "content",
                "message.content",
            )
        ]
    errors = []
    for i, block in enumerate(content):
        if not (isinstance(block, dict) and block.get("type") and block.get("value")):
            errors.append(
                _error(
                    "The content value must be a string at least one character in length.",
                    f"content.{i}.value",
                    "message.content.value",
                )
            )
    types = [b.get("type") for b in content if isinstance(b, dict)]
    plain_first = "text/plain" not in types or types[0] == "text/plain"
    html_next = "text/html" not in types or types.index("text/html") <= 1
    if not (plain_first and html_next):
        errors.append(
            _error(
                "If present, text/plain content must be first, followed by text/html, followed by "
                "any other content.",
                "content",
                "message.content.type",
            )
        )
    return errors


def _check_extras(body: dict[str, Any]) -> list[dict[str, Any]]:
    errors = []
    categories = body.get("categories") or []
    if len(categories) > MAX_CATEGORIES:
        errors.append(
            _error(
                "You may not have more than 10 categories per request.",
                "categories",
                "message.categories",
            )
        )
    if any(not isinstance(c, str) or len(c) > 255 for c in categories):
        errors.append(
            _error(
                "A category cannot be longer than 255 characters.",
                "categories",
                "message.categories",
            )
        )
    errors.extend(_check_custom_args(body.get("custom_args") or {}, "message"))
    sandbox = (body.get("mail_settings") or {}).get("sandbox_mode") or {}
    if "enable" in sandbox and not isinstance(sandbox["enable"], bool):
        errors.append(
            _error(
                "The sandbox_mode enable parameter must be a boolean.",
                "mail_settings.sandbox_mode.enable",
                "message.mail_settings",
            )
        )
    asm = body.get("asm")
    if asm is not None and not isinstance((asm or {}).get("group_id"), int):
        errors.append(_error("The asm group_id must be an integer.", "asm.group_id", "message.asm"))
    for i, attachment in enumerate(body.get("attachments") or ()):
        try:
            base64.b64decode(attachment.get("content", ""), validate=True)
            ok = bool(attachment.get("filename"))
        except (binascii.Error, AttributeError):
            ok = False
        if not ok:
            errors.append(
                _error(
                    "Attachments need base64 content and a filename.",
                    f"attachments.{i}",
                    "message.attachments",
                )
            )
    return errors


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1 until SIGINT/SIGTERM; print `READY <url>` first, stats JSON last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--keep-bodies", action="store_true", help="keep request bodies (memory)")
    parser.add_argument(
        "--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with this PEM certificate"
    )
    args = parser.parse_args(argv)

    tls = None
    if args.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*args.tls)
    server = SendGridServer(args.api_key, port=args.port, keep_bodies=args.keep_bodies, tls=tls)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with server:
        print(f"READY {server.url}", flush=True)
        while not stop.wait(0.2):
            pass
    print(_dumps(server.stats()).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
