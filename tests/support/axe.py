"""Accessibility checks and screenshots of pages in headless Chromium, for tests and reviews.

`run_axe` loads a local HTML file in Debian's Chromium, injects axe-core (from the project's
npm install, `node_modules/axe-core/axe.min.js`) and returns its violations. The browser is
driven over the Chrome DevTools Protocol (websockets, which Prefect already brings), so no
browser download is needed and results come back as JSON instead of being scraped from a DOM.

The browser only ever loads file: URLs and pages on this machine (`screenshot` refuses others),
and runs with Chromium's background networking switched off. A page may still name an image or
font on the internet; every such request goes to a dead proxy on 127.0.0.1 and fails at once,
so checks never send traffic off this machine (loopback addresses bypass the proxy).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.sync.client import ClientConnection, connect

REPO_ROOT = Path(__file__).resolve().parents[2]
AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
_CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
_STARTUP_TIMEOUT_S = 20.0
_CALL_TIMEOUT_S = 60.0
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Nothing listens on the discard port, so a request sent there is refused without delay.
_DEAD_PROXY = "127.0.0.1:9"

# As root, without a GPU, and with nothing that talks to the internet on its own.
_CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-field-trial-config",
    # Left on, these ask Google for the time, hints and translations even in headless mode.
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter,"
    "AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserError(RuntimeError):
    """Chromium did not start, a page did not load, or a script in the page failed."""


def chromium_path() -> str | None:
    """Path of a Chromium binary, or None (tests skip on None)."""
    env = os.environ.get("FBSFLOW_CHROMIUM")
    for candidate in (env, *_CHROMIUM_CANDIDATES) if env else _CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def axe_path() -> Path | None:
    """Path of axe.min.js from `npm ci` in the repository root, or None (tests skip on None)."""
    return AXE_JS if AXE_JS.is_file() else None


class _Cdp:
    """A minimal DevTools Protocol client over one browser websocket (flat sessions)."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        timeout: float = _CALL_TIMEOUT_S,
    ) -> dict[str, Any]:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(deadline, method)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def drop_events(self, session: str) -> None:
        self._events = [e for e in self._events if e.get("sessionId") != session]

    def wait_event(self, name: str, session: str, timeout: float = _CALL_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == name and event.get("sessionId") == session:
                    del self._events[i]
                    return
            reply = self._recv(deadline, name)
            if "method" in reply:
                self._events.append(reply)

    def _recv(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            return json.loads(self._ws.recv(timeout=remaining))
        except TimeoutError:
            raise BrowserError(f"timed out waiting for {waiting_for}") from None


class _Page:
    """One browser tab, attached by session id."""

    def __init__(self, cdp: _Cdp, session: str) -> None:
        self._cdp = cdp
        self._session = session

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._cdp.call(method, params, session=self._session)

    def navigate(self, url: str) -> None:
        # A load event of the initial about:blank may still be queued; it must not count.
        self._cdp.drop_events(self._session)
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"could not load {url}: {result['errorText']}")
        self._cdp.wait_event("Page.loadEventFired", self._session)

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"script failed in the page: {text}")
        return result["result"].get("value")


