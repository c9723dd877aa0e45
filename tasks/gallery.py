"""The preview gallery: every channel's rendered output on one page, for the project leader to approve.

`build_gallery` makes one self-contained HTML file, written as `outbox/<slug>/gallery.html` next
to the channel folders: web pages and e-mails are embedded with `<iframe srcdoc>` (so the page
works when opened on its own, and the embedded document keeps its own styles and `lang`), posters
as PNG previews of page 1, texts and config files as preformatted text; every piece also links
to its file, relative to the gallery. `gallery_markdown` is the short form for a Prefect artifact.
After the readability table comes the claims review per language (tasks/claims.py): every citizen
sentence with the config fields it rests on and their values.
"""

from __future__ import annotations

import base64
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from markupsafe import escape

from tasks.channels import all_channels, spec
from tasks.channels.base import GalleryView, View
from tasks.claims import claims_review_html
from tasks.models import Channel, Language
from tasks.render import ChannelContent
from tasks.textmetrics import lix_band

# Poster preview resolution: enough to judge layout and read the headline, small enough that a
# data: URI of an A3 page stays around 100 kB.
_PREVIEW_DPI = 40
_TOOL_TIMEOUT_S = 60

# The gallery's own words; each channel's name comes from its declaration (`labels`).
_WORDS: dict[str, dict[Any, str]] = {
    "en": {
        "intro": "Everything below is what citizens will see. Check it, then approve the run.",
        "contents": "Channels",
        "metrics": "Readability and length",
        "metrics_caption": "LIX per channel and language (under 35 is easy to read)",
        "channel": "Channel",
        "key_message": "Key message",
        "open": "Open",
        "subject": "Subject",
        "html_part": "HTML part",
        "text_part": "Plain-text part",
        "characters": "Characters",
        "encoding": "Encoding",
        "parts": "SMS parts",
        "lix": "LIX",
        "paper": "Paper",
        "size": "Size",
        "limit": "of at most",
        "image": "Image",
        "to_publish": "Text to publish with the image",
        "on_image": "Text on the image",
        "preview_of": "Preview of page 1 of",
        "no_preview": "No preview (poppler-utils is not installed); open the PDF.",
        "files": "Files",
        "not_measured": "not measured",
        "timeline": "Timeline",
        "timeline_alt": "The plan's channels by date, go-live marked",
        Language.DA: "Danish",
        Language.EN: "English",
    },
    "da": {
        "intro": "Herunder er det, borgerne får at se. Gennemse det, og godkend så kørslen.",
        "contents": "Kanaler",
        "metrics": "Læsbarhed og længde",
        "metrics_caption": "LIX pr. kanal og sprog (under 35 er let at læse)",
        "channel": "Kanal",
        "key_message": "Hovedbudskab",
        "open": "Åbn",
        "subject": "Emne",
        "html_part": "HTML-del",
        "text_part": "Tekst-del",
        "characters": "Tegn",
        "encoding": "Kodning",
        "parts": "SMS-dele",
        "lix": "LIX",
        "paper": "Papir",
        "size": "Størrelse",
        "limit": "af højst",
        "image": "Billede",
        "to_publish": "Tekst, der udgives med billedet",
        "on_image": "Tekst på billedet",
        "preview_of": "Forhåndsvisning af side 1 af",
        "no_preview": "Ingen forhåndsvisning (poppler-utils er ikke installeret); åbn PDF-filen.",
        "files": "Filer",
        "not_measured": "ikke målt",
        "timeline": "Tidslinje",
        "timeline_alt": "Planens kanaler efter dato, driftsstart markeret",
        Language.DA: "dansk",
        Language.EN: "engelsk",
    },
}

