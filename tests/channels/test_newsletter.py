"""The newsletter, read back as a mail client and a reader see it: subject, inlined CSS, text part, æøå."""

from __future__ import annotations

import re
from functools import cache

import pytest

from tasks.channels import spec
from tasks.models import Channel, Language
from tasks.render import ChannelContent

from .helpers import example, parse, squash


@cache
def newsletter() -> ChannelContent:
    return spec(Channel.NEWSLETTER).render(example())


DATES = {Language.DA: "14. december 2026", Language.EN: "14 December 2026"}


@pytest.mark.parametrize("lang", list(Language))
def test_newsletter_has_a_subject_with_the_date(lang: Language) -> None:
    out = newsletter()
    subject = out.messages[lang].subject
    assert subject and DATES[lang] in subject
    assert "\n" not in subject
    assert out.files[f"{lang.value}/subject.txt"] == subject + "\n"
    assert f"<title>{subject}</title>" in out.messages[lang].html


@pytest.mark.parametrize("lang", list(Language))
def test_newsletter_html_has_css_inlined_and_keeps_the_media_query(lang: Language) -> None:
    html = newsletter().messages[lang].html
    page = parse(html)
    styled = {tag for tag, attrs in page.elements if attrs.get("style")}
    # Mail clients that drop <style> (Gmail apps, Outlook) still get fonts, sizes and colours.
    assert {"body", "div", "h1", "h2", "a"} <= styled
    for tag, attrs in page.elements:
        if tag in ("h1", "h2", "a"):
            assert attrs.get("style"), f"<{tag}> without inline style"
    h1_style = next(attrs["style"] for tag, attrs in page.elements if tag == "h1")
    assert "font-size: 24px" in (h1_style or "")
    assert re.search(r"@media[^{]*max-width:\s*620px", "".join(page.styles))


@pytest.mark.parametrize("lang", list(Language))
def test_newsletter_text_part_carries_every_block_of_the_html(lang: Language) -> None:
    message = newsletter().messages[lang]
    text = squash(message.text)
    blocks = parse(message.html).blocks
    assert len(blocks) > 10
    position = 0
    for tag, block in blocks:
        assert block, f"empty <{tag}>"
        found = text.find(block, position)
        assert found >= 0, f"<{tag}> not in the text part (or out of order): {block!r}"
        position = found + len(block)
    hrefs = {attrs["href"] for tag, attrs in parse(message.html).elements if tag == "a"}
    assert hrefs and all(href in message.text for href in hrefs)
    assert "<" not in message.text and "](" not in message.text


def test_newsletter_danish_letters_are_intact() -> None:
    message = newsletter().messages[Language.DA]
    for part in (message.subject or "", message.html or "", message.text):
        assert "å" in part
        # Mojibake (UTF-8 read as Latin-1), replacement characters and needless entities.
        assert not re.search(r"Ã[¦¸¥†˜…]|\ufffd|&(aelig|oslash|aring|AElig|Oslash|Aring);", part)
    assert "ændrer" in message.html and "ændrer" in message.text
    assert "låner" in message.text and "spørgsmål" in message.html
    assert '<meta charset="utf-8">' in (message.html or "")
    assert newsletter().files["da/body.html"] == message.html
