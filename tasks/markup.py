"""A tiny markdown subset, the one source form of citizen texts, turned into HTML or plain text.

Why not a full markdown library: the texts use headings, paragraphs, lists, links and bold only,
and the HTML must stay predictable for accessibility checks and e-mail clients. Every piece of
text is HTML-escaped here, so config values can never inject markup.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _blocks(md: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in md.strip().splitlines():
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _inline_html(text: str) -> str:
    out: list[str] = []
    pos = 0
    for m in _LINK.finditer(text):
        out.append(_bold_html(text[pos : m.start()]))
        out.append(f'<a href="{escape(m.group(2))}">{_bold_html(m.group(1))}</a>')
        pos = m.end()
    out.append(_bold_html(text[pos:]))
    return "".join(out)


def _bold_html(text: str) -> str:
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", str(escape(text)))


def to_html(md: str, *, heading_offset: int = 0) -> Markup:
    """Convert the subset to HTML; `heading_offset` shifts `#` levels (an e-mail body starts at h2)."""
    parts: list[str] = []
    for block in _blocks(md):
        first = block[0]
        if first.startswith("#"):
            level = min(len(first) - len(first.lstrip("#")) + heading_offset, 6)
            parts.append(f"<h{level}>{_inline_html(first.lstrip('#').strip())}</h{level}>")
            block = block[1:]
            if not block:
                continue
        if all(line.startswith("- ") for line in block):
            items = "".join(f"<li>{_inline_html(line[2:])}</li>" for line in block)
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<p>{_inline_html(' '.join(block))}</p>")
    return Markup("\n".join(parts))


def to_text(md: str) -> str:
    """Plain text for e-mail text parts and SMS: links become 'label (url)', bold marks go."""

    def link(m: re.Match[str]) -> str:
        label, url = m.group(1), m.group(2)
        return url if label == url else f"{label} ({url})"

    lines: list[str] = []
    for block in _blocks(md):
        for line in block:
            text = _BOLD.sub(r"\1", _LINK.sub(link, line))
            if text.startswith("#"):
                text = text.lstrip("#").strip()
            lines.append(text)
        lines.append("")
    return "\n".join(lines).strip() + "\n"


def first_heading(md: str) -> str:
    """The first heading's text, used as a page or e-mail title."""
    for block in _blocks(md):
        if block[0].startswith("#"):
            return _LINK.sub(r"\1", block[0].lstrip("#").strip())
    return ""
