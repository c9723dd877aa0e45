"""The claims review: every citizen sentence per channel with the decision fields it rests on.

The project leader checks facts, not prose: each row is one sentence, the config fields it names
and their values; a fixed sentence (tasks.content.FIXED) rests on the task card alone. The same
review as markdown (for the approval artifact) and as an HTML section (for the gallery).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from markupsafe import escape

from tasks.content import Claim
from tasks.models import Channel, Language
from tasks.render import ChannelContent

_WORDS = {
    Language.DA: {
        "title": "Gennemgang af udsagn ({language})",
        "languages": {Language.DA: "dansk", Language.EN: "engelsk"},
        "intro": "Hver sætning, borgerne læser, og de felter i konfigurationen, den bygger på. "
        "Tjek værdierne: de er fakta, teksten siger.",
        "sentence": "Sætning",
        "fields": "Felter",
        "values": "Værdier",
        "fixed": "fast tekst (opgavekortet)",
        "none": "Ingen tekst på dette sprog.",
    },
    Language.EN: {
        "title": "Claims review ({language})",
        "languages": {Language.DA: "Danish", Language.EN: "English"},
        "intro": "Every sentence citizens read and the config fields it rests on. "
        "Check the values: they are the facts the text states.",
        "sentence": "Sentence",
        "fields": "Fields",
        "values": "Values",
        "fixed": "fixed text (the task card)",
        "none": "No text in this language.",
    },
}
_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#"})


def _channel_name(channel: Channel, language: Language) -> str:
    from tasks.channels import spec

    return spec(channel).labels[language.value]


def _ordered(contents: Mapping[Channel, ChannelContent]) -> list[ChannelContent]:
    return [contents[c] for c in Channel if c in contents]


def _md(text: str) -> str:
    return " ".join(text.split()).translate(_MD_SPECIAL)


def _words(language: Language) -> tuple[Language, dict[str, Any]]:
    """The review's own words are the operator's (tasks/operator_text.py); its sentences are the
    citizens' texts in `language`."""
    from tasks.operator_text import language as operator_language

    operator = Language(operator_language())
    words = dict(_WORDS[operator])
    words["title"] = words["title"].format(language=words["languages"][language])
    return operator, words


def _fields(claim: Claim, words: dict[str, Any]) -> tuple[str, str]:
    if not claim.fields:
        return words["fixed"], ""
    return ", ".join(claim.fields), "; ".join(claim.values)


def claims_review(contents: Mapping[Channel, ChannelContent], language: Language) -> str:
    """Markdown: per channel, a table of every sentence in `language`, its fields and values."""
    operator, words = _words(language)
    out = [f"# {words['title']}\n", f"{words['intro']}\n"]
    for content in _ordered(contents):
        out.append(f"## {_md(_channel_name(content.channel, operator))}\n")
        claims = content.claims.get(language, [])
        if not claims:
            out.append(f"{words['none']}\n")
            continue
        out.append(f"| {words['sentence']} | {words['fields']} | {words['values']} |")
        out.append("|---|---|---|")
        for claim in claims:
            fields, values = _fields(claim, words)
            out.append(f"| {_md(claim.text)} | {_md(fields)} | {_md(values)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def claims_review_html(contents: Mapping[Channel, ChannelContent], language: Language) -> str:
    """The same review as an HTML section (its own id per language), for the gallery."""
    operator, words = _words(language)
    section_id = f"claims-{language.value}"
    parts = [
        f'<section aria-labelledby="{section_id}" lang="{operator.value}">'
        f'<h2 id="{section_id}">{escape(words["title"])}</h2><p>{escape(words["intro"])}</p>'
    ]
    for content in _ordered(contents):
        claims = content.claims.get(language, [])
        if not claims:
            continue
        name = escape(_channel_name(content.channel, operator))
        rows = []
        for claim in claims:
            fields, values = _fields(claim, words)
            rows.append(
                f'<tr><td lang="{language.value}">{escape(claim.text)}</td>'
                f"<td>{escape(fields)}</td>"
                f"<td>{escape(values)}</td></tr>"
            )
        parts.append(
            f"<table><caption>{name}</caption><thead><tr>"
            f'<th scope="col">{escape(words["sentence"])}</th>'
            f'<th scope="col">{escape(words["fields"])}</th>'
            f'<th scope="col">{escape(words["values"])}</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    parts.append("</section>")
    return "".join(parts)
