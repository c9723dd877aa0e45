"""Proof that the browser harness works: axe finds planted faults and screenshots show the page."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image  # WeasyPrint's dependency, so always there

from tests.support.axe import (
    Browser,
    axe_path,
    chromium_path,
    format_violations,
    run_axe,
    screenshot,
)
from tests.support.local_http import serve

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium_path() is None, reason="needs Chromium: apt-get install chromium"),
]
needs_axe = pytest.mark.skipif(
    axe_path() is None, reason="needs axe-core: run `npm ci` in the repository root"
)

_BROKEN = """<!doctype html>
<html><head><meta charset="utf-8"><title>Betaling</title></head>
<body><main><h1>Betaling</h1><img src="plakat.png"><p>Betal på Mit betalingsoverblik.</p></main>
</body></html>"""

_CLEAN = """<!doctype html>
<html lang="da">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sådan betaler du gæld til biblioteket</title>
<style>body { font-family: sans-serif; color: #1a1a1a; background: #fff; }
a { color: #0b57a4; }</style></head>
<body>
<header><p>Eksempel Bibliotekerne</p></header>
<main>
<h1>Sådan betaler du gæld til biblioteket</h1>
<p>Fra 1. marts sender kommunen fakturaen. Du betaler på
<a href="https://www.eksempel.dk/betalingsoverblik">Mit betalingsoverblik</a> med MitID.</p>
<h2>Har du ikke MitID?</h2>
<ul><li>Du får et girokort med posten.</li><li>Du kan betale i Borgerservice.</li></ul>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="Plakat om betaling">
</main>
<footer><p>Spørgsmål? Kontakt biblioteket.</p></footer>
</body></html>"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as shared:
        yield shared


def _write(tmp_path: Path, name: str, html: str) -> Path:
    path = tmp_path / name
    path.write_text(html, encoding="utf-8")
    return path


@needs_axe
def test_planted_violations_are_reported(tmp_path: Path) -> None:
    # run_axe starts and stops its own browser; the other tests share one.
    violations = run_axe(_write(tmp_path, "broken.html", _BROKEN))
    ids = {v["id"] for v in violations}
    assert {"image-alt", "html-has-lang"} <= ids, format_violations(violations)
    image_alt = next(v for v in violations if v["id"] == "image-alt")
    assert image_alt["nodes"][0]["target"] == ["img"]


@needs_axe
def test_clean_semantic_page_has_no_violations(browser: Browser, tmp_path: Path) -> None:
    violations = browser.axe(_write(tmp_path, "clean.html", _CLEAN))
    assert violations == [], format_violations(violations)


@needs_axe
def test_tags_and_disabled_rules_narrow_the_run(browser: Browser, tmp_path: Path) -> None:
    page = _write(tmp_path, "broken.html", _BROKEN)
    ids = {v["id"] for v in browser.axe(page, tags=["wcag2a"], disable_rules=["html-has-lang"])}
    assert ids == {"image-alt"}


class _PageHandler(BaseHTTPRequestHandler):
    # The text is drawn by a script after load, as the Prefect UI does: the screenshot must wait.
    body = b"""<!doctype html><html lang="da"><body style="margin:0;background:#fff">
<div id="box" style="width:200px;height:100px;background:#fff"></div>
<script>setTimeout(() => { document.getElementById('box').style.background = '#ff0000'; }, 300);
</script></body></html>"""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[str]:
    with serve(_PageHandler) as url:
        yield url


def test_screenshot_waits_and_has_the_requested_size(
    browser: Browser, page_server: str, tmp_path: Path
) -> None:
    out = browser.screenshot(page_server, tmp_path / "shots" / "page.png", width=640, height=480,
                     wait_ms=1500)  # fmt: skip
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == (640, 480)
        rgb = img.convert("RGB")
        # The box turns red 300 ms after load: a screenshot taken at load would be all white.
        assert rgb.getpixel((100, 50)) == (255, 0, 0)
        assert rgb.getpixel((600, 400)) == (255, 255, 255)


class _ProxyHandler(BaseHTTPRequestHandler):
    # Stands in for the dead proxy so the test can see what would have left the machine.
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        self.send_error(502)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_resources_off_this_machine_go_to_the_local_proxy(tmp_path: Path) -> None:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    _ProxyHandler.seen.clear()
    page = tmp_path / "remote.html"
    page.write_text('<html lang="da"><body><img src="http://eksempel.invalid/logo.png" alt="Logo">')
    try:
        with Browser(proxy=f"127.0.0.1:{proxy.server_port}") as own:
            own.screenshot(page.as_uri(), tmp_path / "remote.png", width=200, height=100, wait_ms=0)
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert _ProxyHandler.seen == ["http://eksempel.invalid/logo.png"]


@pytest.mark.parametrize("url", ["https://eksempel.invalid/", "http://10.0.0.1/"])
def test_screenshot_refuses_pages_that_are_not_on_this_machine(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="this machine"):
        screenshot(url, tmp_path / "x.png")
