"""The preview gallery: every output shown exactly, every link leading to a file of the outbox."""

from __future__ import annotations

import base64
import re
import shutil
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markupsafe import escape

from tasks.channels import render_channel
from tasks.config import load_municipality
from tasks.gallery import build_gallery, gallery_markdown, poster_preview_png
from tasks.models import Channel, Language
from tasks.providers.base import Message
from tasks.render import ChannelContent

from .conftest import EXAMPLE_CONFIG

TITLE = "Preview: Eksempel Kommune"


@cache
def contents() -> dict[Channel, ChannelContent]:
    config = load_municipality(EXAMPLE_CONFIG)
    return {channel: render_channel(channel, config) for channel in config.channels.enabled()}


@cache
def gallery() -> str:
    return build_gallery(contents(), title=TITLE)


class _Elements(HTMLParser):
    """Every element with its attributes (values unescaped, as a browser reads them), and texts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in ("img", "meta", "br", "embed", "link", "source"):
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts.setdefault(self._open[-1], []).append(data)


def parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def _all(parsed: _Elements, tag: str) -> list[dict[str, str]]:
    return [attrs for t, attrs in parsed.elements if t == tag]


def test_page_has_language_title_and_a_section_per_channel() -> None:
    page = parse(gallery())
    assert _all(page, "html")[0]["lang"] == "en"
    assert page.texts["title"] == [TITLE] and page.texts["h1"] == [TITLE]
    sections = {a["id"] for a in _all(page, "section") if "id" in a}
    assert {c.value for c in contents()} <= sections
    h2 = page.texts["h2"]
    for label in ("Website article", "FAQ", "Newsletter", "Poster", "SMS", "Self-service pages"):
        assert any(h.startswith(label) for h in h2), label


def test_web_pages_and_emails_are_embedded_exactly() -> None:
    iframes = _all(parse(gallery()), "iframe")
    srcdocs = {frame["srcdoc"] for frame in iframes}
    for lang in Language:
        assert contents()[Channel.WEBSITE].files[f"article.{lang.value}.html"] in srcdocs
        assert contents()[Channel.FAQ].files[f"faq.{lang.value}.html"] in srcdocs
        assert contents()[Channel.NEWSLETTER].messages[lang].html in srcdocs
    assert len(iframes) == 6
    titles = [frame.get("title", "") for frame in iframes]
    assert all(titles) and len(set(titles)) == len(titles), "each frame needs its own title"


def test_texts_figures_and_files_are_shown() -> None:
    page = parse(gallery())
    pre = page.texts["pre"]
    sms = contents()[Channel.SMS]
    for lang in Language:
        assert sms.messages[lang].text in pre
        assert contents()[Channel.NEWSLETTER].messages[lang].text.rstrip() in pre
        assert contents()[Channel.NEWSLETTER].messages[lang].subject in page.texts["span"]
        m = sms.metrics[lang]
        dd = page.texts["dd"]
        assert str(m["characters"]) in dd and str(m["parts"]) in dd and "GSM-7" in dd
    for name, text in contents()[Channel.SELF_SERVICE].files.items():
        assert str(text).rstrip() in pre, name
    # The metrics table: one row per measured channel, LIX per language as in the metrics.
    cells = page.texts["td"]
    for channel in (Channel.WEBSITE, Channel.FAQ, Channel.NEWSLETTER, Channel.POSTER, Channel.SMS):
        for lang in Language:
            lix = contents()[channel].metrics[lang]["lix"]
            assert any(cell.startswith(f"{lix:.1f} (") for cell in cells), (channel, lang)


def test_every_relative_link_leads_to_a_file_of_the_outbox(tmp_path: Path) -> None:
    slug = tmp_path / "eksempel-kommune"
    for channel, content in contents().items():
        for relative, data in content.files.items():
            target = slug / channel.value / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                target.write_bytes(data)
            else:
                target.write_text(data, encoding="utf-8")
    (slug / "gallery.html").write_text(gallery(), encoding="utf-8")
    page = parse(gallery())
    hrefs = {a["href"] for a in _all(page, "a")}
    relative = {h for h in hrefs if not urlsplit(h).scheme and not h.startswith("#")}
    for expected in (
        "website/article.da.html",
        "faq/faq.en.html",
        "poster/poster.da.pdf",
        "sms/sms.da.txt",
        "newsletter/da/body.html",
        "newsletter/en/body.txt",
        "self_service/dpl/dpl_fees.settings.yml",
        "self_service/ddb/ding_debt.json",
        "info_screen/slide.da.png",
        "social_post/image.en.png",
        "social_post/post.da.txt",
    ):
        assert expected in relative, expected  # fmt: skip
    for href in relative:
        assert (slug / unquote(href)).is_file(), href
    anchors = {h[1:] for h in hrefs if h.startswith("#")}
    ids = {attrs["id"] for _, attrs in page.elements if "id" in attrs}
    assert anchors and anchors <= ids


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs poppler-utils (pdftoppm)")
def test_posters_are_previewed_as_png_with_alt_text() -> None:
    images = [img for img in _all(parse(gallery()), "img") if img["class"] == "poster"]
    assert len(images) == 2
    for img in images:
        assert img["alt"].startswith("Preview of page 1 of poster.")
        data = base64.b64decode(img["src"].removeprefix("data:image/png;base64,"))
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
    # The poster's lines are shown as text too, for reading and for screen readers.
    lines = contents()[Channel.POSTER].messages[Language.DA].text.splitlines()
    assert all(line in parse(gallery()).texts["li"] for line in lines)


def test_images_are_shown_whole_with_the_words_on_them_and_the_post_text() -> None:
    page = parse(gallery())
    images = [img for img in _all(page, "img") if img["class"] == "image"]
    shown = {base64.b64decode(img["src"].removeprefix("data:image/png;base64,")) for img in images}
    expected = {
        data
        for channel in (Channel.INFO_SCREEN, Channel.SOCIAL_POST)
        for name, data in contents()[channel].files.items()
        if name.endswith(".png")
    }
    assert len(images) == 4 and shown == expected  # the published files, not previews
    assert all(img["alt"].startswith("Image ") for img in images)
    for lang in Language:
        words = str(contents()[Channel.INFO_SCREEN].files[f"slide.{lang.value}.txt"])
        assert all(line in page.texts["li"] for line in words.splitlines())
        post = str(contents()[Channel.SOCIAL_POST].files[f"post.{lang.value}.txt"])
        assert post.rstrip() in page.texts["pre"]
    dd = page.texts["dd"]
    assert "1920x1080 px" in dd and "1080x1080 px" in dd
    characters = contents()[Channel.SOCIAL_POST].metrics[Language.DA]["characters"]
    assert f"{characters} of at most 500" in dd


def test_without_pdftoppm_the_poster_is_linked_not_previewed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    pdf = contents()[Channel.POSTER].files["poster.da.pdf"]
    assert isinstance(pdf, bytes) and poster_preview_png(pdf) is None
    html = build_gallery({Channel.POSTER: contents()[Channel.POSTER]}, title=TITLE)
    assert "<img" not in html and "poppler-utils" in html
    assert 'href="poster/poster.da.pdf"' in html


def test_nothing_in_an_output_can_break_out_of_the_gallery() -> None:
    nasty = '</iframe><script>alert("x")</script> & \'quote\' "double"'
    page_html = f'<!DOCTYPE html><html lang="da"><body><p>{nasty}</p></body></html>'
    content = ChannelContent(
        Channel.WEBSITE,
        files={"article.da.html": page_html, "article.da.md": nasty},
        metrics={Language.DA: {"lix": 20.0}},
        key_message=nasty,
    )
    sms = ChannelContent(
        Channel.SMS,
        files={"sms.da.txt": nasty},
        messages={Language.DA: Message(Channel.SMS, Language.DA, text=nasty)},
        metrics={Language.DA: {"lix": 20.0, "characters": 60, "encoding": "GSM-7", "parts": 1}},
    )
    html = build_gallery({Channel.WEBSITE: content, Channel.SMS: sms}, title=f"Preview {nasty}")
    assert "<script" not in html
    page = parse(html)
    assert [f["srcdoc"] for f in _all(page, "iframe")] == [page_html]
    assert nasty in page.texts["pre"]
    assert page.texts["h1"] == [f"Preview {nasty}"]


def test_gallery_labels_in_danish() -> None:
    html = build_gallery(contents(), title="Forhåndsvisning", lang="da")
    page = parse(html)
    assert _all(page, "html")[0]["lang"] == "da"
    assert "Plakat" in page.texts["h2"] and "Nyhedsbrev" in page.texts["h2"]
    assert "dansk (da)" in page.texts["h3"]


def test_markdown_summary_per_channel() -> None:
    md = gallery_markdown(contents())
    headings = re.findall(r"^## (.+)$", md, re.M)
    assert headings == ["Website article", "FAQ", "Newsletter", "Poster", "SMS",
                        "Self-service pages (DPL CMS / DDB CMS)", "Info screen",
                        "Social media post"]  # fmt: skip
    assert "**Key message:** Ny måde at betale gebyrer på fra 14. december 2026" in md
    sms = contents()[Channel.SMS]
    for lang in Language:
        m = sms.metrics[lang]
        assert f"```text\n{sms.messages[lang].text}\n```" in md
        assert (
            f"{m['characters']} characters, GSM-7, {m['parts']} part(s), LIX {m['lix']:.1f}" in md
        )
        lix = contents()[Channel.WEBSITE].metrics[lang]["lix"]
        assert f"| {'Danish' if lang is Language.DA else 'English'} | {lix:.1f} (" in md


def test_markdown_escapes_text_that_would_be_markup() -> None:
    content = ChannelContent(Channel.FAQ, metrics={Language.DA: {"lix": 20.0}},
                             key_message="Spørg | *her* <b> [link](x)")  # fmt: skip
    md = gallery_markdown({Channel.FAQ: content})
    assert r"Spørg \| \*her\* \<b\> \[link\](x)" in md


@pytest.mark.parametrize("lang", list(Language))
def test_the_claims_review_lists_every_sentence_with_its_fields(lang: Language) -> None:
    """The project leader checks facts: each sentence in a table with its fields and values."""
    page = gallery()
    # Its own words in the operator's language (Danish), the sentences in the texts' language.
    title = "Gennemgang af udsagn (" + {Language.DA: "dansk", Language.EN: "engelsk"}[lang] + ")"
    assert f'<h2 id="claims-{lang.value}">{title}</h2>' in page
    deadline = (
        "Du har 30 dage til at betale." if lang is Language.DA else "You have 30 days to pay."
    )
    assert (
        f'<tr><td lang="{lang.value}">{deadline}</td><td>decisions.new_debts.payment_days</td>'
        "<td>30</td></tr>" in page
    )
    for content in contents().values():
        for claim in content.claims[lang]:
            assert str(escape(claim.text)) in page, claim