_STYLE = """
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; line-height: 1.5;
         margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 110rem; color: #1a1a1a; background: #fff; }
  a { color: #0b4f8a; }
  nav ul { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; padding: 0; list-style: none; }
  section.channel { border-top: 2px solid #444; margin-top: 2.5rem; }
  .langs { display: grid; grid-template-columns: repeat(auto-fit, minmax(24rem, 1fr)); gap: 1.5rem; }
  .langs > section { min-width: 0; }
  iframe { width: 100%; height: 36rem; border: 1px solid #767676; background: #fff; }
  pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f3f3f3; color: #1a1a1a;
        border: 1px solid #767676; padding: 0.75rem; font-size: 0.95rem; }
  img.poster, img.image { max-width: 100%; border: 1px solid #767676; }
  table { border-collapse: collapse; }
  th, td { border: 1px solid #767676; padding: 0.3rem 0.8rem; text-align: left; }
  caption { text-align: left; font-weight: bold; margin-bottom: 0.3rem; }
  dl.figures { display: grid; grid-template-columns: max-content auto; gap: 0.1rem 1rem; }
  dl.figures dt { font-weight: bold; }
  dl.figures dd { margin: 0; }
"""


def _labels(lang: str) -> dict[Any, str]:
    """The gallery's words in `lang` ("en" or "da", else English), with every channel's name."""
    words = _WORDS.get(lang, _WORDS["en"])
    lang = lang if lang in _WORDS else "en"
    return {**words, **{s.channel: s.labels[lang] for s in all_channels()}}


def _languages(content: ChannelContent) -> list[Language]:
    """The languages a channel was rendered in, in `Language` order."""
    seen = set(content.metrics) | set(content.messages)
    return [lang for lang in Language if lang in seen]


def _text(content: str | bytes) -> str:
    return content.decode("utf-8", "replace") if isinstance(content, bytes) else content


def _format_lix(value: Any, labels: Mapping[Any, str]) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return labels["not_measured"]
    return f"{value:.1f} ({lix_band(value)})"


def poster_preview_png(pdf: bytes, *, dpi: int = _PREVIEW_DPI) -> bytes | None:
    """Page 1 of `pdf` as PNG, or None when poppler's `pdftoppm` is not installed.

    A preview is optional: the gallery then shows the link to the PDF only, so a missing tool
    never stops a review.
    """
    exe = shutil.which("pdftoppm")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory(prefix="fbsflow-gallery-") as tmp:
        work = Path(tmp)
        (work / "in.pdf").write_bytes(pdf)
        result = subprocess.run(
            [exe, "-r", str(dpi), "-png", "-f", "1", "-l", "1", "-singlefile",
             str(work / "in.pdf"), str(work / "page")],
            capture_output=True,
            timeout=_TOOL_TIMEOUT_S,
            check=False,
        )  # fmt: skip
        png = work / "page.png"
        return png.read_bytes() if result.returncode == 0 and png.is_file() else None


class _Page:
    """Collects the gallery's HTML; every value from outside goes through `escape`."""

    def __init__(self, labels: Mapping[Any, str]) -> None:
        self.labels = labels
        self.parts: list[str] = []

    def add(self, html: str) -> None:
        self.parts.append(html)

    def link(self, href: str) -> str:
        """A link to an output file, relative to the gallery; the path is its visible text."""
        return f'<a href="{escape(href)}">{escape(self.labels["open"])} {escape(href)}</a>'

    def iframe(self, document: str, title: str) -> None:
        # srcdoc is an attribute: `escape` turns & < > " ' into references, which the browser
        # turns back into the exact document, so nothing in it can end the attribute early.
        # The sandbox keeps a previewed document from running scripts or touching the gallery.
        self.add(
            f'<iframe sandbox="" title="{escape(title)}" srcdoc="{escape(document)}"></iframe>'
        )

    def pre(self, text: str, lang: Language | None = None) -> None:
        # The stylesheet wraps long lines, so a <pre> never scrolls and needs no keyboard focus.
        attrs = f' lang="{lang.value}"' if lang else ""
        self.add(f"<pre{attrs}>{escape(text.rstrip())}</pre>")

    def figures(self, rows: Iterable[tuple[str, Any]]) -> None:
        items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
        self.add(f'<dl class="figures">{items}</dl>')


def _lang_heading(page: _Page, channel: Channel, lang: Language) -> None:
    page.add(
        f'<section aria-labelledby="{channel.value}-h {channel.value}-{lang.value}">'
        f'<h3 id="{channel.value}-{lang.value}">{escape(page.labels[lang])} ({lang.value})</h3>'
    )


