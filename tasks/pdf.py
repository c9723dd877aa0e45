"""Posters and images: QR codes for the HTML, HTML to PDF with WeasyPrint, PDF to PNG, reading back.

Images for screens and social media are laid out as a one-page PDF at their size in CSS px and
turned into a PNG of exactly that many pixels by poppler's `pdftoppm`. Reading back (text, page
size, QR codes) uses poppler-utils (`pdftotext`, `pdfinfo`, `pdftoppm`) and zbar-tools
(`zbarimg`), so a poster or a slide is checked as a printer, a screen and a phone see it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from xml.etree import ElementTree

import segno

from tasks.errors import ConfigError

if TYPE_CHECKING:
    from weasyprint.urls import URLFetcher

# Error correction M survives a crease or a smudge on a printed poster without making the
# code much denser than L; the 4-module quiet zone is what phone scanners expect.
_QR_ERROR = "m"
_QR_BORDER = 4
_TOOL_TIMEOUT_S = 60
_XHTML = "{http://www.w3.org/1999/xhtml}"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class MissingToolError(ConfigError):
    """A command-line tool needed to read PDFs back is not installed on this machine."""


class PdfToolError(RuntimeError):
    """A PDF tool ran but failed (corrupt PDF, unreadable image); the message has its stderr."""


def _qr(url: str) -> segno.QRCode:
    return segno.make(url, error=_QR_ERROR, micro=False)


def qr_svg(url: str, *, scale: int = 10, label: str | None = None) -> str:
    """An inline `<svg>` QR code for `url` (error correction M, 4-module quiet zone).

    With `label` (e.g. "QR-kode til Mit betalingsoverblik") the SVG gets role="img" and that
    accessible name; without it the SVG is hidden from screen readers, so the page must show
    the address as text next to it.
    """
    svg = _qr(url).svg_inline(scale=scale, border=_QR_BORDER, title=None)
    if label is None:
        attrs = ' aria-hidden="true" focusable="false"'
    else:
        escaped = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
        attrs = f' role="img" aria-label="{escaped}"'
    return svg.replace("<svg", "<svg" + attrs, 1)


def qr_data_uri(url: str, *, scale: int = 10) -> str:
    """A `data:image/svg+xml` URI of the QR code for `url`, for `<img src>` or CSS."""
    return _qr(url).svg_data_uri(scale=scale, border=_QR_BORDER)


def _local_only_fetcher() -> URLFetcher:
    # Imported here because importing WeasyPrint takes a second or two.
    from weasyprint.urls import URLFetcher

    class LocalOnlyFetcher(URLFetcher):
        """Fetches data:, file: and loopback http(s) URLs only.

        A poster must be self-contained and rendering must never reach out to the internet;
        WeasyPrint logs a refused resource as a warning and renders without it.
        """

        def fetch(self, url: str, headers: dict[str, str] | None = None):  # type: ignore[override]
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            if scheme in ("http", "https") and (parts.hostname or "") not in _LOCAL_HOSTS:
                raise ValueError(f"refusing to fetch a non-local resource: {url}")
            if scheme not in ("http", "https", "file", "data"):
                raise ValueError(f"refusing to fetch a resource with scheme {scheme!r}")
            return super().fetch(url, headers)

    return LocalOnlyFetcher(allow_redirects=False)


def render_pdf(html: str, *, base_url: str | None = None) -> bytes:
    """Render an HTML document to PDF bytes with WeasyPrint.

    The page size comes from the document's CSS (`@page { size: A4 }` or `A3`). Relative URLs
    resolve against `base_url`; only data:, file: and loopback resources are fetched.
    """
    from weasyprint import HTML

    return HTML(string=html, base_url=base_url, url_fetcher=_local_only_fetcher()).write_pdf()


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(
            f"'{name}' is not installed; it is needed to read PDFs back. "
            f"Install it with: apt-get install -y {package}"
        )
    return path


def _run(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(args, capture_output=True, timeout=_TOOL_TIMEOUT_S, check=False)
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace").strip()
        raise PdfToolError(f"{Path(args[0]).name} failed (exit {result.returncode}): {err}")
    return result


def _with_pdf_file(pdf: bytes, work: Path) -> Path:
    path = work / "in.pdf"
    path.write_bytes(pdf)
    return path


def pdf_text(pdf: bytes) -> str:
    """The text of a PDF in reading order, one paragraph per line, paragraphs apart by a blank line.

    Uses poppler's `pdftotext -bbox-layout`, whose blocks are the paragraphs and headings as laid
    out: the lines of a block are joined with a space, or with nothing after a line ending in
    "/" or "-" (an address or a word broken over two lines), so large poster type that wraps
    every sentence does not look like many short sentences to `lix`. Raises MissingToolError if
    poppler-utils is not installed.
    """
    exe = _tool("pdftotext", "poppler-utils")
    with tempfile.TemporaryDirectory(prefix="fbsflow-pdf-") as tmp:
        src = _with_pdf_file(pdf, Path(tmp))
        result = _run([exe, "-bbox-layout", "-enc", "UTF-8", str(src), "-"])
    root = ElementTree.fromstring(result.stdout)
    paragraphs = []
    for block in root.iter(f"{_XHTML}block"):
        text = ""
        for line in block.iter(f"{_XHTML}line"):
            words = " ".join(w.text or "" for w in line.iter(f"{_XHTML}word"))
            glue = "" if not text or text.endswith(("/", "-")) else " "
            text += glue + words
        if text:
            paragraphs.append(text)
    return "\n\n".join(paragraphs)


_PAGES_RE = re.compile(r"^Pages:\s+(\d+)", re.M)
_PAGE_SIZE_RE = re.compile(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", re.M)


@dataclass(frozen=True)
class PdfInfo:
    """Page count and the size of page 1 in PostScript points (A4 is about 595 x 842)."""

    pages: int
    width_pt: float
    height_pt: float


def pdf_info(pdf: bytes) -> PdfInfo:
    """Page count and page-1 size of a PDF, via poppler's `pdfinfo`."""
    exe = _tool("pdfinfo", "poppler-utils")
    with tempfile.TemporaryDirectory(prefix="fbsflow-pdf-") as tmp:
        src = _with_pdf_file(pdf, Path(tmp))
        out = _run([exe, str(src)]).stdout.decode("utf-8", "replace")
    pages, size = _PAGES_RE.search(out), _PAGE_SIZE_RE.search(out)
    if pages is None or size is None:
        raise PdfToolError("pdfinfo printed no page count or page size")
    return PdfInfo(int(pages[1]), float(size[1]), float(size[2]))


