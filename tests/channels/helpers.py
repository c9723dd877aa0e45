"""Shared helpers of the channel tests: config variants of the example, and reading HTML back.

Configs are the example municipality with a few fields changed, written to YAML and loaded through
`load_municipality`, so every variant also passes the same validation a project leader's file does.
"""

from __future__ import annotations

import re
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


# --- Every channel's citizen text, without drawing PDFs or pictures ------------------------------


def channel_texts(config: MunicipalityConfig) -> dict[tuple[str, str], tuple[str, list[Any]]]:
    """(channel, language) -> (the text citizens read, the claims it was rendered from).

    Web pages and e-mails as their visible text; SMS and posts as sent; posters, slides and
    images as their lines, headline and QR caption (the words drawn; drawing them is tested in
    the channels' own tests); the self-service pages as their body and button.
    """
    from tasks.channels import spec
    from tasks.channels.poster import poster_html
    from tasks.models import Channel
    from tasks.render import render_template, short_points
    from tasks.textmetrics import html_to_text

    enabled = config.channels.enabled()
    out: dict[tuple[str, str], tuple[str, list[Any]]] = {}
    for channel, name in ((Channel.WEBSITE, "article"), (Channel.FAQ, "faq")):
        if channel in enabled:
            content = spec(channel).render(config)
            for lang in config.languages:
                html = str(content.files[f"{name}.{lang.value}.html"])
                out[(channel.value, lang.value)] = (html_to_text(html), content.claims[lang])
    rendered = {
        c: spec(c).render(config)
        for c in (Channel.NEWSLETTER, Channel.SMS, Channel.SELF_SERVICE)
        if c in enabled
    }
    for channel, content in rendered.items():
        for lang in config.languages:
            if channel is Channel.SELF_SERVICE:
                ctx = spec(channel).context(config, lang)
                text = " ".join(
                    render_template(f"self_service/{lang.value}/{part}", ctx)
                    for part in ("fee_list_body.md.j2", "button_label.txt.j2")
                )
            else:
                message = content.messages[lang]
                text = f"{message.subject or ''}\n{message.text}"
            out[(channel.value, lang.value)] = (text, content.claims[lang])
    for lang in config.languages:
        if Channel.POSTER in enabled:
            html, _, claims = poster_html(config, lang)
            out[("poster", lang.value)] = (html_to_text(html), claims)
        for channel in (Channel.INFO_SCREEN, Channel.SOCIAL_POST):
            if channel not in enabled:
                continue
            ctx = spec(channel).context(config, lang)
            lines = short_points(ctx, channel)
            # The picture's headline and caption, as its template draws them.
            drawn = [ctx["fixed"]("headline"), *lines]
            if channel is Channel.INFO_SCREEN:
                drawn.append(ctx["fixed"]("scan_pay" if ctx["portal"] else "scan_read"))
            text = "\n".join(drawn)
            claims = list(ctx["claims"].claims)
            if channel is Channel.SOCIAL_POST:
                post, post_claims = spec(channel).text_and_claims(config, lang)
                text += "\n" + post
                claims += [c for c in post_claims if c not in claims]
            out[(channel.value, lang.value)] = (text, claims)
    return out


_LINK_ADDRESS = re.compile(r" \((?:https?://|mailto:)[^)]*\)")
_URL = re.compile(r"https?://\S+|\S+@\S+\.\w+")
_MD = re.compile(r"[\[\]()#*•\-:|]")


def uncovered(text: str, claims: list[Any]) -> str:
    """What is left of `text` when every claim's sentence (and every address) is taken out:
    words here are citizen text that no claim recorded."""
    # A text part writes a link as "label (address)": the address is not part of the sentence.
    rest = _LINK_ADDRESS.sub("", " ".join(text.split()))
    for claim in sorted(claims, key=lambda c: -len(c.text)):
        rest = rest.replace(claim.text, " ")
    rest = _URL.sub(" ", rest)
    rest = _MD.sub(" ", rest)
    return " ".join(rest.replace(".", " ").replace(",", " ").split())
