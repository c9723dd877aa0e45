"""Provider test fixtures: a fresh TLS context around each test, and HTTPS trusted or not."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.providers.http import tls_context
from tests.support.tls import self_signed


@pytest.fixture(autouse=True)
def _fresh_tls_context() -> Iterator[None]:
    """The providers load CA certificates once per process (`tls_context`): each test starts
    and ends without them, so the SSL_CERT_FILE of one test never decides the next."""
    tls_context.cache_clear()
    yield
    tls_context.cache_clear()


class Tls:
    """Makes a stand-in's HTTPS trusted by this process, or not."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self._folder = folder
        self._monkeypatch = monkeypatch

    def server(self, scheme: str = "https") -> ssl.SSLContext | None:
        """A server context for `scheme` ("http": None) with a throw-away certificate that the
        providers then trust (SSL_CERT_FILE, as behind a proxy with its own CA)."""
        if scheme == "http":
            return None
        cert, key = self_signed(self._folder, "stand-in")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        tls_context.cache_clear()
        return context

    def distrust(self) -> None:
        """From now on trust no stand-in: only the system's CAs and an empty SSL_CERT_DIR."""
        self._monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        empty = self._folder / "no-ca"
        empty.mkdir(exist_ok=True)
        self._monkeypatch.setenv("SSL_CERT_DIR", str(empty))
        tls_context.cache_clear()


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tls:
    return Tls(tmp_path, monkeypatch)