def _web_page(page: _Page, content: ChannelContent, name: str) -> None:
    channel = content.channel
    page.add('<div class="langs">')
    for lang in _languages(content):
        html_file, md_file = f"{name}.{lang.value}.html", f"{name}.{lang.value}.md"
        _lang_heading(page, channel, lang)
        links = [page.link(f"{channel.value}/{f}") for f in (html_file, md_file)
                 if f in content.files]  # fmt: skip
        page.add(f"<p>{' · '.join(links)}</p>")
        if html_file in content.files:
            title = f"{page.labels[channel]}, {page.labels[lang]}"
            page.iframe(_text(content.files[html_file]), title)
        page.add("</section>")
    page.add("</div>")


def _email(page: _Page, content: ChannelContent, name: str) -> None:
    labels, folder = page.labels, content.channel.value
    page.add('<div class="langs">')
    for lang in _languages(content):
        _lang_heading(page, content.channel, lang)
        message = content.messages.get(lang)
        subject = message.subject if message and message.subject else ""
        page.add(
            f"<p><strong>{escape(labels['subject'])}:</strong> "
            f'<span lang="{lang.value}">{escape(subject)}</span></p>'
        )
        html = (
            message.html
            if message and message.html
            else content.files.get(f"{lang.value}/body.html")
        )
        if html:
            page.add(f"<h4>{escape(labels['html_part'])}</h4>")
            page.add(f"<p>{page.link(f'{folder}/{lang.value}/body.html')}</p>")
            page.iframe(_text(html), f"{labels[content.channel]}, {labels[lang]}, HTML")
        text = message.text if message else content.files.get(f"{lang.value}/body.txt")
        if text:
            page.add(f"<h4>{escape(labels['text_part'])}</h4>")
            page.add(f"<p>{page.link(f'{folder}/{lang.value}/body.txt')}</p>")
            page.pre(_text(text), lang)
        page.add("</section>")
    page.add("</div>")


def _text_message(page: _Page, content: ChannelContent, name: str) -> None:
    labels = page.labels
    page.add('<div class="langs">')
    for lang in _languages(content):
        _lang_heading(page, content.channel, lang)
        message = content.messages.get(lang)
        text = message.text if message else _text(content.files.get(f"{name}.{lang.value}.txt", ""))
        page.pre(text, lang)
        m = content.metrics.get(lang, {})
        page.figures([
            (labels["characters"], m.get("characters", len(text))),
            (labels["encoding"], m.get("encoding", "")),
            (labels["parts"], m.get("parts", "")),
            (labels["lix"], _format_lix(m.get("lix"), labels)),
        ])  # fmt: skip
        page.add(f"<p>{page.link(f'{content.channel.value}/{name}.{lang.value}.txt')}</p>")
        page.add("</section>")
    page.add("</div>")


def _print(page: _Page, content: ChannelContent, stem: str) -> None:
    labels = page.labels
    page.add('<div class="langs">')
    for lang in _languages(content):
        _lang_heading(page, content.channel, lang)
        name = f"{stem}.{lang.value}.pdf"
        href = f"{content.channel.value}/{name}"
        m = content.metrics.get(lang, {})
        page.figures([(labels["paper"], m.get("paper", "")),
                      (labels["lix"], _format_lix(m.get("lix"), labels))])  # fmt: skip
        page.add(f"<p>{page.link(href)}</p>")
        pdf = content.files.get(name)
        png = poster_preview_png(pdf) if isinstance(pdf, bytes) else None
        if png is None:
            page.add(f"<p>{escape(labels['no_preview'])}</p>")
        else:
            # The preview is a picture of the text shown just below it, so its alt only says
            # what it is; a screen reader user gets the words from the list.
            uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            alt = f"{labels['preview_of']} {name}"
            page.add(f'<p><a href="{escape(href)}"><img class="poster" src="{uri}" '
                     f'alt="{escape(alt)}"></a></p>')  # fmt: skip
        message = content.messages.get(lang)
        if message and message.text:
            items = "".join(f"<li>{escape(line)}</li>" for line in message.text.splitlines())
            page.add(f'<ul lang="{lang.value}">{items}</ul>')
        page.add("</section>")
    page.add("</div>")


