"""Tests of poster PDFs: rendered with WeasyPrint, read back with poppler and zbar like a print."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from tasks.errors import ConfigError
from tasks.pdf import (
    MissingToolError,
    _local_only_fetcher,
    pdf_info,
    pdf_qr_codes,
    pdf_text,
    qr_data_uri,
    qr_svg,
    render_pdf,
)
from tasks.textmetrics import lix_info
from tests.support.local_http import serve

URL = "https://www.eksempel.dk/betalingsoverblik"
_TOOLS = {"pdftoppm": "poppler-utils", "pdftotext": "poppler-utils", "pdfinfo": "poppler-utils",
          "zbarimg": "zbar-tools"}  # fmt: skip
_MISSING = sorted({pkg for tool, pkg in _TOOLS.items() if shutil.which(tool) is None})
needs_tools = pytest.mark.skipif(
    bool(_MISSING), reason=f"reading PDFs back needs: apt-get install -y {' '.join(_MISSING)}"
)

_POSTER = """<!doctype html>
<html lang="da">
<head><meta charset="utf-8"><title>Plakat</title>
<style>
  @page {{ size: {size}; margin: 2cm; }}
  body {{ font-family: "DejaVu Sans", sans-serif; font-size: 24pt; line-height: 1.3; }}
  h1 {{ font-size: 40pt; }}
  .qr {{ width: 6cm; height: 6cm; }}
  .qr svg {{ width: 100%; height: 100%; }}
</style></head>
<body>
<h1>Ny måde at betale gæld til biblioteket</h1>
<p>Fra 1. marts sender kommunen dine mellemværender. Betal på Mit betalingsoverblik med MitID.</p>
<p>Spørgsmål om betaling? Kontakt Borgerservice.</p>
{qr}
<p>{url}</p>
</body></html>"""


def _poster(size: str, qr: str) -> str:
    return _POSTER.format(size=size, qr=qr, url=URL)


@pytest.fixture(scope="module")
def a4_pdf() -> bytes:
    img = f'<img class="qr" src="{qr_data_uri(URL)}" alt="QR-kode til Mit betalingsoverblik">'
    return render_pdf(_poster("A4", img))


@pytest.fixture(scope="module")
def a3_pdf() -> bytes:
    svg = qr_svg(URL, label="QR-kode til Mit betalingsoverblik")
    return render_pdf(_poster("A3", f'<div class="qr">{svg}</div>'))


def test_render_pdf_returns_a_pdf(a4_pdf: bytes) -> None:
    assert a4_pdf.startswith(b"%PDF-")
    assert b"%%EOF" in a4_pdf[-64:]


@needs_tools
def test_a4_poster_is_a4_with_danish_text_and_a_readable_qr(a4_pdf: bytes) -> None:
    info = pdf_info(a4_pdf)
    assert (info.pages, round(info.width_pt), round(info.height_pt)) == (1, 595, 842)
    text = pdf_text(a4_pdf)
    for word in ("måde", "gæld", "mellemværender", "Spørgsmål", "Borgerservice"):
        assert word in text
    assert pdf_qr_codes(a4_pdf) == [URL]


@needs_tools
def test_a3_poster_with_inline_svg_qr(a3_pdf: bytes) -> None:
    info = pdf_info(a3_pdf)
    assert (info.pages, round(info.width_pt), round(info.height_pt)) == (1, 842, 1191)
    assert "gæld til biblioteket" in " ".join(pdf_text(a3_pdf).split())
    assert pdf_qr_codes(a3_pdf) == [URL]


@needs_tools
def test_pdf_text_joins_wrapped_lines_into_paragraphs(a4_pdf: bytes, tmp_path: Path) -> None:
    # Large type wraps the heading, the sentences and the address over several lines, as
    # plain pdftotext shows; pdf_text must give one paragraph per line all the same.
    (tmp_path / "a4.pdf").write_bytes(a4_pdf)
    raw = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(tmp_path / "a4.pdf"), "-"],
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    assert "dine\nmellemværender" in raw
    assert "https://www.eksempel.dk/\nbetalingsoverblik" in raw
    assert pdf_text(a4_pdf).split("\n\n") == [
        "Ny måde at betale gæld til biblioteket",
        "Fra 1. marts sender kommunen dine mellemværender. "
        "Betal på Mit betalingsoverblik med MitID.",
        "Spørgsmål om betaling? Kontakt Borgerservice.",
        URL,
    ]


@needs_tools
def test_lix_of_poster_text(a4_pdf: bytes) -> None:
    # Heading, 2 + 2 sentences, the address line; the address is one (long) word.
    info = lix_info(pdf_text(a4_pdf))
    assert (info.words, info.sentences) == (7 + 12 + 5 + 1, 6)


@needs_tools
def test_page_without_qr_code_yields_no_codes() -> None:
    pdf = render_pdf(_poster("A4", ""))
    assert pdf_qr_codes(pdf) == []


def test_qr_svg_is_inline_and_accessible() -> None:
    labelled = qr_svg(URL, label='QR-kode til "Mit betalingsoverblik"')
    assert labelled.startswith("<svg ")
    assert "<?xml" not in labelled
    assert 'role="img" aria-label="QR-kode til &quot;Mit betalingsoverblik&quot;"' in labelled
    # Version 3 (29 modules) plus a 4-module quiet zone on each side, 10 px per module.
    assert 'width="370"' in labelled
    assert 'aria-hidden="true"' in qr_svg(URL)
    assert 'width="74"' in qr_svg(URL, scale=2)


def test_qr_data_uri_is_svg() -> None:
    assert qr_data_uri(URL).startswith("data:image/svg+xml")


def test_missing_tools_raise_a_config_error_naming_the_package(
    a4_pdf: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match="apt-get install -y poppler-utils") as info:
        pdf_qr_codes(a4_pdf)
    assert isinstance(info.value, ConfigError)


class _CssHandler(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = b"@page { size: A3 landscape; }"
        self.send_response(200)
        self.send_header("Content-Type", "text/css")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def css_server() -> Iterator[str]:
    with serve(_CssHandler) as url:
        yield url


@needs_tools
def test_relative_stylesheet_on_localhost_is_fetched_via_base_url(css_server: str) -> None:
    _CssHandler.requests.clear()
    html = '<html lang="da"><head><link rel="stylesheet" href="poster.css"></head><body>Hej</body>'
    pdf = render_pdf(html, base_url=css_server)
    assert _CssHandler.requests == ["/poster.css"]
    info = pdf_info(pdf)
    assert (round(info.width_pt), round(info.height_pt)) == (1191, 842)


@pytest.mark.parametrize(
    "url", ["https://eksempel.invalid/logo.png", "ftp://eksempel.invalid/x.css"]
)
def test_non_local_resources_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(ValueError, match="refusing"):
        _local_only_fetcher().fetch(url)