def _devtools_url(profile: Path, proc: subprocess.Popen[bytes], log: Path) -> str:
    # With --remote-debugging-port=0 Chromium picks a free port and writes it, with the
    # browser's websocket path, to DevToolsActivePort in its profile: no stderr parsing needed.
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise BrowserError(f"Chromium exited with {proc.returncode} at start: {tail}")
        lines = port_file.read_text().split("\n") if port_file.exists() else []
        if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
            return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        time.sleep(0.05)
    raise BrowserError("Chromium did not open its DevTools port in time")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _check_local(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme in ("file", "data"):
        return
    if parts.scheme in ("http", "https") and (parts.hostname or "") in _LOCAL_HOSTS:
        return
    raise ValueError(f"the browser only loads file: URLs and pages on this machine, not {url!r}")


class Browser:
    """One headless Chromium with its own temporary profile; each check gets a fresh tab.

    Starting Chromium is most of the cost of a check, so tests that check many pages share one
    `Browser` (e.g. a module-scoped fixture); `run_axe` and `screenshot` start their own.
    """

    def __init__(self, *, proxy: str = _DEAD_PROXY) -> None:
        self._proxy = proxy
        self._stack = ExitStack()
        self._cdp: _Cdp | None = None

    def __enter__(self) -> Browser:
        exe = chromium_path()
        if exe is None:
            raise BrowserError("Chromium is not installed (apt-get install -y chromium)")
        try:
            tmp = Path(
                self._stack.enter_context(tempfile.TemporaryDirectory(prefix="fbsflow-chromium-"))
            )
            profile = tmp / "profile"
            profile.mkdir()
            log = tmp / "chromium.log"
            with log.open("wb") as log_file:
                proc = subprocess.Popen(
                    [
                        exe,
                        *_CHROMIUM_FLAGS,
                        f"--proxy-server=http://{self._proxy}",
                        f"--user-data-dir={profile}",
                        "about:blank",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    # Its own process group, so renderer and zygote processes end with it.
                    start_new_session=True,
                )
            self._stack.callback(_stop, proc)
            url = _devtools_url(profile, proc, log)
            ws = self._stack.enter_context(
                connect(url, max_size=None, open_timeout=_STARTUP_TIMEOUT_S)
            )
            self._cdp = _Cdp(ws)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._cdp = None
        self._stack.close()

    @contextmanager
    def _page(self, width: int, height: int) -> Iterator[_Page]:
        cdp = self._cdp
        if cdp is None:
            raise BrowserError("use Browser as a context manager: `with Browser() as browser:`")
        target = cdp.call("Target.createTarget", {"url": "about:blank"})
        try:
            attached = cdp.call(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            page = _Page(cdp, attached["sessionId"])
            page.call("Page.enable")
            page.call("Runtime.enable")
            page.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
            yield page
        finally:
            cdp.call("Target.closeTarget", {"targetId": target["targetId"]})

    def axe(
        self,
        html_path: Path,
        *,
        tags: list[str] | None = None,
        disable_rules: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """axe-core violations of a local HTML file; see `run_axe`."""
        axe = axe_path()
        if axe is None:
            raise BrowserError(f"axe-core is not installed at {AXE_JS} (run `npm ci`)")
        page_path = Path(html_path).resolve()
        if not page_path.is_file():
            raise FileNotFoundError(page_path)
        options: dict[str, Any] = {"resultTypes": ["violations"]}
        if tags:
            options["runOnly"] = {"type": "tag", "values": tags}
        if disable_rules:
            options["rules"] = {rule: {"enabled": False} for rule in disable_rules}
        with self._page(1280, 900) as page:
            page.navigate(page_path.as_uri())
            page.evaluate(axe.read_text(encoding="utf-8") + "\n;void 0;")
            # Stringified in the page: axe's result objects hold DOM references that do not
            # serialise by value.
            raw = page.evaluate(
                f"axe.run(document, {json.dumps(options)}).then(r => JSON.stringify(r.violations))"
            )
        return json.loads(raw)

    def screenshot(self, url: str, out: Path, *, width: int = 1400, height: int = 900,
                   wait_ms: int = 8000) -> Path:  # fmt: skip
        """A PNG of `url` at width x height; see `screenshot`."""
        _check_local(url)
        out = Path(out)
        with self._page(width, height) as page:
            page.navigate(url)
            time.sleep(wait_ms / 1000)
            shot = page.call("Page.captureScreenshot", {"format": "png"})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out


def run_axe(
    html_path: Path,
    *,
    tags: list[str] | None = None,
    disable_rules: list[str] | None = None,
) -> list[dict[str, Any]]:
    """axe-core violations of a local HTML file, as axe reports them (id, impact, help, nodes).

    By default axe runs every rule it runs by default (WCAG 2.x A/AA and best practices);
    `tags` (e.g. ["wcag2a", "wcag2aa", "wcag21aa"]) limits the run to rules with those tags,
    and `disable_rules` switches single rules off (say why where you use it). Starts its own
    Chromium; use `Browser().axe` to check many pages with one.
    """
    with Browser() as browser:
        return browser.axe(html_path, tags=tags, disable_rules=disable_rules)


def format_violations(violations: list[dict[str, Any]]) -> str:
    """One line per violation and affected node, for assertion messages."""
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v.get('impact')}): {v.get('help')}")
        lines.extend(f"    at {node.get('target')}: {node.get('html', '')[:120]}"
                     for node in v.get("nodes", []))  # fmt: skip
    return "\n".join(lines) or "no violations"


def screenshot(url: str, out: Path, *, width: int = 1400, height: int = 900,
               wait_ms: int = 8000) -> Path:  # fmt: skip
    """Save a PNG of `url` (a file: URL or a page on localhost) as seen at width x height.

    Waits for the load event and then `wait_ms` of real time, so single-page apps such as the
    Prefect UI have fetched and drawn their data. Returns `out`. Starts its own Chromium.
    """
    _check_local(url)
    with Browser() as browser:
        return browser.screenshot(url, out, width=width, height=height, wait_ms=wait_ms)