def _image(page: _Page, content: ChannelContent, name: str) -> None:
    """`<name>.<lang>.png` as it is published, the words on it, and any text published with it."""
    labels, folder = page.labels, content.channel.value
    page.add('<div class="langs">')
    for lang in _languages(content):
        _lang_heading(page, content.channel, lang)
        m = content.metrics.get(lang, {})
        figures = [(labels["size"], f"{m['size']} px")] if "size" in m else []
        if "characters" in m:
            limit = f" {labels['limit']} {m['limit']}" if "limit" in m else ""
            figures.append((labels["characters"], f"{m['characters']}{limit}"))
        page.figures([*figures, (labels["lix"], _format_lix(m.get("lix"), labels))])
        words, png = f"{name}.{lang.value}.txt", f"{name}.{lang.value}.png"
        published = sorted(
            f for f in content.files if f.endswith(f".{lang.value}.txt") and f != words
        )
        for relative in published:
            page.add(f"<h4>{escape(labels['to_publish'])}</h4>")
            page.add(f"<p>{page.link(f'{folder}/{relative}')}</p>")
            page.pre(_text(content.files[relative]), lang)
        if isinstance(data := content.files.get(png), bytes):
            # Shown whole, as it will be published. Its alt only says what it is: the words on
            # it are listed just below, for reading and for screen readers.
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            alt = f"{labels['image']} {png}"
            page.add(f"<h4>{escape(labels['image'])}</h4><p>{page.link(f'{folder}/{png}')}</p>")
            page.add(f'<p><img class="image" src="{uri}" alt="{escape(alt)}"></p>')
        if words in content.files:
            lines = _text(content.files[words]).splitlines()
            items = "".join(f"<li>{escape(line)}</li>" for line in lines if line)
            page.add(f"<h4>{escape(labels['on_image'])}</h4>")
            page.add(f"<p>{page.link(f'{folder}/{words}')}</p>")
            page.add(f'<ul lang="{lang.value}">{items}</ul>')
        page.add("</section>")
    page.add("</div>")


def _files(page: _Page, content: ChannelContent, name: str) -> None:
    """Config files and anything else: each file's path as a heading and its text."""
    channel = content.channel
    for relative, data in sorted(content.files.items()):
        page.add(f"<h3>{escape(relative)}</h3>")
        page.add(f"<p>{page.link(f'{channel.value}/{relative}')}</p>")
        if isinstance(data, bytes):
            continue  # binary files are linked, not shown
        page.pre(data)


# Each view draws one channel's output; `name` is the file stem the channel declares.
_SHOW: dict[View, Callable[[_Page, ChannelContent, str], None]] = {
    View.PAGE: _web_page,
    View.EMAIL: _email,
    View.TEXT_MESSAGE: _text_message,
    View.PRINT: _print,
    View.IMAGE: _image,
    View.FILES: _files,
}


def _view(channel: Channel) -> GalleryView:
    return spec(channel).gallery


