"""Shared helpers of the channel tests: config variants of the example, and reading HTML back.

Configs are the example municipality with a few fields changed, written to YAML and loaded through
`load_municipality`, so every variant also passes the same validation a project leader's file does.
"""

from __future__ import annotations

import shutil
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.config import load_municipality
from tasks.models import MunicipalityConfig

from ..conftest import EXAMPLE_CONFIG

_PDF_TOOLS = {"pdftoppm": "poppler-utils", "pdftotext": "poppler-utils",
              "pdfinfo": "poppler-utils", "zbarimg": "zbar-tools"}  # fmt: skip
_MISSING = sorted({pkg for tool, pkg in _PDF_TOOLS.items() if shutil.which(tool) is None})
needs_pdf_tools = pytest.mark.skipif(
    bool(_MISSING), reason=f"reading PDFs back needs: apt-get install -y {' '.join(_MISSING)}"
)

DROP = object()  # a change that removes the key

# --- Config variants -------------------------------------------------------------------------


@cache
def _raw() -> str:
    return EXAMPLE_CONFIG.read_text(encoding="utf-8")


def raw_example() -> dict[str, Any]:
    """The example config as the project leader wrote it (fresh copy)."""
    return yaml.safe_load(_raw())


def write_variant(folder: Path, changes: dict[str, Any], name: str = "variant") -> Path:
    """The example config with dotted keys set (or removed with DROP), written as YAML."""
    data = raw_example()
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is DROP:
            node.pop(last, None)
        else:
            node[last] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def variant(folder: Path, changes: dict[str, Any], name: str = "variant") -> MunicipalityConfig:
    return load_municipality(write_variant(folder, changes, name))


@cache
def example() -> MunicipalityConfig:
    return load_municipality(EXAMPLE_CONFIG)


# --- Reading HTML back -----------------------------------------------------------------------

_BLOCKS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "p", "li"})


class _Blocks(HTMLParser):
    """Text of every heading, paragraph and list item, with each link written as 'label (url)'.

    Also records the tags and attributes of every element, and the text of <style> elements.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str]] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self._tag: str | None = None
        self._text: list[str] = []
        self._href: str | None = None
        self._label: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "style":
            self._in_style = True
        elif tag in _BLOCKS:
            self._tag, self._text = tag, []
        elif tag == "a":
            self._href, self._label = dict(attrs).get("href"), []

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        elif tag == "a" and self._href is not None:
            label = "".join(self._label)
            self._text.append(self._href if label == self._href else f"{label} ({self._href})")
            self._href = None
        elif tag == self._tag:
            self.blocks.append((tag, " ".join("".join(self._text).split())))
            self._tag = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
        elif self._href is not None:
            self._label.append(data)
        elif self._tag is not None:
            self._text.append(data)


def parse(html: str) -> _Blocks:
    parser = _Blocks()
    parser.feed(html)
    parser.close()
    return parser


def squash(text: str) -> str:
    return " ".join(text.split())
