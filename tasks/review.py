"""What the project leader reads before approving: every message as it will go out, and to how many.

One review, two forms: markdown for the Prefect artifact the approval form links to (full texts
per channel and language, the poster as a picture, recipients per channel), and short lines for
the terminal of `fbsflow run` without `--approve` (the SMS whole, subject lines, counts; the full
texts are in the output folder). Counts only: no borrower's name, address or number.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tasks.channels import spec
from tasks.models import Channel, Language, MunicipalityConfig
from tasks.render import ChannelContent

# The poster's picture in the artifact: small enough for the artifact (tens of kB per
# language), large enough to read its headline. A data: URI, so no file server is needed:
# Prefect's UI (3.x) draws a markdown image token as <img src=...> with the href as written
# (its bundled markdown renderer; seen in Chromium on `prefect server start`, Prefect 3.9.1, at
# <ui>/artifacts/artifact/<id>), and a remote URL could not reach the output folder anyway.
POSTER_PREVIEW_DPI = 30
_FENCE = "```"


@dataclass(frozen=True)
class Reach:
    """How many a channel reaches: recipients (borrowers or branches) and those left out."""

    recipients: int
    excluded: int = 0
    who: str = "låntagere"


# --- The claims review (issue 17: true texts) plugs in here ----------------------------------
# t17a provides `claims_review(contents, language) -> str`: markdown listing each claim a text
# makes and the config decision it rests on. Until it lands, the review says nothing about it.
ClaimsReview = Callable[[Mapping[Channel, ChannelContent], Language], str]


def claims_review() -> ClaimsReview | None:
    """The claims review of the true-texts work, if this fbsflow has it; else None."""
    try:
        from tasks.claims import claims_review as review  # type: ignore[import-not-found]
    except ImportError:
        return None
    return review  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------


def _label(channel: Channel) -> str:
    return spec(channel).labels["da"]


def _lang_label(lang: Language) -> str:
    return {"da": "dansk", "en": "engelsk"}.get(lang.value, lang.value)


def _text(data: str | bytes) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _code(text: str) -> str:
    # CMS settings (YAML, JSON) in a code block: their exact characters are what gets imported.
    fence = _FENCE + "`" if _FENCE in text else _FENCE
    return f"{fence}text\n{text.rstrip()}\n{fence}\n"


def _quoted(text: str) -> str:
    # A message or page as citizens will read it, quoted line by line: the UI wraps it (a code
    # block would run off the screen) and shows its headings and links as the page will. Texts
    # hold no markup but the markdown the templates write (config text is refused with markup).
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.rstrip().splitlines())


def _shown(name: str, text: str) -> str:
    return _code(text) if name.endswith((".yml", ".json")) else _quoted(text) + "\n"


_TEXT_FILES = (".md", ".txt", ".yml", ".json")


def _language_of(name: str) -> Language | None:
    """The language in a file's name ("poster.da.pdf", "da/body.txt", "language/en/x.yml")."""
    for lang in Language:
        code = lang.value
        if f".{code}." in name or name.startswith(f"{code}/") or f"/{code}/" in name:
            return lang
    return None


def _texts_of_files(content: ChannelContent, lang: Language) -> list[tuple[str, str]]:
    """A channel's published texts in `lang` (markdown, plain text and the CMS settings; not HTML
    or binaries). A file without a language in its name (the CMS settings in their main
    language) is shown under Danish."""
    files = []
    for name, data in sorted(content.files.items()):
        in_lang = (_language_of(name) or Language.DA) is lang
        if in_lang and name.endswith(_TEXT_FILES) and isinstance(data, str | bytes):
            files.append((name, _text(data)))
    return files


def reach_line(channel: Channel, reach: Reach | None) -> str | None:
    """ "Sms: 348 låntagere (41 udeladt: uden samtykke, dubletter ...)", or None."""
    if reach is None:
        return None
    left_out = (
        f" ({reach.excluded} udeladt: uden samtykke, ugyldig adresse eller dublet)"
        if reach.excluded
        else ""
    )
    return f"{_label(channel)}: {reach.recipients} {reach.who}{left_out}"


def review_markdown(
    config: MunicipalityConfig,
    contents: Mapping[Channel, ChannelContent],
    reach: Mapping[Channel, Reach],
    *,
    poster_preview: Callable[[bytes], bytes | None] | None = None,
) -> str:
    """The approval artifact: per channel and language the full text as it goes out."""
    if poster_preview is None:
        from tasks.gallery import poster_preview_png

        def poster_preview(pdf: bytes) -> bytes | None:
            return poster_preview_png(pdf, dpi=POSTER_PREVIEW_DPI)

    out = [f"# Gennemsyn før godkendelse: {config.municipality.name}\n"]
    lines = [line for c in Channel if c in contents and (line := reach_line(c, reach.get(c)))]
    if lines:
        out.append("## Modtagere\n")
        out.extend(f"- {line}" for line in lines)
        out.append("")
    claims = claims_review()
    for channel in Channel:
        content = contents.get(channel)
        if content is None:
            continue
        out.append(f"## {_label(channel)}\n")
        if line := reach_line(channel, reach.get(channel)):
            out.append(f"*{line}*\n")
        for lang in config.languages:
            out.append(f"### {_label(channel)}, {_lang_label(lang)}\n")
            message = content.messages.get(lang)
            pdf = content.files.get(f"{channel.value}.{lang.value}.pdf")
            if isinstance(pdf, bytes) and (png := poster_preview(pdf)) is not None:
                uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
                out.append(f"![{_label(channel)}, {_lang_label(lang)}]({uri})\n")
            if message is not None:
                if message.subject:
                    out.append(f"**Emne:** {message.subject}\n")
                out.append(_quoted(message.text) + "\n")
                continue
            for name, text in _texts_of_files(content, lang):
                out.append(f"`{channel.value}/{name}`\n")
                out.append(_shown(name, text))
    if claims is not None:
        out.append("## Gennemgang af udsagn\n")
        for lang in config.languages:
            out.append(claims(contents, lang).rstrip() + "\n")
    return "\n".join(out).rstrip() + "\n"


def review_lines(
    contents: Mapping[Channel, ChannelContent],
    reach: Mapping[Channel, Reach],
    languages: list[Language],
) -> list[str]:
    """The terminal's short review: per channel and language the SMS whole, subject lines,
    and the number of recipients."""
    lines = []
    for channel in Channel:
        content = contents.get(channel)
        if content is None or not content.messages:
            continue
        lines.append(reach_line(channel, reach.get(channel)) or f"{_label(channel)}:")
        for lang in languages:
            message = content.messages.get(lang)
            if message is None:
                continue
            if message.subject:
                lines.append(f"  {lang.value} emne: {message.subject}")
            if spec(channel).billed_per_part:
                lines.extend(f"  {lang.value} | {row}" for row in message.text.splitlines())
    return lines