def render_png(
    html: str, width: int, height: int, *, base_url: str | None = None
) -> tuple[bytes, bytes]:
    """A page laid out at `width` x `height` CSS px (`@page { size: ...px ...px }`) as a PNG of
    exactly that many pixels, and the PDF it was drawn from (to read its text back).

    Raises MissingToolError if poppler-utils is not installed: the PNG is the output itself.
    """
    pdf = render_pdf(html, base_url=base_url)
    exe = _tool("pdftoppm", "poppler-utils")
    with tempfile.TemporaryDirectory(prefix="fbsflow-pdf-") as tmp:
        work = Path(tmp)
        src = _with_pdf_file(pdf, work)
        _run([exe, "-png", "-f", "1", "-l", "1", "-singlefile", "-scale-to-x", str(width),
              "-scale-to-y", str(height), str(src), str(work / "page")])  # fmt: skip
        png = (work / "page.png").read_bytes()
    if png_size(png) != (width, height):
        raise PdfToolError(f"pdftoppm drew {png_size(png)} pixels, not {(width, height)}")
    return png, pdf


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG in pixels, from its header."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def png_qr_codes(png: bytes) -> list[str]:
    """The contents of every QR code in a PNG image, as a phone would read them from a screen."""
    with tempfile.TemporaryDirectory(prefix="fbsflow-pdf-") as tmp:
        image = Path(tmp) / "image.png"
        image.write_bytes(png)
        return _qr_codes(image)


def pdf_qr_codes(pdf: bytes) -> list[str]:
    """The contents of every QR code on page 1, as a phone would read them from a print.

    Renders page 1 at 150 dpi with `pdftoppm` and decodes with `zbarimg`; returns [] when the
    page has no readable QR code. Raises MissingToolError if poppler-utils or zbar-tools is
    not installed.
    """
    pdftoppm = _tool("pdftoppm", "poppler-utils")
    with tempfile.TemporaryDirectory(prefix="fbsflow-pdf-") as tmp:
        work = Path(tmp)
        src = _with_pdf_file(pdf, work)
        _run([pdftoppm, "-r", "150", "-png", "-f", "1", "-l", "1", "-singlefile", str(src),
              str(work / "page")])  # fmt: skip
        return _qr_codes(work / "page.png")


def _qr_codes(image: Path) -> list[str]:
    zbarimg = _tool("zbarimg", "zbar-tools")
    result = subprocess.run(
        [zbarimg, "--raw", "-q", "-Sdisable", "-Sqrcode.enable", str(image)],
        capture_output=True,
        timeout=_TOOL_TIMEOUT_S,
        check=False,
    )
    # zbarimg exits 4 when it decoded nothing: for us that is an answer, not a failure.
    if result.returncode == 4:
        return []
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", "replace").strip()
        raise PdfToolError(f"zbarimg failed (exit {result.returncode}): {err}")
    return [line for line in result.stdout.decode("utf-8").splitlines() if line]
