"""SendGrid's plain transport: the official SDK's own client, as it ships.

`SendGridAPIClient(...).client.mail.send.post(...)`: urllib underneath opens a new connection
(over HTTPS, a TLS handshake) per request. The SendGrid provider posts through it when the kept
connection (tasks/speed/keepalive.py) is switched off or a proxy is in the way; both fail alike,
as tasks/providers/http.py's transport contract says.
"""

from __future__ import annotations

import http.client
import logging
import re
import urllib.error
from typing import Any

import python_http_client.exceptions as sdk_errors
import sendgrid

from tasks.providers.http import Answer, NoAnswer, NotSent, scrub_personal_data


class SdkTransport:
    """The plain path: the SDK's own client, `SendGridAPIClient(...).client.mail.send.post`.

    urllib underneath opens a connection (over HTTPS, a TLS handshake) per request. The SDK
    raises its own error for a status >= 400, which becomes an Answer like any other; urllib
    wraps only failures before the request was fully written in URLError.
    """

    def __init__(self, sdk: sendgrid.SendGridAPIClient, timeout: float) -> None:
        self._client = sdk.client
        self._timeout = timeout
        self._endpoints: dict[str, Any] = {}  # kept: the SDK builds a new client per attribute

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        endpoint = self._endpoints.get(path) or self._endpoint(path)
        try:
            response = endpoint.post(
                request_body=_Body(body), request_headers=headers, timeout=self._timeout
            )
        except sdk_errors.HTTPError as exc:
            return Answer(exc.status_code, exc.headers, exc.body or b"")
        except urllib.error.URLError as exc:
            reason = exc.reason if isinstance(exc.reason, BaseException) else exc
            raise NotSent(reason) from None
        except ValueError as exc:  # a header value http.client refuses before writing a byte
            raise NotSent(exc) from None
        except (OSError, http.client.HTTPException) as exc:  # raised waiting for the answer
            raise NoAnswer(exc) from None
        return Answer(response.status_code, response.headers, response.body)

    def close(self) -> None:
        """Nothing to release: urllib closes each request's connection."""

    def _endpoint(self, path: str) -> Any:
        version, _, rest = path.strip("/").partition("/")
        if version != "v3":
            raise ValueError(f"the SDK's client speaks SendGrid's v3 API, not {path}")
        self._endpoints[path] = endpoint = self._client._(rest)
        return endpoint


class _Unlogged(bytes):
    """A request body that formats as its size, not its content.

    The SDK formats every request body into a debug message (`'PAYLOAD: {data}'.format(...)`)
    before it asks whether debug logging is on. For a body of 1000 addresses that costs ~0.4 ms
    of the GIL a request, and should anyone turn the SDK's debug logging on, it would print
    every address. As its size, it does neither.
    """

    __slots__ = ()

    def __str__(self) -> str:
        return f"<request body, {len(self):,} bytes>"

    __repr__ = __str__


class _Body(str):
    """The request's bytes as the SDK takes a body (a str it encodes): encoding gives them back."""

    def __new__(cls, data: bytes) -> _Body:
        body = super().__new__(cls, f"<request body, {len(data):,} bytes>")
        body.data = data
        return body

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return _Unlogged(self.data)


class _Scrubbed(logging.Filter):
    """The SDK's debug lines name the API key (HEADERS) and may quote an error body's addresses."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = _BEARER.sub("Bearer <secret>", record.getMessage())
        record.msg, record.args = scrub_personal_data(text), ()
        return True


_BEARER = re.compile(r"Bearer [^'\"\s,}]+")
# python_http_client logs every request at DEBUG: keep its logger above DEBUG even when a run
# turns debug logging on globally, and scrub what it says when someone turns it on for it.
logging.getLogger("python_http_client").setLevel(logging.INFO)
logging.getLogger("python_http_client.client").addFilter(_Scrubbed())