def _metrics_table(page: _Page, contents: Mapping[Channel, ChannelContent]) -> None:
    labels = page.labels
    measured = [contents[c] for c in Channel if c in contents
                and any("lix" in m for m in contents[c].metrics.values())]  # fmt: skip
    if not measured:
        return
    langs = [lang for lang in Language if any(lang in c.metrics for c in measured)]
    head = "".join(f'<th scope="col">{escape(labels["lix"])}, {escape(labels[lang])}</th>'
                   for lang in langs)  # fmt: skip
    rows = []
    for content in measured:
        cells = "".join(
            f"<td>{escape(_format_lix(content.metrics.get(lang, {}).get('lix'), labels))}</td>"
            for lang in langs
        )
        rows.append(f'<tr><th scope="row">{escape(labels[content.channel])}</th>{cells}</tr>')
    page.add(
        '<section aria-labelledby="metrics"><h2 id="metrics">'
        f"{escape(labels['metrics'])}</h2><table><caption>{escape(labels['metrics_caption'])}"
        f'</caption><thead><tr><th scope="col">{escape(labels["channel"])}</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _claim_languages(contents: Mapping[Channel, ChannelContent]) -> list[Language]:
    return [lang for lang in Language if any(lang in c.claims for c in contents.values())]


def build_gallery(
    contents: Mapping[Channel, ChannelContent],
    *,
    title: str,
    lang: str = "en",
    timeline: bytes | None = None,
) -> str:
    """One self-contained HTML page showing every channel's output, per language, side by side.

    `lang` is the language of the gallery's own labels ("en" or "da"); each embedded output
    keeps its own language. Links are relative to `outbox/<slug>/`, where the gallery is written.
    `timeline` is the plan's timeline PNG (tasks/plan.py), shown first when given.
    """
    labels = _labels(lang)
    page = _Page(labels)
    ordered = [contents[c] for c in Channel if c in contents]
    nav = "".join(f'<li><a href="#{c.channel.value}">{escape(labels[c.channel])}</a></li>'
                  for c in ordered)  # fmt: skip
    page.add(
        f'<!DOCTYPE html>\n<html lang="{escape(lang)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<header><h1>{escape(title)}</h1><p>{escape(labels['intro'])}</p>"
        f'<nav aria-label="{escape(labels["contents"])}"><ul>{nav}</ul></nav></header>\n<main>'
    )
    if timeline is not None:
        uri = "data:image/png;base64," + base64.b64encode(timeline).decode("ascii")
        page.add(
            f'<section id="timeline" aria-labelledby="timeline-h"><h2 id="timeline-h">'
            f"{escape(labels['timeline'])}</h2>"
            f'<img class="image" src="{uri}" alt="{escape(labels["timeline_alt"])}"></section>'
        )
    _metrics_table(page, contents)
    for review_lang in _claim_languages(contents):
        page.add(claims_review_html(contents, review_lang))
    for content in ordered:
        channel = content.channel
        page.add(
            f'<section class="channel" id="{channel.value}" aria-labelledby="{channel.value}-h">'
            f'<h2 id="{channel.value}-h">{escape(labels[channel])}</h2>'
        )
        view = _view(channel)
        # A text message is shown whole, so its key message (the text itself) is not repeated.
        if content.key_message and view.kind is not View.TEXT_MESSAGE:
            page.add(
                f"<p><strong>{escape(labels['key_message'])}:</strong> "
                f'<span lang="da">{escape(content.key_message)}</span></p>'
            )
        _SHOW[view.kind](page, content, view.name)
        page.add("</section>")
    page.add("</main>\n</body>\n</html>\n")
    return "\n".join(page.parts)


# --- Markdown ---------------------------------------------------------------------------------

_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|#"})


def _md(text: str) -> str:
    """Text safe inside a markdown paragraph or table cell."""
    return " ".join(text.split()).translate(_MD_SPECIAL)


def _md_lix(value: Any) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "–"
    return f"{value:.1f} ({lix_band(value)})"


def gallery_markdown(contents: Mapping[Channel, ChannelContent]) -> str:
    """A short review per channel for a Prefect markdown artifact: key message, LIX, SMS text and parts."""
    labels = _labels("en")
    out: list[str] = []
    for channel in Channel:
        content = contents.get(channel)
        if content is None:
            continue
        out.append(f"## {labels[channel]}\n")
        langs = _languages(content)
        if _view(channel).kind is View.TEXT_MESSAGE:
            for lang in langs:
                m = content.metrics.get(lang, {})
                message = content.messages.get(lang)
                text = message.text if message else ""
                out.append(
                    f"**{labels[lang]}**: {m.get('characters', len(text))} characters, "
                    f"{m.get('encoding', '?')}, {m.get('parts', '?')} part(s), "
                    f"LIX {_md_lix(m.get('lix'))}\n"
                )
                # A code block shows the exact characters that will be sent, nothing rendered.
                fence = "````" if "```" in text else "```"
                out.append(f"{fence}text\n{text.rstrip()}\n{fence}\n")
            continue
        if content.key_message:
            out.append(f"**Key message:** {_md(content.key_message)}\n")
        rows = [(lang, content.metrics.get(lang, {}).get("lix")) for lang in langs]
        if any(value is not None for _, value in rows):
            out.append("| Language | LIX |\n|---|---|")
            out.extend(f"| {labels[lang]} | {_md_lix(value)} |" for lang, value in rows)
            out.append("")
    return "\n".join(out).rstrip() + "\n"
